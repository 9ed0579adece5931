"""experiment/machine.py: the one machine description every measuring command stores.

    python -m pytest experiment/tests/test_machine.py -q
"""

from __future__ import annotations

import os

from experiment import machine

KEYS = {"cpu_model", "logical_cores", "usable_cores", "memory_gb", "load_average_at_start", "platform", "python",
        "versions"}


def test_the_description_has_every_key_the_pages_read():
    described = machine.describe_machine()
    assert set(described) == KEYS
    assert described["cpu_model"]
    assert 1 <= described["usable_cores"] <= described["logical_cores"] == os.cpu_count()
    assert len(described["load_average_at_start"]) == 3
    assert described["memory_gb"] is None or described["memory_gb"] > 0
    assert set(described["versions"]) == set(machine.FRAMEWORK_PACKAGES)


def test_a_missing_package_has_no_version():
    assert machine.package_version("no-such-package-streetcar") is None
    assert machine.package_version("numpy")


def test_the_cpu_model_falls_back_when_proc_cpuinfo_is_missing(monkeypatch):
    def unreadable(self, *args, **kwargs):
        raise OSError("no /proc here")

    monkeypatch.setattr(machine.Path, "read_text", unreadable)
    monkeypatch.setattr(machine.platform, "processor", lambda: "")
    monkeypatch.setattr(machine.platform, "machine", lambda: "x86_64")
    assert machine.cpu_model() == "x86_64"
