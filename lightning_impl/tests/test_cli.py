"""The two commands: `python -m lightning_impl.train` on real data and `python -m lightning_impl.score`.

    python -m pytest lightning_impl/tests/test_cli.py -q        # real-data tests need the TTC workbooks

The real-data test runs experiment 0 on a 20,000-row seeded sample in a
subprocess, exactly as a user would; the scoring tests use its checkpoint
(or, without the workbooks, one from a synthetic in-process run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from experiment.artifacts import RESULT_KEYS
from configs.console import run_main
from lightning_impl import score
from lightning_impl.tests.helpers import PROJECT_ROOT, make_request, make_synthetic_dataset
from lightning_impl.train import train

TRIP = {"route": 501, "direction": "e", "date": "2019-06-21", "hour": 18}
TRIP_ARGUMENTS = ["--route", "501", "--direction", "e", "--date", "2019-06-21", "--hour", "18"]
# 2019-06-21 18:00, route 501 eastbound, with the sorted vocabularies (data/vocab.py): a Friday in June 2019.
TRIP_CODES = {"hour": 18, "Route": 4, "daym": 20, "month": 5, "year": 5, "Direction": 1, "day": 4}


def run_module(module: str, *arguments: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *arguments], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)))


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> dict:
    """Experiment 0 on 20,000 real rows through the command line, --json (only real_data tests use it)."""
    out_dir = tmp_path_factory.mktemp("real-runs")
    completed = run_module("lightning_impl.train", "--experiment", "0", "--sample-rows", "20000", "--json",
                           "--out-dir", str(out_dir), "--accelerator", "cpu")
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.strip().splitlines()
    assert len(lines) == 1, f"stdout must hold only the JSON object, got: {completed.stdout[:500]}"
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A checkpoint from a synthetic in-process run (no workbooks needed)."""
    result = train(make_request(tmp_path_factory.mktemp("synthetic-runs"), "0"), dataset=make_synthetic_dataset(3000),
                   progress=lambda message: None, accelerator="cpu", devices=1)
    return Path(result["run_dir"]) / "checkpoints" / "last.ckpt"


@pytest.mark.real_data
def test_experiment_0_on_real_data_from_the_command_line(real_run):
    from configs import load_config
    from data import load_prepared

    assert list(real_run) == list(RESULT_KEYS)
    assert real_run["framework"] == "lightning" and real_run["experiment"] == "0" and real_run["epochs_run"] == 1
    assert real_run["params"] == {"total": 1341, "trainable": 1201, "non_trainable": 140}
    assert real_run["best_epoch"] is None and real_run["best_checkpoint"] is None
    assert {"loss", "val_loss", "accuracy", "val_accuracy", "recall", "val_recall"} <= set(real_run["history"])
    dataset = load_prepared(load_config(), progress=False).sample(20000, 42)
    test_rows = len(dataset.splits["test"])
    matrix = real_run["test"]["confusion_matrix"]
    assert sum(map(sum, matrix)) == test_rows == real_run["test"]["rows"]
    assert matrix[1][0] + matrix[1][1] == int(dataset.split_arrays("test")[1].sum())      # actual delays
    run_dir = Path(real_run["run_dir"])
    for name in ("history.csv", "curves.png", "confusion_matrix.png", "result.json", "vocabulary.json",
                 "checkpoints/last.ckpt"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "result.json").read_text()) == real_run


@pytest.mark.real_data
def test_score_command_on_the_real_checkpoint(real_run):
    path = Path(real_run["run_dir"]) / "checkpoints" / "last.ckpt"
    completed = run_module("lightning_impl.score", "--checkpoint", str(path), *TRIP_ARGUMENTS, "--json")
    assert completed.returncode == 0, completed.stderr[-2000:]
    answer = json.loads(completed.stdout)
    assert set(answer) == {"probability", "delay", "inputs"}
    assert answer["inputs"] == TRIP_CODES
    assert 0.0 <= answer["probability"] <= 1.0 and answer["delay"] == (answer["probability"] > 0.5)


