"""A seed study: does the Lightning port behave like Keras in distribution, seed after seed?

    python -m parity_tests.seeds --seeds 10 --sample-rows 500000 --out docs/results
    python -m parity_tests.seeds --seed-list 1,2,3 --out docs/results          # the full data
    python -m parity_tests.seeds --seeds 2 --sample-rows 5000 --epochs 2 --out /tmp/study   # a quick look
    python -m parity_tests.seeds --render-only --out docs/results             # redraw the page

Each run is what a user's run is: `train()` of keras_impl or lightning_impl
with the book's settings of --experiment, and general.seed set to the run's
seed, so each framework draws its own initial weights and dropout masks from
its own seeded generators (not the shared initial weights of
parity_tests.report).  With --batch-order shared (the default) both
frameworks of one seed see the same batches (data.batches.epoch_permutation);
--batch-order framework lets each shuffle its own way.  The data are the
same for every run: the split and the --sample-rows subset are drawn once
with the config's general.seed (the data seed), not the run seed.

One process trains its runs one after another.  Two study processes may
share --out (say one per framework, since a Keras run uses both cores and a
Lightning run one thread); then runs overlap in time and their wall times
are slower than alone.  The page does not guess which happened: each run
records when it started and finished, and "execution" is computed from those
intervals (describe_execution).

Resumable: each finished run is written atomically (experiment.artifacts.
write_json) as --out/seed-runs/<framework>-exp<E>-rows<N>-epochs<E>-
patience<P>-<order>-seed<S>.json, and a rerun with the same --out skips the
runs whose file exists, so a long study can be run in parts.  After every run
--out/seeds.json, seeds.md and seeds.png are rebuilt from all the run files
there (every study group: experiment, rows, epoch cap, patience, batch order):

    {"runs": [{"framework", "seed", "sample_rows", "experiment", "epochs_cap", "patience", "batch_order",
               "epochs_run", "kept_epoch", "best_val_accuracy", "terminal_val_accuracy", "test_accuracy",
               "recall", "false_negatives", "predicted_positive_share", "collapsed", "seconds", "device", ...}],
     "groups": [{"settings": {...}, "commands": [...], "summary": {...}, "tests": {...}, "verdict": [...]}],
     "summary": {...}, "tests": {...}, "execution": "..."}     (each run also names its "machine")

The statistics (medians, IQR, Mann-Whitney U, the smallest detectable
difference, Fisher's exact test on the collapse rate) are explained in
reports/seed_statistics.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from configs.cli import command_parser, positive_int, resolve_run_request, seed_list
from configs.console import emit_json, run_main, say
from configs.loader import BATCH_ORDERS, load_config, override
from data.atomic import write_atomic
from experiment.artifacts import write_json
from reports.study_flags import DEFAULT_OUT_DIR as DEFAULT_OUT, FRAMEWORKS, add_study_arguments

RUNS_FOLDER = "seed-runs"
DEFAULT_SEED_COUNT = 10
# The keys every run file must hold; a file without them is refused by name.
RUN_KEYS = ("framework", "seed", "sample_rows", "experiment", "epochs_cap", "patience", "batch_order",
            "epochs_run", "kept_epoch", "best_val_accuracy", "terminal_val_accuracy", "test_accuracy", "recall",
            "false_negatives", "predicted_positive_share", "collapsed", "seconds", "device")
GROUP_KEYS = ("experiment", "sample_rows", "epochs_cap", "patience", "batch_order")


def build_argument_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "python -m parity_tests.seeds",
        "Train one experiment with many seeds in Keras 3 and Lightning (each framework's own seeded initial weights "
        "and dropout), and compare the two distributions: medians, spread, Mann-Whitney U, the smallest detectable "
        "difference, and the collapse rate.",
        epilog=__doc__.split("Each run is", 1)[0].strip())
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=positive_int, default=None, metavar="K",
                       help=f"run seeds 1..K in each framework (default {DEFAULT_SEED_COUNT})")
    seeds.add_argument("--seed-list", type=seed_list, default=None, metavar="S1,S2,...",
                       help="run exactly these seeds in each framework")
    parser.add_argument("--experiment", default="5", metavar="ID",
                        help="experiment id from the config's table (default 5: early stop on val_accuracy)")
    add_study_arguments(parser)   # the same --sample-rows subset for every run
    parser.add_argument("--batch-order", choices=BATCH_ORDERS, default="shared",
                        help="shared (default): both frameworks of a seed see the same batches; framework: each "
                             "shuffles its own way")
    parser.add_argument("--out", default=str(DEFAULT_OUT), metavar="DIR",
                        help="where seed-runs/, seeds.json, seeds.md and seeds.png go (default docs/results)")
    parser.add_argument("--render-only", action="store_true",
                        help="train nothing: rebuild seeds.json, seeds.md and seeds.png from --out/seed-runs/")
    parser.add_argument("--json", action="store_true", help="print seeds.json's object on stdout")
    return parser


# --------------------------------------------------------------------------
# The planned runs
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    framework: str
    seed: int
    settings: Mapping[str, Any]  # GROUP_KEYS

    @property
    def file_name(self) -> str:
        settings = self.settings
        rows = "all" if settings["sample_rows"] is None else settings["sample_rows"]
        return (f"{self.framework}-exp{settings['experiment']}-rows{rows}-epochs{settings['epochs_cap']}-"
                f"patience{settings['patience']}-{settings['batch_order']}-seed{self.seed}.json")


def study_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The group settings (GROUP_KEYS), resolved as the trainers resolve them; bad values raise ValueError."""
    unknown = [name for name in args.frameworks if name not in FRAMEWORKS]
    if unknown or len(set(args.frameworks)) != len(args.frameworks):
        raise ValueError(f"--frameworks {','.join(args.frameworks)}: use keras, lightning or keras,lightning")
    request = resolve_run_request(argparse.Namespace(
        config=args.config, experiment=args.experiment, epochs=args.epochs, patience=args.patience, seed=None,
        sample_rows=None, raw_dir=args.raw_dir, out_dir=args.runs_dir, json=False))
    return {"experiment": request.settings.experiment, "sample_rows": args.sample_rows,
            "epochs_cap": request.settings.epochs, "patience": request.settings.patience,
            "batch_order": args.batch_order}


