"""Networks under inloop.models: registry, shapes, ablation switches, residual structure, init, a tiny overfit."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from conftest import adam_fit
from inloop.errors import ParamsError
from inloop.models import (
    MODELS,
    GLFusion,
    build_model,
    count_parameters,
    lsuv_init,
    macs_per_pixel,
    pad_to_multiple,
    register,
)
from inloop.models.glfusion import ChannelSpatialAttention
from inloop.models.registry import ResidualFilter

SMALL = {  # structure tests: small widths so everything runs in well under a second
    "glfusion": dict(channels=8, hlf_modules=2),
    "arcnn": {},
    "dncnn": dict(depth=5, channels=16),
    "vrcnn": {},
}

ABLATIONS = [  # section IV.C, Tables II-V, plus the size switches
    dict(branches=["hgf"]),
    dict(branches=["hlf"]),
    dict(branches=["hgf", "llf"]),
    dict(branches=["llf", "hgf", "hlf"]),
    dict(branches=["llf"]),
    dict(fusion="add"),
    dict(fusion="concat"),
    dict(fusion="se"),
    dict(fusion="csaf", attention_act="sigmoid"),
    dict(mixed_scale=False),
    dict(branches=["hlf"], mixed_scale=False),
    dict(shared_layers=1),
    dict(hgf_depth=2, llf_layers=3),
    dict(in_channels=3),
]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_registry_names_and_errors():
    assert {"glfusion", "arcnn", "dncnn", "vrcnn"} <= set(MODELS)
    with pytest.raises(ParamsError, match=r"models\.arch: unknown network 'nope'"):
        build_model("nope")
    with pytest.raises(ParamsError, match=r"models\.glfusion\.chanels: not a parameter"):
        build_model("glfusion", chanels=8)
    with pytest.raises(ParamsError, match=r"models\.glfusion\.fusion: 'mul' is not one of"):
        build_model("glfusion", fusion="mul")
    with pytest.raises(ParamsError, match=r"models\.glfusion\.attention_act"):
        build_model("glfusion", attention_act="relu")
    with pytest.raises(ParamsError, match=r"models\.glfusion\.branches"):
        build_model("glfusion", branches=["hgf", "xyz"])
    with pytest.raises(ParamsError, match=r"models\.dncnn\.depth"):
        build_model("dncnn", depth=1)
    assert isinstance(build_model("glfusion", channels=8, branches=["hlf", "hgf"]), GLFusion)


def test_register_decorator_for_new_networks():
    @register("_toy_test_net")
    class Toy(ResidualFilter):
        def __init__(self, in_channels: int = 1):
            super().__init__()
            self.tail = nn.Conv2d(in_channels, in_channels, 3, padding=1)

        def residual(self, x):
            return self.tail(x)

    try:
        m = build_model("_toy_test_net", in_channels=2)
        assert m(torch.rand(1, 2, 7, 9)).shape == (1, 2, 7, 9)
    finally:
        MODELS.pop("_toy_test_net")


def test_parameter_counts():
    n = count_parameters(GLFusion())  # defaults: the paper's configuration
    print(f"GL-Fusion default parameters: {n:,}")
    assert 20e6 < n < 45e6  # dominated by the 1024-channel U-Net bottleneck of HGF
    # Baselines: weights as published (VRCNN 54,512; AR-CNN 106,448) plus biases.
    assert count_parameters(build_model("vrcnn")) == 54_512 + 161
    assert count_parameters(build_model("arcnn")) == 106_448 + 113
    assert 0.5e6 < count_parameters(build_model("dncnn")) < 0.6e6
    assert macs_per_pixel(build_model("vrcnn"), size=(16, 16)) == pytest.approx(54_512)
    # 'same' convolutions, stride 1: MACs per pixel = the weights (no biases); three planes in and out
    vrcnn3 = build_model("vrcnn", in_channels=3)
    weights = sum(p.numel() for n, p in vrcnn3.named_parameters() if n.endswith("weight"))
    assert macs_per_pixel(vrcnn3, 3, (16, 16)) == weights == 54_512 + 2 * (5 * 5 * 64 + 3 * 3 * 48)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_shape_any_frame_size(name):
    m = build_model(name, **SMALL[name]).eval()
    with torch.no_grad():
        for h, w in [(36, 52), (17, 23), (8, 8)]:
            x = torch.rand(2, 1, h, w)
            assert m(x).shape == x.shape


def test_glfusion_class_d_frame():
    m = GLFusion(channels=8, hlf_modules=1).eval()
    x = torch.rand(1, 1, 240, 416)  # Class D; 240 is not a multiple of 16
    with torch.no_grad():
        assert m(x).shape == x.shape


def test_channels_last():
    m = GLFusion(channels=8, hlf_modules=1).eval()
    x = torch.rand(1, 1, 36, 52)
    with torch.no_grad():
        ref = m(x)
        out = m.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kw", ABLATIONS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_every_ablation_forward_backward(kw):
    kw = {"channels": 8, "hlf_modules": 2, **kw}
    m = build_model("glfusion", **kw)
    c = kw.get("in_channels", 1)
    x = torch.rand(2, c, 20, 28)
    y = m(x)
    assert y.shape == x.shape
    y.square().mean().backward()
    unused = [n for n, p in m.named_parameters() if p.grad is None]
    assert not unused, f"parameters outside the graph: {unused}"
    assert all(torch.isfinite(p.grad).all() for p in m.parameters())


def test_ablation_structure():
    assert GLFusion(channels=8, branches=["hgf"]).llf is None
    assert GLFusion(channels=8, branches=["hgf"]).hlf is None
    m = GLFusion(channels=8, fusion="csaf")
    assert sum(isinstance(x, ChannelSpatialAttention) for x in m.modules()) == 3  # "Three CSAF modules"
    assert GLFusion(channels=8, branches=["hlf"]).pad_multiple == 2
    assert GLFusion(channels=8, branches=["hlf"], mixed_scale=False).pad_multiple == 1
    assert GLFusion(channels=8).pad_multiple == 16
    # mixed-scale module vs simple residual module (Table III): the coarse branch is the difference
    assert count_parameters(GLFusion(channels=8, mixed_scale=False)) < count_parameters(GLFusion(channels=8))
    # LLF counts the shared first layers towards its six (section III.B)
    assert len(GLFusion(channels=8).llf.body) == 4 and len(GLFusion(channels=8).stem) == 2


@pytest.mark.parametrize("name", sorted(SMALL))
def test_zero_last_layer_is_identity(name):
    m = build_model(name, **SMALL[name])
    with torch.no_grad():
        m.last_conv.weight.zero_()
        m.last_conv.bias.zero_()
    x = torch.rand(2, 1, 19, 30)
    assert torch.equal(m(x), x)  # train mode
    assert torch.equal(m.eval()(x), x)


@pytest.mark.parametrize("name,shape", [("glfusion", (2, 1, 19, 30)), ("spilf", (2, 1, 19, 30)),
                                        ("nlconvlstm", (1, 7, 1, 16, 24))])
def test_residual_scale_multiplies_r_and_old_model_files_load_with_one(name, shape):
    kw = {"glfusion": SMALL["glfusion"], "spilf": dict(channels=8, grad_blocks=1, pixel_units=1, dru_layers=2,
                                                       growth=4, fusion_units=1),
          "nlconvlstm": dict(channels=8, pool=4, topk=2, enc_layers=1, dec_layers=1)}[name]
    m = build_model(name, **kw).eval()
    x = torch.rand(*shape)
    target = x[:, x.shape[1] // 2] if x.dim() == 5 else x
    with torch.no_grad():
        r1 = m(x) - target
        m.residual_scale.fill_(0.25)
        r2 = m(x) - target
    assert r1.abs().max() > 0 and torch.allclose(r2, 0.25 * r1, atol=1e-6)
    state = m.state_dict()
    assert float(state["residual_scale"]) == 0.25  # saved with the model
    old = {k: v for k, v in state.items() if k != "residual_scale"}  # a model file from before the scale
    fresh = build_model(name, **kw).eval()
    fresh.residual_scale.fill_(3.0)
    fresh.load_state_dict(old)
    assert float(fresh.residual_scale) == 1.0
    with torch.no_grad():
        assert torch.allclose(fresh(x) - target, r1, atol=1e-6)


def test_pad_to_multiple_and_crop():
    x = torch.arange(5 * 6, dtype=torch.float32).view(1, 1, 5, 6)
    p = pad_to_multiple(x, 4)
    assert p.shape == (1, 1, 8, 8)
    assert torch.equal(p[..., :5, :6], x)  # original at the top-left (block grid kept)
    assert torch.equal(p[..., 5, :6], x[..., 3, :])  # reflect: row 5 mirrors row 3
    assert pad_to_multiple(x, 1) is x
    tiny = torch.rand(1, 1, 3, 3)  # pad 13 >= 3: falls back to replicate
    q = pad_to_multiple(tiny, 16)
    assert q.shape == (1, 1, 16, 16) and torch.equal(q[..., -1, -1], tiny[..., -1, -1])

    m = GLFusion(channels=8, hlf_modules=1).eval()
    x = torch.rand(1, 1, 21, 35)
    with torch.no_grad():
        r = m.residual(pad_to_multiple(x, 16))
        assert r.shape[-2:] == (32, 48)
        torch.testing.assert_close(m(x), x + r[..., :21, :35])
        # a frame already a multiple of 16 is not padded: its residual is the plain one
        z = torch.rand(1, 1, 32, 48)
        torch.testing.assert_close(m(z), z + m.residual(z))


def test_csa_tanh_can_suppress_sigmoid_cannot():
    tanh = ChannelSpatialAttention(16, act="tanh")
    with torch.no_grad():
        tanh.mlp[-1].bias.fill_(-3.0)  # pre-activations well below zero
        tanh.spatial.bias.fill_(-3.0)
    sig = ChannelSpatialAttention(16, act="sigmoid")
    sig.load_state_dict(tanh.state_dict())
    f = torch.randn(2, 16, 12, 12)
    with torch.no_grad():
        assert tanh.channel_attention(f).min() < 0 and tanh.spatial_attention(f).min() < 0
        assert sig.channel_attention(f).min() > 0 and sig.spatial_attention(f).min() > 0
        assert tanh(f).abs().mean() < 0.5 * f.abs().mean()  # suppressed: f * (1 + M) with M < 0
        assert (sig(f).abs() >= f.abs()).all()  # sigmoid + residual can only emphasise
    # and with random weights tanh takes both signs (it can emphasise and suppress)
    rnd = ChannelSpatialAttention(16, act="tanh")
    with torch.no_grad():
        m = rnd.channel_attention(f)
    assert m.min() < 0 < m.max()


def _conv_output_stds(model, x):
    stds, hooks = {}, []
    for n, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d) and mod is not model.last_conv:
            hooks.append(mod.register_forward_hook(
                lambda m, i, o, n=n: stds.__setitem__(n, float(o.detach().clone().std()))))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return stds


@pytest.mark.parametrize("name", ["glfusion", "vrcnn", "dncnn"])
def test_lsuv_init(name):
    m = build_model(name, **SMALL[name])
    tgt = torch.rand(4, 1, 32, 32)
    x = (tgt + 0.03 * torch.randn_like(tgt)).clamp(0, 1)
    buffers = copy.deepcopy(dict(m.named_buffers()))
    reported = lsuv_init(m, x, tgt)
    # BN running statistics untouched; the model is left in its mode (train)
    assert all(torch.equal(v, buffers[k]) for k, v in m.named_buffers())
    stds = _conv_output_stds(m.train(), x)
    assert len(stds) >= 3
    for n, s in stds.items():
        assert abs(s - 1.0) < 0.05, f"{n}: output std {s:.3f} after LSUV"
    with torch.no_grad():
        r = m(x) - x
    want = float((tgt - x).std())
    assert abs(float(r.std()) - want) < 0.1 * want  # IV.B: std(R) == std(ground-truth distortion)
    assert reported[[k for k in reported][-1]] == pytest.approx(float(r.std()), rel=1e-3)


def test_lsuv_without_target_gives_small_residual():
    m = build_model("arcnn")
    x = torch.rand(2, 1, 24, 24)
    lsuv_init(m, x, residual_std=1e-3)
    with torch.no_grad():
        assert float((m(x) - x).std()) == pytest.approx(1e-3, rel=0.05)


def test_glfusion_overfits_one_patch():
    torch.manual_seed(0)
    m = GLFusion(channels=8, hlf_modules=1)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    tgt = (0.5 + 0.3 * torch.sin(6 * xx + 4 * yy) * torch.cos(5 * yy)).view(1, 1, 32, 32)
    x = (tgt + 0.05 * torch.randn_like(tgt)).clamp(0, 1)
    lsuv_init(m, x, tgt)
    start, end = adam_fit(m, x, tgt, steps=80, lr=2e-3)  # the paper's learning rate (IV.B)
    print(f"overfit MSE {start:.2e} -> {end:.2e}")
    assert end < 0.5 * start, (start, end)


def test_lsuv_init_on_a_clip_network_measures_r_against_the_centre_frame():
    from inloop.models import build_model, lsuv_init

    torch.manual_seed(0)
    m = build_model("nlconvlstm", channels=8, pool=4, topk=4, frames=3)
    x = torch.rand(4, 3, 1, 32, 32)
    target = x[:, 1] + 0.05 * torch.randn(4, 1, 32, 32)
    stds = lsuv_init(m, x, target)
    with torch.no_grad():
        r = m(x) - x[:, 1]
    assert abs(float(r.std()) - float((target - x[:, 1]).std())) < 1e-3 and stds["tail"] == pytest.approx(float(r.std()), rel=1e-3)
    lsuv_init(m, x, None, residual_std=0.0)
    with torch.no_grad():
        assert torch.equal(m(x), x[:, 1])  # the untrained filter is the identity on the target frame
