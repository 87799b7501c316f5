"""Model registry, the shared residual-filter base class and small helpers.

Every network in this package is a :class:`ResidualFilter`: it maps a normalised
reconstructed frame ``X`` in [0, 1] of shape (N, C, H, W) to ``Y = X + R`` where
``R`` is the predicted coding distortion. ``forward`` pads any H, W to what the
network needs (``pad_multiple``) and crops ``R`` back, so a 416x240 or 1920x1080
frame works unchanged.

Networks register themselves with ``@register("name")``; ``build_model`` turns
the ``models.<name>`` block of params.yaml into a module and names the offending
key when something is wrong.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from inloop.errors import ParamsError

MODELS: dict[str, type[nn.Module]] = {}


def register(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make a network buildable as ``build_model(name, ...)``."""

    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        if name in MODELS and MODELS[name] is not cls:
            raise ValueError(f"model name {name!r} registered twice ({MODELS[name].__name__}, {cls.__name__})")
        MODELS[name] = cls
        cls.registry_name = name
        return cls

    return deco


def model_kwargs(name: str) -> list[str]:
    """The constructor keywords a registered model accepts (its params keys)."""
    cls = MODELS[name]
    sig = inspect.signature(cls.__init__)
    return [p for p in sig.parameters if p != "self"]


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` from its ``models.<name>`` params.

    Raises :class:`ParamsError` naming the params key for an unknown model name,
    an unknown keyword, or a bad value.
    """
    if name not in MODELS:
        raise ParamsError(f"models.name: unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    accepted = model_kwargs(name)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ParamsError(
            f"models.{name}.{unknown[0]}: not a parameter of {name}; accepted: {', '.join(accepted)}"
        )
    try:
        return MODELS[name](**kwargs)
    except ParamsError as e:  # constructors name the bare key; add the params path
        raise ParamsError(f"models.{name}.{e}") from None
    except TypeError as e:
        raise ParamsError(f"models.{name}: {e}") from None


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def check_choice(key: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise ParamsError naming ``key``."""
    choices = tuple(choices)
    if value not in choices:
        raise ParamsError(f"{key}: {value!r} is not one of {', '.join(map(repr, choices))}")
    return value


def check_int(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ParamsError(f"{key}: expected an integer >= {minimum}, got {value!r}")
    return value


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "reflect") -> torch.Tensor:
    """Pad the bottom/right of ``x`` (N, C, H, W) so H and W are multiples of ``multiple``.

    Only bottom/right are padded so that the codec's block grid (CTUs/CUs start at
    the top-left) stays aligned with the networks' 2x2 pooling grid. ``reflect``
    falls back to ``replicate`` where the pad is not smaller than the frame side
    (reflect cannot pad more than size - 1).
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    if mode == "reflect" and (ph >= h or pw >= w):
        mode = "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


class ResidualFilter(nn.Module):
    """Base class: ``Y = X + R(X)`` with padding to ``pad_multiple`` and cropping back.

    Subclasses implement :meth:`residual` on a padded input and set
    ``pad_multiple`` (1 for fully convolutional nets with 'same' padding) and
    ``last_conv`` (the layer that produces R, used by the IV.B initialisation and
    by the identity test).
    """

    pad_multiple: int = 1
    pad_mode: str = "reflect"
    registry_name: str = ""
    # Buffers added after model files were first written, with the value the older files computed with.
    legacy_buffers: dict[str, float] = {"residual_scale": 1.0}

    def __init__(self) -> None:
        super().__init__()
        # Y = X + s * R: a fixed output scale s (1 = the plain residual), set before training
        # from the ground-truth distortion (train.residual_scale; see training/run.py).
        self.register_buffer("residual_scale", torch.ones(()))
        self.register_load_state_dict_pre_hook(_legacy_buffer_defaults)

    def residual(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def last_conv(self) -> nn.Conv2d:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        r = self.residual(pad_to_multiple(x, self.pad_multiple, self.pad_mode))
        return x + self.residual_scale * r[..., :h, :w]


def _legacy_buffer_defaults(module, state_dict, prefix, *args) -> None:
    """Model files written before a buffer existed load with the value they computed with
    (each class's ``legacy_buffers``: ``residual_scale`` 1, SPiLF's head slope 0 = ReLU)."""
    for name, value in module.legacy_buffers.items():
        state_dict.setdefault(prefix + name, torch.tensor(value))


def conv_bn_relu(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    """conv k x k ('same' padding) + BN + ReLU: eq. (1) of the GL-Fusion paper, f = sigma(phi(W * f + b))."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=k // 2, bias=False),  # BN's shift replaces the bias
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )
