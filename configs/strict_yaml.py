"""The YAML loader for the project's config: duplicate keys refused, dates left to the config's own check.

    from configs.strict_yaml import StrictLoader
    raw = yaml.load(text, Loader=StrictLoader)       # DuplicateKeyError names the key and both lines
"""

from __future__ import annotations

import typing
from typing import Any

import yaml


class DuplicateKeyError(yaml.YAMLError):
    """A YAML mapping names the same key twice (PyYAML would keep the last one silently)."""


class StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses duplicate keys and leaves dates as text.

    Stock PyYAML keeps the last of two equal keys without a word, and turns
    `2019-13-45` into a bare ValueError ("month must be in 1..12") that names
    neither the file nor the key; here the date stays a string and
    configs.loader's type check reports it with both.
    """

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            first_seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, typing.Hashable):
                    continue  # SafeLoader's own check below refuses an unhashable key
                line = key_node.start_mark.line + 1
                if key in first_seen:
                    raise DuplicateKeyError(f"duplicate key {key!r} at line {line} (first given at line "
                                            f"{first_seen[key]}); each key may appear once in a mapping")
                first_seen[key] = line
        return super().construct_mapping(node, deep=deep)


StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node))
