"""Raw workbooks -> PreparedDataset, cached on disk and rebuilt only when something changed.

    python -m data.prepare                         # human report; builds the cache on the first run
    python -m data.prepare --json                  # the same report as one JSON object on stdout
    python -m data.prepare --raw-dir DIR --rebuild --config configs/streetcar.yaml --cache-dir DIR

    from data.prepare import load_prepared
    dataset = load_prepared()                      # ~0.3 s from the cache, a few seconds cold

The pipeline: find the workbooks (data.paths) -> read every sheet
(data.load) -> clean, counting every dropped row by reason (data.clean) -> one
row per (date, hour, route, direction) slot with a 0/1 target (data.refactor)
-> label-encode the seven columns of COLUMNS with sorted vocabularies
(data.vocab) -> draw the seeded 60/20/20 split (data.split).

The cache (default data/processed/, in .gitignore; data.cache) holds one
Parquet file and one JSON manifest per cache key, a hash of the raw files'
bytes and of every setting that changes the rows.  A damaged or half-written
entry is detected and rebuilt, never trusted.  Progress goes to stderr so that
stdout stays clean for --json.

Bad input (no workbooks, a workbook without a required column, a corrupt
file, a bad config) is a ValueError naming the file / column / key; the CLI
turns it into one line on stderr and exit code 2, with nothing written.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from configs.cli import OneLineArgumentParser
from configs.console import run_main, say
from configs.loader import Config, load_config
from data.cache import (CacheInvalid, cache_key, cache_key_fields, describe_raw_files, prune_cache, read_cache,
                        write_cache)
from data.clean import clean_records
from data.dataset import COLUMNS, TARGET, PreparedDataset
from data.load import read_raw_workbooks
from data.paths import DEFAULT_CACHE_DIR, find_raw_files, resolve_raw_dir
from data.refactor import build_grid, choose_date_range
from data.split import split_indices
from data.vocab import Vocabularies

# ----------------------------------------------------------------- inputs

def resolve_config(config: Config | str | os.PathLike | None) -> Config:
    """A Config as given, or loaded from a path, or the default configs/streetcar.yaml."""
    if config is None or isinstance(config, (str, os.PathLike)):
        return load_config(config)
    if not isinstance(config, Config):
        raise ValueError(f"config must be a configs.Config or a path to a YAML file, got {type(config).__name__}")
    return config


# ----------------------------------------------------------------- encoding

def vocabularies_from_grid(grid: pd.DataFrame) -> Vocabularies:
    """Sorted vocabularies of the seven feature columns over every slot of the grid."""
    return Vocabularies.from_values({column: pd.unique(grid[column]) for column in COLUMNS})


def encode_column(vocabularies: Vocabularies, column: str, values: pd.Series | np.ndarray) -> np.ndarray:
    """Vectorised Vocabularies.encode: int64 codes; an unknown value raises the same ValueError."""
    if column not in vocabularies.values:
        raise ValueError(f"unknown column {column!r}; valid: {', '.join(vocabularies.values)}")
    if isinstance(getattr(values, "dtype", None), pd.CategoricalDtype):
        codes = np.asarray(values.cat.codes, dtype=np.int64)
        if (codes < 0).any():
            raise ValueError(f"column {column!r} has {int((codes < 0).sum())} empty value(s)")
        categories = np.asarray(values.cat.categories, dtype=object)
        used = np.flatnonzero(np.bincount(codes, minlength=len(categories)))
        category_to_code = np.full(len(categories), -1, dtype=np.int64)
        category_to_code[used] = vocabularies.encode(column, categories[used])
        return category_to_code[codes]
    array = np.asarray(values)
    vocabulary = np.asarray(vocabularies.values[column])
    try:
        positions = np.searchsorted(vocabulary, array).clip(0, len(vocabulary) - 1)
        found = vocabulary[positions] == array
    except TypeError:  # values of another type than the vocabulary: let encode() name them
        vocabularies.encode(column, pd.unique(array))
        raise
    if not found.all():
        vocabularies.encode(column, pd.unique(array[~found]))  # raises, naming the unknown values
    return positions.astype(np.int64)


def encode_columns(frame: pd.DataFrame, vocabularies: Vocabularies) -> np.ndarray:
    """(n_rows, 7) int64 codes of the COLUMNS of `frame`, in COLUMNS order."""
    missing = [column for column in COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(f"cannot encode: missing column(s) {', '.join(missing)}; need {', '.join(COLUMNS)}")
    features = np.empty((len(frame), len(COLUMNS)), dtype=np.int64)
    for position, column in enumerate(COLUMNS):
        features[:, position] = encode_column(vocabularies, column, frame[column])
    return features


# ----------------------------------------------------------------- building

class Progress:
    """Timed progress lines on stderr; silent when disabled."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.started = time.perf_counter()
        self.step_started = self.started

    def say(self, message: str) -> None:
        now = time.perf_counter()
        if self.enabled:
            say(f"[data] {message} ({now - self.step_started:.2f} s)")
        self.step_started = now

    def total(self) -> float:
        return time.perf_counter() - self.started


