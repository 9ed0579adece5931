"""`python -m parity_tests.report --parity exact`: the book table in the setting that keeps whole runs together.

    python -m pytest reports/tests/test_exact_parity.py -q
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from reports.exact_parity import (EXACT_PARITY_OVERRIDES, agreement, agreement_sentence, commands_text,
                                   exact_parity_headline, why_these_settings)
from reports.results_companions import read_companions
from reports.results_cli import main as report_main
from reports.results_run import exact_settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def summary(epochs_run: int, kept_epoch: int, matrix, val_loss, recall: float) -> dict:
    return {"epochs_run": epochs_run, "kept_epoch": kept_epoch, "confusion_matrix": matrix,
            "history": {"val_loss": val_loss}, "recall": recall}


def test_the_sentence_says_same_only_when_epochs_kept_epoch_and_matrix_are_equal():
    same = {"keras": summary(12, 9, [[10, 2], [1, 3]], [0.5, 0.375], 0.75),
            "lightning": summary(12, 9, [[10, 2], [1, 3]], [0.5, 0.375 + 2 ** -52], 0.75)}
    assert agreement(same)["same_confusion_matrix"] is True
    assert agreement_sentence("5", same) == ("Experiment 5: the same 12 epochs, the same kept epoch (9) and the same "
                                             "test confusion matrix in both frameworks (largest val_loss difference "
                                             "2.2e-16).")
    parted = {"keras": summary(12, 9, [[10, 2], [1, 3]], [0.5, 0.4], 0.75),
              "lightning": summary(14, 11, [[9, 3], [1, 3]], [0.5, 0.41], 0.75)}
    assert agreement_sentence("4", parted) == (
        "Experiment 4 differs: epochs run 12 vs 14; kept epoch 9 vs 11; test confusion matrices differ by up to 1 "
        "rows per cell (recall 0.7500 vs 0.7500); the largest per-epoch val_loss difference was 1.0e-02.")


def test_the_exact_setting_is_the_one_the_study_supports():
    assert EXACT_PARITY_OVERRIDES == {"hyperparameters.dropout_rate": 0.0,
                                      "hyperparameters.output_activation": "sigmoid",
                                      "hyperparameters.precision": 64}


@pytest.mark.real_data
@pytest.mark.slow
def test_an_exact_run_agrees_to_float64_rounding_and_keeps_the_book_results_beside_it(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    shutil.copy(PROJECT_ROOT / "docs" / "results" / "results.json", out / "results.json")
    book = json.loads((out / "results.json").read_text())["experiments"]
    # One framework a call, as the committed table was run; the second call keeps the first one's rows.
    # The fast engine, as the committed table ran it (in float64 it takes its gradients by autograd).
    for framework in ("keras", "lightning"):
        assert report_main(["--parity", "exact", "--experiments", "5", "--sample-rows", "30000", "--epochs", "2",
                            "--patience", "1", "--engine", "fast", "--frameworks", framework,
                            "--out-dir", str(out), "--runs-dir", str(tmp_path / "runs")]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["experiments"] == book                            # the book-setting runs are untouched
    runs = results["exact_parity"]["5"]
    assert set(runs) == {"keras", "lightning"}
    assert set(runs["keras"]) == set(book["5"]["keras"])             # the same fields as the book rows
    figures = agreement(runs)
    assert figures["same_epochs_run"] and figures["same_kept_epoch"] and figures["same_confusion_matrix"]
    # float64 and the sigmoid output: the two frameworks' epoch figures agree to rounding.
    assert figures["largest_val_loss_difference"] < 1e-12
    page = (out / "results.md").read_text()
    assert "## The exact-parity setting" in page and "## All experiments" in page
    settings = results["exact_parity_settings"]
    assert settings["lightning_engine"] == "fast" and "Lightning's fast engine" in page
    assert [command.split("--frameworks ")[1].split()[0] for command in settings["commands"]] == ["keras",
                                                                                                 "lightning"]
    assert commands_text(settings) in page
    assert agreement_sentence("5", runs) in page


def test_the_settings_keep_earlier_commands_only_in_the_same_setting():
    setting = {"overrides": {"hyperparameters.precision": 64}, "sample_rows": None, "epochs_cap": None}
    first = exact_settings(None, "report --frameworks keras", setting, lightning_engine=None)
    assert first["commands"] == ["report --frameworks keras"]
    second = exact_settings({**first, "finished": "later"}, "report --frameworks lightning", setting,
                            lightning_engine="fast")
    assert second["commands"] == ["report --frameworks keras", "report --frameworks lightning"]
    assert second["started"] == first["started"] and second["finished"] is None
    assert second["lightning_engine"] == "fast"
    # A later Keras-only call leaves the Lightning rows' engine as it was.
    third = exact_settings(second, "report --frameworks keras", setting, lightning_engine=None)
    assert third["lightning_engine"] == "fast"
    # A call on other rows starts afresh: its table is not the earlier one's.
    other = exact_settings(second, "report --sample-rows 30000", {**setting, "sample_rows": 30000},
                           lightning_engine="plain")
    assert other["commands"] == ["report --sample-rows 30000"] and other["lightning_engine"] == "plain"
    # Settings written before "commands" existed name their one command.
    legacy = {key: value for key, value in first.items() if key != "commands"} | {"command": "old"}
    assert exact_settings(legacy, "new", setting, lightning_engine=None)["commands"] == ["old", "new"]


def test_the_reasons_are_the_divergence_studys_own_numbers():
    companions = read_companions(PROJECT_ROOT / "docs" / "results")
    study = json.loads((PROJECT_ROOT / "docs" / "results" / "divergence.json").read_text())["settings"]
    sentence = why_these_settings(companions)
    float32, float64 = (study[f"hard_sigmoid-float{bits}"]["first_update_over_threshold"] for bits in (32, 64))
    assert f"after {float32:,} updates in float32 and {float64:,} in float64" in sentence
    assert f"{study['sigmoid-float64']['largest_loss_difference']:.1e}" in sentence
    # Without the study the page names the command instead of figures it does not have.
    assert "python -m parity_tests.divergence" in why_these_settings({})
    # A study in which hard_sigmoid no longer parts would not support the setting, and the page says so.
    unparted = {"divergence": {setting: {**figures, "first_update_over_threshold": None}
                               for setting, figures in companions["divergence"].items()}}
    assert "did not part" in why_these_settings(unparted)


def test_the_headline_counts_the_experiments_that_agree():
    def run(kept_epoch=9):
        return summary(12, kept_epoch, [[10, 2], [1, 3]], [0.5, 0.375], 0.75)

    same = {"keras": run(), "lightning": run()}
    apart = {"keras": run(), "lightning": run(kept_epoch=7)}
    headline = exact_parity_headline({"exact_parity": {"1": same, "5": apart, "6": {"keras": run()}}})
    assert headline == ["- **Exact-parity setting** ([below](#the-exact-parity-setting)): 1 of 2 experiments run "
                        "the same epochs, keep the same epoch and give the same test confusion matrix in both "
                        "frameworks; experiment(s) 5 differ."]
    assert exact_parity_headline({}) == []


def test_the_committed_exact_table_is_the_full_book_table_and_the_readme_says_what_it_shows():
    results = json.loads((PROJECT_ROOT / "docs" / "results" / "results.json").read_text())
    settings = results["exact_parity_settings"]
    assert settings["sample_rows"] is None and settings["epochs_cap"] is None and settings["patience"] is None
    assert settings["dataset"]["splits"]["train"] == 1_716_824
    runs = results["exact_parity"]
    assert sorted(runs) == ["1", "2", "3", "4", "5"]
    figures = {experiment: agreement(pair) for experiment, pair in runs.items()}
    assert all(f["same_epochs_run"] and f["same_kept_epoch"] and f["same_confusion_matrix"] for f in figures.values())
    largest = max(f["largest_val_loss_difference"] for f in figures.values())
    five = runs["5"]["keras"]
    readme = " ".join((PROJECT_ROOT / "README.md").read_text().split())
    assert "all five of the book's experiments on the full data ran the same epochs" in readme
    assert f"at most {largest:.1e} apart" in readme
    assert (f"experiment 5: {five['epochs_run']} epochs, kept epoch {five['kept_epoch']}, test recall "
            f"{five['recall']:.4f} in both") in readme