def plan_runs(args: argparse.Namespace, settings: Mapping[str, Any]) -> list[PlannedRun]:
    seeds = args.seed_list if args.seed_list is not None else list(range(1, (args.seeds or DEFAULT_SEED_COUNT) + 1))
    # Seed by seed, both frameworks: an interrupted study leaves matched pairs.
    return [PlannedRun(framework, seed, settings) for seed in seeds for framework in args.frameworks]


# --------------------------------------------------------------------------
# One run -> one record
# --------------------------------------------------------------------------


def run_record(result: Mapping[str, Any], run: PlannedRun, seconds: float, data_seed: int,
               command: str) -> dict[str, Any]:
    """The per-run fields of seeds.json from a trainer's result (RESULT_KEYS)."""
    from experiment.machine import describe_machine

    val_accuracy = [float(value) for value in result["history"].get("val_accuracy", [])]
    test = result["test"]
    kept = result["best_epoch"] if result["best_epoch"] is not None else len(val_accuracy) - 1
    return {
        "framework": run.framework, "seed": run.seed, **run.settings, "data_seed": data_seed,
        "epochs_run": int(result["epochs_run"]),
        "kept_epoch": int(kept) + 1,  # 1-based, as Keras prints epochs
        "best_val_accuracy": max(val_accuracy) if val_accuracy else None,
        "terminal_val_accuracy": val_accuracy[-1] if val_accuracy else None,
        "test_accuracy": float(test["accuracy"]), "recall": float(test["recall"]),
        "false_negatives": int(test["false_negatives"]),
        "predicted_positive_share": float(result["predicted_positive_share"]),
        "collapsed": bool(result["degenerate"]),
        "seconds": round(seconds, 3), "device": str(result["device"]),
        "confusion_matrix": test["confusion_matrix"], "monitor": result["monitor"],
        "stop_reason": result["stop_reason"], "model": project_relative(result["model"]),
        "run_dir": project_relative(result["run_dir"]), "command": command,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() - seconds)),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": describe_machine(),
    }


