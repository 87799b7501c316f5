"""MAC counts (issue #21): the one counter, ``inloop.models.costs.count_macs`` (``FlopCounterMode``),
behind ``inloop.bench``'s costs and the models' ``macs_per_pixel``, gives the counts the earlier
forward hooks and NL-ConvLSTM's hand count gave (both since removed).

The numbers below were recorded with the hook-based harness (src/inloop/bench.py at 9ff6f27:
forward hooks on Conv2d / Linear modules on a 64x64 probe, scaled to the padded frame, plus
NL-ConvLSTM's analytic count of its non-local matmuls, ``NLConvLSTM.nonlocal_macs``) before the
counting moved to ``torch.utils.flop_counter.FlopCounterMode``. They match exactly: FlopCounterMode
counts 2 FLOPs per multiply-accumulate (halved in ``count_macs``), counts a convolution as
output elements x k x k x C_in / groups like the hooks (bias excluded by both), and counts the
batched matmuls of the non-local warp (stage-1 block distances, stage-2 pixel distances, the
weighted sum of the states) as the analytic count did. What neither counts: pooling, BN,
activations, interpolation, ``grid_sample``, the squared norms of eq. (7) and other elementwise
operations; nothing had to be added by hand. The one difference is float rounding of the old path
(per pixel x area), below 1e-15 relative. The numbers in docs/benchmarks/*.json are checked too.
tests/test_nlconvlstm.py checks NL-ConvLSTM's non-local matmuls against the hand formulas.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pytest

from inloop import bench
from inloop.bench.costs import _build
from inloop.models import build_model, count_parameters

REPO = Path(__file__).resolve().parents[1]
DEMO_SPILF = {"channels": 16, "grad_blocks": 1, "pixel_units": 2, "dru_layers": 3, "growth": 8, "fusion_units": 1,
              "reduction": 4}
DEMO_NL = {"mode": "nlconvlstm", "frames": 7, "channels": 16, "pool": 4, "topk": 4, "temperature": 1.0,
           "exact": False, "enc_layers": 3, "dec_layers": 3}

# (arch, kwargs, params, model_costs macs_per_pixel, MACs per 416x240 frame, MACs per 64x48 frame):
# every network of MODELS_DEFAULT at its paper size (constructor defaults) and at params.yaml's demo widths.
RECORDED = [
    ("glfusion", {}, 32605750, 1927590.75, 192450660480, 5921558784),
    ("spilf", {}, 1894130, 1884417.5, 188140243200, 5788930560),
    ("nlconvlstm", {}, 747521, 3459538.707692308, 345400344576, 11979990400),
    ("arcnn", {}, 106561, 106448.0, 10627768320, 327008256),
    ("dncnn", {}, 556097, 554112.0, 55322542080, 1702232064),
    ("vrcnn", {}, 54673, 54512.0, 5442478080, 167460864),
    ("glfusion", {"channels": 8}, 511549, 30534.0234375, 3048516900, 93800520),
    ("spilf", DEMO_SPILF, 27358, 26688.09375, 2664539280, 81985824),
    ("nlconvlstm", DEMO_NL, 47105, 241856.0, 24146903040, 631504896),
]
# NL-ConvLSTM's exact warp and the ablation columns of its Table 2 (MACs per 416x240 and per 64x48 frame).
RECORDED_NL = [
    ({"exact": True}, 11778883584000, 19970654208),
    ({"mode": "meconvlstm"}, 362657218560, 11158683648),
    ({"mode": "convlstm"}, 295718092800, 9099018240),
    ({"mode": "single"}, 15245967360, 469106688),
]
SIZES = ("416x240", "64x48")


@pytest.mark.parametrize("arch,kwargs,params,mpp,macs_416,macs_64", RECORDED,
                         ids=[f"{r[0]}-{'paper' if not r[1] else 'demo'}" for r in RECORDED])
def test_macs_equal_the_hook_counts(arch, kwargs, params, mpp, macs_416, macs_64):
    c = bench.model_costs(arch, kwargs, SIZES)
    assert c["params"] == params
    assert c["macs_per_pixel"] == pytest.approx(mpp, rel=1e-12)
    assert c["flops_per_pixel"] == 2 * c["macs_per_pixel"]
    for row, macs in zip(c["per_size"], (macs_416, macs_64)):
        h, w = bench.parse_size(row["size"])
        assert row["gmacs_per_frame"] == pytest.approx(macs / 1e9, rel=1e-12)
        assert row["macs_per_pixel"] == pytest.approx(macs / (h * w), rel=1e-12)
    net = build_model(arch, **kwargs)
    assert bench.frame_macs(net, (240, 416)) == pytest.approx(macs_416, rel=1e-12)
    assert bench.frame_macs(net, (48, 64)) == pytest.approx(macs_64, rel=1e-12)


@pytest.mark.parametrize("kwargs,macs_416,macs_64", RECORDED_NL, ids=lambda v: str(v))
def test_nlconvlstm_variants_equal_the_hook_counts(kwargs, macs_416, macs_64):
    net = build_model("nlconvlstm", **kwargs)
    assert bench.frame_macs(net, (240, 416)) == pytest.approx(macs_416, rel=1e-12)
    assert bench.frame_macs(net, (48, 64)) == pytest.approx(macs_64, rel=1e-12)
    assert net.macs_per_pixel((48, 64)) * 48 * 64 == pytest.approx(macs_64, rel=1e-12)
    assert net.macs_per_pixel((240, 416)) * 240 * 416 == pytest.approx(macs_416, rel=1e-12)


def test_count_leaves_the_model_as_it_was():
    net = build_model("nlconvlstm", **DEMO_NL)
    net.train()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    assert bench.count_macs(net, (1, 7, 1, 16, 16)) > 0
    assert net.training and all(v.equal(state[k]) and not v.is_meta for k, v in net.state_dict().items())


@lru_cache(maxsize=None)
def _frame_macs(arch: str, kwargs_json: str, hw: tuple[int, int]) -> float:
    return bench.frame_macs(_net(arch, kwargs_json), hw)


@lru_cache(maxsize=None)
def _net(arch: str, kwargs_json: str):
    return _build(arch, json.loads(kwargs_json))


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "docs" / "benchmarks").glob("cpu*.json")))
def test_docs_benchmark_numbers_stay_consistent(name):
    """Every MAC-derived number in the committed results: costs rows, inference GFLOP/frame, training TFLOP/step."""
    res = json.loads((REPO / "docs" / "benchmarks" / name).read_text())
    checked = 0
    for c in res.get("costs", []):
        key = json.dumps(c["kwargs"], sort_keys=True)
        assert c["params"] == count_parameters(_net(c["arch"], key))
        for row in c["per_size"]:
            hw = bench.parse_size(row["size"])
            assert row["gmacs_per_frame"] == pytest.approx(_frame_macs(c["arch"], key, hw) / 1e9, rel=1e-9)
            checked += 1
    for r in res.get("inference", []):
        macs = _frame_macs(r["arch"], json.dumps(r["kwargs"], sort_keys=True), bench.parse_size(r["size"]))
        assert r["gflops_per_frame"] == pytest.approx(2 * macs / 1e9, rel=1e-9)
        checked += 1
    for r in res.get("training", []):
        macs = _frame_macs(r["arch"], json.dumps(r["kwargs"], sort_keys=True), (r["patch"], r["patch"]))
        assert r["model_tflop_per_step"] == pytest.approx(3 * 2 * macs * r["batch"] / 1e12, rel=1e-9)
        checked += 1
    assert checked > 0
