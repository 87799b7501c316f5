"""The project's one definition of PSNR (docs/design.md, "Conventions").

PSNR is computed by the project from the decoded (or enhanced) frames at their
declared bit depth, never taken from an encoder's log: per plane
``10 log10(peak^2 / MSE)`` with ``peak = 2^bitdepth - 1``, YUV-PSNR =
(6 Y + U + V) / 8 per frame, and sequence values are the mean over frames of
the per-frame values (HM's "linear average"). A frame identical to its
reference has infinite PSNR, as FFmpeg's psnr filter reports.
"""

from __future__ import annotations

import contextlib
import math
import os
from typing import Any, Iterator

import numpy as np

from .errors import YuvError
from .yuv import PLANES, Frame, YuvFormat, open_video


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


@contextlib.contextmanager
def paired_videos(
    ref_path: str | os.PathLike,
    test_path: str | os.PathLike,
    fmt: YuvFormat | None = None,
    test_fmt: YuvFormat | None = None,
    frames: int | None = None,
) -> Iterator[tuple[Any, Any, int]]:
    """Open a reference and a test video (raw YUV or y4m, memory-mapped) as ``(ref, test, n)``.

    The one reader every quality measure shares: same geometry and bit depth, and ``n``
    frames to compare: ``frames`` (the reference may be longer than an encode of its first
    frames), else every frame, in which case the counts must be equal.
    """
    with open_video(ref_path, fmt) as ref, open_video(test_path, test_fmt or fmt) as test:
        rf, tf = ref.fmt, test.fmt
        if (rf.width, rf.height, rf.bitdepth) != (tf.width, tf.height, tf.bitdepth):
            raise YuvError(f"{test_path} ({tf.width}x{tf.height}, {tf.bitdepth}-bit) does not match its "
                           f"reference {ref_path} ({rf.width}x{rf.height}, {rf.bitdepth}-bit)")
        n = frames if frames is not None else len(test)
        if n < 1 or n > len(test) or n > len(ref) or (frames is None and len(ref) != len(test)):
            raise YuvError(f"frame counts do not match: {ref_path} has {len(ref)}, {test_path} has {len(test)}"
                           + (f", {frames} requested" if frames is not None else ""))
        yield ref, test, n


def sequence_psnr(
    ref_path: str | os.PathLike,
    test_path: str | os.PathLike,
    fmt: YuvFormat | None = None,
    test_fmt: YuvFormat | None = None,
    frames: int | None = None,
) -> dict:
    """Per-frame and mean PSNR of ``test_path`` against ``ref_path`` (raw YUV or y4m).

    Both files are read frame by frame through memory maps (:func:`paired_videos`).
    ``frames`` limits the comparison to the first N frames (the reference may be longer
    than an encode of its first frames); otherwise the frame counts must be equal.
    Sequence values are the mean over frames (HM's linear average).
    """
    keys = (*PLANES, "yuv")
    with paired_videos(ref_path, test_path, fmt, test_fmt, frames) as (ref, test, n):
        bd = ref.fmt.bitdepth
        per_frame = [frame_psnr(ref[i], test[i], bd) for i in range(n)]
    mean = {k: float(np.mean([f[k] for f in per_frame])) for k in keys}
    return {"frames": n, "mean": mean, "per_frame": per_frame}