def project_relative(path: str) -> str:
    """A path inside the current folder as a relative one, so committed run files name no home folder."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def train_one(run: PlannedRun, args: argparse.Namespace, dataset, progress) -> dict[str, Any]:
    """One trainer run with general.seed = the run seed on the study's one dataset (already sampled)."""
    from reports.results_run import free_framework_state, train_one as train_framework

    request = resolve_run_request(argparse.Namespace(
        config=args.config, experiment=args.experiment, epochs=args.epochs, patience=args.patience,
        seed=run.seed, sample_rows=None, raw_dir=args.raw_dir, out_dir=args.runs_dir, json=False))
    request = dataclasses.replace(request, config=override(request.config, "general.batch_order",
                                                           run.settings["batch_order"]))
    try:
        return train_framework(run.framework, request, dataset, args.accelerator, progress)
    finally:
        free_framework_state(run.framework)


def load_study_dataset(args: argparse.Namespace):
    """The prepared dataset with the config's data seed, sampled once for every run; (dataset, data seed)."""
    from data import load_prepared

    config = load_config(args.config)
    if args.raw_dir is not None:
        config = override(config, "data.raw_dir", args.raw_dir)
    dataset = load_prepared(config, raw_dir=config.data.raw_dir)
    if args.sample_rows is not None:
        dataset = dataset.sample(args.sample_rows, config.general.seed)
    return dataset, int(config.general.seed)


def run_study(args: argparse.Namespace, planned: Sequence[PlannedRun], out: Path, command: str) -> None:
    """Train every planned run whose file is missing, rebuilding the page after each."""
    from tqdm import tqdm

    pending = [run for run in planned if not (out / RUNS_FOLDER / run.file_name).is_file()]
    say(f"seed study: {len(planned)} run(s) planned, {len(planned) - len(pending)} already in "
        f"{out / RUNS_FOLDER}, {len(pending)} to train, one after another in this process")
    if not pending:
        return
    dataset, data_seed = load_study_dataset(args)
    bar = tqdm(total=len(pending), unit="run", desc="seed runs", dynamic_ncols=True)
    try:
        for finished, run in enumerate(pending):
            bar.set_postfix_str(f"{run.framework} seed {run.seed}")
            started = time.perf_counter()
            try:
                result = train_one(run, args, dataset,
                                   progress=lambda message: bar.write(message, file=sys.stderr))
            except KeyboardInterrupt as interrupt:
                # The trainer's own message says how to resume its run directory; a study resumes
                # by running the same command again, which skips the saved runs.
                replacement = KeyboardInterrupt(
                    f"seed study interrupted during {run.framework} seed {run.seed}: {finished} of {len(pending)} "
                    f"run(s) saved in {out / RUNS_FOLDER}; run the same command again to continue")
                replacement.exit_code = getattr(interrupt, "exit_code", 130)
                raise replacement from None
            record = run_record(result, run, time.perf_counter() - started, data_seed, command)
            write_json(out / RUNS_FOLDER / run.file_name, record)
            bar.update(1)
            write_study(out)
    finally:
        bar.close()


# --------------------------------------------------------------------------
# The study files
# --------------------------------------------------------------------------


