"""`inloop bench --onnx` (issue #20): onnxruntime's and PyTorch's ms per frame side by side, on tiny
sizes; no timing is asserted (numbers depend on the machine and its load)."""

from __future__ import annotations

import json

import pytest

from inloop import bench
from inloop.cli import main
from inloop.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors run fastest on one thread


def test_cli_reports_onnxruntime_and_pytorch_ms(tmp_path, capsys):
    out, md = tmp_path / "bench.json", tmp_path / "benchmarks.md"
    assert main(["bench", "--quick", "--models", "glfusion", "--sizes", "64x48", "72x40", "--onnx", "--no-costs",
                 "--no-infer", "--device", "cpu", "--threads", "1", "--out", str(out), "--markdown", str(md)]) == 0
    rows = json.loads(out.read_text())["onnx"]
    assert [r["size"] for r in rows] == ["64x48", "72x40"]  # one export, two frame sizes
    for r in rows:
        assert r["status"] == "ok", r
        assert r["torch_ms_per_frame"] > 0 and r["onnxruntime_ms_per_frame"] > 0 and r["repeats"] == 1
        assert r["speedup"] == pytest.approx(r["torch_ms_per_frame"] / r["onnxruntime_ms_per_frame"])
        assert r["device"] == "cpu" and r["provider"] == "CPUExecutionProvider" and r["threads"] == 1
        assert r["max_abs_diff"] < 1e-5 and r["export_s"] > 0
    assert rows[0]["export_s"] == rows[1]["export_s"]
    printed = capsys.readouterr().out
    assert "onnx glfusion" in printed and "PyTorch" in printed and "onnxruntime" in printed
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in md.read_text().splitlines()
             if line.startswith("| glfusion")]
    assert [c[:2] for c in cells] == [["glfusion", "64x48"], ["glfusion", "72x40"]]
    assert all(c[-1] == "ok" and float(c[4]) > 0 and float(c[5]) > 0 for c in cells)  # PyTorch ms, onnxruntime ms


def test_export_memory_plan_counts_the_warp_in_one_chunk():
    """The exported NL-ConvLSTM warps all blocks at once: its plan at 1080p is above the chunked forward's;
    the other networks have no plan (as in bench_inference)."""
    nl = build_model("nlconvlstm")
    assert bench.export_memory_estimate(nl, (1080, 1920)) > bench.memory_estimate(nl, (1080, 1920)) > 0
    assert bench.export_memory_estimate(nl, (48, 64)) == bench.memory_estimate(nl, (48, 64))  # one chunk anyway
    assert bench.export_memory_estimate(build_model("glfusion"), (1080, 1920)) is None
