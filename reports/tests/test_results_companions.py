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
