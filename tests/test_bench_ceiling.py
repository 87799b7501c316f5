"""The machine's ceiling and the compute paths in `inloop bench` (issue #20), on tiny shapes: every
case runs and its numbers are consistent; no speed is asserted (it depends on the machine and its load)."""

from __future__ import annotations

import json

import pytest
import torch

from inloop.bench.ceiling import QUICK_CONV, attach_fractions, case_flops, measure_case, measure_ceiling
from inloop.bench.paths import VARIANTS, changes, compare_paths
from inloop.cli import main
from inloop.models.cpu_path import cpu_bf16, resolve
from test_bench import one_thread  # noqa: F401 - the autouse fixture: torch on one thread

GLF = {"channels": 4, "hgf_depth": 2, "hlf_modules": 1}


def test_quick_ceiling_measures_gemm_and_conv_in_fp32_and_bf16():
    c = measure_ceiling("cpu", quick=True, repeats=1)
    cases = (("gemm", None), ("conv", "nchw"), ("conv", "channels_last"))
    assert [(r["kind"], r["dtype"], r["layout"]) for r in c["rows"]] == [
        (k, d, lay) for d in ("fp32", "bf16") for k, lay in cases]
    native = cpu_bf16()["native"]
    assert c["native_bf16"] == native and c["cpu_bf16"]["capability"] == torch.backends.cpu.get_cpu_capability()
    for r in c["rows"]:
        assert r["native"] == (True if r["dtype"] == "fp32" else native)
        assert r["tflops"] == pytest.approx(r["gflop_per_call"] / r["ms_best"])  # GFLOP / ms = TFLOP/s
        assert r["tflops_median"] <= r["tflops"] * (1 + 1e-9) and r["ms_best"] > 0
    full = [r for r in c["rows"] if not r["reduced"]]
    b, ch, s, n = QUICK_CONV["batch"], QUICK_CONV["channels"], QUICK_CONV["size"], QUICK_CONV["layers"]
    for r in full:  # the counted FLOPs against the hand formulas
        if r["kind"] == "conv":
            assert r["gflop_per_call"] * 1e9 == 2 * b * n * ch * ch * 9 * s * s
        else:
            assert r["gflop_per_call"] * 1e9 == 2 * 512 ** 3
    for kind in ("gemm", "conv"):
        for dtype in ("fp32", "bf16"):
            assert c["best"][kind][dtype] == max(r["tflops"] for r in c["rows"] if (r["kind"], r["dtype"]) == (
                kind, dtype))
    ratio = {r["change"]: r for r in c["ratios"]}
    assert set(ratio) == {"bf16 autocast (NCHW)", "channels_last in fp32", "channels_last in bf16",
                          "bf16 + channels_last"}
    bf = ratio["bf16 autocast (NCHW)"]
    assert bf["ratio"] == pytest.approx(bf["after_tflops"] / bf["before_tflops"])


def test_a_case_over_its_budget_runs_on_a_smaller_shape():
    r = measure_case("gemm", "fp32", torch.device("cpu"), 1024, repeats=1, max_seconds=1e-9)
    assert r["reduced"] and r["shape"] == "256x256 @ 256x256" and r["gflop_per_call"] == 2 * 256 ** 3 / 1e9
    c = measure_case("conv", "fp32", torch.device("cpu"), dict(QUICK_CONV, batch=2), repeats=1, max_seconds=1e-9)
    assert c["reduced"] and c["shape"].endswith("on 1x64x16x16")
    assert c["gflop_per_call"] == case_flops("conv", dict(QUICK_CONV, size=16)) / 1e9
    whole = measure_case("gemm", "fp32", torch.device("cpu"), 256, repeats=1, max_seconds=None)
    assert not whole["reduced"]


def test_fractions_of_the_ceiling_of_each_rows_precision():
    result = {"ceiling": {"best": {"conv": {"fp32": 0.1, "bf16": 0.4}, "gemm": {"fp32": 0.2, "bf16": 0.8}}},
              "inference": [{"status": "ok", "amp": "none", "tflops": 0.05},
                            {"status": "skipped", "amp": "none", "tflops": None}],
              "training": [{"status": "ok", "amp": "bf16", "tflops": 0.1}]}
    attach_fractions(result)
    ok, skipped = result["inference"]
    assert (ok["of_conv_ceiling"], ok["of_gemm_ceiling"], ok["ceiling_dtype"]) == (0.5, 0.25, "fp32")
    assert "of_conv_ceiling" not in skipped
    t = result["training"][0]
    assert (t["of_conv_ceiling"], t["of_gemm_ceiling"], t["ceiling_dtype"]) == (0.25, 0.125, "bf16")


