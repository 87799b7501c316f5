"""The benchmark harness (issue #8) on tiny sizes: every benchmark runs and writes its rows; no timing
is asserted (numbers depend on the machine and its load)."""

from __future__ import annotations

import json
import stat
import sys

import pytest
import torch

from inloop import bench
from inloop.cli import main
from inloop.models import build_model, count_parameters, macs_per_pixel

GLF = {"channels": 4, "hgf_depth": 2, "hlf_modules": 1}  # pad multiple 4
NL = {"channels": 4, "pool": 4, "frames": 3, "enc_layers": 1, "dec_layers": 1}
SPILF = {"channels": 8, "grad_blocks": 1, "pixel_units": 1, "dru_layers": 2, "growth": 4, "fusion_units": 1,
         "reduction": 4}


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _ok(rows):
    for r in rows:
        assert r["status"] == "ok", r
        assert r["ms_per_frame"] > 0 and r["repeats"] == 1
        assert r["mem_method"] == "rss_delta" and r["peak_mem_mb"] >= 0


@pytest.mark.parametrize("arch,kwargs", [("glfusion", GLF), ("nlconvlstm", NL)])
def test_inference_whole_and_tiled_go_through_apply_model(arch, kwargs, monkeypatch):
    import inloop.evaluation.enhance as enhance

    calls = []
    real = enhance.apply_model

    def spy(model, x, tile=None, overlap=64, multiple=16):
        calls.append((tuple(x.shape), tile, overlap, multiple))
        return real(model, x, tile, overlap, multiple)

    monkeypatch.setattr(enhance, "apply_model", spy)
    whole = bench.bench_inference(arch, kwargs, ["64x48"], "cpu", None, repeats=1, warmup=0)
    _ok(whole)
    assert whole[0]["mode"] == "whole" and whole[0]["tiles"] == 1 and whole[0]["size"] == "64x48"
    frames = kwargs.get("frames", 1)
    shape = (1, frames, 1, 48, 64) if frames > 1 else (1, 1, 48, 64)
    assert calls == [(shape, None, 64, build_model(arch, **kwargs).pad_multiple)]

    calls.clear()
    tiled = bench.bench_inference(arch, kwargs, ["64x48"], "cpu", 30, overlap=8, repeats=1, warmup=1)
    _ok(tiled)
    mult = build_model(arch, **kwargs).pad_multiple
    tile = -(-30 // mult) * mult  # rounded up to the network's multiple, as the evaluate stage needs
    assert tiled[0]["mode"] == f"tile{tile}" and tiled[0]["tile"] == tile and tiled[0]["overlap"] == 8
    assert tiled[0]["tiles"] == 4  # 64x48 in 32-pixel cores: 2 x 2
    assert calls == [(shape, tile, 8, mult)] * 2  # warm-up + one timed call, the configured tile path


def test_budget_and_memory_skips_are_recorded():
    rows = bench.bench_inference("glfusion", GLF, ["64x48", "2560x1600"], "cpu", None, repeats=1, warmup=0,
                                 max_seconds=1e-6)
    assert [r["status"] for r in rows] == ["skipped", "skipped"]
    assert all("--max-seconds" in r["reason"] for r in rows)
    exact = bench.bench_inference("nlconvlstm", {**NL, "exact": True}, ["1920x1080"], "cpu", None, repeats=1)
    assert exact[0]["status"] == "skipped" and "GiB" in exact[0]["reason"]


def test_costs_equal_the_model_counts():
    c = bench.model_costs("glfusion", GLF, ["64x48", "96x64"], probe=(32, 32))
    model = build_model("glfusion", **GLF)
    assert c["params"] == count_parameters(model) > 0
    assert c["macs_per_pixel"] == macs_per_pixel(model, 1, (32, 32)) > 0
    assert c["flops_per_pixel"] == 2 * c["macs_per_pixel"]
    assert [r["size"] for r in c["per_size"]] == ["64x48", "96x64"]
    assert c["per_size"][0]["gmacs_per_frame"] == pytest.approx(c["macs_per_pixel"] * 64 * 48 / 1e9)

    n = bench.model_costs("nlconvlstm", NL, ["64x48", "96x64"])
    nl = build_model("nlconvlstm", **NL)
    assert n["params"] == count_parameters(nl) > 0 and n["frames"] == 3
    for row, hw in zip(n["per_size"], [(48, 64), (64, 96)]):
        assert row["macs_per_pixel"] == pytest.approx(nl.macs_per_pixel(hw)) and row["macs_per_pixel"] > 0
    assert n["macs_per_pixel"] == n["per_size"][1]["macs_per_pixel"]  # the largest size


@pytest.mark.parametrize("arch,kwargs", [("glfusion", GLF), ("nlconvlstm", NL), ("spilf", SPILF)])
def test_training_steps(arch, kwargs, tmp_path):
    trace = tmp_path / "trace.json" if arch == "spilf" else None
    r = bench.bench_training(arch, kwargs, batch=2, patch=32, steps=2, warmup=1, device="cpu",
                             peak_tflops=1.0, profile_trace=trace, profile_steps=1)
    assert r["status"] == "ok", r
    assert r["steps"] == 2 and r["step_ms"] > 0 and r["samples_per_s"] > 0
    # each step draws its batch as training does (issue #28 item 9: a batch already on the device overstated MFU)
    assert r["data"].startswith("PatchSampler over an 8-bit store in host memory")
    model = build_model(arch, **kwargs)
    per_frame = bench.frame_macs(model, (32, 32))
    assert r["model_tflop_per_step"] == pytest.approx(3 * 2 * per_frame * 2 / 1e12)
    assert r["mfu"] == pytest.approx(r["tflops"] / 1.0)
    if trace is not None:  # SPiLF through its own GAN task, profiled
        assert trace.is_file() and r["profile"]["top_ops"]
        assert r["profile"]["trace"] == str(trace)


def test_codec_encodes_per_minute(city_yuv, tmp_path):
    c = bench.bench_codec(city_yuv, frames=2, qps=[37], configs=["ai"], filters=["off"], workdir=tmp_path)
    assert c["encodes"] == 1 and c["width"] == 128 and c["height"] == 96 and c["frames"] == 2
    assert c["encodes_per_min"] > 0 and c["rows"][0]["encode_s"] > 0


def test_encode_stage_efficiency_with_a_stand_in_snakemake(tmp_path):
    """The clone / run / count / efficiency plumbing, with a stand-in for snakemake that writes
    four bitstreams per `encodes` run (the real run is `inloop bench --encode-stage`)."""
    fake = tmp_path / "snakemake"
    fake.write_text(f"#!{sys.executable}\n" + (
        "import sys, pathlib\n"
        "assert sys.argv[3] in ('data', 'encodes') and sys.argv[4:] == ['--configfile', 'config/tiny.yaml']\n"
        "assert pathlib.Path('Snakefile').is_file()\n"
        "if sys.argv[3] == 'encodes':\n"
        "    d = pathlib.Path('results/encoded/x265/ai/off'); d.mkdir(parents=True, exist_ok=True)\n"
        "    assert not list(d.glob('*.bin'))\n"
        "    for q in (22, 27, 32, 37): (d / f'qp{q}.bin').write_bytes(b'x')\n"))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    e = bench.bench_encode_stage([1, 2], snakemake=str(fake), workdir=tmp_path)
    assert [r["cores"] for r in e["rows"]] == [1, 2] and all(r["encodes"] == 4 for r in e["rows"])
    assert e["rows"][0]["efficiency"] == pytest.approx(1.0)
    r2 = e["rows"][1]
    assert r2["efficiency"] == pytest.approx(e["rows"][0]["wall_s"] / (2 * r2["wall_s"]))
    assert len(e["commit"]) == 40 and e["clone"] is None and not list(tmp_path.glob("inloop-bench-stage-*"))


def test_cli_writes_json_and_markdown(tmp_path, capsys):
    out, md = tmp_path / "bench" / "quick.json", tmp_path / "benchmarks.md"
    assert main(["bench", "--quick", "--models", "glfusion", "--sizes", "64x48", "--train", "--device", "cpu",
                 "--out", str(out), "--markdown", str(md)]) == 0
    res = json.loads(out.read_text())
    assert res["settings"]["preset"] == "demo" and res["settings"]["tile"] == 32
    assert res["machine"]["torch"] == torch.__version__ and res["machine"]["cpu_count"] >= 1
    assert [r["mode"] for r in res["inference"]] == ["whole", "tile32"]
    assert all(r["status"] == "ok" for r in res["inference"] + res["training"])
    assert res["costs"][0]["params"] > 0 and res["training"][0]["batch"] == 2
    assert res["command"].startswith("inloop bench") and "--quick" in res["command"]
    text = md.read_text()
    assert "## Machine" in text and res["command"] in text
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
             if line.startswith("|")]
    assert any(row[:3] == ["glfusion", "64x48", "tile32"] and row[-1] == "ok" for row in cells)
    assert ["model", "size", "mode", "ms/frame"] == next(r for r in cells if r[:2] == ["model", "size"])[:4]
    assert "6738" in text and "15.65" in text  # the papers' figures to compare with
    assert "ms/frame" in capsys.readouterr().out
