"""`python -m parity_tests.report` on a small sample: the same code as the full run, checked end to end.

    python -m pytest reports/tests/test_results.py -q

The full report (experiments 1-5 on 1.7 M training rows) is a command, not a
test.  Here the same `build_report` runs experiments 1 and 5 on
--sample-rows 30000 with --epochs 2 --patience 1, both frameworks, into
tmp_path, once per module; the tests then check results.json against the
issue's schema, the figures against each other (false negatives = the
confusion matrix's fn, recall = tp / (tp + fn), best >= terminal), that
results.md shows the numbers and the command, and that the PNGs are PNGs.
The trend sentences are also checked on hand-made numbers, without training,
and user errors (unknown experiment or framework) must be one clear
ValueError before any data is loaded.
"""

from __future__ import annotations

import json

import pytest

from reports import results_cli, results_page, results_run, results_story
from reports.study_flags import FRAMEWORKS

SAMPLE_ARGUMENTS = ["--experiments", "1,5", "--sample-rows", "30000", "--epochs", "2", "--patience", "1"]
EPOCH_CAP = 2
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory):
    """(results object, output folder, argv) of one sampled two-experiment report."""
    folder = tmp_path_factory.mktemp("report")
    argv = [*SAMPLE_ARGUMENTS, "--out-dir", str(folder / "results"), "--runs-dir", str(folder / "runs"),
            "--accelerator", "cpu"]
    args = results_cli.build_argument_parser().parse_args(argv)
    results = results_run.build_report(args, results_cli.command_line_of(argv), progress=lambda message: None)
    return results, folder / "results", argv


@pytest.mark.real_data
@pytest.mark.slow
def test_results_json_has_the_issue_schema(sample_report):
    results, out_dir, argv = sample_report
    saved = json.loads((out_dir / results_page.RESULTS_JSON).read_text(encoding="utf-8"))
    assert set(saved["experiments"]) == {"1", "5"}
    for experiment, runs in saved["experiments"].items():
        assert set(runs) == set(FRAMEWORKS), experiment
        for framework, summary in runs.items():
            missing = [key for key in results_run.SUMMARY_KEYS if key not in summary]
            assert not missing, f"experiment {experiment} {framework} lacks {missing}"
    assert saved["command"] == results_cli.command_line_of(argv)
    assert saved["complete"] is True
    machine = saved["machine"]
    assert machine["cpu_model"] and machine["logical_cores"] >= 1 and len(machine["load_average_at_start"]) == 3
    assert saved["settings"]["epochs_cap"] == EPOCH_CAP and saved["settings"]["sample_rows"] == 30000
    assert "epochs capped at 2" in saved["note"]


@pytest.mark.real_data
@pytest.mark.slow
def test_figures_are_consistent(sample_report):
    results, _, _ = sample_report
    for experiment, runs in results["experiments"].items():
        for framework, summary in runs.items():
            where = f"experiment {experiment} {framework}"
            assert 1 <= summary["epochs_run"] <= EPOCH_CAP, where
            assert 1 <= summary["best_epoch"] <= summary["epochs_run"], where
            assert 1 <= summary["kept_epoch"] <= summary["epochs_run"], where
            assert 0.0 <= summary["recall"] <= 1.0, where
            assert 0.0 <= summary["test_accuracy"] <= 1.0, where
            (tn, fp), (fn, tp) = summary["confusion_matrix"]
            assert summary["false_negatives"] == fn and summary["true_positives"] == tp, where
            assert summary["recall"] == pytest.approx(tp / (tp + fn) if tp + fn else 0.0), where
            assert summary["test_accuracy"] == pytest.approx((tn + tp) / (tn + fp + fn + tp)), where
            history = summary["history"]["val_accuracy"]
            assert len(history) == summary["epochs_run"], where
            assert summary["val_accuracy_terminal"] == history[-1], where
            assert summary["val_accuracy_best"] == max(history) >= summary["val_accuracy_terminal"], where
            assert summary["seconds"] > 0, where
    # --initial-weights shared (the default): both frameworks start from the same weights and see the
    # same batches, so their first epoch's validation figures differ only by float32 accumulation and
    # the dropout masks (each framework draws its own: ~21 of 70,000 features a batch at the book's
    # rate 0.0003).  val_loss agrees to 1e-4 relative; val_accuracy counts ~6,000 rows, where a row
    # near 0.5 can flip (1.7e-4 each: one flip measured with the plain engine), so six rows are allowed.
    assert results["settings"]["initial_weights"] == "shared"
    for experiment, runs in results["experiments"].items():
        keras_history, lightning_history = runs["keras"]["history"], runs["lightning"]["history"]
        assert lightning_history["val_loss"][0] == pytest.approx(keras_history["val_loss"][0], rel=1e-4), experiment
        assert lightning_history["val_accuracy"][0] == pytest.approx(keras_history["val_accuracy"][0], abs=1e-3)
    # Experiment 1 is unweighted, experiment 5 uses the balanced weight of the sampled train split.
    assert results["experiments"]["1"]["keras"]["one_weight"] == 1.0
    assert results["experiments"]["5"]["keras"]["one_weight"] > 10


