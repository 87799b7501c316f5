"""Bjontegaard delta rate (BD-rate) and delta PSNR (BD-PSNR), with the interpolation named.

Sources
-------
* G. Bjontegaard, "Calculation of average PSNR differences between RD-curves",
  ITU-T SG16 Q.6 (VCEG) document VCEG-M33, Austin, April 2001: fit a cubic
  polynomial through the four (or more) points of each curve, log10(rate) as a
  function of PSNR for BD-rate and PSNR as a function of log10(rate) for
  BD-PSNR; integrate both fits over the interval where the curves overlap and
  divide the difference of the integrals by the interval's length.
  ``method="cubic"``.
* The JCT-VC / JVET common-test-condition Excel sheets (distributed with the
  HEVC CTC, JCTVC-L1100, and the VVC CTC documents; the piecewise model goes
  back to Bjontegaard's VCEG-AI11, "Improvements of the BD-PSNR model", 2008)
  replace the single cubic by a shape-preserving piecewise cubic Hermite
  interpolation of the sorted points; ``method="pchip"`` does this with
  :class:`scipy.interpolate.PchipInterpolator` (the Fritsch-Carlson /
  Fritsch-Butland monotone slopes also used by MATLAB's ``pchip``), integrated
  exactly over the overlap. This is how the widely used ``bjontegaard``
  package reproduces the CTC sheet.
* ``method="akima"``: Akima's 1970 sub-spline (:class:`scipy.interpolate.Akima1DInterpolator`),
  offered by some tools as an alternative; not a standard, report it by name.

Conventions (docs/design.md): rates in kbps (any positive unit works, the
result is a ratio), PSNR in dB; BD-rate in percent, negative = bit saving of
``test`` against ``anchor``; BD-PSNR in dB, positive = ``test`` is better.

Inputs are checked, never silently integrated: fewer than four points, a
non-positive or non-finite value, a curve whose PSNR does not strictly
increase with rate (not monotonic), or two curves whose quality (BD-rate) or
rate (BD-PSNR) ranges do not overlap raise :class:`BDRateError` with a message
that names the curve and the offending points.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from ..errors import InloopError

METHODS = ("cubic", "pchip", "akima")
MIN_POINTS = 4

Point = tuple[float, float]


class BDRateError(InloopError, ValueError):
    """RD points that cannot give a meaningful Bjontegaard delta (too few, not monotonic, no overlap)."""


def _curve(points: Iterable[Sequence[float]], name: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate one RD curve; return (rate, psnr) sorted by rate."""
    try:
        arr = np.asarray([(float(p[0]), float(p[1])) for p in points], dtype=np.float64)
    except (TypeError, ValueError, IndexError):
        raise BDRateError(f"{name}: expected a sequence of (kbps, psnr) pairs") from None
    if arr.ndim != 2 or len(arr) < MIN_POINTS:
        raise BDRateError(f"{name}: {len(arr)} RD point(s); Bjontegaard needs at least {MIN_POINTS}")
    if not np.all(np.isfinite(arr)):
        raise BDRateError(f"{name}: non-finite rate or PSNR in {arr.tolist()}")
    if np.any(arr[:, 0] <= 0):
        raise BDRateError(f"{name}: rates must be positive, got {arr[:, 0].tolist()}")
    arr = arr[np.argsort(arr[:, 0], kind="stable")]
    rate, psnr = arr[:, 0], arr[:, 1]
    if np.any(np.diff(rate) <= 0):
        raise BDRateError(f"{name}: two points share the rate {rate[np.argmin(np.diff(rate))]:g}")
    if np.any(np.diff(psnr) <= 0):
        bad = [(float(rate[i]), float(psnr[i]), float(rate[i + 1]), float(psnr[i + 1]))
               for i in np.nonzero(np.diff(psnr) <= 0)[0]]
        raise BDRateError(
            f"{name}: RD curve is not monotonic (PSNR must rise strictly with rate); "
            + "; ".join(f"{r0:g} kbps -> {p0:g} dB then {r1:g} kbps -> {p1:g} dB" for r0, p0, r1, p1 in bad)
        )
    return rate, psnr


