"""The import rules docs/architecture.md states, checked on every package file's imports.

    python -m pytest docs/test_architecture.py -q

Each package sits on a floor and its code imports only packages of lower
floors (tests are exempt: a test may drive anything).  The two framework
packages import neither each other nor the bridge, nor the other
framework's libraries; the one exception is the thin `python -m
lightning_impl.convert` entry point, which calls the bridge.  Packages that
do not exist yet (or any more) are skipped, so the rules hold on every branch.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The floors of docs/architecture.md, lowest first; a package imports only packages of lower floors.
FLOORS = {"configs": 0, "data": 1, "experiment": 2, "keras_impl": 3, "lightning_impl": 3, "bridge": 4,
          "parity_tests": 5, "reports": 5, "benchmarks": 5, "examples": 5, "docs": 5, "notebooks": 5}
KERAS_LIBRARIES = {"keras", "tensorflow", "tf_keras"}
TORCH_LIBRARIES = {"torch", "lightning", "pytorch_lightning", "torchmetrics"}
# Libraries each package's code must never import (framework-neutral floors import neither framework).
FORBIDDEN_LIBRARIES = {"configs": KERAS_LIBRARIES | TORCH_LIBRARIES, "data": KERAS_LIBRARIES | TORCH_LIBRARIES,
                       "experiment": KERAS_LIBRARIES | TORCH_LIBRARIES, "keras_impl": TORCH_LIBRARIES,
                       "lightning_impl": KERAS_LIBRARIES}
THIN_CONVERT_ENTRY = "lightning_impl/convert.py"


def is_test_file(path: Path) -> bool:
    return "tests" in path.parts or path.name.startswith("test_") or path.name == "conftest.py"


def package_files(package: str, root: Path = ROOT) -> list[Path]:
    return sorted(path for path in (root / package).rglob("*.py") if not is_test_file(path.relative_to(root)))


def imported_roots(path: Path) -> set[str]:
    """The top-level names a file imports anywhere (inside functions too: a lazy import is still an import)."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def existing_packages() -> list[str]:
    return [package for package in FLOORS if (ROOT / package).is_dir()]


def allowed_exceptions(relative: str, root: Path = ROOT) -> set[str]:
    """What the thin convert entry point may import beyond its floor: the bridge, once it exists.

    Before the bridge package exists, convert itself still holds the Keras side of the conversion.
    """
    if relative != THIN_CONVERT_ENTRY:
        return set()
    return {"bridge"} if (root / "bridge").is_dir() else {"keras_impl"} | KERAS_LIBRARIES


def violations(package: str, root: Path = ROOT) -> list[str]:
    found = []
    for path in package_files(package, root):
        relative = path.relative_to(root).as_posix()
        for name in sorted(imported_roots(path) - allowed_exceptions(relative, root)):
            if name in FLOORS and name != package and FLOORS[name] >= FLOORS[package]:
                found.append(f"{relative} imports {name} (floor {FLOORS[name]} >= {package}'s {FLOORS[package]})")
            elif name in FORBIDDEN_LIBRARIES.get(package, set()):
                found.append(f"{relative} imports the library {name}")
    return found


@pytest.mark.parametrize("package", [package for package in existing_packages() if FLOORS[package] < 5])
def test_a_package_imports_only_lower_floors(package):
    assert violations(package) == []


def test_the_tools_do_not_import_the_test_folder():
    importers = [path.relative_to(ROOT).as_posix() for package in ("reports", "benchmarks", "examples")
                 if (ROOT / package).is_dir() for path in package_files(package)
                 if "parity_tests" in imported_roots(path)]
    assert importers == []


def test_the_checker_sees_a_broken_rule(tmp_path):
    """A lazy cross-framework import is reported, a test file's is not, and convert's exception is convert's only."""
    (tmp_path / "keras_impl" / "tests").mkdir(parents=True)
    (tmp_path / "keras_impl" / "leak.py").write_text("def f():\n    from lightning_impl import model\n"
                                                     "    import torch\n")
    (tmp_path / "keras_impl" / "tests" / "test_ok.py").write_text("import lightning_impl\n")
    (tmp_path / "lightning_impl").mkdir()
    (tmp_path / "lightning_impl" / "convert.py").write_text("from bridge.convert import main\n")
    (tmp_path / "lightning_impl" / "score.py").write_text("import bridge\n")
    (tmp_path / "bridge").mkdir()
    assert violations("keras_impl", tmp_path) == [
        "keras_impl/leak.py imports lightning_impl (floor 3 >= keras_impl's 3)",
        "keras_impl/leak.py imports the library torch"]
    assert violations("lightning_impl", tmp_path) == ["lightning_impl/score.py imports bridge (floor 4 >= "
                                                      "lightning_impl's 3)"]
