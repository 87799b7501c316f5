"""The contract a network keeps to be trained and judged by this workflow, checked before any job runs.

This package's networks keep it by construction (tests/test_models.py); a researcher's own network
(README, "Your own filter"; :func:`inloop.models.registry.network_class`) is checked by
:func:`check_contract` when the workflow starts (``inloop.params.check_models``), on the CPU, so that a
network that cannot work fails in a second with one line instead of after a queue wait on a GPU node.

A network

* is a ``torch.nn.Module`` subclass, built with its ``models.<name>`` settings as keywords;
* filters frames normalised to [0, 1]: input ``(N, C, H, W)`` with ``C`` its ``in_channels`` attribute
  (default 1: the luma plane), output the filtered frame (not the residual) of the same shape and dtype;
* as a clip network (NL-ConvLSTM's contract) takes a ``frames`` keyword (odd T, set in params) and keeps it as
  an attribute: input ``(N, T, C, H, W)``, the target frame in the centre, output ``(N, C, H, W)``;
* runs at every size the workflow gives it: the training patch (``train.patch_size``) and the tiles or whole
  frames of evaluation (``evaluate.tile``; frame sides are multiples of ``datasets.multiple`` and of nothing
  larger), so a network that down-samples pads inside ``forward`` (``ResidualFilter`` does, to ``pad_multiple``);
* has trainable parameters that the loss reaches, and returns finite values.

Subclassing :class:`~inloop.models.registry.ResidualFilter` is optional: it adds ``Y = X + s R`` with the
output scale of ``train.residual_scale`` and the LSUV initialisation of ``train.init`` (GL-Fusion IV.B); a plain
module keeps its own initialisation and output (the training log says so).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ParamsError
from .costs import input_shape, model_frames, model_in_channels
from .registry import build_model


def contract_sizes(params: dict, patch_size: int) -> list[tuple[int, int]]:
    """The (H, W) the check runs: the training patch, and the evaluation tile (``evaluate.tile``) or, for whole
    frames, a frame whose sides are multiples of ``datasets.multiple`` but not of twice that."""
    tile = (params.get("evaluate") or {}).get("tile")
    m = int((params.get("datasets") or {}).get("multiple", 8))
    frame = (tile, tile) if tile else (patch_size + m, patch_size + 3 * m)
    return [(patch_size, patch_size), frame]


def _why(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def check_contract(name: str, arch: str, kwargs: dict, frames: int, sizes: list[tuple[int, int]]) -> nn.Module:
    """Build ``arch`` with ``kwargs`` on the CPU and run it at ``sizes`` (eval, then one training step's
    forward and backward on the first size); returns the network. Any breach is one :class:`ParamsError`
    naming ``models.<name>``, the class and what is wrong."""
    label = f"models.{name} ({arch})"
    try:
        net = build_model(arch, **kwargs)
    except ParamsError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's constructor can raise anything
        raise ParamsError(f"{label}: building it with {kwargs} failed ({_why(exc)})") from None
    if not isinstance(net, nn.Module):
        raise ParamsError(f"{label}: built a {type(net).__name__}, not a torch.nn.Module")
    if not any(p.requires_grad for p in net.parameters()):
        raise ParamsError(f"{label}: {type(net).__name__} has no trainable parameters")
    t = model_frames(net)
    if t != frames:
        raise ParamsError(f"{label}: {type(net).__name__} takes {t} frame(s) (its `frames` attribute) but its settings "
                          f"say {frames}: a clip network takes a `frames` keyword, set as models.{name}.frames")
    c = model_in_channels(net)
    g = torch.Generator().manual_seed(0)
    for i, hw in enumerate(sizes):
        x = torch.rand(input_shape(net, hw), generator=g)
        want = (1, c, *hw)
        try:
            with torch.no_grad():
                y = net.eval()(x)
        except Exception as exc:  # noqa: BLE001
            raise ParamsError(f"{label}: forward on a {tuple(x.shape)} input failed ({_why(exc)}); it must run at "
                              "every frame size whose sides are multiples of datasets.multiple (pad inside forward)"
                              ) from None
        if not isinstance(y, torch.Tensor):
            raise ParamsError(f"{label}: forward returned a {type(y).__name__}, not a tensor (the filtered frame)")
        if tuple(y.shape) != want:
            raise ParamsError(f"{label}: a {tuple(x.shape)} input gave a {tuple(y.shape)} output; it must return "
                              f"the filtered {'target ' if t > 1 else ''}frame, {want} (same size)")
        if y.dtype != x.dtype:
            raise ParamsError(f"{label}: returned {y.dtype} for a {x.dtype} input; it must keep the input's dtype")
        if not torch.isfinite(y).all():
            raise ParamsError(f"{label}: returned NaN or inf for a {tuple(x.shape)} input in [0, 1]")
        if i == 0:  # one training step's forward and backward: the loss must reach the weights
            net.train()
            xb = torch.rand((2, *x.shape[1:]), generator=g)
            try:
                yb = net(xb)
                if yb.requires_grad:
                    yb.square().mean().backward()
            except Exception as exc:  # noqa: BLE001
                raise ParamsError(f"{label}: a training forward and backward on a {tuple(xb.shape)} batch failed "
                                  f"({_why(exc)})") from None
            if not any(p.grad is not None and torch.count_nonzero(p.grad) for p in net.parameters()):
                raise ParamsError(f"{label}: no gradient reaches its parameters (is the output detached?)")
            net.zero_grad(set_to_none=True)
    return net.eval()
