"""LPIPS (AlexNet v0.1, plain torch): the network's invariants, the weight loaders, the unavailable path."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from inloop.errors import InloopError
from inloop.evaluation import lpips as L
from inloop.evaluation.metrics import evaluate_sequence
from inloop.yuv import Frame, YuvFormat, write_yuv


def _random_model(seed=0) -> L.LPIPS:
    torch.manual_seed(seed)
    m = L.LPIPS()
    for lin in m.lins:  # the real linear weights are non-negative
        lin.weight.data.abs_()
    return m


def _images(n=2, h=64, w=80, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, h, w, generator=g) * 2 - 1, torch.rand(n, 3, h, w, generator=g) * 2 - 1


def test_forward_zero_for_identical_and_symmetric():
    m = _random_model()
    x, y = _images()
    with torch.no_grad():
        assert torch.equal(m(x, x), torch.zeros(2))
        dxy, dyx = m(x, y), m(y, x)
    assert torch.allclose(dxy, dyx, atol=0, rtol=1e-6)
    assert bool((dxy > 0).all())
    with torch.no_grad():  # [0, 1] inputs with normalize=True are the same as [-1, 1] inputs
        assert torch.allclose(m((x + 1) / 2, (y + 1) / 2, normalize=True), dxy, rtol=1e-5)
    with pytest.raises(ValueError, match="RGB batches"):
        m(x[:, :1], y[:, :1])


def test_alexnet_layout_matches_torchvision_features():
    # Shapes of the five ReLU outputs for a 224x224 input, as torchvision's AlexNet gives them.
    feats = L.AlexNetFeatures()(torch.zeros(1, 3, 224, 224))
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 55, 55), (192, 27, 27), (384, 13, 13), (256, 13, 13),
                                                   (256, 13, 13)]


def _torchvision_style_state(model: L.LPIPS) -> dict:
    sd = {f"features.{i}.{k}": getattr(model.net.convs[str(i)], k).detach().clone()
          for i in (0, 3, 6, 8, 10) for k in ("weight", "bias")}
    sd["classifier.1.weight"] = torch.zeros(2, 2)  # ignored, as in the real checkpoint
    return sd


def _save(obj, path: Path) -> str:
    torch.save(obj, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_missing_backbone_is_reported_unavailable_never_a_number(tmp_path, monkeypatch):
    monkeypatch.delenv("INLOOP_LPIPS_BACKBONE", raising=False)
    params = {"metrics": {"lpips": {"backbone_path": str(tmp_path / "nope.pth"), "cache_dir": str(tmp_path)}}}
    with pytest.raises(L.LpipsUnavailable, match=r"^LPIPS unavailable: AlexNet backbone .*nope.pth") as exc:
        L.load_lpips(params)
    assert isinstance(exc.value, InloopError)
    with pytest.warns(RuntimeWarning, match="LPIPS unavailable"):
        model, reason = L.try_load_lpips(params)
    assert model is None and "metrics.lpips.backbone_path" in reason

    # downloads off and an empty cache
    params = {"metrics": {"lpips": {"cache_dir": str(tmp_path / "c"), "download": False}}}
    with pytest.raises(L.LpipsUnavailable, match="downloads are off"):
        L.fetch_backbone(params)
    with pytest.raises(L.LpipsUnavailable, match="downloads are off"):
        L.fetch_linear(params)

    # evaluation then records LPIPS as unavailable, with None values
    fmt = YuvFormat(32, 32)
    fr = Frame(np.full((32, 32), 100, np.uint8), np.full((16, 16), 128, np.uint8), np.full((16, 16), 128, np.uint8))
    a, b = tmp_path / "a_32x32_30fps_8bit_420.yuv", tmp_path / "b_32x32_30fps_8bit_420.yuv"
    write_yuv(a, [fr], fmt)
    write_yuv(b, [fr._replace(y=fr.y + 1)], fmt)
    res = evaluate_sequence(a, b, ms_ssim_y=False, lpips_unavailable=reason)
    assert res["mean"]["lpips"] is None and res["per_frame"][0]["lpips"] is None
    assert res["notes"]["lpips"].startswith("LPIPS unavailable")


def test_download_checks_the_hash_and_caches_nothing_wrong(tmp_path, monkeypatch):
    monkeypatch.delenv("INLOOP_LPIPS_BACKBONE", raising=False)
    bogus = tmp_path / "bogus.pth"
    bogus.write_bytes(b"not alexnet")
    params = {"metrics": {"lpips": {"cache_dir": str(tmp_path / "cache"), "backbone_url": bogus.as_uri()}}}
    with pytest.raises(L.LpipsUnavailable, match="expected 7be5be79"):
        L.fetch_backbone(params)
    assert not (tmp_path / "cache" / L.ALEXNET_FILE).exists()
    # an unreachable URL is a clear message naming the params key to set
    params["metrics"]["lpips"]["backbone_url"] = (tmp_path / "absent.pth").as_uri()
    with pytest.raises(L.LpipsUnavailable, match="cannot download .*backbone_path"):
        L.fetch_backbone(params)
    # a local file with the wrong hash is refused too
    params = {"metrics": {"lpips": {"backbone_path": str(bogus)}}}
    with pytest.raises(L.LpipsUnavailable, match="sha256"):
        L.fetch_backbone(params)


def test_loading_from_local_files_and_a_wheel(tmp_path, monkeypatch):
    """The full loader on stand-in files whose hashes are declared for the test."""
    monkeypatch.delenv("INLOOP_LPIPS_BACKBONE", raising=False)
    monkeypatch.delenv("INLOOP_LPIPS_LINEAR", raising=False)
    src = _random_model(seed=3)
    backbone = tmp_path / "alexnet-stand-in.pth"
    bb_sha = _save(_torchvision_style_state(src), backbone)
    lin_sd = {f"lin{k}.model.1.weight": src.lins[k].weight.detach().clone() for k in range(5)}
    buf = io.BytesIO()
    torch.save(lin_sd, buf)
    lin_bytes = buf.getvalue()
    wheel = tmp_path / "lpips-stand-in.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(L.LINEAR_MEMBER, lin_bytes)
    monkeypatch.setattr(L, "ALEXNET_SHA256_PREFIX", bb_sha[:8])
    monkeypatch.setattr(L, "LINEAR_SHA256", hashlib.sha256(lin_bytes).hexdigest())
    monkeypatch.setattr(L, "LPIPS_WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())

    params = {"metrics": {"lpips": {"backbone_path": str(backbone), "linear_path": str(wheel),
                                    "cache_dir": str(tmp_path / "cache"), "download": False}}}
    model = L.load_lpips(params)
    assert (tmp_path / "cache" / L.LINEAR_CACHE_NAME).is_file()  # extracted from the wheel, cached
    x, y = _images(1, 48, 48)
    with torch.no_grad():
        assert torch.allclose(model(x, y), src(x, y))
    # second time from the cache alone (no wheel)
    params["metrics"]["lpips"].pop("linear_path")
    assert isinstance(L.load_lpips(params), L.LPIPS)

    # the sequence evaluator runs LPIPS on RGB frames
    fmt = YuvFormat(64, 64)
    rng = np.random.default_rng(0)
    fr = Frame(rng.integers(16, 236, (64, 64), dtype=np.uint8), np.full((32, 32), 128, np.uint8),
               np.full((32, 32), 128, np.uint8))
    a, b = tmp_path / "a_64x64_30fps_8bit_420.yuv", tmp_path / "b_64x64_30fps_8bit_420.yuv"
    write_yuv(a, [fr, fr], fmt)
    write_yuv(b, [fr, fr._replace(y=(fr.y // 2 + 60).astype(np.uint8))], fmt)
    res = evaluate_sequence(a, b, ms_ssim_y=False, lpips=model)
    assert res["per_frame"][0]["lpips"] == 0.0 and res["per_frame"][1]["lpips"] > 0
    assert res["notes"]["rgb"]["matrix"] == "bt709"


REAL_BACKBONE = os.environ.get("INLOOP_LPIPS_BACKBONE")


@pytest.mark.skipif(not (REAL_BACKBONE and Path(REAL_BACKBONE).is_file()),
                    reason="torchvision's AlexNet weights (alexnet-owt-7be5be79.pth) are not available here "
                           "(no internet to download.pytorch.org); set INLOOP_LPIPS_BACKBONE to run")
def test_real_weights_behave_like_lpips():
    model = L.load_lpips()
    x, _ = _images(1, 64, 64)
    noise = torch.randn_like(x, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        d = [model(x, (x + s * noise).clamp(-1, 1)).item() for s in (0.0, 0.05, 0.2, 0.8)]
    assert d[0] == 0.0 and d[1] < d[2] < d[3] and 0 < d[3] < 2


def _stub_torchvision(monkeypatch):
    """A stand-in ``torchvision.models.alexnet`` (random weights, torchvision's layer layout) so the
    reference ``lpips`` code can be imported without installing torchvision."""
    import types

    from torch import nn

    def alexnet(pretrained=False, **kw):
        feats = nn.Sequential(nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(True), nn.MaxPool2d(3, 2),
                              nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(True), nn.MaxPool2d(3, 2),
                              nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(True), nn.Conv2d(384, 256, 3, padding=1),
                              nn.ReLU(True), nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(True), nn.MaxPool2d(3, 2))
        return types.SimpleNamespace(features=feats)

    tv, tvm = types.ModuleType("torchvision"), types.ModuleType("torchvision.models")
    for name in ("vgg16", "squeezenet1_1", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"):
        setattr(tvm, name, None)
    tvm.alexnet, tv.models = alexnet, tvm
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.models", tvm)


def test_forward_equals_the_reference_lpips_code(tmp_path, monkeypatch):
    """Our network against the ``lpips`` package's own code (from the pinned wheel), same weights."""
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                           L.LPIPS_PIP_SPEC, "-d", str(tmp_path)], capture_output=True, text=True, timeout=120)
    wheel = tmp_path / L.LPIPS_WHEEL_FILE
    if proc.returncode or not wheel.is_file():
        pytest.skip(f"cannot pip download {L.LPIPS_PIP_SPEC} (offline?)")
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == L.LPIPS_WHEEL_SHA256
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tmp_path / "src")
    _stub_torchvision(monkeypatch)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    for name in [m for m in sys.modules if m == "lpips" or m.startswith("lpips.")]:
        monkeypatch.delitem(sys.modules, name)
    import lpips as reference  # the package's code; imports our torchvision stand-in

    try:
        torch.manual_seed(0)
        ref = reference.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False).eval()
        convs = [m for s in (ref.net.slice1, ref.net.slice2, ref.net.slice3, ref.net.slice4, ref.net.slice5)
                 for m in s if isinstance(m, torch.nn.Conv2d)]
        params = {"metrics": {"lpips": {"linear_path": str(wheel), "cache_dir": str(tmp_path / "cache")}}}
        ours = L.LPIPS()
        ours.net.load_torchvision_state({f"features.{i}.{k}": getattr(c, k).data
                                         for i, c in zip((0, 3, 6, 8, 10), convs) for k in ("weight", "bias")})
        ours.load_linear_state(L._load_state(L.fetch_linear(params, download=False)))
        x, y = _images(3, 96, 128)
        with torch.no_grad():
            a, b = ref(x, y).flatten(), ours(x, y)
        print(f"LPIPS vs lpips package code: max |diff| = {(a - b).abs().max().item():.1e}")
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)
    finally:
        for name in [m for m in sys.modules if m == "lpips" or m.startswith("lpips.")]:
            del sys.modules[name]
