"""Applying a trained filter to decoded frames, whole or in overlapping tiles.

GL-Fusion IV.A/IV.B: at test time one entire frame is the input. In AI every
frame is intra coded, so filtering each decoded frame gives exactly what the
filter would give inside the loop (no later frame predicts from it). For LDP
and RA the paper applies the filter as post-processing of each decoded frame
(IV.A, "implemented as a postprocessing"): the references the encoder used
were unfiltered. The report says which of the two each number is.

Frames too large for memory go through tiles: the frame is cut into cores of
``tile`` pixels, each core is filtered with ``overlap`` pixels of real
context around it (window edges aligned to the network's down-sampling
multiple), and only the core is kept. With an overlap at least the network's
receptive-field radius the tiled output equals the whole-frame output.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..errors import InloopError
from ..yuv import PLANE_INDEX, Frame, YuvFormat, YuvReader, write_yuv


def _windows(size: int, tile: int, overlap: int, multiple: int) -> list[tuple[int, int, int, int]]:
    """(core_start, core_end, window_start, window_end) along one axis."""
    out = []
    for c0 in range(0, size, tile):
        c1 = min(size, c0 + tile)
        w0 = max(0, c0 - overlap) // multiple * multiple
        w1 = min(size, -(-(c1 + overlap) // multiple) * multiple)
        out.append((c0, c1, w0, w1))
    return out


@torch.no_grad()
def apply_model(model: nn.Module, x: torch.Tensor, tile: int | None = None, overlap: int = 64,
                multiple: int = 16) -> torch.Tensor:
    """Filter ``x`` (N, C, H, W) in [0, 1], or a clip (N, T, C, H, W) for multi-frame
    networks, whole or tile by tile; returns (N, C, H, W)."""
    h, w = x.shape[-2:]
    if not tile or (h <= tile and w <= tile):
        return model(x)
    if tile % multiple:
        raise InloopError(f"evaluate.tile={tile} must be a multiple of the network's down-sampling factor {multiple}")
    out = torch.empty_like(x[:, 0] if x.dim() == 5 else x)
    for r0, r1, wr0, wr1 in _windows(h, tile, overlap, multiple):
        for c0, c1, wc0, wc1 in _windows(w, tile, overlap, multiple):
            y = model(x[..., wr0:wr1, wc0:wc1])
            out[..., r0:r1, c0:c1] = y[..., r0 - wr0 : r1 - wr0, c0 - wc0 : c1 - wc0]
    return out


def enhance_file(model: nn.Module, decoded: str | os.PathLike, out: str | os.PathLike, fmt: YuvFormat,
                 planes: tuple[str, ...] = ("y",), device: str | torch.device = "cpu", tile: int | None = None,
                 overlap: int = 64, multiple: int = 16, amp_bf16: bool | str = False,
                 channels_last: bool | str = False) -> dict:
    """Filter the listed planes of every frame of ``decoded``; the other planes pass through.

    A multi-frame network (``model.frames`` = T > 1, NL-ConvLSTM) gets the T decoded
    frames centred on each frame, the first and last frame repeated at the ends of
    the sequence. ``amp_bf16`` / ``channels_last`` (params ``evaluate.*``: false, true, or auto =
    bf16 on CUDA and CPUs with native bf16, channels_last on every device): the compute path
    (:func:`inloop.models.cpu_path.resolve`); the output is rounded from fp32 either way.
    Returns timing: seconds per frame (filtering only, device synchronised) and the path (``compute``).
    """
    from ..models.cpu_path import resolve

    device = torch.device(device)
    compute = resolve(device, amp_bf16, channels_last, keys=("evaluate.amp_bf16", "evaluate.channels_last"),
                      inference=True)
    autocast = compute.autocast()
    model = compute.layout(model.to(device).eval())
    peak = float(fmt.max_value)
    half = int(getattr(model, "frames", 1)) // 2
    times = []

    def plane(frame: Frame, k: int) -> torch.Tensor:
        return torch.from_numpy(np.asarray(frame[k], dtype=np.float32) / peak).to(device)

    def filtered(reader: YuvReader):
        n = len(reader)
        for i, frame in enumerate(tqdm(reader, desc=f"enhance {Path(decoded).name}", unit="frame", leave=False)):
            result = list(frame)
            t0 = time.perf_counter()
            for p in planes:
                k = PLANE_INDEX[p]
                if half:
                    idx = [min(max(j, 0), n - 1) for j in range(i - half, i + half + 1)]
                    x = torch.stack([plane(reader[j], k) for j in idx])[None, :, None]
                else:
                    x = plane(frame, k)[None, None]
                with autocast():
                    y = apply_model(model, compute.layout(x), tile, overlap, multiple).float()
                result[k] = (y[0, 0].clamp(0, 1) * peak).round().to(torch.int32).cpu().numpy()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t0)
            yield Frame(*result)

    with YuvReader(decoded, fmt) as reader:
        write_yuv(out, filtered(reader), fmt)
    return {"frames": len(times), "seconds_per_frame": float(np.mean(times)) if times else 0.0,
            "device": str(device), "tile": tile, "planes": list(planes), "compute": compute.record()}
