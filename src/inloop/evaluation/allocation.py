"""Rate allocation over a set of images by integer linear programming (SPiLF, paper 001, section 2.3).

SPiLF's Table 2 reports each method at a *total* rate of 0.075, 0.15 and 0.3
bpp over the CLIC 2022 validation set: every image may be coded at its own QP,
and the QPs are chosen jointly. Section 2.3 writes it as a 0/1 programme::

    argmin  sum_i sum_j D_i(Q_j) x_ij
    s.t.    sum_i sum_j R_i(Q_j) P_i x_ij <= T,   for all i: sum_j x_ij = 1,

with ``R_i(Q_j)`` the bpp of image ``i`` at QP ``Q_j`` (so ``R P`` is its
bits), ``P_i`` its pixel count and ``T`` the total bits, "solved with the
Linear Integer Programming method ... [a] public solver". Here
:func:`allocate` solves exactly that with ``scipy.optimize.milp`` (HiGHS,
branch and bound run to a zero relative gap, so the optimum is exact, not
within HiGHS' default 0.01 %). The paper scales its coefficients to integers
because its solver needs them; HiGHS takes real coefficients, so nothing is
scaled here.

The distortion measure ``D`` (section 2.3 does not name it). Default: MSE
weighted by the image's pixel count, i.e. the image's sum of squared errors.
The reason is the metric it is judged by: CLIC's evaluation (``clic21.metrics``)
pools PSNR over the dataset, ``PSNR = 10 log10(255^2 / (sum of squared errors
/ total samples))``, so minimising the total squared error is minimising that
PSNR's MSE exactly, and the paper's Arabica is the PSNR-oriented model
(section 3.2.2). The literal formula of section 2.3 has ``D_i`` without
``P_i``; with ``weight_by_pixels=False`` the per-image MSE is summed as
written. The two coincide when all images have the same size. Other measures:
``"ms_ssim"`` (``1 - MS-SSIM``; CLIC averages MS-SSIM weighted by pixel count)
and ``"lpips"``.

Aggregation of the chosen set (:func:`allocate_rates`), following CLIC's
evaluation: rate = total bits / total pixels; PSNR from the pooled MSE
(``sum MSE_i P_i / sum P_i``), not the mean of per-image PSNRs; MS-SSIM as a
pixel-weighted mean. That script has no LPIPS; it is weighted the same way
here.

Anchor and models: the same function serves both. For the anchor, bits and
distortion come from the encodes with the codec's filters on. For a model the
bits are those of the filters-off encode it filters (the network costs no
bits) and the distortion is measured after filtering. In the paper the filter
is in the loop, so its output would also change the bits of later blocks; with
all-intra images and a filter applied to the whole decoded image the rate
here is the filters-off rate (see :mod:`inloop.evaluation.evaluate`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_array, kron

from ..errors import InloopError

#: Distortion measures and the metric column each is computed from (lower = better).
DISTORTIONS = {"mse": "mse", "ms_ssim": "ms_ssim", "lpips": "lpips"}
#: Metrics reported as pixel-weighted means over the chosen set (CLIC convention).
WEIGHTED_MEAN_METRICS = ("ms_ssim", "lpips")


class AllocationError(InloopError, ValueError):
    """An allocation that cannot be made: bad inputs or a budget below the cheapest choice."""


@dataclass(frozen=True)
class Allocation:
    """The optimum of section 2.3's programme: one candidate (column) per image (row)."""

    choice: np.ndarray  # index of the chosen candidate, per image
    bits: float  # total bits of the chosen set
    distortion: float  # total distortion (the objective) of the chosen set
    budget_bits: float


def budget_bits(target_bpp: float, pixels: Sequence[float]) -> float:
    """The bit budget ``T`` of a target rate: ``target_bpp x total pixels``."""
    return float(target_bpp) * float(np.sum(pixels))


