"""The on-disk cache of prepared datasets: one Parquet file and one JSON manifest per key.

    from data.cache import cache_key, read_cache, write_cache
    key = cache_key(describe_raw_files(raw_paths), config)
    cached = read_cache(cache_dir, key)          # None, a (PreparedDataset, path), or CacheInvalid

A cache entry is `streetcar-<key>.parquet` (the encoded columns, the target
and each row's split as small unsigned ints) and `streetcar-<key>.json`
(vocabularies, report, split sizes and the Parquet file's SHA-256).  The key
is a hash of the raw files' bytes and of every setting that changes the rows.
Both files are written to a temp name and renamed into place, the JSON last,
and a read checks the Parquet against the JSON's hash and sizes, so a killed
run or a damaged file is detected (CacheInvalid) and rebuilt by data.prepare,
never trusted.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from configs.loader import Config
from data.atomic import atomic_path, is_temporary_name, write_atomic
from data.dataset import COLUMNS, TARGET, PreparedDataset
from data.paths import sha256_of_file
from data.split import split_labels, splits_from_labels
from data.vocab import Vocabularies

# Bump when the preparation logic changes, so that caches built by older code miss.
# 2: valid_proportion is a share of all rows (60/20/20); 3: date_out_of_range drops, one text-date format per sheet
CACHE_FORMAT_VERSION = 3
CACHE_PREFIX = "streetcar-"
SPLIT_COLUMN = "split"
# Older cache entries (another seed, other files) are kept for quick switching back; beyond this many they go.
KEEP_CACHE_ENTRIES = 4
STALE_TEMP_SECONDS = 600



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


def smallest_unsigned_dtype(size: int) -> np.dtype:
    for dtype in (np.uint8, np.uint16, np.uint32):
        if size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


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
