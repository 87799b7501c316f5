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
receptive-field radius the tiled output equals the whole-frame output, so the
overlap is not typed but measured (``evaluate.overlap: auto``,
:func:`receptive_field`): the trained network's response to an impulse, out to
where it falls below half an output level. A network with global context
(GL-Fusion's channel attention pools over the whole frame, NL-ConvLSTM searches
the whole frame, SPiLF's squeeze-excitation pools) is never exactly equal when
tiled, whatever the overlap: that is measured too and recorded with the result
(``tiling``), and the papers' configs evaluate whole frames as the papers do
(GL-Fusion IV.A, NL-ConvLSTM 4.1).
"""

from __future__ import annotations

import os
import time
import warnings
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
def receptive_field(model: nn.Module, multiple: int = 1, max_value: int = 255, canvas: int = 256,
                    device: str | torch.device = "cpu") -> dict:
    """The trained network's measured reach: ``radius`` (pixels, Chebyshev, rounded up to ``multiple``) within
    which an impulse of about half the range at the centre of a mid-grey textured canvas moves the output at
    all; ``global_context``: whether the canvas's far corner moves (exactly, in fp32), i.e. the network pools
    or searches over the whole frame; its ``radius`` is then where the change falls below half an output level
    (``0.5 / max_value``), and no overlap makes its tiles equal the whole frame. A radius that reaches the
    canvas's edge is measured again on a canvas twice as large (up to 1024)."""
    model = model.eval()
    frames = int(getattr(model, "frames", 1))
    while True:
        size = -(-canvas // max(multiple, 1)) * max(multiple, 1)
        g = torch.Generator().manual_seed(0)
        base = 0.5 + 0.1 * (torch.rand(1, 1, size, size, generator=g) - 0.5)
        if frames > 1:
            base = base[:, None].repeat(1, frames, 1, 1, 1)
        poked = base.clone()
        centre = poked[..., size // 2, size // 2]
        poked[..., size // 2, size // 2] = torch.where(centre < 0.5, 1.0, 0.0)  # about half the range away
        base, poked = base.to(device), poked.to(device)
        d = (model(poked) - model(base)).abs()[0, 0].float().cpu()
        ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        dist = torch.maximum((ys - size // 2).abs(), (xs - size // 2).abs())
        # A network that declares global context (NL-ConvLSTM's content-dependent non-local search) is taken
        # at its word: an impulse need not move the corner to prove it.
        global_context = bool(getattr(model, "global_context", False) or d[0, 0] != 0 or d[-1, -1] != 0)
        # A local network's reach is exact (pixels beyond it are computed from the same inputs, bit for bit);
        # a global one reaches everywhere, and its radius is where the change falls below half an output level.
        reach = d >= 0.5 / max_value if global_context else d > 0
        radius = int(dist[reach].max()) if bool(reach.any()) else 0
        if radius < size // 2 - 1 or canvas >= 1024:
            break
        canvas *= 2
    radius = -(-radius // max(multiple, 1)) * max(multiple, 1)
    return {"radius": radius, "global_context": global_context, "canvas": size}


def tile_overlap(model: nn.Module, overlap: int | str, multiple: int, max_value: int,
                 device: str | torch.device = "cpu") -> dict:
    """The overlap a tiled evaluation uses: ``auto`` = the measured :func:`receptive_field` radius; a number
    below it is refused (tiles would differ from the whole frame by more than half an output level).
    Returns the record kept with the result (``tiling``)."""
    field = receptive_field(model, multiple, max_value, device=device)
    if overlap == "auto":
        overlap = field["radius"]
    elif int(overlap) < field["radius"]:
        raise InloopError(f"evaluate.overlap={overlap} is below this network's measured reach of {field['radius']} "
                          "pixels (tiles would differ from the whole frame); use overlap: auto or null tiles")
    return {"overlap": int(overlap), "measured_radius": field["radius"], "global_context": field["global_context"],
            "equals_whole_frame": not field["global_context"]}


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
                 overlap: int | str = "auto", multiple: int = 16, amp_bf16: bool | str = False,
                 channels_last: bool | str = False, only: list[int] | None = None) -> dict:
    """Filter the listed planes of every frame of ``decoded``; the other planes pass through.

    A multi-frame network (``model.frames`` = T > 1, NL-ConvLSTM) gets the T decoded
    frames centred on each frame, the first and last frame repeated at the ends of
    the sequence. ``amp_bf16`` / ``channels_last`` (params ``evaluate.*``: false, true, or auto =
    bf16 on CUDA and CPUs with native bf16, channels_last on every device): the compute path
    (:func:`inloop.models.cpu_path.resolve`); the output is rounded from fp32 either way.
    ``overlap``: ``auto`` (the measured reach, :func:`tile_overlap`) or a number at least that; measured only
    when ``tile`` cuts the frame. Returns timing: seconds per frame (filtering only, device synchronised), the
    path (``compute``), ``tiling`` (null for whole frames) and ``warps_reused``: how many of NL-ConvLSTM's
    non-local warps took the weights an earlier window computed between the same two frames
    (:meth:`~inloop.models.nlconvlstm.NLConvLSTM.remember_warps`; None for other networks), which the seconds
    per frame include. ``only``: the frame indices to filter (params
    ``evaluate.frames``: NL-ConvLSTM 4.1 scores the 4th frame of each Vimeo-90K clip, so only it is filtered,
    from its own window); the other frames are written as decoded. None: every frame.
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
    tiling = None
    if tile and tile % multiple:
        raise InloopError(f"evaluate.tile={tile} must be a multiple of the network's padding multiple {multiple}")
    if tile and (fmt.width > tile or fmt.height > tile):
        tiling = {"tile": tile, **tile_overlap(model, overlap, multiple, int(fmt.max_value), device)}
        overlap = tiling["overlap"]
        if tiling["global_context"]:
            warnings.warn(f"{decoded}: tiles of {tile} with overlap {overlap}: this network has global context "
                          "(pooling or search over the whole frame), so its tiled output is not its whole-frame "
                          "output (recorded as tiling.equals_whole_frame: false)", RuntimeWarning, stacklevel=2)

    def plane(frame: Frame, k: int) -> torch.Tensor:
        return torch.from_numpy(np.asarray(frame[k], dtype=np.float32) / peak).to(device)

    def filtered(reader: YuvReader):
        n = len(reader)
        wanted = None if only is None else {i % n for i in only}
        for i, frame in enumerate(tqdm(reader, desc=f"enhance {Path(decoded).name}", unit="frame", leave=False)):
            if wanted is not None and i not in wanted:
                yield frame
                continue
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

    remember = getattr(model, "remember_warps", None)  # NL-ConvLSTM: each pair's non-local weights once
    if remember is not None:
        remember()
    reused = None
    try:
        with YuvReader(decoded, fmt) as reader:
            write_yuv(out, filtered(reader), fmt)
    finally:
        if remember is not None:
            reused = model.forget_warps()
    return {"frames": len(times), "seconds_per_frame": float(np.mean(times)) if times else 0.0,
            "device": str(device), "tile": tile, "planes": list(planes), "compute": compute.record(), "tiling": tiling,
            "warps_reused": reused}