def allocate(bits, distortion, budget_bits: float, pixels: Sequence[float] | None = None) -> Allocation:
    """Choose one candidate per image minimising total distortion with total bits <= ``budget_bits``.

    ``bits`` and ``distortion`` are (images x candidates) arrays, NaN where a
    candidate is not available; ``distortion`` holds the objective
    coefficients as they are to be summed (weight them by pixel count before,
    if wanted: :func:`allocate_rates` does). ``pixels`` (per image) is only
    used to state rates in bpp in the error raised when even the cheapest
    candidate of every image exceeds the budget.
    """
    b = np.asarray(bits, dtype=np.float64)
    d = np.asarray(distortion, dtype=np.float64)
    if b.ndim != 2 or b.shape != d.shape or b.size == 0:
        raise AllocationError(f"bits and distortion must be non-empty (images x candidates) arrays of one shape, "
                              f"got {b.shape} and {d.shape}")
    avail = ~(np.isnan(b) | np.isnan(d))
    if not np.isfinite(b[avail]).all() or not np.isfinite(d[avail]).all():
        raise AllocationError("bits and distortion must be finite where available (NaN marks a missing candidate)")
    empty = np.flatnonzero(~avail.any(axis=1))
    if empty.size:
        raise AllocationError(f"image(s) {empty.tolist()} have no candidate with both bits and distortion")
    n, m = b.shape
    b0, d0 = np.where(avail, b, 0.0), np.where(avail, d, 0.0)

    min_bits = float(np.where(avail, b, np.inf).min(axis=1).sum())
    if min_bits > budget_bits:
        if pixels is not None:
            total = float(np.sum(pixels))
            raise AllocationError(f"target {budget_bits / total:.6g} bpp ({budget_bits:.0f} bits) is infeasible: the "
                                  f"minimum achievable rate is {min_bits / total:.6g} bpp ({min_bits:.0f} bits, every "
                                  f"image at its cheapest candidate QP); add higher QPs or raise the target")
        raise AllocationError(f"budget {budget_bits:.0f} bits is infeasible: the minimum achievable is {min_bits:.0f} "
                              f"bits (every image at its cheapest candidate QP)")

    # Integer bit counts sum to an integer: the budget's fractional part is unusable.
    ub = math.floor(budget_bits) if np.all(b0 == np.round(b0)) else budget_bits
    one_each = LinearConstraint(kron(csr_array(np.eye(n)), csr_array(np.ones((1, m)))), 1, 1)
    rate = LinearConstraint(b0.reshape(1, -1), -np.inf, ub)
    res = milp(d0.ravel(), constraints=[one_each, rate], integrality=np.ones(n * m),
               bounds=Bounds(0, avail.ravel().astype(np.float64)), options={"mip_rel_gap": 0.0})
    if res.x is None or not res.success:
        raise AllocationError(f"the integer programme was not solved: {res.message}")
    x = np.round(res.x).reshape(n, m)
    choice = x.argmax(axis=1)
    rows = np.arange(n)
    total_bits = float(b0[rows, choice].sum())
    # HiGHS meets the rate row to its feasibility tolerance; sums of non-integer bits
    # (bpp x pixels) may exceed the budget by rounding only.
    slack = 1e-9 * max(1.0, abs(budget_bits))
    if not (np.all(x.sum(axis=1) == 1) and avail[rows, choice].all() and total_bits <= budget_bits + slack):
        raise AllocationError(f"the solver returned an invalid choice ({total_bits:.0f} bits for a budget of "
                              f"{budget_bits:.0f}); solver status: {res.message}")
    return Allocation(choice=choice, bits=total_bits, distortion=float(d0[rows, choice].sum()),
                      budget_bits=float(budget_bits))


