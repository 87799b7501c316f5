"""The one MAC counter of the package: multiply-accumulates of a network's forward, counted by
``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2) on fake tensors (:func:`count_macs`).

Shapes only: nothing is computed or allocated, so a 2560x1600 clip through NL-ConvLSTM counts in a
second. Counted: convolutions (without bias) and matrix products (linear layers, NL-ConvLSTM's
non-local distances and weighted sums, eqs. (4)-(7) of its paper); not counted: pooling,
normalisation, activations, interpolation, ``grid_sample`` and other elementwise operations (the
usual kMAC/pixel convention of JVET NNVC complexity reports). FLOPs ~= 2 x MACs.

:func:`macs_per_pixel` is what the models report; ``inloop.bench`` builds its per-frame costs on
:func:`count_macs`.
"""

from __future__ import annotations

import torch
from torch import nn


def unwrap(m: nn.Module) -> nn.Module:
    """The bare network inside ``torch.compile`` / DataParallel wrappers."""
    m = getattr(m, "_orig_mod", m)
    return getattr(m, "module", m)


def model_frames(model: nn.Module) -> int:
    """Frames of the clip the network filters (T; 1 for a single-frame network)."""
    return int(getattr(unwrap(model), "frames", 1))


def model_in_channels(model: nn.Module) -> int:
    return int(getattr(unwrap(model), "in_channels", 1))


def is_clip(model: nn.Module) -> bool:
    """A network that filters a T-frame clip (NL-ConvLSTM): its cost per pixel grows with the frame."""
    net = unwrap(model)
    return model_frames(net) > 1 or bool(getattr(net, "is_clip_model", False))


def input_shape(model: nn.Module, hw: tuple[int, int], channels: int | None = None) -> tuple[int, ...]:
    """Batch-1 input of an ``hw`` = (H, W) frame: (1, C, H, W), or (1, T, C, H, W) for a clip network."""
    c = model_in_channels(model) if channels is None else channels
    return (1, model_frames(model), c, *hw) if is_clip(model) else (1, c, *hw)


def count_macs(model: nn.Module, shape: tuple[int, ...]) -> float:
    """MACs of one no-grad forward of ``model`` (eval mode) on an input of ``shape``: the FLOPs
    ``FlopCounterMode`` counts, halved (it counts a multiply-accumulate as 2 FLOPs), on fake tensors.

    The weights stay where they are; 0-d buffers (NL-ConvLSTM's temperature, read with ``float()``
    to choose the similarity) enter as constants, so Python code that reads their value runs.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode

    net = unwrap(model)
    scalars = {k: (b.item(), b.dtype) for k, b in net.named_buffers() if b.dim() == 0}
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad(), FakeTensorMode(allow_non_fake_inputs=True):
            consts = {k: torch.tensor(v, dtype=dt) for k, (v, dt) in scalars.items()}  # made here: constants
            x = torch.zeros(shape, device=device)
            with FlopCounterMode(display=False) as counter:
                torch.func.functional_call(net, consts, (x,))
    finally:
        net.train(was_training)
    return counter.get_total_flops() / 2


def macs_per_pixel(model: nn.Module, in_channels: int | None = None, size: tuple[int, int] = (64, 64)) -> float:
    """MACs of one forward per input pixel, counted (:func:`count_macs`) on a ``size`` = (H, W)
    frame -- a whole T-frame clip of that size for a clip network -- with ``in_channels`` planes
    (default: the model's ``in_channels`` attribute, else 1). Padding to ``pad_multiple`` is
    counted, the division is by H x W.
    """
    return count_macs(model, input_shape(model, size, in_channels)) / (size[0] * size[1])