def test_paths_time_every_variant_and_the_ratio_of_each_change():
    entry = {"name": "glfusion", "arch": "glfusion", "kwargs": GLF}
    p = compare_paths(entry, "64x48", "cpu", repeats=1, warmup=0, max_seconds=60,
                      train={"batch": 2, "patch": 32, "steps": 1, "warmup": 1}, compile=False)
    for kind in ("inference", "training"):
        chosen = resolve("cpu", "auto", "auto", inference=kind == "inference")
        assert p["chosen"][kind] == chosen.record()
        rows = p[kind]
        assert [(r["precision"], r["channels_last"]) for r in rows] == list(VARIANTS)
        assert all(r["status"] == "ok" for r in rows), rows
        assert [r["chosen"] for r in rows] == [(r["precision"], r["channels_last"]) == (
            chosen.precision, chosen.channels_last) for r in rows]
        by = {(r["precision"], r["channels_last"]): r for r in rows}
        ms = "ms_per_frame" if kind == "inference" else "step_ms"
        ch = {c["change"]: c for c in p[f"{kind}_changes"]}
        assert len(ch) == 4
        c = ch["bf16 autocast (NCHW)"]
        assert (c["before_ms"], c["after_ms"]) == (by[("fp32", False)][ms], by[("bf16", False)][ms])
        assert c["speedup"] == pytest.approx(c["before_ms"] / c["after_ms"])
        assert ch["channels_last in bf16"]["after_ms"] == by[("bf16", True)][ms]


def test_compile_pays_after_its_extra_warmup_over_the_time_it_saves():
    rows = [{"variant": "fp32 NCHW", "precision": "fp32", "channels_last": False, "compile": False, "chosen": True,
             "status": "ok", "ms_per_frame": 100.0, "warmup": 1, "warmup_s": 0.1},
            {"variant": "fp32 NCHW + torch.compile", "precision": "fp32", "channels_last": False, "compile": True,
             "chosen": False, "status": "ok", "ms_per_frame": 40.0, "warmup": 3, "warmup_s": 30.3}]
    (c,) = changes(rows)
    assert c["change"] == "torch.compile (chosen path)" and c["speedup"] == pytest.approx(2.5)
    # 30.3 s of warm-up instead of 3 x 0.1 s eager: 30 s extra, paid back at 0.06 s a call
    assert c["break_even_calls"] == pytest.approx(500.0) and c["compile_warmup_s"] == 30.3
    rows[1]["ms_per_frame"] = 120.0  # slower compiled: never pays
    assert changes(rows)[0]["break_even_calls"] is None


@pytest.mark.parametrize("amp", ["none", "bf16"])
def test_cli_writes_the_ceiling_the_paths_and_each_models_fraction(tmp_path, amp):
    """Both compute paths forced, whatever this CPU would pick (a CPU with native bf16 used to pick bf16 and fail
    the fp32 expectation, issue #30): each row's fraction is of the ceiling of its own precision."""
    out, md = tmp_path / "b.json", tmp_path / "b.md"
    assert main(["bench", "--quick", "--models", "glfusion", "--sizes", "64x48", "--tile", "0", "--train",
                 "--ceiling", "--paths", "--no-paths-compile", "--device", "cpu", "--threads", "1", "--amp", amp,
                 "--note", "a shared machine", "--out", str(out), "--markdown", str(md)]) == 0
    res = json.loads(out.read_text())
    assert res["notes"] == ["a shared machine"]
    best = res["ceiling"]["best"]
    dtype = "bf16" if amp == "bf16" else "fp32"
    for r in res["inference"] + res["training"]:
        assert r["status"] == "ok" and r["ceiling_dtype"] == dtype
        assert r["of_conv_ceiling"] == pytest.approx(r["tflops"] / best["conv"][dtype])
    path = {"inference": resolve("cpu", amp == "bf16", "auto", inference=True).record(),
            "training": resolve("cpu", amp == "bf16", "auto").record()}
    assert res["settings"]["compute_path"] == path
    assert [r["channels_last"] for r in res["inference"] + res["training"]] == [
        resolve("cpu", amp == "bf16", "auto", inference=True).channels_last,
        resolve("cpu", amp == "bf16", "auto").channels_last]
    assert res["machine"]["cpu_bf16"].startswith("native" if cpu_bf16()["native"] else "not native")
    assert [p["model"] for p in res["paths"]] == ["glfusion"] and len(res["paths"][0]["training"]) == 4
    text = md.read_text()
    assert "## Ceiling" in text and "## Compute paths" in text and "bf16 on the CPU" in text
    assert "Notes:\n\n- a shared machine\n" in text
    header = next(line for line in text.splitlines() if line.startswith("| model") and "| mode " in line)
    assert "of ceiling" in header
    quick = tmp_path / "q.json"  # --quick alone stays without them
    assert main(["bench", "--quick", "--models", "glfusion", "--sizes", "64x48", "--tile", "0", "--no-costs",
                 "--device", "cpu", "--out", str(quick)]) == 0
    assert not {"ceiling", "paths"} & set(json.loads(quick.read_text()))