def _table(rows, peak: float):
    """Measurements as a DataFrame with an ``mse`` column, checked."""
    import pandas as pd

    df = pd.DataFrame(rows).copy()
    missing = [c for c in ("image", "qp", "bits", "pixels") if c not in df.columns]
    if missing:
        raise AllocationError(f"measurements lack column(s) {missing}; need image, qp, bits, pixels and mse or psnr")
    if "mse" not in df.columns:
        if "psnr" not in df.columns:
            raise AllocationError("measurements need an 'mse' or a 'psnr' column")
        df["mse"] = peak * peak / np.power(10.0, df["psnr"].astype(float) / 10.0)
    dup = df.duplicated(["image", "qp"])
    if dup.any():
        raise AllocationError(f"duplicate (image, qp) rows: {df.loc[dup, ['image', 'qp']].values.tolist()}")
    if (df.groupby("image", sort=False)["pixels"].nunique() > 1).any():
        raise AllocationError("an image has different pixel counts in different rows")
    return df


def allocate_rates(rows, targets_bpp: Iterable[float], distortion: str = "mse", weight_by_pixels: bool = True,
                   peak: float = 255.0) -> list[dict]:
    """Section 2.3's allocation at each target rate, and the metrics of the chosen set (Table 2).

    ``rows``: per-image, per-QP measurements of one method (a list of dicts or
    a DataFrame) with ``image``, ``qp``, ``bits``, ``pixels`` and ``mse`` (or
    ``psnr``, converted with ``peak``), optionally ``ms_ssim`` and ``lpips``.
    A QP missing for an image is not a candidate for it. ``distortion``: one
    of :data:`DISTORTIONS` (``ms_ssim`` minimises ``1 - MS-SSIM``);
    ``weight_by_pixels`` multiplies it by the image's pixel count (see the
    module docstring).

    Returns one dict per target: ``target_bpp``, ``budget_bits``, ``bits``,
    ``bpp`` (achieved, <= target), ``qp`` (image -> chosen QP), ``mse`` and
    ``psnr`` (pooled MSE), ``ms_ssim`` / ``lpips`` (pixel-weighted means) where
    measured, and the ``distortion`` settings used.
    """
    if distortion not in DISTORTIONS:
        raise AllocationError(f"unknown distortion {distortion!r}; expected one of {', '.join(DISTORTIONS)}")
    df = _table(rows, peak)
    column = DISTORTIONS[distortion]
    if column not in df.columns:
        raise AllocationError(f"distortion {distortion!r} needs a {column!r} column in the measurements")
    df["_d"] = 1.0 - df[column].astype(float) if distortion == "ms_ssim" else df[column].astype(float)
    if weight_by_pixels:
        df["_d"] = df["_d"] * df["pixels"]

    images = list(dict.fromkeys(df["image"]))
    qps = sorted(df["qp"].unique())
    bits = df.pivot(index="image", columns="qp", values="bits").reindex(index=images, columns=qps)
    dist = df.pivot(index="image", columns="qp", values="_d").reindex(index=images, columns=qps)
    pixels = df.groupby("image", sort=False)["pixels"].first().reindex(images).to_numpy(dtype=np.float64)
    total_pixels = float(pixels.sum())
    by_key = df.set_index(["image", "qp"])
    extra = [c for c in WEIGHTED_MEAN_METRICS if c in df.columns]

    out = []
    for target in targets_bpp:
        alloc = allocate(bits.to_numpy(np.float64), dist.to_numpy(np.float64), budget_bits(target, pixels), pixels)
        chosen = {img: int(qps[j]) for img, j in zip(images, alloc.choice)}
        sel = by_key.loc[list(chosen.items())]
        w = sel["pixels"].to_numpy(np.float64)
        mse = float(np.sum(sel["mse"].to_numpy(np.float64) * w) / total_pixels)
        res = {
            "target_bpp": float(target), "budget_bits": alloc.budget_bits, "bits": alloc.bits,
            "bpp": alloc.bits / total_pixels, "qp": chosen, "mse": mse,
            "psnr": math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse),
            "distortion": {"measure": distortion, "weight_by_pixels": weight_by_pixels, "total": alloc.distortion},
        }
        for c in extra:
            res[c] = float(np.sum(sel[c].to_numpy(np.float64) * w) / total_pixels)
        out.append(res)
    return out
