"""What a network costs: parameters, MACs and FLOPs (= 2 x MACs) per pixel and per frame, and the
memory plan of the one network that has one (NL-ConvLSTM).

MACs are counted by the package's one counter, :func:`inloop.models.costs.count_macs`
(``torch.utils.flop_counter.FlopCounterMode`` on fake tensors; what it counts and what not: that
module): a single-frame network on a probe, scaled to the padded frame, a clip network (NL-ConvLSTM)
on the whole T-frame clip of each size.
"""

from __future__ import annotations

from typing import Iterable

from ..errors import InloopError
from ..lazy import lazy_import

torch = lazy_import("torch")

# The frame sizes (W x H): CTC class D/C/E, 1080p (class B), 2560x1600 (class A).
SIZES = ("416x240", "832x480", "1280x720", "1920x1080", "2560x1600")
PROBE = (64, 64)  # (H, W) of the frame a single-frame network's MACs per pixel are counted on


def parse_size(text: str) -> tuple[int, int]:
    """``"1920x1080"`` (W x H) -> ``(H, W)``."""
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise InloopError(f"frame size {text!r}: expected WxH, e.g. 1920x1080") from None
    if w < 1 or h < 1:
        raise InloopError(f"frame size {text!r}: width and height must be positive")
    return h, w


def size_name(hw: tuple[int, int]) -> str:
    return f"{hw[1]}x{hw[0]}"


def _build(arch: str, kwargs: dict) -> torch.nn.Module:
    from ..models import build_model

    return build_model(arch, **kwargs)


# inloop.models.costs, imported when first used (it imports torch; ``inloop --help`` and codec jobs
# build this package's parser without it).


def count_macs(model: torch.nn.Module, shape: tuple[int, ...]) -> float:
    """:func:`inloop.models.costs.count_macs`: MACs of one no-grad forward on an input of ``shape``."""
    from ..models import costs

    return costs.count_macs(model, shape)


def is_clip(model: torch.nn.Module) -> bool:
    """A network that filters a T-frame clip (NL-ConvLSTM): its cost per pixel grows with the frame."""
    from ..models import costs

    return costs.is_clip(model)


def _unwrap(m: torch.nn.Module) -> torch.nn.Module:
    from ..models import costs

    return costs.unwrap(m)


def _frames(model: torch.nn.Module) -> int:
    from ..models import costs

    return costs.model_frames(model)


def _in_channels(model: torch.nn.Module) -> int:
    from ..models import costs

    return costs.model_in_channels(model)


def _padded(hw: tuple[int, int], multiple: int) -> tuple[int, int]:
    return -(-hw[0] // multiple) * multiple, -(-hw[1] // multiple) * multiple


def probe_macs_per_pixel(model: torch.nn.Module, probe: tuple[int, int] = PROBE) -> float:
    """MACs per input pixel of a single-frame network, counted on a ``probe`` = (H, W) frame."""
    from ..models.costs import macs_per_pixel

    return macs_per_pixel(model, size=probe)


def frame_macs(model: torch.nn.Module, hw: tuple[int, int], macs_pp_probe: float | None = None) -> float:
    """MACs of one output frame of ``hw`` = (H, W): a clip network counted on a whole T-frame clip
    of that size (its cost grows with the frame: NL-ConvLSTM's non-local matching), others MACs/pixel
    of a probe (``macs_pp_probe``, else :func:`probe_macs_per_pixel`) x the padded area."""
    from ..models.costs import input_shape

    net = _unwrap(model)
    if is_clip(net):
        return count_macs(net, input_shape(net, hw))
    if macs_pp_probe is None:
        macs_pp_probe = probe_macs_per_pixel(net)
    ph, pw = _padded(hw, int(getattr(net, "pad_multiple", 1)))
    return macs_pp_probe * ph * pw


def model_costs(arch: str, kwargs: dict | None = None, sizes: Iterable[str] = SIZES,
                probe: tuple[int, int] = PROBE, name: str | None = None) -> dict:
    """Parameters and MACs / FLOPs per pixel (FLOPs = 2 x MACs; conv and linear layers,
    and NL-ConvLSTM's non-local matmuls) of a network, overall and at each frame size.

    ``macs_per_pixel`` is :func:`probe_macs_per_pixel` on a ``probe`` frame (H, W) for
    single-frame networks, the count of the largest size for clip networks; ``per_size`` gives
    each size (per output pixel of the unpadded frame, and per frame).
    """
    from ..models import count_parameters

    kwargs = dict(kwargs or {})
    model = _build(arch, kwargs)
    clip = is_clip(model)
    rows = []
    probe_mpp = None if clip else probe_macs_per_pixel(model, probe)
    for s in sizes:
        hw = parse_size(s)
        macs = frame_macs(model, hw, probe_mpp)
        rows.append({"size": size_name(hw), "macs_per_pixel": macs / (hw[0] * hw[1]),
                     "flops_per_pixel": 2 * macs / (hw[0] * hw[1]), "gmacs_per_frame": macs / 1e9,
                     "gflops_per_frame": 2 * macs / 1e9})
    if clip:
        big = max(rows, key=lambda r: parse_size(r["size"])[0] * parse_size(r["size"])[1]) if rows else None
        mpp = big["macs_per_pixel"] if big else frame_macs(model, probe) / (probe[0] * probe[1])
        where = f"{big['size']} (grows with the frame)" if big else size_name(probe)
    else:
        mpp, where = probe_mpp, f"{size_name(probe)} probe"
    return {"model": name or arch, "arch": arch, "kwargs": kwargs, "params": count_parameters(model),
            "frames": _frames(model), "macs_per_pixel": mpp, "flops_per_pixel": 2 * mpp, "measured_on": where,
            "per_size": rows}


def memory_estimate(model: torch.nn.Module, hw: tuple[int, int]) -> int | None:
    """Planning estimate (bytes, float32, batch 1, no grad) where one exists: NL-ConvLSTM's."""
    net = _unwrap(model)
    if getattr(net, "registry_name", "") != "nlconvlstm" or getattr(net, "mode", "") != "nlconvlstm":
        return None
    from ..models import nlconvlstm as nl

    if net.exact:
        maps = (net.frames + 13) * net.channels * hw[0] * hw[1] * 4
        return maps + nl.exact_warp_peak_bytes(hw[0], hw[1], 2 * net.channels)
    return nl.inference_peak_bytes(hw[0], hw[1], net.channels, net.pool, net.topk, net.frames)