def check_configured_range(config: Config) -> None:
    """Refuse start_date > end_date before any work is done."""
    start, end = config.data.start_date, config.data.end_date
    if start is not None and end is not None and start > end:
        raise ValueError(f"{config.source}: data.start_date {start.isoformat()} is after "
                         f"data.end_date {end.isoformat()}")


def per_file_counts(raw: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """file name -> {'rows': n, 'sheets': {sheet: rows}} in reading order."""
    counts: dict[str, dict[str, Any]] = {}
    for (file_name, sheet_name), rows in raw.groupby(["source_file", "source_sheet"], sort=False).size().items():
        entry = counts.setdefault(file_name, {"rows": 0, "sheets": {}})
        entry["rows"] += int(rows)
        entry["sheets"][sheet_name] = int(rows)
    return counts


def build_arrays(raw_paths: Sequence[Path], raw_files: list[dict[str, Any]], config: Config,
                 progress: Progress) -> dict[str, Any]:
    """Run the whole pipeline; every user-input error is raised before the first progress line."""
    raw = read_raw_workbooks(raw_paths)
    cleaned = clean_records(raw, drop_bad_vehicles=config.data.drop_bad_vehicles)
    kept, dropped = cleaned
    start, end = choose_date_range(kept, config.data.start_date, config.data.end_date)
    progress.say(f"read {len(raw_paths)} workbook(s): {len(raw):,} rows, kept {len(kept):,}")
    if dropped["date_out_of_range"]:
        progress.say(f"dropped {dropped['date_out_of_range']:,} row(s) with a date out of range, e.g. "
                     f"{'; '.join(cleaned.date_outliers)}")

    grid = build_grid(kept, start, end)
    progress.say(f"grid: {grid.info['slots']:,} slots, {grid.info['delay_slots']:,} with a delay")

    vocabularies = vocabularies_from_grid(grid.frame)
    features = encode_columns(grid.frame, vocabularies)
    target = grid.frame[TARGET].to_numpy(dtype=np.uint8)
    parms = config.test_parms
    splits = split_indices(len(target), parms.test_proportion, parms.valid_proportion, config.general.seed)
    progress.say("encoded the 7 columns and drew the split")

    files = per_file_counts(raw)
    report = {
        "raw_files": [{**entry, "rows": files.get(entry["name"], {}).get("rows", 0),
                       "sheets": files.get(entry["name"], {}).get("sheets", {})} for entry in raw_files],
        "raw_rows": int(len(raw)),
        "kept_rows": int(len(kept)),
        "dropped": dropped,
        "dropped_rows": int(sum(dropped.values())),
        "date_out_of_range_rows": cleaned.date_outliers,
        "drop_bad_vehicles": bool(config.data.drop_bad_vehicles),
        "bad_vehicle_rows_kept": int((~kept["vehicle_valid"]).sum()),
        "kept_rows_without_delay_minutes": int(kept["Min Delay"].isna().sum()),
        **grid.info,
        "columns": list(COLUMNS),
        "vocab_sizes": vocabularies.sizes(),
        "seed": int(config.general.seed),
        "test_proportion": float(parms.test_proportion),
        "valid_proportion": float(parms.valid_proportion),
        "splits": {name: int(len(rows)) for name, rows in splits.items()},
        "split_delay_rates": {name: float(target[rows].mean()) if len(rows) else 0.0
                              for name, rows in splits.items()},
        "train_class_counts": {"0": int(len(splits["train"]) - target[splits["train"]].sum()),
                               "1": int(target[splits["train"]].sum())},
    }
    return {"features": features, "target": target, "splits": splits, "vocabularies": vocabularies,
            "report": report}


# ----------------------------------------------------------------- entry point

def finish_report(dataset: PreparedDataset, config: Config, raw_dir: Path, cache: Mapping[str, Any]) -> PreparedDataset:
    """Add what depends on this call rather than on the cached rows: raw folder, cache, one_weight."""
    report = dict(dataset.report)
    offset = float(config.hyperparameters.one_weight_offset)
    negatives, positives = (int(report["train_class_counts"]["0"]), int(report["train_class_counts"]["1"]))
    report["raw_dir"] = str(raw_dir)
    report["one_weight_offset"] = offset
    # The book's balanced weight (data/dataset.py); None when the train split has no delay at all.
    report["one_weight"] = negatives / positives + offset if positives else None
    report["cache"] = dict(cache)
    return dataclasses.replace(dataset, report=report)


def load_prepared(config: Config | str | os.PathLike | None = None, raw_dir: str | os.PathLike | None = None, *,
                  cache_dir: str | os.PathLike | None = None, progress: bool = True,
                  rebuild: bool = False) -> PreparedDataset:
    """The prepared dataset for `config` (default configs/streetcar.yaml), from the cache when valid.

    raw_dir overrides config.data.raw_dir (then $STREETCAR_RAW_DIR, then
    data/raw/).  cache_dir defaults to data/processed/.  rebuild=True ignores
    an existing cache entry.  Raises ValueError for bad input (see module doc).
    """
    config = resolve_config(config)
    check_configured_range(config)
    timer = Progress(progress)
    chosen_raw_dir = raw_dir if raw_dir is not None else config.data.raw_dir
    raw_paths = find_raw_files(chosen_raw_dir)
    raw_folder, _ = resolve_raw_dir(chosen_raw_dir)
    raw_files = describe_raw_files(raw_paths)
    key = cache_key(raw_files, config)
    cache_folder = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR

    if not rebuild:
        try:
            cached = read_cache(cache_folder, key)
        except CacheInvalid as reason:
            timer.say(f"cache entry {key[:16]} in {cache_folder} is invalid ({reason}); rebuilding")
            cached = None
        if cached is not None:
            dataset, parquet_path = cached
            timer.say(f"loaded {dataset.n_rows:,} prepared rows from {parquet_path}")
            return finish_report(dataset, config, raw_folder,
                                 {"hit": True, "key": key, "path": str(parquet_path),
                                  "seconds": round(timer.total(), 3)})

    built = build_arrays(raw_paths, raw_files, config, timer)
    built["report"]["build_seconds"] = round(timer.total(), 3)
    parquet_path = write_cache(cache_folder, key, cache_key_fields(raw_files, config), built)
    prune_cache(cache_folder, key)
    timer.say(f"wrote {parquet_path}")
    dataset = PreparedDataset(features=built["features"], target=built["target"], splits=built["splits"],
                              vocabularies=built["vocabularies"], report=built["report"])
    return finish_report(dataset, config, raw_folder,
                         {"hit": False, "key": key, "path": str(parquet_path), "seconds": round(timer.total(), 3)})


# ----------------------------------------------------------------- command line

def format_count(value: int) -> str:
    return f"{value:,}"


def format_report(report: Mapping[str, Any]) -> str:
    """The human-readable report `python -m data.prepare` prints."""
    dropped = report["dropped"]
    dropped_text = ", ".join(f"{reason} {format_count(count)}" for reason, count in dropped.items())
    files = report["raw_files"]
    vocab = report["vocab_sizes"]
    splits = report["splits"]
    date_range = report["date_range"]
    counts = report["train_class_counts"]
    vehicles = (f"{format_count(report['bad_vehicle_rows_kept'])} with a vehicle number outside the fleet "
                f"ranges, kept (data.drop_bad_vehicles: false)" if not report["drop_bad_vehicles"]
                else "rows with a bad vehicle dropped (data.drop_bad_vehicles: true)")
    one_weight = "undefined (no delay in the train split)" if report["one_weight"] is None else (
        f"{report['one_weight']:.4f} = {format_count(int(counts['0']))} no-delay / "
        f"{format_count(int(counts['1']))} delay train rows + offset {report['one_weight_offset']}")
    cache = report["cache"]
    lines = [
        f"raw folder     {report['raw_dir']}",
        f"raw files      {len(files)}: " + ", ".join(
            f"{entry['name']} ({len(entry['sheets'])} sheets, {format_count(entry['rows'])} rows)" for entry in files),
        f"raw rows       {format_count(report['raw_rows'])}",
        f"dropped        {format_count(report['dropped_rows'])} ({dropped_text})",
        *([f"out of range   {'; '.join(report['date_out_of_range_rows'])}"] if report.get("date_out_of_range_rows")
          else []),
        f"kept rows      {format_count(report['kept_rows'])}; {vehicles}",
        f"delay records  {format_count(report['delay_records'])} kept rows with Min Delay > 0; "
        f"{format_count(report['delay_records_in_grid'])} fall in the grid "
        f"({format_count(report['delay_records_outside_pairs'])} on a route/direction outside the "
        f"{report['route_direction_pairs']} pairs, {format_count(report['delay_records_outside_dates'])} "
        f"outside the dates)",
        f"date range     {date_range['start']} .. {date_range['end']} ({format_count(date_range['days'])} days)",
        f"slots          {format_count(report['slots'])} = {format_count(date_range['days'])} days x 24 hours x "
        f"{report['route_direction_pairs']} route/direction pairs",
        f"delayed slots  {format_count(report['delay_slots'])} (delay rate {100 * report['delay_rate']:.3f} %)",
        f"vocab sizes    " + ", ".join(f"{column} {size}" for column, size in vocab.items())
        + f" ({sum(vocab.values())} in all)",
        f"splits         " + ", ".join(
            f"{name} {format_count(rows)} ({100 * report['split_delay_rates'][name]:.2f} % delayed)"
            for name, rows in splits.items())
        + f"; seed {report['seed']}, test {report['test_proportion']}, valid {report['valid_proportion']}",
        f"one_weight     {one_weight}",
        f"cache          {'hit' if cache['hit'] else 'built'}: {cache['path']} ({cache['seconds']:.2f} s)",
    ]
    return "\n".join(lines)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = OneLineArgumentParser(prog="python -m data.prepare",
                                     description="Prepare (or load from the cache) the streetcar delay dataset "
                                                 "and report on it.")
    parser.add_argument("--config", help="YAML config (default configs/streetcar.yaml)")
    parser.add_argument("--raw-dir", help="folder of the TTC workbooks (else data.raw_dir, $STREETCAR_RAW_DIR, "
                                          "data/raw/)")
    parser.add_argument("--cache-dir", help="cache folder (default data/processed/)")
    parser.add_argument("--rebuild", action="store_true", help="ignore an existing cache entry")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser.parse_args(argv)


def prepare_command(argv: Sequence[str] | None) -> int:
    """Parse the flags, prepare (or load) the dataset and print its report; errors go to run_main."""
    arguments = parse_arguments(argv)
    dataset = load_prepared(arguments.config, arguments.raw_dir, cache_dir=arguments.cache_dir,
                            progress=not arguments.quiet, rebuild=arguments.rebuild)
    if arguments.json:
        print(json.dumps(dataset.report, indent=2))
    else:
        print(format_report(dataset.report))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 ok, 2 bad input, 1 the system failed us)."""
    return run_main(prepare_command, argv)


if __name__ == "__main__":
    sys.exit(main())
