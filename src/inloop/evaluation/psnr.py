"""The project's one definition of PSNR (../shared/DESIGN.md, "Conventions").

PSNR is computed by the project from the decoded (or enhanced) frames at their
declared bit depth, never taken from an encoder's log: per plane
``10 log10(peak^2 / MSE)`` with ``peak = 2^bitdepth - 1``, YUV-PSNR =
(6 Y + U + V) / 8 per frame, and sequence values are the mean over frames of
the per-frame values (HM's "linear average"). A frame identical to its
reference has infinite PSNR, as FFmpeg's psnr filter reports.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..yuv import Frame, YuvFormat

PLANES = ("y", "u", "v")


def mse(ref: np.ndarray, test: np.ndarray) -> float:
    """Mean squared error of two planes of integer samples."""
    if ref.shape != test.shape:
        raise ValueError(f"plane shapes differ: {ref.shape} vs {test.shape}")
    d = ref.astype(np.int64) - test.astype(np.int64)
    return float(np.mean(d * d, dtype=np.float64))


def psnr_from_mse(m: float, peak: int) -> float:
    return math.inf if m == 0 else 10.0 * math.log10(peak * peak / m)


def yuv_psnr(y: float, u: float, v: float) -> float:
    """YUV-PSNR = (6 Y + U + V) / 8, the JCT-VC/JVET weighting."""
    return (6.0 * y + u + v) / 8.0


def frame_psnr(ref: Frame, test: Frame, bitdepth: int = 8) -> dict[str, float]:
    """PSNR of each plane and the weighted YUV-PSNR of one frame."""
    peak = (1 << bitdepth) - 1
    out = {p: psnr_from_mse(mse(r, t), peak) for p, r, t in zip(PLANES, ref, test)}
    out["yuv"] = yuv_psnr(out["y"], out["u"], out["v"])
    return out


def sequence_psnr(
    ref_path: str | os.PathLike,
    test_path: str | os.PathLike,
    fmt: YuvFormat | None = None,
    test_fmt: YuvFormat | None = None,
    frames: int | None = None,
) -> dict:
    """Per-frame and mean PSNR of ``test_path`` against ``ref_path`` (raw YUV or y4m).

    Both files are read frame by frame through memory maps. ``frames`` limits
    the comparison to the first N frames (the reference may be longer than an
    encode of its first frames); otherwise the frame counts must be equal.
    """
    from .metrics import evaluate_sequence  # the shared reader: same checks, same frame loop

    ev = evaluate_sequence(ref_path, test_path, fmt, test_fmt, frames, ssim_y=False, ms_ssim_y=False)
    keys = (*PLANES, "yuv")
    per_frame = [{k: f[f"psnr_{k}"] for k in keys} for f in ev["per_frame"]]
    return {"frames": ev["frames"], "mean": {k: ev["mean"][f"psnr_{k}"] for k in keys}, "per_frame": per_frame}
