"""NaN and divergence: both frameworks stop at the same epoch, keep the model from before, and say so.

    python -m pytest parity_tests/test_divergence.py -q      # ~3-5 min on 2 busy CPU cores; real workbooks

What the frameworks do by default (shown by the first two tests, in process,
on a synthetic dataset):

* Keras 3: nothing checks the loss unless you add TerminateOnNaN, and that
  one stops *after* the epoch is validated and every on_epoch_end has run.
  A model whose outputs are NaN predicts "no delay" for every trip, which
  scores a val_accuracy near the share of undelayed slots - far above any
  honest epoch - so ModelCheckpoint(monitor="val_accuracy") saves the NaN
  model as the best one.
* Lightning 2.6: EarlyStopping(check_finite=True) stops on a non-finite
  *monitored* value only; with monitor="val_accuracy" (experiment 5) the
  value stays finite, training goes on with NaN weights, and
  ModelCheckpoint keeps the NaN model as the best.

The project's rule (experiment.reliability, keras_impl.callbacks.NonFiniteGuard,
lightning_impl.run_callbacks.NonFiniteGuard), the same in both: at the end of
the first epoch whose training loss or monitored value is not finite, stop
before any checkpoint, log or early-stopping decision sees that epoch; keep
the best checkpoint from before it (or, without early stopping, the last
finite epoch's model); exit 0 with result["stop_reason"] =
"stopped: non-finite loss at epoch N (0-based N-1): loss = nan".  The last
tests inject the NaN into a real CLI run of each framework
(STREETCAR_FAULT_NAN_AT_EPOCH: the output bias becomes NaN at the start of
that epoch) and check exactly that.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from parity_tests.reliability_support import TRAINERS, canonical_best_weights, run_cli, run_json, write_config

NAN_EPOCH = 3            # 0-based: the 4th epoch diverges
SAMPLE_ROWS = 50000
LEARNING_RATE = 0.003
EXPECTED_REASON = f"stopped: non-finite loss at epoch {NAN_EPOCH + 1} (0-based {NAN_EPOCH}): loss = nan"


# --------------------------------------------------------------------------
# The frameworks' defaults (what the project's rule replaces)
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic():
    from lightning_impl.tests.helpers import make_synthetic_dataset

    return make_synthetic_dataset(6000, seed=0)


def test_keras_terminate_on_nan_still_checkpoints_the_diverged_epoch(synthetic, tmp_path):
    import keras

    from keras_impl.data import build_fit_arguments
    from keras_impl.model import build_model, compile_model

    keras.utils.set_random_seed(0)
    model = compile_model(build_model(synthetic.vocab_sizes), 0.05)
    one_weight = synthetic.one_weight(0.0, split="train")

    class NaNAtEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                bias = self.model.get_layer("output").bias
                bias.assign(keras.ops.full(bias.shape, float("nan")))

    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "best-{epoch:02d}.keras"), monitor="val_accuracy",
                                                 mode="max", save_best_only=True)
    arguments = build_fit_arguments(synthetic, batch_size=600, seed=0, epochs=5,
                                    class_weight={0: 1.0, 1: one_weight}, batch_order="shared")
    history = model.fit(**arguments, callbacks=[NaNAtEpoch(), keras.callbacks.TerminateOnNaN(), checkpoint],
                        verbose=0).history
    assert len(history["loss"]) == 3 and math.isnan(history["loss"][2])  # stopped in the NaN epoch ...
    assert history["val_accuracy"][2] > max(history["val_accuracy"][:2])  # ... which "improved" val_accuracy
    saved = sorted(path.name for path in tmp_path.glob("best-*.keras"))
    assert saved[-1] == "best-03.keras"  # so Keras kept the NaN model as the best one
    nan_model = keras.models.load_model(str(tmp_path / saved[-1]))
    assert np.isnan(nan_model.get_layer("output").bias.numpy()).all()


def test_lightning_check_finite_misses_a_nan_loss_when_monitoring_accuracy(synthetic, tmp_path):
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from lightning_impl.datamodule import StreetcarDataModule
    from lightning_impl.system import StreetcarClassifier

    L.seed_everything(0, verbose=False)
    one_weight = synthetic.one_weight(0.0, split="train")
    module = StreetcarClassifier(synthetic.vocab_sizes, synthetic.vocabularies.to_json_dict(), learning_rate=0.05,
                                 one_weight=one_weight)
    datamodule = StreetcarDataModule(synthetic, batch_size=600, seed=0, class_weight={0: 1.0, 1: one_weight})

    class NaNAtEpoch(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 2:
                with torch.no_grad():
                    pl_module.net.output.bias.fill_(float("nan"))

    stopping = EarlyStopping(monitor="val_accuracy", mode="max", patience=5, check_finite=True)
    best = ModelCheckpoint(dirpath=str(tmp_path), monitor="val_accuracy", mode="max", save_top_k=1)
    trainer = L.Trainer(max_epochs=4, accelerator="cpu", devices=1, callbacks=[NaNAtEpoch(), stopping, best],
                        logger=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, use_distributed_sampler=False)
    trainer.fit(module, datamodule=datamodule)
    assert math.isnan(module.history["loss"][2])
    assert trainer.current_epoch == 4 and not stopping.stopped_epoch  # check_finite never fired
    saved = torch.load(best.best_model_path, map_location="cpu", weights_only=True)
    assert saved["epoch"] >= 2 and torch.isnan(saved["state_dict"]["net.output.bias"]).all()


# --------------------------------------------------------------------------
# The project's rule, through both real CLIs
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config_path(tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp("config") / "divergence.yaml", learning_rate=LEARNING_RATE)


def diverging_run(framework: str, config_path: Path, out_dir: Path, experiment: str, epochs: int) -> dict:
    arguments = ["--config", config_path, "--experiment", experiment, "--sample-rows", SAMPLE_ROWS,
                 "--epochs", epochs, "--patience", 3, "--out-dir", out_dir]
    if framework == "lightning":
        arguments += ["--accelerator", "cpu"]
    return run_json(TRAINERS[framework], arguments, env={"STREETCAR_FAULT_NAN_AT_EPOCH": str(NAN_EPOCH)})


_early_stopping_results: dict[str, dict] = {}


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.parametrize("framework", ["keras", "lightning"])
def test_nan_stops_cleanly_and_keeps_the_best_checkpoint(framework, config_path, tmp_path):
    result = diverging_run(framework, config_path, tmp_path, "5", 10)
    _early_stopping_results[framework] = result
    history = result["history"]
    assert result["stop_reason"] == EXPECTED_REASON
    assert result["epochs_run"] == NAN_EPOCH + 1 and len(history["loss"]) == NAN_EPOCH + 1
    assert history["loss"][NAN_EPOCH] == "nan"  # JSON spells NaN as the string "nan"
    finite = [float(value) for value in history["val_accuracy"][:NAN_EPOCH]]
    # The best checkpoint is from before the NaN, by Keras's rule over the finite epochs ...
    assert result["best_epoch"] == int(np.argmax(finite)) and result["best_value"] == max(finite)
    assert Path(result["best_checkpoint"]).is_file()
    assert f"best-epoch{result['best_epoch'] + 1:02d}-" in Path(result["best_checkpoint"]).name
    # ... although the diverged epoch "scored" better (NaN probabilities count as "no delay").
    assert float(history["val_accuracy"][NAN_EPOCH]) > max(finite)
    weights = canonical_best_weights(framework, result["best_checkpoint"])
    assert all(np.isfinite(array).all() for array in weights.values())
    run_dir = Path(result["run_dir"])
    assert json.loads((run_dir / "result.json").read_text())["stop_reason"] == EXPECTED_REASON
    assert json.loads((run_dir / "run_request.json").read_text())["completed"] is True
    assert not (run_dir / "backup").exists()  # keras_impl's resume backup is gone with the finished run


@pytest.mark.real_data
def test_both_frameworks_stop_on_the_same_epoch():
    if set(_early_stopping_results) != {"keras", "lightning"}:
        pytest.skip("needs both runs of test_nan_stops_cleanly_and_keeps_the_best_checkpoint in this session")
    keras_result, lightning_result = _early_stopping_results["keras"], _early_stopping_results["lightning"]
    assert keras_result["epochs_run"] == lightning_result["epochs_run"] == NAN_EPOCH + 1
    assert keras_result["stop_reason"] == lightning_result["stop_reason"] == EXPECTED_REASON


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.parametrize("framework", ["keras", "lightning"])
def test_nan_without_early_stopping_keeps_the_last_finite_model(framework, config_path, tmp_path):
    result = diverging_run(framework, config_path, tmp_path, "3", 6)
    assert result["stop_reason"] == EXPECTED_REASON and result["epochs_run"] == NAN_EPOCH + 1
    assert result["best_epoch"] is None and result["best_checkpoint"] is None
    run_dir = Path(result["run_dir"])
    if framework == "keras":
        kept = canonical_best_weights("keras", run_dir / "model.keras")
    else:
        kept = canonical_best_weights("lightning", run_dir / "checkpoints" / "last.ckpt")
    assert all(np.isfinite(array).all() for array in kept.values())
    # The kept model is a trained one, not the NaN one: it predicts some delays on the test split.
    assert result["test"]["true_positives"] + result["test"]["confusion_matrix"][0][1] > 0


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.parametrize("framework", ["keras", "lightning"])
def test_a_diverged_first_epoch_is_one_line_and_leaves_no_run_folder(framework, tmp_path):
    """The first epoch diverges with early stopping on: no finite model exists."""
    arguments = ["--experiment", "5", "--sample-rows", 20000, "--epochs", 3, "--patience", 2, "--out-dir", tmp_path]
    if framework == "lightning":
        arguments += ["--accelerator", "cpu"]
    completed = run_cli(TRAINERS[framework], arguments, env={"STREETCAR_FAULT_NAN_AT_EPOCH": "0"})
    assert completed.returncode == 2, completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr, completed.stderr[-3000:]
    errors = [line for line in completed.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [completed.stderr.strip().splitlines()[-1]]
    assert errors[0].startswith("error: training diverged in its first epoch (stopped: non-finite loss at epoch 1")
    assert errors[0].endswith("so no finite model exists and the run folder was removed; "
                              "lower hyperparameters.learning_rate")
    assert list(tmp_path.iterdir()) == []
