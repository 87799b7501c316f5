"""benchmarks/gpu_check.py (issue #28): its no-GPU mode (a clear line, exit 3, nothing run) and its own logic
rehearsed on the CPU with small networks (training, resume, the checks it prints), so the script is known to run
on the day a GPU is there."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: the check runs for real there")
def test_without_a_gpu_it_says_so_and_runs_nothing(tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "out")], capture_output=True,
                       text=True, timeout=120, cwd=REPO)
    assert r.returncode == 3, r.stdout + r.stderr
    assert r.stdout.startswith("gpu_check: no GPU: ") and "Nothing was run (exit 3)" in r.stdout
    assert not (tmp_path / "out").exists()


def test_the_checks_rehearsed_on_the_cpu(tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--steps", "4", "--networks", "glfusion",
                        "nlconvlstm", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    result = json.loads((tmp_path / "gpu-check.json").read_text())
    assert [n["network"] for n in result["networks"]] == ["glfusion", "nlconvlstm"]
    for n in result["networks"]:  # resumed at step 2 of 4, bit-exact on the CPU, Adam's counters on the host
        assert n["ok"] and n["resumed"]["steps_this_run"] == 2 and n["resume_max_weight_difference"] == 0.0
        assert n["adam_step_devices_in_checkpoint"] == ["cpu"]
    assert "every check passed" in r.stdout
