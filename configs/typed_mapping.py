"""Frozen dataclasses built from YAML mappings, strictly: every key known, present and of its type.

    from configs.typed_mapping import build_dataclass
    general = build_dataclass(GeneralConfig, {"seed": 42, ...}, "general", "configs/streetcar.yaml")

An unknown key, a missing key (one without a default) or a value of the wrong
type is a ConfigError naming the dotted key and the file; nothing falls back to
a silent default.  configs.loader declares the dataclasses and checks the
values against each other.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import types
import typing
from typing import Any, Mapping


class ConfigError(ValueError):
    """A configuration file or override that cannot be used; says which key."""


def check_type(value: Any, annotation: Any, key: str, source: str) -> Any:
    """Return `value` converted to `annotation`, or raise ConfigError naming `key`."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        if float in options and isinstance(value, float) and not math.isfinite(value):
            return check_type(value, float, key, source)  # say "not a finite number", not "matches none"
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return check_type(value, option, key, source)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if len(errors) == 1 else
                          f"{source}: '{key}' = {value!r} matches none of {annotation}")
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            # .inf / .nan would pass every "> 0" check below and then train nothing useful.
            if not math.isfinite(value):
                raise ConfigError(f"{source}: '{key}' = {value!r} is not a finite number")
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    elif annotation is dt.date:
        if isinstance(value, dt.date):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                pass
        raise ConfigError(f"{source}: '{key}' = {value!r} is not a date (YYYY-MM-DD)")
    else:  # pragma: no cover - programming error, not user input
        raise TypeError(f"unsupported annotation {annotation} for {key}")
    kind = getattr(annotation, "__name__", str(annotation))
    raise ConfigError(f"{source}: '{key}' = {value!r} should be of type {kind}")


def join_key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def build_dataclass(cls: type, raw: Any, prefix: str, source: str, preset: Mapping[str, Any] | None = None) -> Any:
    """Build dataclass `cls` from mapping `raw`, rejecting unknown and missing keys.

    `preset` holds fields already built by the caller (the experiment table).
    """
    preset = dict(preset or {})
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: '{prefix}' should be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    unknown = sorted(set(raw) - set(fields) - set(preset))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(join_key(prefix, k) for k in unknown)}; "
            f"valid keys under '{prefix or 'the top level'}': {', '.join(sorted(fields))}")
    values = dict(preset)
    for name, spec in fields.items():
        if name in preset:
            continue
        key = join_key(prefix, name)
        if name not in raw:
            if spec.default is not dataclasses.MISSING:
                continue
            raise ConfigError(f"{source}: missing key '{key}'")
        annotation = hints[name]
        if dataclasses.is_dataclass(annotation):
            values[name] = build_dataclass(annotation, raw[name], key, source)
        else:
            values[name] = check_type(raw[name], annotation, key, source)
    return cls(**values)