def test_score_matches_the_network_and_is_fast(checkpoint):
    net, vocabularies = score.load_scoring_model(checkpoint)
    result = score.score_trip(net, vocabularies, **TRIP)
    assert result["inputs"] == TRIP_CODES
    with torch.no_grad():
        expected = float(net(torch.tensor([[TRIP_CODES[c] for c in TRIP_CODES]])))
    assert result["probability"] == pytest.approx(expected, abs=0)
    latency = score.measure_scoring_latency(net, vocabularies, TRIP, repeats=300)
    assert latency["p50_ms"] <= 5.0, latency


@pytest.mark.parametrize("arguments, message", [
    (["--route", "999", "--direction", "e", "--date", "2019-06-21", "--hour", "18"], "unknown Route value(s) 999"),
    (["--route", "501", "--direction", "x", "--date", "2019-06-21", "--hour", "18"], "unknown Direction"),
    (["--route", "501", "--direction", "e", "--date", "2021-06-21", "--hour", "18"], "outside the trained years"),
    (["--route", "501", "--direction", "e", "--date", "2019-06-21", "--hour", "24"], "outside 0-23"),
    (["--route", "501", "--direction", "e", "--date", "21/06/2019", "--hour", "18"], "is not a date"),
])
def test_bad_trips_are_one_line_and_exit_2(checkpoint, capsys, arguments, message):
    assert run_main(score.main, ["--checkpoint", str(checkpoint), *arguments]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_bad_checkpoints_are_one_line_and_exit_2(checkpoint, tmp_path, capsys):
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(checkpoint.read_bytes()[:2000])
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"layer.weight": torch.zeros(2)}, "hyper_parameters": {"lr": 0.1}}, foreign)
    wrong_weights = tmp_path / "wrong.ckpt"
    content = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
    content["state_dict"]["net.output.weight"] = torch.zeros(1, 71)
    torch.save(content, wrong_weights)
    # Hyperparameters that do not describe the saved embeddings are refused before the model is built.
    wrong_sizes = tmp_path / "wrong-sizes.ckpt"
    content["state_dict"]["net.embeddings.hour.weight"] = torch.zeros(25, 10)
    torch.save(content, wrong_sizes)
    for path, message in ((tmp_path / "missing.ckpt", "checkpoint not found"),
                          (truncated, "cannot read checkpoint"),
                          (foreign, "not a streetcar model checkpoint"),
                          (wrong_weights, "weights do not fit"),
                          (wrong_sizes, "vocab_sizes.hour = 24 does not match the saved embedding weights hour")):
        assert run_main(score.main, ["--checkpoint", str(path), *TRIP_ARGUMENTS]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines


def test_score_subprocess_reports_errors_on_one_line(checkpoint):
    completed = run_module("lightning_impl.score", "--checkpoint", str(checkpoint), "--route", "501",
                           "--direction", "e", "--date", "2019-06-21", "--hour", "-1")
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == ["error: hour -1 is outside 0-23"]



def test_score_prints_one_human_line_and_rejects_bad_usage(checkpoint, capsys):
    assert run_main(score.main, ["--checkpoint", str(checkpoint), *TRIP_ARGUMENTS]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("p(delay) = ") and "route 501 e, 2019-06-21 18:00" in out[0]
    with pytest.raises(SystemExit) as exit_info:
        score.main(["--route", "501"])
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_gradient_choices_are_the_fast_modules_modes():
    # lightning_impl.builders spells them out so that --help does not import torch.
    from lightning_impl.builders import DEFAULT_GRADIENTS, GRADIENT_CHOICES
    from lightning_impl.fast.system import GRADIENT_MODES

    assert GRADIENT_CHOICES == GRADIENT_MODES == ("closed_form", "autograd")
    assert DEFAULT_GRADIENTS == "closed_form"


def test_help_names_the_engines_and_the_fast_engine_options():
    from lightning_impl.train import build_argument_parser

    text = " ".join(build_argument_parser().format_help().split())
    assert "--engine {plain,fast}" in text
    assert "--steps-per-execution K fast engine only" in text
    assert "fast engine only: closed_form (default)" in text
