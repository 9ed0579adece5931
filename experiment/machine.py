"""What produced a measurement: the machine, its load and the framework versions.

Wall times and speeds mean something only with the cores and the load beside
them, so every command that times or trains many runs (`python -m
parity_tests.report`, `python -m parity_tests.seeds`, `python -m
benchmarks.run`) stores this one description with its numbers.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import platform
from pathlib import Path
from typing import Any

FRAMEWORK_PACKAGES = ("keras", "tensorflow", "torch", "lightning")


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """The cores this process may run on (a container or taskset may allow fewer than the machine has)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def memory_gib() -> float | None:
    """Physical memory in GiB (None where the system does not say)."""
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def load_average() -> list[float]:
    """The 1, 5 and 15-minute load averages, rounded: how busy the shared machine was."""
    return [round(value, 2) for value in os.getloadavg()]


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def describe_machine() -> dict[str, Any]:
    """The machine as every page states it (experiment/tests/test_machine.py lists the keys)."""
    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "memory_gb": memory_gib(),
        "load_average_at_start": load_average(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: package_version(name) for name in FRAMEWORK_PACKAGES},
    }
