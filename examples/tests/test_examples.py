"""The two minimal examples run, stay minimal, and use nothing but the data layer and stock parts.

    python -m pytest examples/tests -q

Each example is run as a learner runs it (`python examples/minimal_port.py
--sample-rows 20000 --epochs 1`), in a subprocess from the project root with
this checkout on PYTHONPATH, and its two result lines are read back.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PORT = PROJECT_ROOT / "examples" / "minimal_port.py"
KERAS = PROJECT_ROOT / "examples" / "minimal_keras.py"
LINE_LIMIT = 150                      # an example stays short: ~120 lines, 150 as the hard limit
FORBIDDEN_PACKAGES = {"lightning_impl", "keras_impl"}
KEPT_EPOCH = re.compile(r"^kept epoch (?P<epoch>\d+) \(val_accuracy (?P<value>[0-9.]+)\): (?P<file>\S+)$", re.M)
TEST_RECALL = re.compile(r"^test recall (?P<recall>[0-9.]+)$", re.M)


def run_example(script: Path, out_dir: Path, *arguments: str, keras_backend: str = "tensorflow"
                ) -> subprocess.CompletedProcess:
    environment = {**os.environ, "KERAS_BACKEND": keras_backend,
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, str(script), *arguments, "--out-dir", str(out_dir)],
                          cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True, timeout=300)


def imported_top_level_packages(script: Path) -> set[str]:
    tree = ast.parse(script.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("script", [PORT, KERAS], ids=["port", "keras"])
def test_an_example_is_short_and_imports_only_the_data_layer(script: Path):
    assert len(script.read_text(encoding="utf-8").splitlines()) <= LINE_LIMIT
    packages = imported_top_level_packages(script)
    assert packages & FORBIDDEN_PACKAGES == set()
    assert {"data", "configs"} <= packages


def test_the_port_uses_lightnings_own_callbacks_and_torchs_weighted_loss():
    source = PORT.read_text(encoding="utf-8")
    assert "from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint" in source
    assert "F.binary_cross_entropy(probabilities, target, weight=weight)" in source
    assert "automatic_optimization" not in source and "manual_backward" not in source


def test_lightnings_summary_shows_1_2_k_where_keras_counts_1341():
    """Lightning counts parameters (990 + 140 + 71 = 1,201); Keras adds the 140 moving statistics."""
    from lightning.pytorch.utilities.model_summary import ModelSummary

    from data import BOOK_VOCABULARIES
    from examples.minimal_port import DelayClassifier

    module = DelayClassifier(BOOK_VOCABULARIES.sizes())
    summary = ModelSummary(module)
    assert summary.total_parameters == summary.trainable_parameters == 1201
    assert "1.2 K" in str(summary)
    moving_statistics = sum(buffer.numel() for name, buffer in module.named_buffers()
                            if name.endswith(("running_mean", "running_var")))
    assert moving_statistics == 140 and summary.total_parameters + moving_statistics == 1341
    state_names = set(module.net.state_dict())
    assert {"embeddings.hour.weight", "batchnorms.Route.running_var", "output.weight", "output.bias"} <= state_names


@pytest.mark.slow
@pytest.mark.real_data
def test_the_port_trains_one_epoch_and_prints_the_kept_epoch_and_the_recall(tmp_path: Path):
    finished = run_example(PORT, tmp_path, "--sample-rows", "20000", "--epochs", "1")
    assert finished.returncode == 0, finished.stderr[-3000:]
    kept, recall = KEPT_EPOCH.search(finished.stdout), TEST_RECALL.search(finished.stdout)
    assert kept and recall, finished.stdout[-2000:]
    assert int(kept["epoch"]) == 1
    assert 0.0 < float(kept["value"]) < 1.0 and 0.0 <= float(recall["recall"]) <= 1.0
    # Lightning's {epoch} is 0-based: the first epoch's file says epoch00 (Keras would write epoch01).
    assert kept["file"].startswith("best-epoch00-val_accuracy") and (tmp_path / "checkpoints" / kept["file"]).is_file()
    assert "1.2 K" in finished.stdout                                  # Lightning's ModelSummary
    history = next(tmp_path.glob("history/*/metrics.csv")).read_text().splitlines()[0].split(",")
    assert {"epoch", "loss", "accuracy", "recall", "val_loss", "val_accuracy", "val_recall"} <= set(history)


@pytest.mark.real_data
def test_the_port_refuses_more_rows_than_the_data_has_in_one_line(tmp_path: Path):
    finished = run_example(PORT, tmp_path, "--sample-rows", "999999999", "--epochs", "1")
    assert finished.returncode == 2
    assert finished.stderr.strip().splitlines()[-1].startswith("error: --sample-rows must be between 1 and ")
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("script", [PORT, KERAS], ids=["port", "keras"])
@pytest.mark.parametrize("arguments", [["--epochs", "0"], ["--sample-rows", "0"]], ids=["epochs", "rows"])
def test_an_example_refuses_a_count_below_one_before_loading_anything(tmp_path: Path, script: Path, arguments):
    finished = run_example(script, tmp_path, *arguments)
    assert finished.returncode == 2
    assert finished.stderr.strip().splitlines()[-1].endswith("error: --epochs and --sample-rows must be at least 1")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.parametrize("keras_backend", ["tensorflow", "torch"])
def test_the_keras_example_trains_one_epoch_and_prints_the_kept_epoch_and_the_recall(tmp_path: Path,
                                                                                    keras_backend: str):
    """On TensorFlow as the book runs it, and unchanged on Keras 3's torch backend (the zero-rewrite route)."""
    finished = run_example(KERAS, tmp_path, "--sample-rows", "20000", "--epochs", "1", keras_backend=keras_backend)
    assert finished.returncode == 0, finished.stderr[-3000:]
    kept, recall = KEPT_EPOCH.search(finished.stdout), TEST_RECALL.search(finished.stdout)
    assert kept and recall, finished.stdout[-2000:]
    assert int(kept["epoch"]) == 1 and 0.0 <= float(recall["recall"]) <= 1.0
    assert kept["file"].startswith("best-epoch01-val_accuracy") and (tmp_path / kept["file"]).is_file()
    assert "Total params: 1,341" in finished.stdout                    # Keras's model.summary()