@pytest.mark.real_data
@pytest.mark.slow
def test_markdown_shows_the_numbers_and_the_figures(sample_report):
    results, out_dir, _ = sample_report
    markdown = (out_dir / results_page.RESULTS_MARKDOWN).read_text(encoding="utf-8")
    assert results["command"] in markdown
    assert results["machine"]["cpu_model"] in markdown
    assert "epochs capped at 2" in markdown
    for experiment, runs in results["experiments"].items():
        assert f"## Experiment {experiment}:" in markdown
        for summary in runs.values():
            for text in (results_story.format_ratio(summary["val_accuracy_terminal"]),
                         results_story.format_ratio(summary["test_accuracy"]),
                         results_story.format_count(summary["false_negatives"]),
                         results_story.format_ratio(summary["recall"], 4)):
                assert text in markdown, f"{text} of experiment {experiment} is not in results.md"
        for name in (results_page.curves_file(experiment), results_page.confusion_file(experiment)):
            assert f"]({name})" in markdown
            path = out_dir / name
            assert path.is_file() and path.read_bytes()[:8] == PNG_SIGNATURE, name
    assert "## Compared with the book" in markdown


@pytest.mark.real_data
@pytest.mark.slow
def test_render_only_redraws_the_same_page(sample_report):
    _, out_dir, _ = sample_report
    before = (out_dir / results_page.RESULTS_MARKDOWN).read_text(encoding="utf-8")
    (out_dir / results_page.RESULTS_MARKDOWN).unlink()
    assert results_cli.main(["--render-only", "--out-dir", str(out_dir)]) == 0
    assert (out_dir / results_page.RESULTS_MARKDOWN).read_text(encoding="utf-8") == before


# --------------------------------------------------------------------------
# No training needed
# --------------------------------------------------------------------------


@pytest.mark.parametrize("flags, message", [
    (["--experiments", "1,42"], "unknown experiment id(s) 42; valid: 0, 1, 2, 3, 4, 5, 6, 9"),
    (["--experiments", "1,1"], "lists an id twice"),
    (["--frameworks", "keras,jax"], "unknown framework(s) jax; valid: keras, lightning"),
])
def test_user_errors_are_named(flags, message, tmp_path):
    with pytest.raises(ValueError) as error:
        results_cli.main([*flags, "--out-dir", str(tmp_path)])
    assert message in str(error.value)
    assert not any(tmp_path.iterdir()), "nothing may be written before the arguments are valid"


