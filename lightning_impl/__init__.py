"""The streetcar-delay classifier in PyTorch Lightning (the port of the book's Keras model).

    python -m lightning_impl.train --experiment 0 --json        # train, test, write a run directory
    python -m lightning_impl.score --checkpoint RUN/checkpoints/last.ckpt \
        --route 501 --direction e --date 2019-06-21 --hour 18   # score one trip

Modules: model (the nn.Module and its Keras-layout weights), metrics (Keras's
binary cross-entropy and epoch metrics), system (the LightningModule),
datamodule (batches cut from in-memory tensors), callbacks (the Keras-compatible
set and its builder; early_stopping, reduce_lr and callback_rules hold the
parts), run_callbacks (atomic, run-relative checkpoints), builders (the module,
data module and Trainer a run is built from; benchmarks/ uses them too), fit
(fit, keep, test), train, score, convert (the converter's command; the
conversion is in bridge/); fast/ is the
same model on the fast engine (`--engine fast`: fused network, closed-form
gradients, several batches per Lightning step).  Importing this
package is light: torch and Lightning load only with the modules that need them.
"""