def _overlap(a: np.ndarray, b: np.ndarray, what: str) -> tuple[float, float]:
    lo, hi = max(a.min(), b.min()), min(a.max(), b.max())
    if not hi > lo:
        raise BDRateError(
            f"the curves do not overlap in {what}: anchor spans [{a.min():g}, {a.max():g}], "
            f"test spans [{b.min():g}, {b.max():g}]"
        )
    return float(lo), float(hi)


def _mean_over(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str) -> float:
    """Mean of the interpolant of y(x) over [lo, hi] (x strictly increasing)."""
    if method == "cubic":
        # VCEG-M33: least-squares cubic through all points (exact for four),
        # polyfit / polyint as in the reference MATLAB/Python bjontegaard code.
        integ = np.polyint(np.polyfit(x, y, 3))
        return float((np.polyval(integ, hi) - np.polyval(integ, lo)) / (hi - lo))
    if method == "pchip":
        from scipy.interpolate import PchipInterpolator

        f = PchipInterpolator(x, y, extrapolate=False)
    elif method == "akima":
        from scipy.interpolate import Akima1DInterpolator

        f = Akima1DInterpolator(x, y)
    else:
        raise BDRateError(f"unknown BD interpolation method {method!r}; expected one of {', '.join(METHODS)}")
    return float(f.integrate(lo, hi) / (hi - lo))


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise BDRateError(f"unknown BD interpolation method {method!r}; expected one of {', '.join(METHODS)}")


def bd_rate(anchor: Iterable[Sequence[float]], test: Iterable[Sequence[float]], method: str = "cubic") -> float:
    """Average rate difference of ``test`` against ``anchor`` at equal PSNR, in percent.

    log10(rate) is interpolated as a function of PSNR for each curve (``method``:
    ``"cubic"`` = VCEG-M33, ``"pchip"`` = JCT-VC/JVET CTC sheet, ``"akima"``),
    both are integrated over the overlapping PSNR interval, and the mean
    difference ``d`` of log10 rates gives ``(10**d - 1) * 100``. Negative means
    ``test`` needs fewer bits.
    """
    _check_method(method)
    ra, pa = _curve(anchor, "anchor")
    rt, pt = _curve(test, "test")
    lo, hi = _overlap(pa, pt, "PSNR")
    ma = _mean_over(pa, np.log10(ra), lo, hi, method)
    mt = _mean_over(pt, np.log10(rt), lo, hi, method)
    return (10.0 ** (mt - ma) - 1.0) * 100.0


def bd_psnr(anchor: Iterable[Sequence[float]], test: Iterable[Sequence[float]], method: str = "cubic") -> float:
    """Average PSNR difference of ``test`` against ``anchor`` at equal rate, in dB.

    PSNR is interpolated as a function of log10(rate) (VCEG-M33's "PSNR as a
    function of bit rate" direction) and integrated over the overlapping
    log10-rate interval. Positive means ``test`` has the higher quality.
    """
    _check_method(method)
    ra, pa = _curve(anchor, "anchor")
    rt, pt = _curve(test, "test")
    la, lt = np.log10(ra), np.log10(rt)
    lo, hi = _overlap(la, lt, "log10(rate)")
    return _mean_over(lt, pt, lo, hi, method) - _mean_over(la, pa, lo, hi, method)


def bd_metrics(anchor, test, method: str = "cubic") -> dict:
    """Both deltas with the method named, for tables: ``{"method", "bd_rate_pct", "bd_psnr_db"}``."""
    return {"method": method, "bd_rate_pct": bd_rate(anchor, test, method), "bd_psnr_db": bd_psnr(anchor, test, method)}
