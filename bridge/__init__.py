"""The Keras <-> Lightning bridge: the only package that imports both frameworks.

Both implementations speak the canonical weight names of experiment/weights.py;
this package copies a model from one framework to the other through them:

    bridge.architecture   the four settings of a model (vocabulary sizes, embedding
                          width, dropout rate, output activation), read from either side
    bridge.transfer       in memory: a keras.Model <-> a StreetcarNet
    bridge.gradients      one training step's gradients of each side, by canonical name
    bridge.convert        through files: .keras / Keras 2 .h5 <-> Lightning .ckpt,
                          each conversion checked by predicting before it is kept
    bridge.model_files    what a model file is (bytes, not name), and its vocabulary
    bridge.command        `python -m lightning_impl.convert` (that module only calls this one)

keras_impl and lightning_impl import neither each other nor this package
(lightning_impl/convert.py, the command's thin entry point, is the one exception).
"""
