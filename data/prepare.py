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

The cache (default data/processed/, in .gitignore) holds, per cache key,
`streetcar-<key>.parquet` (the encoded columns, the target and each row's split
as small unsigned ints) and `streetcar-<key>.json` (vocabularies, report,
split sizes and the Parquet file's SHA-256).  The key is a hash of the raw
files' bytes and of every setting that changes the rows: the `data` section
(except raw_dir: the same bytes elsewhere are the same data), the two split
proportions and the seed.  Both files are written to a temp name and renamed
into place, the JSON last, and a load checks the Parquet against the JSON's
hash and sizes: a killed run or a damaged file is detected and rebuilt, never
trusted.  Progress goes to stderr so that stdout stays clean for --json.

Bad input (no workbooks, a workbook without a required column, a corrupt
file, a bad config) is a ValueError naming the file / column / key; the CLI
turns it into one line on stderr and exit code 2, with nothing written.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from configs.cli import OneLineArgumentParser
from configs.loader import Config, load_config
from data.atomic import atomic_path, is_temporary_name, write_atomic
from data.clean import clean_records
from data.dataset import COLUMNS, TARGET, PreparedDataset
from data.load import read_raw_workbooks
from data.paths import DEFAULT_CACHE_DIR, find_raw_files, resolve_raw_dir
from data.refactor import build_grid, choose_date_range
from data.split import split_indices, split_labels, splits_from_labels
from data.vocab import Vocabularies

# Bump when the preparation logic changes, so that caches built by older code miss.
# 2: valid_proportion is a share of all rows (60/20/20); 3: date_out_of_range drops, one text-date format per sheet
CACHE_FORMAT_VERSION = 3
CACHE_PREFIX = "streetcar-"
SPLIT_COLUMN = "split"
# Older cache entries (another seed, other files) are kept for quick switching back; beyond this many they go.
KEEP_CACHE_ENTRIES = 4
STALE_TEMP_SECONDS = 600


# ----------------------------------------------------------------- inputs

def resolve_config(config: Config | str | os.PathLike | None) -> Config:
    """A Config as given, or loaded from a path, or the default configs/streetcar.yaml."""
    if config is None or isinstance(config, (str, os.PathLike)):
        return load_config(config)
    if not isinstance(config, Config):
        raise ValueError(f"config must be a configs.Config or a path to a YAML file, got {type(config).__name__}")
    return config


def sha256_of_file(path: Path) -> str:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def describe_raw_files(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """name, size and SHA-256 of each raw workbook: what the cache key is made of."""
    described = []
    for path in paths:
        try:
            described.append({"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_of_file(path)})
        except OSError as error:
            raise ValueError(f"{path.name}: cannot read the file ({error.strerror or error}); file: {path}") from None
    return described


def cache_key_fields(raw_files: Sequence[Mapping[str, Any]], config: Config) -> dict[str, Any]:
    """Everything that changes the prepared rows, as plain JSON values."""
    data = config.data
    return {
        "format": CACHE_FORMAT_VERSION,
        "raw_files": [[entry["name"], entry["sha256"]] for entry in raw_files],
        "data": {"start_date": data.start_date.isoformat() if data.start_date else None,
                 "end_date": data.end_date.isoformat() if data.end_date else None,
                 "drop_bad_vehicles": bool(data.drop_bad_vehicles)},
        "test_proportion": float(config.test_parms.test_proportion),
        "valid_proportion": float(config.test_parms.valid_proportion),
        "seed": int(config.general.seed),
    }


def cache_key(raw_files: Sequence[Mapping[str, Any]], config: Config) -> str:
    canonical = json.dumps(cache_key_fields(raw_files, config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def cache_paths(cache_dir: Path, key: str) -> tuple[Path, Path]:
    """(Parquet file, JSON manifest) of one cache entry."""
    stem = f"{CACHE_PREFIX}{key[:16]}"
    return cache_dir / f"{stem}.parquet", cache_dir / f"{stem}.json"


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


def smallest_unsigned_dtype(size: int) -> np.dtype:
    for dtype in (np.uint8, np.uint16, np.uint32):
        if size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


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
            print(f"[data] {message} ({now - self.step_started:.2f} s)", file=sys.stderr, flush=True)
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


# ----------------------------------------------------------------- cache files

def write_parquet_atomic(path: Path, columns: Mapping[str, np.ndarray]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({name: pa.array(values) for name, values in columns.items()})
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary, compression="zstd")


def write_json_atomic(path: Path, payload: Any) -> None:
    text = json.dumps(payload, indent=1)
    write_atomic(path, text)


def write_cache(cache_dir: Path, key: str, key_fields: Mapping[str, Any], built: Mapping[str, Any]) -> Path:
    """Parquet first, then the JSON manifest that vouches for it (by hash): no manifest, no trust."""
    parquet_path, manifest_path = cache_paths(cache_dir, key)
    vocabularies: Vocabularies = built["vocabularies"]
    sizes = vocabularies.sizes()
    columns = {column: built["features"][:, position].astype(smallest_unsigned_dtype(sizes[column]))
               for position, column in enumerate(COLUMNS)}
    columns[TARGET] = built["target"].astype(np.uint8)
    columns[SPLIT_COLUMN] = split_labels(len(built["target"]), built["splits"])
    write_parquet_atomic(parquet_path, columns)
    manifest = {
        "format": CACHE_FORMAT_VERSION,
        "key": key,
        "key_fields": key_fields,
        "parquet": {"name": parquet_path.name, "bytes": parquet_path.stat().st_size,
                    "sha256": sha256_of_file(parquet_path), "rows": int(len(built["target"]))},
        "split_sizes": {name: int(len(rows)) for name, rows in built["splits"].items()},
        "vocabularies": vocabularies.to_json_dict(),
        "report": built["report"],
    }
    write_json_atomic(manifest_path, manifest)
    return parquet_path


class CacheInvalid(Exception):
    """A cache entry exists but cannot be trusted; the message says why."""


def read_manifest(manifest_path: Path, key: str) -> dict[str, Any]:
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CacheInvalid(f"unreadable manifest ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != CACHE_FORMAT_VERSION \
            or manifest.get("key") != key:
        raise CacheInvalid("manifest of another format or key")
    for field in ("parquet", "split_sizes", "vocabularies", "report"):
        if not isinstance(manifest.get(field), dict):
            raise CacheInvalid(f"manifest lacks {field!r}")
    return manifest


def read_cache(cache_dir: Path, key: str) -> tuple[PreparedDataset, Path] | None:
    """The cached dataset for `key`, None if there is none, CacheInvalid if it is damaged."""
    import pyarrow.parquet as pq

    parquet_path, manifest_path = cache_paths(cache_dir, key)
    if not manifest_path.is_file():
        return None
    manifest = read_manifest(manifest_path, key)
    expected = manifest["parquet"]
    if not parquet_path.is_file():
        raise CacheInvalid(f"{parquet_path.name} is missing")
    if parquet_path.stat().st_size != expected.get("bytes") or sha256_of_file(parquet_path) != expected.get("sha256"):
        raise CacheInvalid(f"{parquet_path.name} does not match the SHA-256 recorded in {manifest_path.name}")
    try:
        vocabularies = Vocabularies.from_json_dict(manifest["vocabularies"], source=str(manifest_path))
        table = pq.read_table(parquet_path)
    except Exception as error:  # pyarrow raises ArrowInvalid/OSError for a damaged file
        raise CacheInvalid(f"unreadable ({type(error).__name__}: {error})") from None
    expected_columns = list(COLUMNS) + [TARGET, SPLIT_COLUMN]
    if table.column_names != expected_columns or table.num_rows != expected.get("rows"):
        raise CacheInvalid(f"{parquet_path.name} has columns {table.column_names} / {table.num_rows} rows, "
                           f"expected {expected_columns} / {expected.get('rows')}")
    sizes = vocabularies.sizes()
    features = np.empty((table.num_rows, len(COLUMNS)), dtype=np.int64)
    for position, column in enumerate(COLUMNS):
        values = table.column(column).to_numpy()
        if len(values) and int(values.max()) >= sizes.get(column, 0):
            raise CacheInvalid(f"column {column!r} holds a code outside its vocabulary")
        features[:, position] = values
    target = table.column(TARGET).to_numpy().astype(np.uint8, copy=False)
    try:
        splits = splits_from_labels(table.column(SPLIT_COLUMN).to_numpy())
    except ValueError as error:
        raise CacheInvalid(str(error)) from None
    if {name: int(len(rows)) for name, rows in splits.items()} != manifest["split_sizes"] \
            or int(target.max(initial=0)) > 1:
        raise CacheInvalid("split sizes or target values differ from the manifest")
    dataset = PreparedDataset(features=features, target=target, splits=splits,
                              vocabularies=vocabularies, report=dict(manifest["report"]))
    return dataset, parquet_path


def prune_cache(cache_dir: Path, keep_key: str) -> None:
    """Remove all but the KEEP_CACHE_ENTRIES newest entries, and temp files a killed run left behind."""
    now = time.time()
    try:
        entries = list(cache_dir.iterdir())
    except OSError:
        return
    manifests = sorted((path for path in entries if path.name.startswith(CACHE_PREFIX) and path.suffix == ".json"),
                       key=lambda path: path.stat().st_mtime, reverse=True)
    keep_stems = {path.stem for path in manifests[:KEEP_CACHE_ENTRIES]} | {cache_paths(cache_dir, keep_key)[0].stem}
    for path in entries:
        try:
            old = now - path.stat().st_mtime > STALE_TEMP_SECONDS
            is_temp = path.name.startswith(f".{CACHE_PREFIX}") and is_temporary_name(path.name)
            is_entry = path.name.startswith(CACHE_PREFIX) and path.suffix in (".json", ".parquet")
            if (is_temp and old) or (is_entry and path.stem not in keep_stems and old):
                path.unlink()
        except OSError:
            continue  # another process removed it first


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


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 ok, 2 bad input, 1 the system failed us)."""
    arguments = parse_arguments(argv)
    try:
        dataset = load_prepared(arguments.config, arguments.raw_dir, cache_dir=arguments.cache_dir,
                                progress=not arguments.quiet, rebuild=arguments.rebuild)
    except ValueError as error:
        print(f"error: {' '.join(str(error).splitlines())}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if arguments.json:
        print(json.dumps(dataset.report, indent=2))
    else:
        print(format_report(dataset.report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
