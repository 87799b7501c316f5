"""Model registry, the shared residual-filter base class and small helpers.

Every network in this package is a :class:`ResidualFilter`: it maps a normalised
reconstructed frame ``X`` in [0, 1] of shape (N, C, H, W) to ``Y = X + R`` where
``R`` is the predicted coding distortion. ``forward`` pads any H, W to what the
network needs (``pad_multiple``) and crops ``R`` back, so a 416x240 or 1920x1080
frame works unchanged.

Networks register themselves with ``@register("name")``; ``build_model`` turns
the ``models.<name>`` block of params.yaml into a module and names the offending
key when something is wrong.

A researcher's own network needs no edit here (README, "Your own filter"): ``models.<name>.arch`` may
also name an entry point of the ``inloop.models`` group (declared in the user's own ``pyproject.toml``),
a ``package.module:Class`` or a ``path/to/file.py:Class``. :func:`network_class` resolves all four;
:func:`network_source` is the hash of such a network's source (training's identity, so an edit retrains
it and nothing else); :mod:`inloop.models.contract` checks what it computes before any job.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
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


#: The entry-point group a researcher's package declares its networks in (``[project.entry-points."inloop.models"]``).
ENTRY_POINT_GROUP = "inloop.models"

_RESOLVED: dict[str, type[nn.Module]] = {}


def is_reference(arch: Any) -> bool:
    """``package.module:Class`` or ``path/to/file.py:Class``: a network named by where its code is."""
    return isinstance(arch, str) and ":" in arch


def is_builtin(cls: type) -> bool:
    """A network of this package (its code is part of the train stage's code hash)."""
    return cls.__module__.split(".")[:2] == ["inloop", "models"]


def _entry_points() -> dict:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_networks() -> list[str]:
    """The names ``arch`` may take besides a reference: this package's networks and installed entry points."""
    return sorted(set(MODELS) | set(_entry_points()))


def _import_reference(arch: str) -> Any:
    """The object ``module:attr`` or ``file.py:attr`` names, imported; any failure is one ParamsError."""
    where, _, attr = arch.rpartition(":")
    if not where or not attr:
        raise ParamsError(f"{arch!r}: a reference is 'package.module:Class' or 'path/to/file.py:Class'")
    try:
        if where.endswith(".py"):
            path = Path(where).expanduser().resolve()
            if not path.is_file():
                raise ParamsError(f"{arch!r}: file {where} not found (a relative path is read from the "
                                  f"workflow's folder, {Path.cwd()})")
            name = f"inloop_user_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
            module = sys.modules.get(name)
            if module is None:
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[name]
                    raise
        else:
            module = importlib.import_module(where)
    except ParamsError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's import can raise anything; say which and why
        raise ParamsError(f"{arch!r}: importing {where} failed ({type(exc).__name__}: {_first_line(exc)}); "
                          "is the package installed in this environment (pip install -e it) or on PYTHONPATH?"
                          ) from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ParamsError(f"{arch!r}: {where} has no {attr!r}")
        obj = getattr(obj, part)
    return obj


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else ""


def network_class(arch: str) -> type[nn.Module]:
    """The network class ``arch`` names: a network of this package (``glfusion``), an entry point of the
    ``inloop.models`` group installed in this environment, ``package.module:Class`` or ``path/file.py:Class``.

    A name that resolves to nothing, an import that fails, or an object that is not an ``nn.Module`` subclass is
    one :class:`ParamsError` (without the ``models.<name>`` prefix: the caller knows the entry)."""
    if arch in MODELS:
        return MODELS[arch]
    if arch in _RESOLVED:
        return _RESOLVED[arch]
    if not isinstance(arch, str) or not arch:
        raise ParamsError(f"{arch!r} is not a network name")
    eps = {} if is_reference(arch) else _entry_points()
    if arch in eps:
        try:
            obj = eps[arch].load()
        except Exception as exc:  # noqa: BLE001
            raise ParamsError(f"entry point {arch!r} of group {ENTRY_POINT_GROUP} ({eps[arch].value}) could not be "
                              f"loaded ({type(exc).__name__}: {_first_line(exc)})") from None
    elif is_reference(arch):
        obj = _import_reference(arch)
    else:
        raise ParamsError(f"unknown network {arch!r}; known: {', '.join(known_networks())}; or name your own as "
                          "'package.module:Class', 'path/to/file.py:Class' or an entry point of group "
                          f"{ENTRY_POINT_GROUP} (README, \"Your own filter\")")
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise ParamsError(f"{arch!r} is {type(obj).__name__} {getattr(obj, '__name__', obj)!r}, not an nn.Module "
                          "subclass: a network is a torch.nn.Module class")
    _RESOLVED[arch] = obj
    return obj


def network_source(arch: str) -> str | None:
    """sha256 (16 hex digits) of the source of a network from outside this package, ``None`` for this package's.

    What is hashed: every ``*.py`` of the top-level package the class lives in (so an edit to a helper module of
    that package counts), or the single module file of a class outside any package. It enters training's identity
    (:func:`inloop.params.train_identity`, the checkpoint's key): an edit retrains that network and only it."""
    cls = network_class(arch)
    if is_builtin(cls):
        return None
    top = sys.modules.get(cls.__module__.split(".")[0])
    roots = [Path(p) for p in getattr(top, "__path__", [])]  # a package: all of it; a lone module: its file
    files = sorted(f for r in roots for f in r.rglob("*.py")) if roots else []
    if not files:
        try:
            src = inspect.getsourcefile(cls)
        except TypeError:
            src = None
        if src is None:
            raise ParamsError(f"{arch!r}: the source of {cls.__qualname__} cannot be found (a network defined in a "
                              "notebook or at the prompt?): training's identity hashes it, so put it in a file")
        files, roots = [Path(src)], [Path(src).parent]
    h = hashlib.sha256()
    for f in files:
        rel = next((f.relative_to(r) for r in roots if f.is_relative_to(r)), f.name)
        h.update(str(rel).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def model_kwargs(name: str) -> list[str]:
    """The constructor keywords a network accepts (its params keys); ``**kwargs`` is not listed."""
    sig = inspect.signature(network_class(name).__init__)
    return [p.name for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _takes_any_keyword(name: str) -> bool:
    sig = inspect.signature(network_class(name).__init__)
    return any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


def unknown_kwargs(name: str, kwargs: dict) -> list[str]:
    """Settings of ``kwargs`` the network ``name`` does not take (none where it takes ``**kwargs``)."""
    return [] if _takes_any_keyword(name) else sorted(set(kwargs) - set(model_kwargs(name)))


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the network ``name`` (:func:`network_class`) from its ``models.<name>`` params.

    Raises :class:`ParamsError` naming the params key for an unknown network,
    an unknown keyword, or a bad value.
    """
    try:
        cls = network_class(name)
    except ParamsError as e:
        raise ParamsError(f"models.arch: {e}") from None
    unknown = unknown_kwargs(name, kwargs)
    if unknown:
        raise ParamsError(
            f"models.{name}.{unknown[0]}: not a parameter of {name}; accepted: {', '.join(model_kwargs(name))}"
        )
    try:
        return cls(**kwargs)
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
