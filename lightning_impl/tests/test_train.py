"""lightning_impl.train end to end, in process, on a synthetic dataset (no workbooks needed).

    python -m pytest lightning_impl/tests/test_train.py -q

Covers the result object and artefacts, seeded repeatability (identical
histories, bitwise-identical best weights), the best checkpoint holding the
logged best epoch, and --resume continuing exactly where the run stopped.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from experiment.artifacts import RESULT_KEYS, read_history_csv
from configs.console import run_main
from lightning_impl.datamodule import StreetcarDataModule
from lightning_impl.fast.system import FastStreetcarClassifier
from lightning_impl.system import StreetcarClassifier
from lightning_impl.tests.helpers import make_request, make_synthetic_dataset
from lightning_impl.train import REQUEST_FILE, load_run_request, main, train

HISTORY_KEYS = {"loss", "accuracy", "recall", "weighted_accuracy",
                "val_loss", "val_accuracy", "val_recall", "val_weighted_accuracy"}
QUIET = {"progress": lambda message: None, "accelerator": "cpu", "devices": 1}


@pytest.fixture(scope="module")
def dataset():
    return make_synthetic_dataset(6000, seed=0)


def state_of(path: str | Path) -> dict[str, torch.Tensor]:
    return torch.load(str(path), map_location="cpu", weights_only=True)["state_dict"]


def test_experiment_0_result_and_run_directory(dataset, tmp_path):
    result = train(make_request(tmp_path, "0"), dataset=dataset, **QUIET)
    assert list(result) == list(RESULT_KEYS)
    assert result["framework"] == "lightning" and result["experiment"] == "0"
    assert result["epochs_run"] == 1
    assert result["best_epoch"] is None and result["best_value"] is None and result["monitor"] is None
    assert result["best_checkpoint"] is None
    assert result["params"] == {"total": 1341, "trainable": 1201, "non_trainable": 140}
    assert set(result["history"]) == HISTORY_KEYS and all(len(v) == 1 for v in result["history"].values())
    test = result["test"]
    assert np.sum(test["confusion_matrix"]) == len(dataset.splits["test"]) == test["rows"]
    (tn, fp), (fn, tp) = test["confusion_matrix"]
    assert test["false_negatives"] == fn and test["accuracy"] == pytest.approx((tn + tp) / test["rows"])
    assert result["device"] == "cpu" and result["seconds"] > 0

    run_dir = Path(result["run_dir"])
    assert run_dir.parent == tmp_path and run_dir.name.startswith("lightning-exp0-")
    for name in ("history.csv", "curves.png", "confusion_matrix.png", "result.json", "vocabulary.json",
                 REQUEST_FILE, "checkpoints/last.ckpt", "csv/metrics.csv"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((run_dir / "result.json").read_text())["history"] == result["history"]
    assert read_history_csv(run_dir / "history.csv") == result["history"]
    checkpoint = torch.load(str(run_dir / "checkpoints/last.ckpt"), map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["vocabularies"] == dataset.vocabularies.to_json_dict()
    assert checkpoint["hyper_parameters"]["one_weight"] == 1.0
    assert json.loads((run_dir / "vocabulary.json").read_text()) == dataset.vocabularies.to_json_dict()


def test_seeded_runs_repeat_exactly(dataset, tmp_path):
    request = make_request(tmp_path, "5", epochs=4, patience=2)
    first = train(request, dataset=dataset, **QUIET)
    second = train(request, dataset=dataset, **QUIET)
    assert first["history"] == second["history"]
    assert first["best_epoch"] == second["best_epoch"] and first["test"] == second["test"]
    first_state, second_state = state_of(first["best_checkpoint"]), state_of(second["best_checkpoint"])
    assert list(first_state) == list(second_state)
    assert all(torch.equal(first_state[name], second_state[name]) for name in first_state)
    other = train(make_request(tmp_path, "5", epochs=4, patience=2, seed=7), dataset=dataset, **QUIET)
    assert other["history"]["loss"] != first["history"]["loss"]
    # Experiment 5 is class-weighted "balanced": count_no_delay / count_delay on the train split.
    hyper = torch.load(first["best_checkpoint"], map_location="cpu", weights_only=True)["hyper_parameters"]
    assert hyper["one_weight"] == pytest.approx(dataset.one_weight(0.0, split="train"))


def test_steps_per_execution_changes_nothing_but_the_lightning_step_count(dataset, tmp_path):
    # Fast engine.  3,600 training rows in batches of 500: 8 batches (the last of 100 rows) per
    # epoch.  Grouped 3 at a time they are 3 Lightning steps (3 + 3 + 2 batches), 8 at a time one
    # step; the SGD updates, and so every figure and weight, must be those of one step per batch.
    epochs, batches_per_epoch = 3, 8
    results = {}
    for group in (1, 3, 8):
        result = train(make_request(tmp_path / f"k{group}", "5", epochs=epochs, patience=10, lightning__engine="fast"),
                       dataset=dataset, steps_per_execution=group, **QUIET)
        last = torch.load(str(Path(result["run_dir"]) / "checkpoints/last.ckpt"), map_location="cpu",
                          weights_only=True)
        # Manual optimisation: global_step counts optimizer.step() calls, i.e. SGD updates, for any grouping.
        assert last["global_step"] == epochs * batches_per_epoch, group
        assert last["datamodule_hyper_parameters"]["steps_per_execution"] == group
        results[group] = result
    reference = results[1]
    for group in (3, 8):
        assert results[group]["history"] == reference["history"], group
        assert results[group]["best_epoch"] == reference["best_epoch"] and results[group]["test"] == reference["test"]
        state, reference_state = state_of(results[group]["best_checkpoint"]), state_of(reference["best_checkpoint"])
        assert all(torch.equal(state[name], reference_state[name]) for name in reference_state), group


def test_closed_form_and_autograd_gradients_train_the_same_model(dataset, tmp_path, monkeypatch):
    # Fast engine, experiment 5: class weights, dropout at the book's rate, early stopping on val_accuracy.
    calls = {"closed_form": 0}
    original = FastStreetcarClassifier.closed_form_step

    def counted(self, batch):
        calls["closed_form"] += 1
        return original(self, batch)

    monkeypatch.setattr(FastStreetcarClassifier, "closed_form_step", counted)
    results = {}
    for gradients in ("closed_form", "autograd"):
        calls["closed_form"] = 0
        results[gradients] = train(make_request(tmp_path / gradients, "5", epochs=3, patience=10,
                                                lightning__engine="fast"), dataset=dataset, gradients=gradients,
                                   **QUIET)
        # 3 epochs of 8 batches: every training batch went through the chosen path.
        assert calls["closed_form"] == (24 if gradients == "closed_form" else 0), gradients
    closed_form, autograd = results["closed_form"], results["autograd"]
    assert closed_form["history"] == autograd["history"]
    assert closed_form["best_epoch"] == autograd["best_epoch"] and closed_form["test"] == autograd["test"]
    state, reference_state = state_of(closed_form["best_checkpoint"]), state_of(autograd["best_checkpoint"])
    assert all(torch.equal(state[name], reference_state[name]) for name in reference_state)
    assert len(set(closed_form["history"]["loss"])) == 3          # the model did train


def test_the_default_engine_is_plain_and_fast_options_are_refused_with_it(dataset, tmp_path, capsys):
    result = train(make_request(tmp_path, "0"), dataset=dataset, **QUIET)
    hyper = torch.load(str(Path(result["run_dir"]) / "checkpoints/last.ckpt"), map_location="cpu",
                       weights_only=True)["hyper_parameters"]
    assert "gradients" not in hyper                               # StreetcarClassifier, not the fast module
    runs_before = sorted(tmp_path.iterdir())
    for option, value in (("steps_per_execution", 8), ("gradients", "autograd")):
        with pytest.raises(ValueError, match=f"--{option.replace('_', '-')} is a fast-engine option; add --engine fast"):
            train(make_request(tmp_path, "0"), dataset=dataset, **{option: value}, **QUIET)
    assert sorted(tmp_path.iterdir()) == runs_before               # refused before any run directory
    assert run_main(main, ["--experiment", "0", "--steps-per-execution", "4", "--out-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--steps-per-execution is a fast-engine option" in error[0], error


@pytest.mark.parametrize("experiment, monitor, mode", [("4", "val_loss", "min"), ("5", "val_accuracy", "max")])
def test_best_checkpoint_holds_the_logged_best_epoch(dataset, tmp_path, experiment, monitor, mode):
    result = train(make_request(tmp_path, experiment, epochs=5, patience=5), dataset=dataset, **QUIET)
    values = result["history"][monitor]
    best = int(np.argmin(values) if mode == "min" else np.argmax(values))       # first best, like Keras
    assert result["monitor"] == monitor and result["best_epoch"] == best
    assert result["best_value"] == values[best]
    assert Path(result["best_checkpoint"]).name.startswith(f"best-epoch{best + 1:02d}-{monitor}")
    # Re-validate the kept checkpoint: it gives the value the history logged for that epoch.
    module = StreetcarClassifier.load_from_checkpoint(result["best_checkpoint"], map_location="cpu",
                                                      weights_only=True)
    datamodule = StreetcarDataModule(dataset, batch_size=500, seed=42)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    figures = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    assert figures[monitor] == pytest.approx(values[best], abs=1e-6)


def test_resume_continues_exactly_where_the_run_stopped(dataset, tmp_path):
    uninterrupted = train(make_request(tmp_path / "whole", "5", epochs=4, patience=10), dataset=dataset, **QUIET)
    interrupted = train(make_request(tmp_path / "parts", "5", epochs=2, patience=10), dataset=dataset, **QUIET)
    run_dir = Path(interrupted["run_dir"])
    # A crash after epoch 2 leaves last.ckpt and a run_request.json not marked completed.
    saved = json.loads((run_dir / REQUEST_FILE).read_text())
    assert saved["completed"] is True
    saved["completed"] = False
    (run_dir / REQUEST_FILE).write_text(json.dumps(saved))
    resumed = train(load_run_request(run_dir, epochs=4, json_output=True), dataset=dataset, resume=run_dir, **QUIET)
    assert resumed["run_dir"] == str(run_dir) and resumed["epochs_run"] == 4
    assert resumed["history"] == uninterrupted["history"]
    assert resumed["best_epoch"] == uninterrupted["best_epoch"]
    whole_state, resumed_state = state_of(uninterrupted["best_checkpoint"]), state_of(resumed["best_checkpoint"])
    assert all(torch.equal(whole_state[name], resumed_state[name]) for name in whole_state)
    # A finished run is not resumed again, and --resume refuses flags that would change the run.
    with pytest.raises(ValueError, match="already finished"):
        load_run_request(run_dir)
    assert run_main(main, ["--resume", str(run_dir), "--seed", "3"]) == 2
    assert run_main(main, ["--resume", str(tmp_path / "nowhere")]) == 2


def test_reduce_lr_and_framework_order_run(dataset, tmp_path):
    request = make_request(tmp_path, "4", epochs=3, patience=5, batch_order="framework",
                           callbacks__reduce_lr__enabled=True, callbacks__reduce_lr__patience=0,
                           callbacks__reduce_lr__monitor="loss")
    result = train(request, dataset=dataset, **QUIET)
    assert result["epochs_run"] == 3 and set(result["history"]) >= HISTORY_KEYS


def test_a_nan_epoch_stops_the_run_and_keeps_the_best_finite_model(dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("STREETCAR_FAULT_NAN_AT_EPOCH", "2")
    result = train(make_request(tmp_path, "5", epochs=5, patience=5), dataset=dataset, **QUIET)
    from experiment.reliability import non_finite_stop_reason

    assert result["stop_reason"] == non_finite_stop_reason(2, "loss", float("nan"))
    assert result["epochs_run"] == 3 and all(len(values) == 3 for values in result["history"].values())
    assert np.isnan(result["history"]["loss"][2]) and np.isfinite(result["history"]["loss"][:2]).all()
    assert result["best_epoch"] in (0, 1)                               # the diverged epoch was never judged
    last = torch.load(str(Path(result["run_dir"]) / "checkpoints/last.ckpt"), map_location="cpu", weights_only=True)
    assert last["epoch"] == 1                                           # last.ckpt never saw epoch 2
    assert all(torch.isfinite(value).all() for value in last["state_dict"].values() if value.is_floating_point())
    assert sum(map(sum, result["test"]["confusion_matrix"])) == len(dataset.splits["test"])


def test_a_nan_epoch_without_early_stopping_keeps_the_last_finite_epoch(dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("STREETCAR_FAULT_NAN_AT_EPOCH", "1")
    result = train(make_request(tmp_path, "1", epochs=3), dataset=dataset, **QUIET)
    assert result["epochs_run"] == 2 and result["stop_reason"].startswith("stopped: non-finite loss")
    kept = StreetcarClassifier.load_from_checkpoint(str(Path(result["run_dir"]) / "checkpoints/last.ckpt"),
                                                    map_location="cpu", weights_only=True)
    from experiment.artifacts import summarize_test
    from lightning_impl.fit import predict_probabilities

    features, target = dataset.split_arrays("test")
    assert result["test"] == summarize_test(target, predict_probabilities(kept.net, features, "cpu"))
    monkeypatch.setenv("STREETCAR_FAULT_NAN_AT_EPOCH", "0")
    with pytest.raises(ValueError, match="diverged in its first epoch"):
        train(make_request(tmp_path, "1", epochs=2), dataset=dataset, **QUIET)


def test_initial_weights_replace_the_seeded_initialisers(dataset, tmp_path):
    from lightning_impl.model import StreetcarNet, get_canonical_weights

    torch.manual_seed(123)
    weights = get_canonical_weights(StreetcarNet(dataset.vocab_sizes))
    first = train(make_request(tmp_path, "0", seed=1), dataset=dataset, initial_weights=weights, **QUIET)
    second = train(make_request(tmp_path, "0", seed=1), dataset=dataset, **QUIET)
    assert first["history"] != second["history"]
    third = train(make_request(tmp_path, "0", seed=1), dataset=dataset, initial_weights=weights, **QUIET)
    assert third["history"] == first["history"]
    assert first["stop_reason"] == "completed: 1 of 1 epoch(s)"
