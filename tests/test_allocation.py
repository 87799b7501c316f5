"""Rate allocation by integer linear programming (SPiLF, paper 001, section 2.3; issue #6).

Acceptance: the ILP allocation meets each bit budget and is no worse than the
best single QP for all images, on real x265 encodes of real footage; and it is
the true optimum (brute force over every combination).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from inloop.codecs import EncodeJob, get_codec
from inloop.evaluation.allocation import AllocationError, allocate, allocate_rates, budget_bits
from inloop.psnr import mse
from inloop.yuv import Frame, YuvFormat, YuvReader, write_yuv

QPS = (22, 27, 32, 37, 42, 47)


def brute_force(bits: np.ndarray, dist: np.ndarray, budget: float) -> tuple[float, tuple[int, ...] | None]:
    """Least total distortion over every combination of one available candidate per image."""
    best, arg = math.inf, None
    for combo in itertools.product(range(bits.shape[1]), repeat=bits.shape[0]):
        b = sum(bits[i, j] for i, j in enumerate(combo))
        d = sum(dist[i, j] for i, j in enumerate(combo))
        if not math.isnan(b + d) and b <= budget and d < best:
            best, arg = d, combo
    return best, arg


def test_hand_checkable_case():
    # Two images, two QPs: 10 bits (low QP) or 4 bits (high QP) each; a budget of 14 bits allows one
    # image at the low QP. Image 1 loses 4 at the high QP, image 2 loses 8: spend the bits on image 2.
    bits = [[10, 4], [10, 4]]
    dist = [[1, 5], [1, 9]]
    a = allocate(bits, dist, 14)
    assert a.choice.tolist() == [1, 0] and a.bits == 14 and a.distortion == 6
    assert allocate(bits, dist, 20).choice.tolist() == [0, 0]  # enough for both
    assert allocate(bits, dist, 13.9).choice.tolist() == [1, 1]  # 14 bits no longer fit


def test_equals_brute_force_synthetic():
    rng = np.random.default_rng(0)
    n, m = 4, 4
    for trial in range(12):
        # Rate falls and distortion rises with the QP index, as for a real codec, with noise.
        bits = np.sort(rng.integers(100, 2000, (n, m)), axis=1)[:, ::-1].astype(float)
        dist = np.sort(rng.uniform(1, 100, (n, m)), axis=1)
        if trial % 2:
            bits[rng.integers(n), rng.integers(m)] = np.nan  # a candidate not available
        lo = np.nanmin(bits, axis=1).sum()
        hi = np.nanmax(bits, axis=1).sum()
        for budget in np.linspace(lo, hi, 7):
            a = allocate(bits, dist, budget)
            best, _ = brute_force(bits, dist, budget)
            assert a.bits <= budget
            assert not np.isnan(bits[np.arange(n), a.choice]).any()
            assert a.distortion == pytest.approx(best, rel=1e-12)


def test_infeasible_budget_names_target_and_minimum():
    bits = [[800, 400], [1600, 600]]
    dist = [[1, 2], [1, 2]]
    pixels = [64 * 64, 128 * 64]  # 12288 pixels; cheapest total 1000 bits = 0.0814 bpp
    with pytest.raises(AllocationError, match=r"target 0\.075 bpp .* minimum achievable rate is 0\.0813802 bpp"):
        allocate(bits, dist, budget_bits(0.075, pixels), pixels)
    assert allocate(bits, dist, budget_bits(0.0814, pixels), pixels).choice.tolist() == [1, 1]
    with pytest.raises(AllocationError, match="no candidate"):
        allocate([[np.nan, 1], [np.nan, np.nan]], [[1, 1], [1, 1]], 10)


def test_allocate_rates_distortion_measures():
    """The table helper: pixel weighting, 1 - MS-SSIM, PSNR input, pooled and weighted aggregates."""
    rng = np.random.default_rng(1)
    sizes = {"a": 64 * 64, "b": 128 * 96, "c": 96 * 64}
    rows = []
    for img, px in sizes.items():
        for k, qp in enumerate(QPS[:4]):
            rows.append({"image": img, "qp": qp, "pixels": px, "bits": int(px * (1.0 - 0.2 * k) * rng.uniform(0.5, 1)),
                         "psnr": 40 - 3 * k + rng.uniform(-1, 1), "ms_ssim": 0.99 - 0.02 * k * rng.uniform(0.5, 1.5),
                         "lpips": 0.05 + 0.05 * k * rng.uniform(0.5, 1.5)})
    imgs, total = list(sizes), sum(sizes.values())
    px = np.array([sizes[i] for i in imgs], float)
    get = lambda key: np.array([[next(r[key] for r in rows if r["image"] == i and r["qp"] == q) for q in QPS[:4]]
                                for i in imgs], float)
    bits, psnr, ms, lp = get("bits"), get("psnr"), get("ms_ssim"), get("lpips")
    mse_ = 255.0 ** 2 / 10 ** (psnr / 10)
    cases = {("mse", True): mse_ * px[:, None], ("mse", False): mse_,
             ("ms_ssim", True): (1 - ms) * px[:, None], ("lpips", True): lp * px[:, None]}
    targets = [bits.min(axis=1).sum() / total * f for f in (1.0, 1.3, 1.8)]
    for (measure, weighted), d in cases.items():
        for res in allocate_rates(rows, targets, distortion=measure, weight_by_pixels=weighted):
            best, _ = brute_force(bits, d, budget_bits(res["target_bpp"], px))
            j = [QPS.index(res["qp"][i]) for i in imgs]
            assert res["distortion"]["total"] == pytest.approx(best, rel=1e-12)
            assert res["bpp"] <= res["target_bpp"] and res["bits"] == bits[range(3), j].sum()
            pooled = np.sum(mse_[range(3), j] * px) / total  # CLIC: PSNR of the pooled MSE
            assert res["psnr"] == pytest.approx(10 * math.log10(255 ** 2 / pooled), abs=1e-9)
            assert res["ms_ssim"] == pytest.approx(np.sum(ms[range(3), j] * px) / total)
            assert res["lpips"] == pytest.approx(np.sum(lp[range(3), j] * px) / total)
    with pytest.raises(AllocationError, match="infeasible"):
        allocate_rates(rows, [targets[0] * 0.99])


# --------------------------------------------------------------------------- real encodes

# Four differently sized crops of different frames of the real city clip (camera footage), one frame each.
CROPS = {  # name: (frame, top, left, height, width)
    "full0": (0, 0, 0, 96, 128),
    "mid2": (2, 16, 0, 64, 64),
    "top4": (4, 0, 64, 48, 64),
    "low1": (1, 32, 32, 64, 96),
}


@pytest.fixture(scope="module")
def real_encodes(codec_fixtures, tmp_path_factory):
    """x265 all-intra, filters off, at six QPs: per (image, QP) the bits of the bitstream file and the Y MSE."""
    d = tmp_path_factory.mktemp("alloc")
    clip = YuvReader(codec_fixtures / "city_128x96_5f.yuv", YuvFormat(128, 96))
    codec = get_codec("x265")
    rows, decoded = [], {}
    for name, (f, t, l, h, w) in CROPS.items():
        y, u, v = clip[f]
        img = Frame(y[t:t + h, l:l + w].copy(), u[t // 2:(t + h) // 2, l // 2:(l + w) // 2].copy(),
                    v[t // 2:(t + h) // 2, l // 2:(l + w) // 2].copy())
        fmt = YuvFormat(w, h)
        src = d / f"{name}_{w}x{h}_30fps_8bit_420.yuv"
        write_yuv(src, [img], fmt)
        for qp in QPS:
            out = d / "enc" / name / f"qp{qp}.bin"
            stats = codec.encode(EncodeJob(src, fmt, 1, qp, "ai", "off"), out)
            assert stats["bits"] == sum(f["bits"] for f in stats["frames_reported"])  # x265's own count
            dec = YuvReader(stats["decoded"], fmt)[0]
            rows.append({"image": name, "qp": qp, "bits": stats["bits"], "pixels": w * h, "mse": mse(img.y, dec.y)})
            decoded[name, qp] = (img.y, dec.y)
    return rows, decoded


def test_real_encodes_meet_budget_and_beat_single_qp(real_encodes):
    rows, decoded = real_encodes
    names = list(CROPS)
    get = lambda key: np.array([[next(r[key] for r in rows if r["image"] == i and r["qp"] == q) for q in QPS]
                                for i in names], float)
    bits, px = get("bits"), get("pixels")[:, 0]
    sse = get("mse") * px[:, None]  # the default distortion: MSE x pixels
    single_bits, single_sse = bits.sum(axis=0), sse.sum(axis=0)  # every image at the same QP
    # Budgets: each single-QP total and the midpoints between them, from the cheapest to the dearest.
    budgets = sorted(set(single_bits) | set((single_bits[:-1] + single_bits[1:]) / 2))
    gains = []
    for budget in budgets:
        a = allocate(bits, sse, budget, px)
        assert a.bits <= budget
        fits = single_bits <= budget
        assert fits.any()
        assert a.distortion <= single_sse[fits].min()
        best, _ = brute_force(bits, sse, budget)
        assert a.distortion == pytest.approx(best, rel=1e-12)
        gains.append(10 * math.log10(single_sse[fits].min() / a.distortion))

    # The table helper on the same measurements: achieved bpp within target, the same optimum, and its
    # pooled PSNR recomputed from the decoded images of the QPs it chose. (Half a bit above each budget:
    # the same integer budget, safe from the rounding of bits -> bpp -> bits.)
    total = px.sum()
    results = allocate_rates(rows, [(b + 0.5) / total for b in budgets])
    for res, budget in zip(results, budgets):
        assert res["bits"] <= budget and res["bpp"] <= res["target_bpp"]
        assert res["distortion"]["total"] == pytest.approx(allocate(bits, sse, budget).distortion, rel=1e-12)
        err = sum(np.sum((o.astype(np.int64) - r.astype(np.int64)) ** 2)
                  for o, r in (decoded[i, res["qp"][i]] for i in names))
        assert res["psnr"] == pytest.approx(10 * math.log10(255 ** 2 * total / err), abs=1e-9)
    print("\nbpp range %.3f..%.3f; ILP gain over the best single QP (dB of pooled PSNR): %s"
          % (budgets[0] / total, budgets[-1] / total, " ".join(f"{g:.3f}" for g in gains)))
    print("chosen QPs:", [tuple(r["qp"].values()) for r in results])
