"""Reliability, round two (issue #27): each probe of the issue reproduced, and what it gets now
(docs/reliability.md lists each fault with the test here that tries it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from inloop.models.io import ModelFileError, torch_load

REPO = Path(__file__).resolve().parents[1]


class _Payload:
    """A pickle that runs a shell command when loaded (the issue's probe: ``__reduce__`` -> os.system)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def _evil_model(path: Path, marker: Path) -> Path:
    torch.save({"name": "glfusion", "kwargs": {}, "state_dict": {}, "x": _Payload(marker)}, path)
    assert not marker.exists()
    return path


def test_a_pickle_payload_in_a_model_file_runs_nothing(tmp_path):
    """Item 1: torch.load(weights_only=False) ran the payload; now the restricted unpickler refuses the file
    with one line naming it, and the file the payload would create is absent."""
    marker = tmp_path / "PWNED"
    evil = _evil_model(tmp_path / "model.pt", marker)
    with pytest.raises(ModelFileError, match=r"model\.pt: refused: .*posix\.system.*nothing from it was run"):
        torch_load(evil, "model file")
    assert not marker.exists()


def test_a_pickle_payload_through_the_cli_runs_nothing(tmp_path):
    """The same file handed to a sub-command a user runs on a model from a colleague (``inloop export``):
    exit 2, one line, nothing run."""
    marker = tmp_path / "PWNED"
    evil = _evil_model(tmp_path / "model.pt", marker)
    proc = subprocess.run([sys.executable, "-m", "inloop.cli", "export", str(evil), "--out", str(tmp_path / "x")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert f"{evil}: refused" in proc.stderr
    assert not marker.exists()


def test_a_checkpoint_with_a_payload_is_refused_too(tmp_path):
    marker = tmp_path / "PWNED"
    ck = tmp_path / "qp37.ckpt"
    torch.save({"step": 3, "sampler": _Payload(marker)}, ck)
    with pytest.raises(ModelFileError, match="checkpoint holds code"):
        torch_load(ck, "checkpoint")
    assert not marker.exists()
