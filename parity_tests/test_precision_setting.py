"""--precision 64 in both trainers: the run, its files, scoring and conversion keep float64 end to end.

    python -m pytest parity_tests/test_precision_setting.py -q

hyperparameters.precision (configs/streetcar.yaml) or --precision 64 trains
in float64: Keras through floatx and the dtype policy (keras_impl.precision),
Lightning through Trainer(precision="64-true") with float64 targets and class
weights (lightning_impl.datamodule).  The run's JSON says "precision": 64, the
Lightning checkpoint records it (so loading does not round the weights to
float32), the .keras file keeps float64 in its dtype policy, and the scorers
and the converter read it back.  That one float64 step agrees between the two
frameworks to 1e-12 is parity_tests/test_float64_parity.py's job.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from configs.cli import resolve_run_request
from configs.console import run_main

ROWS = 4000


def request_for(tmp_path, precision: int, engine: str = "plain"):
    from configs.loader import override
    import dataclasses

    request = resolve_run_request(argparse.Namespace(
        config=None, experiment="0", epochs=None, patience=None, seed=None, sample_rows=ROWS, raw_dir=None,
        out_dir=str(tmp_path), json=True, precision=precision))
    return dataclasses.replace(request, config=override(request.config, "lightning.engine", engine))


@pytest.fixture(scope="module")
def float64_runs(prepared_dataset, tmp_path_factory):
    from keras_impl.train import train as train_keras
    from lightning_impl.train import train as train_lightning

    root = tmp_path_factory.mktemp("float64")
    quiet = lambda message: None  # noqa: E731
    keras_result = train_keras(request_for(root, 64), dataset=prepared_dataset, progress=quiet)
    lightning_result = train_lightning(request_for(root, 64), dataset=prepared_dataset, accelerator="cpu",
                                       progress_bar=False, progress=quiet)
    return keras_result, lightning_result


def test_both_trainers_run_in_float64_and_say_so(float64_runs):
    keras_result, lightning_result = float64_runs
    assert keras_result["precision"] == 64 and lightning_result["precision"] == 64
    # A float32 run's per-epoch loss is a float32 value; these carry float64 digits.
    for result in float64_runs:
        loss = result["history"]["loss"][0]
        assert float(np.float32(loss)) != loss
    checkpoint = torch.load(lightning_result["model"], map_location="cpu", weights_only=True)
    assert checkpoint["precision"] == 64
    assert {tensor.dtype for tensor in checkpoint["state_dict"].values() if tensor.is_floating_point()} == {torch.float64}


def test_scoring_reads_the_width_back(float64_runs):
    import keras

    from lightning_impl.score import load_scoring_model
    from lightning_impl.system import StreetcarClassifier

    keras_result, lightning_result = float64_runs
    net, _ = load_scoring_model(lightning_result["model"])
    assert net.output.weight.dtype == torch.float64
    checkpoint = torch.load(lightning_result["model"], map_location="cpu", weights_only=True)
    reloaded = StreetcarClassifier.load_from_checkpoint(lightning_result["model"], map_location="cpu",
                                                        weights_only=True)
    assert torch.equal(reloaded.net.output.weight, checkpoint["state_dict"]["net.output.weight"])  # not rounded
    model = keras.models.load_model(keras_result["model"], compile=False)
    assert {str(variable.dtype) for variable in model.weights} == {"float64"}


def test_conversion_keeps_float64_both_ways(float64_runs, tmp_path):
    from bridge.command import main as convert

    keras_result, lightning_result = float64_runs
    out_checkpoint, out_keras = tmp_path / "from_keras.ckpt", tmp_path / "keras" / "from_lightning.keras"
    out_keras.parent.mkdir()
    assert run_main(convert, ["--keras", keras_result["model"], "--out", str(out_checkpoint)]) == 0
    checkpoint = torch.load(out_checkpoint, map_location="cpu", weights_only=True)
    assert checkpoint["precision"] == 64 and checkpoint["state_dict"]["net.output.weight"].dtype == torch.float64
    assert run_main(convert, ["--lightning", lightning_result["model"], "--out", str(out_keras)]) == 0
    import keras

    model = keras.models.load_model(out_keras, compile=False)
    assert {str(variable.dtype) for variable in model.weights} == {"float64"}


def test_the_fast_engine_trains_in_float64_too(prepared_dataset, tmp_path):
    from lightning_impl.train import train

    result = train(request_for(tmp_path, 64, engine="fast"), dataset=prepared_dataset, accelerator="cpu",
                   progress_bar=False, progress=lambda message: None)
    checkpoint = torch.load(result["model"], map_location="cpu", weights_only=True)
    assert result["precision"] == 64 and checkpoint["state_dict"]["net.output.weight"].dtype == torch.float64


def test_the_float64_setting_is_restored_for_the_next_keras_model(float64_runs):
    import keras

    assert keras.config.floatx() == "float32" and keras.config.dtype_policy().name == "float32"
    assert json.dumps(float64_runs[0]["precision"]) == "64"
