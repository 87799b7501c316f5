"""BD-rate / BD-PSNR: the VCEG-M33 test vector, pchip against an independent computation, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inloop.errors import InloopError
from inloop.evaluation.bdrate import METHODS, BDRateError, bd_metrics, bd_psnr, bd_rate

# VCEG-M33's example (rates in kbps, PSNR in dB).
A = [(90.33, 27.95), (181.03, 31.17), (332.99, 34.44), (547.79, 38.11)]
B = [(127.1719, 29.9286), (186.14, 32.4165), (307.2924, 34.7013), (481.5588, 37.4561)]


def test_vceg_m33_vector_cubic():
    assert bd_psnr(A, B, "cubic") == pytest.approx(0.800713, abs=1e-6)
    assert bd_rate(A, B, "cubic") == pytest.approx(-13.261773, abs=1e-6)
    assert bd_metrics(A, B) == {"method": "cubic", "bd_rate_pct": bd_rate(A, B), "bd_psnr_db": bd_psnr(A, B)}


def test_order_of_points_and_identity():
    assert bd_rate(A[::-1], B[::-1]) == pytest.approx(bd_rate(A, B), abs=1e-12)
    for m in METHODS:
        assert bd_rate(A, A, m) == pytest.approx(0.0, abs=1e-9)
        assert bd_psnr(A, A, m) == pytest.approx(0.0, abs=1e-9)
        # swapping anchor and test inverts the rate ratio and negates the PSNR delta
        r = bd_rate(A, B, m) / 100
        assert bd_rate(B, A, m) / 100 == pytest.approx(1 / (1 + r) - 1, abs=1e-9)
        assert bd_psnr(B, A, m) == pytest.approx(-bd_psnr(A, B, m), abs=1e-12)


def test_uniform_rate_scaling_is_exact():
    # A curve shifted by a constant factor in rate: every method must give exactly that factor.
    C = [(r * 0.8, p) for r, p in A]
    for m in METHODS:
        assert bd_rate(A, C, m) == pytest.approx(-20.0, abs=1e-9)


# ---- an independent PCHIP (Fritsch-Carlson / MATLAB pchip slopes), sampled and integrated by trapezoid


def _pchip_slopes(x, y):
    h = np.diff(x)
    d = np.diff(y) / h
    n = len(x)
    m = np.zeros(n)
    for k in range(1, n - 1):
        if d[k - 1] * d[k] > 0:
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            m[k] = (w1 + w2) / (w1 / d[k - 1] + w2 / d[k])

    def end(h0, h1, d0, d1):
        s = ((2 * h0 + h1) * d0 - h0 * d1) / (h0 + h1)
        if np.sign(s) != np.sign(d0):
            return 0.0
        if np.sign(d0) != np.sign(d1) and abs(s) > abs(3 * d0):
            return 3 * d0
        return s

    m[0] = end(h[0], h[1], d[0], d[1])
    m[-1] = end(h[-1], h[-2], d[-1], d[-2])
    return m


def _pchip_eval(x, y, m, t):
    k = np.clip(np.searchsorted(x, t, side="right") - 1, 0, len(x) - 2)
    h = x[k + 1] - x[k]
    s = (t - x[k]) / h
    h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
    h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
    return h00 * y[k] + h10 * h * m[k] + h01 * y[k + 1] + h11 * h * m[k + 1]


def _mean_pchip(x, y, lo, hi, n=200_001):
    x, y = np.asarray(x, float), np.asarray(y, float)
    t = np.linspace(lo, hi, n)
    v = _pchip_eval(x, y, _pchip_slopes(x, y), t)
    return np.trapezoid(v, t) / (hi - lo)


def _hand_bd(anchor, test):
    ra, pa = np.array(anchor).T
    rt, pt = np.array(test).T
    lo, hi = max(pa.min(), pt.min()), min(pa.max(), pt.max())
    rate = (10 ** (_mean_pchip(pt, np.log10(rt), lo, hi) - _mean_pchip(pa, np.log10(ra), lo, hi)) - 1) * 100
    la, lt = np.log10(ra), np.log10(rt)
    lo, hi = max(la.min(), lt.min()), min(la.max(), lt.max())
    psnr = _mean_pchip(lt, pt, lo, hi) - _mean_pchip(la, pa, lo, hi)
    return rate, psnr


def test_pchip_against_independent_hand_computation():
    rate, psnr = _hand_bd(A, B)
    print(f"pchip: bd_rate={bd_rate(A, B, 'pchip'):.6f} % (hand {rate:.6f}), "
          f"bd_psnr={bd_psnr(A, B, 'pchip'):.6f} dB (hand {psnr:.6f})")
    assert bd_rate(A, B, "pchip") == pytest.approx(rate, abs=1e-6)
    assert bd_psnr(A, B, "pchip") == pytest.approx(psnr, abs=1e-7)
    # pchip and cubic agree closely on this smooth curve but are not the same method
    assert abs(bd_rate(A, B, "pchip") - bd_rate(A, B, "cubic")) < 0.2
    assert bd_rate(A, B, "pchip") != bd_rate(A, B, "cubic")


def test_more_than_four_points_and_akima():
    A5 = A + [(800.0, 40.0)]
    B5 = B + [(700.0, 39.5)]
    for m in METHODS:
        assert math.isfinite(bd_rate(A5, B5, m)) and bd_rate(A5, B5, m) < 0
    rate, psnr = _hand_bd(A5, B5)
    assert bd_rate(A5, B5, "pchip") == pytest.approx(rate, abs=1e-6)
    assert bd_psnr(A5, B5, "pchip") == pytest.approx(psnr, abs=1e-7)


@pytest.mark.parametrize("anchor,test,match", [
    (A[:3], B, "anchor: 3 RD point"),
    (A, B[:2], "test: 2 RD point"),
    (A, [(127.17, 29.9), (186.1, 32.4), (307.3, 31.0), (481.6, 37.5)], "test: RD curve is not monotonic"),
    (A, [(127.17, 29.9), (186.1, 32.4), (307.3, 32.4), (481.6, 37.5)], "not monotonic"),
    (A, [(1000, 40), (2000, 42), (3000, 43), (4000, 44)], "do not overlap"),
    (A, [(1e5, 20), (2e5, 22), (3e5, 24), (4e5, 26)], "do not overlap"),
    (A, [(0, 29.9), (186.1, 32.4), (307.3, 34.7), (481.6, 37.5)], "rates must be positive"),
    (A, [(100, float("nan")), (186.1, 32.4), (307.3, 34.7), (481.6, 37.5)], "non-finite"),
    (A, [(186.1, 29.9), (186.1, 32.4), (307.3, 34.7), (481.6, 37.5)], "share the rate"),
    (A, [(1, 2, 3)] * 4 + [("x",)], "pairs"),
])
def test_errors(anchor, test, match):
    with pytest.raises(BDRateError, match=match):
        bd_rate(anchor, test)
    with pytest.raises(BDRateError, match=match):
        bd_psnr(anchor, test, "pchip")


def test_rate_overlap_checked_for_bd_psnr():
    # Overlap in PSNR but not in rate: BD-rate works, BD-PSNR refuses.
    far = [(r * 100, p) for r, p in A]
    assert bd_rate(A, far) == pytest.approx(9900.0, rel=1e-9)
    with pytest.raises(BDRateError, match="do not overlap in log10"):
        bd_psnr(A, far)


def test_unknown_method_is_an_inloop_error():
    with pytest.raises(InloopError, match="unknown BD interpolation method 'spline'"):
        bd_rate(A, B, "spline")