def read_runs(out: Path) -> list[dict[str, Any]]:
    """Every run file under out/seed-runs/, checked for the per-run keys."""
    runs = []
    for path in sorted((out / RUNS_FOLDER).glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: not a readable run file ({error}); delete it to train that run again") \
                from None
        missing = [key for key in RUN_KEYS if key not in record]
        if missing:
            raise ValueError(f"{path}: lacks {', '.join(missing)}; delete it to train that run again")
        runs.append(record)
    return runs


def build_study(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """seeds.json's object: the runs, and per study group its summary, tests and verdict."""
    from reports.seed_statistics import compare_frameworks, summarize_outcomes, verdict_sentences
    from reports.seed_trends import book_trends, trend_sentences

    groups = []
    for key in sorted({tuple(run[k] for k in GROUP_KEYS) for run in runs}, key=lambda item: repr(item)):
        members = [run for run in runs if tuple(run[k] for k in GROUP_KEYS) == key]
        summary, tests = summarize_outcomes(members), compare_frameworks(members)
        groups.append({"settings": dict(zip(GROUP_KEYS, key)), "summary": summary, "tests": tests,
                       "verdict": verdict_sentences(tests, summary),
                       "commands": sorted({run.get("command", "") for run in members})})
    first = groups[0] if groups else {"summary": {}, "tests": {}}
    return {"runs": list(runs), "groups": groups,
            # The first (or only) group's figures at the top level too, as the layout asks.
            "summary": first["summary"], "tests": first["tests"],
            # Across experiments 3, 4 and 5 of the same seeds: do the book's trends hold? (seed_trends)
            "trends": (trends := book_trends(runs)), "trend_verdict": trend_sentences(trends),
            "execution": describe_execution(runs)}


def run_interval(run: Mapping[str, Any]) -> tuple[float, float] | None:
    """(start, end) in seconds since the epoch; files written before "started_at" existed give
    end - seconds.  None when the run names no finishing time."""
    from datetime import datetime

    if not run.get("finished_at"):
        return None
    end = datetime.strptime(run["finished_at"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
    if run.get("started_at"):
        return datetime.strptime(run["started_at"], "%Y-%m-%dT%H:%M:%S%z").timestamp(), end
    return end - float(run["seconds"]), end


def describe_execution(runs: Sequence[Mapping[str, Any]]) -> str:
    """How the runs were executed, from their recorded times: sequential, or how many overlapped."""
    intervals = [run_interval(run) for run in runs]
    known = [(index, interval) for index, interval in enumerate(intervals) if interval is not None]
    overlapped = {index for index, (start, end) in known
                  for other, (other_start, other_end) in known
                  if other != index and start < other_end - 1 and other_start < end - 1}
    if not overlapped:
        return f"sequential: no two of the {len(known)} timed runs overlapped in time"
    frameworks = sorted({runs[index]["framework"] for index in overlapped})
    return (f"{len(overlapped)} of {len(known)} timed runs overlapped in time with another run (two study "
            f"processes side by side; frameworks {', '.join(frameworks)}), so their wall times ('seconds') are "
            f"those of a shared 2-core machine, slower than alone; the other runs ran alone")


def write_study(out: Path) -> dict[str, Any]:
    from reports.seed_page import render_markdown, write_plot

    study = build_study(read_runs(out))
    write_json(out / "seeds.json", study)
    write_plot(out / "seeds.png", study)
    write_atomic(out / "seeds.md", render_markdown(study))
    return study


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(argv) if argv is not None else None
    parser = build_argument_parser()
    args = parser.parse_args(argv)
    out = Path(args.out)
    if not args.render_only:
        settings = study_settings(args)
        command = " ".join(["python -m parity_tests.seeds",
                            *(shlex.quote(item) for item in (argv if argv is not None else sys.argv[1:]))])
        run_study(args, plan_runs(args, settings), out, command)
    elif not (out / RUNS_FOLDER).is_dir():
        raise ValueError(f"--render-only: {out / RUNS_FOLDER} does not exist; run a study into --out {out} first")
    study = write_study(out)
    for group in study["groups"]:
        say(f"{group['settings']}: " + " ".join(group["verdict"]))
    if args.json:
        emit_json(study)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
