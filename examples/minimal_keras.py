"""Experiment 5 of chapter 6 (class weights, early stopping on val_accuracy) in Keras, as the book writes it.

    python examples/minimal_keras.py --sample-rows 200000 --epochs 10

The reference for examples/minimal_port.py, which does the same in Lightning,
section by section; docs/keras_vs_lightning.md walks through both.
"""

import argparse
from pathlib import Path

import keras
import numpy as np

from configs.loader import load_config, resolve_experiment
from data import COLUMNS, load_prepared


# [docs:minimal-keras-data]
def make_inputs(dataset, split):
    """({column: (n, 1) int32}, target): one named input per column, as the book's X_train_list."""
    features, target = dataset.split_arrays(split)
    inputs = {column: features[:, j:j + 1].astype(np.int32) for j, column in enumerate(COLUMNS)}
    return inputs, target.astype(np.float32)
# [/docs:minimal-keras-data]


# [docs:minimal-keras-model]
def get_model(vocab_sizes, embedding_dim=10, dropout_rate=0.0003):
    """Per column Embedding -> BatchNorm -> Dropout; concatenate; Dense(1) with hard_sigmoid."""
    inputs, branches = [], []
    for column in COLUMNS:
        column_input = keras.Input(shape=(1,), name=column, dtype="int32")
        embedded = keras.layers.Embedding(vocab_sizes[column], embedding_dim, name=f"embedding_{column}")(column_input)
        normalised = keras.layers.BatchNormalization(momentum=0.99, epsilon=1e-3,  # the defaults
                                                     name=f"batchnorm_{column}")(embedded)
        branches.append(keras.layers.Dropout(dropout_rate)(keras.layers.Flatten()(normalised)))
        inputs.append(column_input)
    merged = keras.layers.concatenate(branches)
    output = keras.layers.Dense(1, activation="hard_sigmoid", name="output")(merged)
    return keras.Model(inputs=inputs, outputs=output)
# [/docs:minimal-keras-model]


# [docs:minimal-keras-compile]
def compile_model(model, learning_rate=0.001):
    """The loss, the optimiser and the metrics (class weights come later, in fit)."""
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=learning_rate),
                  loss="binary_crossentropy",
                  metrics=["accuracy", keras.metrics.Recall(name="recall")])
    return model
# [/docs:minimal-keras-compile]


def main(sample_rows, epochs, out_dir):
    # [docs:minimal-keras-load]
    config = load_config()
    settings = resolve_experiment(config, "5")
    hyper = config.hyperparameters
    keras.utils.set_random_seed(config.general.seed)  # Python, NumPy and the backend
    dataset = load_prepared(config)
    if sample_rows is not None:
        dataset = dataset.sample(sample_rows, config.general.seed)  # the seeded subset every trainer here takes
    class_weight = {0: 1.0, 1: dataset.one_weight()}  # count_no_delay / count_delay on train
    # [/docs:minimal-keras-load]
    train_inputs, train_target = make_inputs(dataset, "train")
    valid_inputs, valid_target = make_inputs(dataset, "valid")
    model = compile_model(get_model(dataset.vocab_sizes, dropout_rate=hyper.dropout_rate), hyper.learning_rate)
    model.summary()
    # [docs:minimal-keras-callbacks]
    early_stopping = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=settings.patience,
                                                   verbose=1)
    checkpoint = keras.callbacks.ModelCheckpoint(  # Keras fills {epoch} 1-based
        str(Path(out_dir, "best-epoch{epoch:02d}-val_accuracy{val_accuracy:.4f}.keras")),
        monitor="val_accuracy", mode="max", save_best_only=True, verbose=1)
    # [/docs:minimal-keras-callbacks]
    # [docs:minimal-keras-fit]
    history = model.fit(train_inputs, train_target, epochs=epochs, batch_size=hyper.batch_size,
                        validation_data=(valid_inputs, valid_target), class_weight=class_weight,
                        callbacks=[early_stopping, checkpoint], verbose=2)
    # [/docs:minimal-keras-fit]
    # [docs:minimal-keras-predict]
    kept_epoch = 1 + int(np.argmax(history.history["val_accuracy"]))  # the first best, as the checkpoint
    kept_path = next(Path(out_dir).glob(f"best-epoch{kept_epoch:02d}-*.keras"))
    kept = keras.models.load_model(kept_path)
    test_inputs, test_target = make_inputs(dataset, "test")
    probabilities = kept.predict(test_inputs, batch_size=100_000, verbose=0)
    recall = keras.metrics.Recall()(test_target, probabilities.reshape(-1))
    # [/docs:minimal-keras-predict]
    print(f"kept epoch {kept_epoch} (val_accuracy {history.history['val_accuracy'][kept_epoch - 1]:.4f}): "
          f"{kept_path.name}")
    print(f"test recall {float(recall):.5f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sample-rows", type=int, help="a seeded subset of the rows (default: all)")
    parser.add_argument("--epochs", type=int, default=50, help="at most this many epochs (the book: 50)")
    parser.add_argument("--out-dir", default="runs/minimal-keras", help="the best-only checkpoints")
    args = parser.parse_args()
    if args.epochs < 1 or (args.sample_rows is not None and args.sample_rows < 1):
        parser.error("--epochs and --sample-rows must be at least 1")
    try:
        main(args.sample_rows, args.epochs, args.out_dir)
    except ValueError as error:  # bad input (a --sample-rows out of range, no data): one line, exit 2
        parser.exit(2, f"error: {error}\n")
