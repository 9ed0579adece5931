"""reports.results_companions: the results page quotes the seed study and the saturation study it finds.

    python -m pytest reports/tests/test_results_companions.py -q
"""

from __future__ import annotations

import json

from reports.results_companions import read_companions, saturation_lines, seed_trend_lines
from reports.seed_trends import book_trends, trend_sentence


def seed_run(framework, experiment, seed, recall):
    return {"framework": framework, "experiment": experiment, "seed": seed, "recall": recall,
            "sample_rows": 500000, "epochs_cap": 50, "patience": 15, "batch_order": "shared"}


def test_the_page_quotes_each_measured_trend_and_names_the_command_for_the_missing_ones(tmp_path):
    runs = [seed_run("keras", experiment, seed, 0.70 + 0.01 * seed * (experiment == "4"))
            for experiment in ("3", "4") for seed in range(1, 6)]
    trends = book_trends(runs)
    (tmp_path / "seeds.json").write_text(json.dumps({"runs": runs, "trends": trends}))
    companions = read_companions(tmp_path)
    assert companions["seed_study"]["experiments"] == ["3", "4"] and "saturation" not in companions
    lines = seed_trend_lines(companions)
    assert lines[0] == "### The trends across seeds"
    assert f"- (500,000 rows, epoch cap 50, patience 15) {trend_sentence(trends[0])}" in lines
    assert trend_sentence(trends[0]).endswith("the trend holds.")
    (missing,) = [line for line in lines if line.startswith("- Not measured yet")]
    assert "experiment(s) 5 of the seed study" in missing
    assert "`python -m parity_tests.seeds --seeds 5 --experiment 5 --sample-rows 500000" in missing


def test_missing_or_broken_study_files_are_left_out(tmp_path):
    assert read_companions(tmp_path) == {}
    (tmp_path / "seeds.json").write_text("{not json")
    assert read_companions(tmp_path) == {}
    assert saturation_lines({}) == []
    assert any("experiment(s) 3, 4, 5" in line for line in seed_trend_lines({}))


def test_the_saturation_sentence_is_quoted_with_its_command(tmp_path):
    study = {"experiment": "3", "command": "python -m parity_tests.saturation --out docs/results",
             "summary": "From epoch 39 to 50 every training row's logit was past the kink.",
             "frozen": {"from_epoch": 39, "to_epoch": 50}}
    (tmp_path / "saturation.json").write_text(json.dumps(study))
    lines = saturation_lines(read_companions(tmp_path))
    assert lines[0] == "### Where the gradient is zero"
    assert "`python -m parity_tests.saturation --out docs/results` retrained Lightning's experiment 3" in lines[2]
    assert lines[2].endswith("From epoch 39 to 50 every training row's logit was past the kink.")
    # A retrain that did not freeze explains nothing about a freeze, and the page says so.
    study.update(frozen=None, summary="The run did not end frozen.")
    (tmp_path / "saturation.json").write_text(json.dumps(study))
    lines = saturation_lines(read_companions(tmp_path))
    assert lines[2].endswith("The run did not end frozen. That retrain did not reproduce a frozen run, so this page "
                             "does not name saturation as the cause of any freeze in the table above; the per-epoch "
                             "counts show how far the logits went instead.")


def fixed_point_study(val_loss, *, share, fixed_point):
    return {"experiment": "3", "command": "python -m parity_tests.fixed_point RUN/checkpoints/last.ckpt",
            "engine": "fast", "summary": "SUMMARY.", "saturated_share": share, "fixed_point": fixed_point,
            "run_history": {"val_loss": val_loss, "val_accuracy": [0.5] * len(val_loss)}}


def table_run(val_loss):
    return {"experiments": {"3": {"lightning": {"history": {"val_loss": val_loss,
                                                            "val_accuracy": [0.5] * len(val_loss)}}}}}


def test_the_fixed_point_check_is_told_from_its_numbers_and_the_tables(tmp_path):
    saturation = {"experiment": "3", "command": "python -m parity_tests.saturation", "summary": "Not frozen.",
                  "frozen": None}
    (tmp_path / "saturation.json").write_text(json.dumps(saturation))
    retrain = [0.66, 0.54, 4.2, 10.36, 7.0]
    (tmp_path / "fixed_point.json").write_text(json.dumps(fixed_point_study(retrain, share=0.9912,
                                                                            fixed_point=False)))
    table = table_run([0.62, 0.53, 2.15, 8.19, 7.2, 7.2, 7.2])
    lines = saturation_lines(read_companions(tmp_path), table)
    # With the check beside it, the saturation retrain's disclaimer gives way to the check's evidence.
    assert lines[2].endswith("Not frozen.")
    text = lines[4]
    assert text.startswith("`python -m parity_tests.fixed_point RUN/checkpoints/last.ckpt` took a retrain of "
                           "Lightning's experiment 3 with the fast engine")
    assert ("The retrain does not repeat the table's run (epoch 1 val_loss 0.6600 against 0.6200); it blew up as "
            "the table's run did: its val_loss was 0.5400 at epoch 2 and 10.3600 at epoch 4. SUMMARY.") in text
    assert text.endswith("The 0.88% of rows still inside the kinks keep it moving; once that share is 0, every "
                         "batch's gradient is exactly 0 (parity_tests/test_fixed_point.py) and the validation "
                         "figures repeat to the last digit, as the table's do from epoch 5 to 7.")
    # A retrain that stayed calm beside a table run that blew up, and a model that is a fixed point.
    calm = fixed_point_study([0.66, 0.6, 0.58], share=1.0, fixed_point=True)
    (text,) = [line for line in saturation_lines({"saturation": saturation, "fixed_point": calm}, table)[4:] if line]
    assert "it did not blow up as the table's run did" in text and text.endswith("SUMMARY.")
    assert "neither run blew up" in saturation_lines({"saturation": saturation, "fixed_point": calm},
                                                     table_run([0.6, 0.59]))[4]
