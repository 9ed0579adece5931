"""Run files are readable by teammates: the umask's mode (0644 under umask 022), never mkstemp's 0600.

    python -m pytest lightning_impl/tests/test_run_file_permissions.py -q

Every file of a real (small, synthetic-data) Lightning run of experiment 5
is checked: result.json, history.csv, the PNGs, run_request.json,
vocabulary.json, every .ckpt, and what Lightning and TensorBoard write.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from lightning_impl.tests.helpers import make_request, make_synthetic_dataset
from lightning_impl.train import REQUEST_FILE, train


def test_every_run_file_is_0644_under_umask_022(tmp_path):
    previous = os.umask(0o022)
    try:
        result = train(make_request(tmp_path, "5", epochs=2, patience=1), dataset=make_synthetic_dataset(3000),
                       progress=lambda message: None, accelerator="cpu", devices=1)
    finally:
        os.umask(previous)
    run_dir = Path(result["run_dir"])
    modes = {str(path.relative_to(run_dir)): oct(stat.S_IMODE(path.stat().st_mode))
             for path in run_dir.rglob("*") if path.is_file()}
    for name in ("result.json", "history.csv", "curves.png", "confusion_matrix.png", REQUEST_FILE,
                 "vocabulary.json", "checkpoints/last.ckpt"):
        assert name in modes, name
    assert any(name.startswith("checkpoints/best-") and name.endswith(".ckpt") for name in modes)
    assert {name: mode for name, mode in modes.items() if mode != oct(0o644)} == {}