def test_unknown_experiment_exits_2_with_one_line(tmp_path, capsys):
    from configs.console import run_main

    assert run_main(results_cli.main, ["--experiments", "8", "--out-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "error: unknown experiment id(s) 8; valid: 0, 1, 2, 3, 4, 5, 6, 9"


def test_render_only_without_results_is_a_user_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist; run the report first"):
        results_cli.main(["--render-only", "--out-dir", str(tmp_path)])


def fake_summary(tp: int, fn: int, fp: int, tn: int, val_accuracy: list[float], kept_epoch: int | None = None):
    total = tp + fn + fp + tn
    return {"epochs_run": len(val_accuracy), "best_epoch": val_accuracy.index(max(val_accuracy)) + 1,
            "kept_epoch": kept_epoch or len(val_accuracy), "val_accuracy_terminal": val_accuracy[-1],
            "val_accuracy_best": max(val_accuracy),
            "val_accuracy_kept": val_accuracy[(kept_epoch or len(val_accuracy)) - 1],
            "test_accuracy": (tp + tn) / total, "false_negatives": fn, "true_positives": tp,
            "recall": tp / (tp + fn), "seconds": 1.0, "confusion_matrix": [[tn, fp], [fn, tp]],
            "one_weight": 1.0, "history": {"val_accuracy": list(val_accuracy), "val_loss": [0.5] * len(val_accuracy)}}


def test_trend_sentences_follow_the_numbers():
    """The verdicts and their numbers come from the results, not from the book."""
    results = {"settings": {"patience": 4}, "experiments": {
        "1": {"keras": fake_summary(0, 200, 0, 9800, [0.978, 0.978]),
              "lightning": fake_summary(5, 195, 10, 9790, [0.978, 0.979])},
        "3": {"keras": fake_summary(150, 50, 2500, 7300, [0.70, 0.72]),
              "lightning": fake_summary(150, 50, 2500, 7300, [0.70, 0.72])},
        "4": {"keras": fake_summary(140, 60, 2400, 7400, [0.70, 0.74], kept_epoch=1),
              "lightning": fake_summary(160, 40, 2600, 7200, [0.70, 0.71], kept_epoch=1)},
    }}
    checks = {check["trend"]: check for check in results_story.trend_checks(results)}
    assert set(checks) == {"1", "3", "4"}  # 2 and 5 did not run: no claim about them
    assert checks["1"]["reproduced"] == {"keras": True, "lightning": False}
    assert checks["1"]["verdict"] == "**reproduces in one framework only**"
    assert "predicts no delay for every test row" in checks["1"]["evidence"]["keras"]
    assert "predicts delay for 15 test rows" in checks["1"]["evidence"]["lightning"]
    assert checks["3"]["reproduced"] == {"keras": True, "lightning": True}
    assert "TP 150 > FN 50" in checks["3"]["evidence"]["keras"]
    assert checks["4"]["reproduced"] == {"keras": False, "lightning": True}
    assert "recall 0.7000 (exp 4, kept epoch 1 of 2) vs 0.7500 (exp 3)" in checks["4"]["evidence"]["keras"]


def test_shared_trajectory_is_checked_not_assumed():
    """Experiments 3-5 differ only in callbacks; the page says so only when the histories agree."""
    same = {"settings": {}, "experiments": {
        "3": {"keras": fake_summary(150, 50, 2500, 7300, [0.70, 0.72, 0.71])},
        "5": {"keras": fake_summary(150, 50, 2500, 7300, [0.70, 0.72], kept_epoch=2)}}}
    lines = results_story.shared_trajectory_lines(same)
    assert any("experiments 3, 5 have identical val_accuracy over their 2 common epoch(s)" in line for line in lines)
    assert any("5: kept epoch 2 of 2" in line for line in lines)
    different = {"settings": {}, "experiments": {
        "3": {"keras": fake_summary(150, 50, 2500, 7300, [0.70, 0.72, 0.71])},
        "4": {"keras": fake_summary(150, 50, 2500, 7300, [0.70, 0.7225])}}}
    assert any("differ by up to 0.002500" in line for line in results_story.shared_trajectory_lines(different))
