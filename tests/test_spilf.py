"""SPiLF (paper 001): gradient map, generator, patch discriminator, RaGAN/structural/LPIPS losses, two-stage task."""

from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from inloop.errors import InloopError, ParamsError
from inloop.models import lpips as L
from inloop.models import build_model
from inloop.models.spilf import SPiLF, PatchDiscriminator, gradient_map
from inloop.training.data import PatchSampler
from inloop.training.spilf import (
    VARIANTS,
    SPiLFTask,
    lpips_loss,
    ragan_d_loss,
    ragan_g_loss,
    spilf_config,
    structural_loss,
)
from inloop.training.trainer import TrainConfig, Trainer, seed_everything

TINY = dict(channels=8, grad_blocks=1, pixel_units=1, dru_layers=2, growth=4, reduction=2)
TINY_D = {"disc_channels": 8, "disc_layers": 2}  # patches >= 12


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(autouse=True)
def no_lpips_env(monkeypatch):
    monkeypatch.delenv("INLOOP_LPIPS_BACKBONE", raising=False)
    monkeypatch.delenv("INLOOP_LPIPS_LINEAR", raising=False)


def no_lpips_params(tmp_path) -> dict:
    """Params under which the LPIPS weights are unavailable: an empty cache and downloads off."""
    return {"metrics": {"lpips": {"cache_dir": str(tmp_path / "no-lpips"), "download": False}}}


def synthetic_store(n: int, size: int, seed: int = 0) -> np.ndarray:
    """(n, 2, 1, size, size) uint8 rows: [degraded, original]. The original is a smooth
    random texture; the degraded one is its 4x4 block means (blocking, lost detail) + noise."""
    g = torch.Generator().manual_seed(seed)
    orig = F.interpolate(torch.rand(n, 1, size // 4, size // 4, generator=g), size=(size, size),
                         mode="bicubic", align_corners=False).clamp(0, 1)
    blocks = F.interpolate(F.avg_pool2d(orig, 4), scale_factor=4, mode="nearest")
    dec = (blocks + 0.02 * torch.randn(orig.shape, generator=g)).clamp(0, 1)
    return torch.stack([dec, orig], dim=1).mul(255).round().to(torch.uint8).numpy()


def pair(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Store rows -> (decoded, original) float batches in [0, 1]."""
    return tuple(torch.from_numpy(rows[:, i].astype(np.float32) / 255) for i in (0, 1))


# --------------------------------------------------------------------------- gradient map (2.1.1)


def test_gradient_map_of_a_ramp_is_the_central_difference():
    a, b = 0.01, 0.003
    yy, xx = torch.meshgrid(torch.arange(9.0), torch.arange(11.0), indexing="ij")
    g = gradient_map((a * xx)[None, None])
    # f[x+1] - f[x-1] = 2a inside (the equation has no 1/2), one-sided a on the first/last column
    assert torch.allclose(g[..., 1:-1], torch.full_like(g[..., 1:-1], 2 * a), atol=1e-6)
    assert torch.allclose(g[..., [0, -1]], torch.full_like(g[..., [0, -1]], a), atol=1e-6)
    g = gradient_map((a * xx + b * yy)[None, None])
    assert torch.allclose(g[..., 1:-1, 1:-1], torch.full_like(g[..., 1:-1, 1:-1], 2 * (a * a + b * b) ** 0.5),
                          atol=1e-6)
    # interior against the equation written out; flat image: finite gradient, ~0 value
    f = torch.rand(2, 3, 7, 6)
    dx = f[..., 1:-1, :-2] - f[..., 1:-1, 2:]
    dy = f[..., :-2, 1:-1] - f[..., 2:, 1:-1]
    assert torch.allclose(gradient_map(f)[..., 1:-1, 1:-1], (dx**2 + dy**2).sqrt(), atol=1e-5)
    flat = torch.full((1, 1, 5, 5), 0.5, requires_grad=True)
    gradient_map(flat).sum().backward()
    assert torch.isfinite(flat.grad).all() and gradient_map(flat.detach()).max() < 1e-5


# --------------------------------------------------------------------------- networks


def test_generator_any_size_identity_and_gradient_output():
    net = build_model("spilf", **TINY)
    assert isinstance(net, SPiLF)
    x = torch.rand(2, 1, 37, 29)
    y, g_hat = net(x, return_gradient=True)
    assert y.shape == x.shape and g_hat.shape == x.shape
    assert torch.equal(net(x), y)
    assert not torch.allclose(y, x)
    torch.nn.init.zeros_(net.last_conv.weight)
    torch.nn.init.zeros_(net.last_conv.bias)
    assert torch.equal(net(x), x)
    net3 = build_model("spilf", **{**TINY, "in_channels": 3})
    assert net3(torch.rand(1, 3, 17, 20)).shape == (1, 3, 17, 20)


def test_output_head_slope_keeps_gradients_where_a_relu_head_dies_and_is_saved():
    """The head's LeakyReLU (out_slope, ESRGAN's 0.2): with every head unit pushed below zero a ReLU
    head passes no gradient to its first conv (the QP 37 demo model ended at the identity that way);
    the leaky head still does. The slope travels in the state dict; files without it load as ReLU."""
    x, y = pair(synthetic_store(2, 24, seed=3))
    grads = {}
    for slope in (0.0, 0.2):
        torch.manual_seed(0)
        net = build_model("spilf", **TINY, out_slope=slope)
        torch.nn.init.constant_(net.out[0].bias, -1e3)  # every pre-activation of the head < 0
        torch.nn.init.normal_(net.last_conv.weight, std=0.1)
        F.l1_loss(net(x), y).backward()
        grads[slope] = net.out[0].weight.grad.abs().sum().item()
    assert grads[0.0] == 0 and grads[0.2] > 0
    assert build_model("spilf", **TINY).out[1].slope.item() == pytest.approx(0.2)
    linear = build_model("spilf", **TINY, out_slope=1)
    h = torch.randn(1, TINY["channels"], 5, 5)
    assert torch.equal(linear.out[1](h), h)

    leaky = build_model("spilf", **TINY)
    state = leaky.state_dict()
    assert state["out.1.slope"].item() == pytest.approx(0.2)
    fresh = build_model("spilf", **TINY, out_slope=0.5)
    fresh.load_state_dict(state)
    assert fresh.out[1].slope.item() == pytest.approx(0.2)  # the file's slope, not the constructor's
    del state["out.1.slope"]  # a model file written before out_slope existed
    fresh.load_state_dict(state)
    assert fresh.out[1].slope.item() == 0.0
    with pytest.raises(ParamsError, match=r"models\.spilf\.out_slope"):
        build_model("spilf", **TINY, out_slope=1.5)


def test_discriminator_gives_a_patch_map():
    d = PatchDiscriminator(1, 8, 3)
    assert d(torch.rand(2, 1, 48, 48)).shape == (2, 1, 4, 4)
    assert d(torch.rand(2, 1, 64, 40)).shape == (2, 1, 6, 3)
    assert PatchDiscriminator(1, 8, 2)(torch.rand(1, 1, 12, 12)).shape == (1, 1, 1, 1)
    with pytest.raises(ValueError, match="at least 24x24"):
        d(torch.rand(1, 1, 20, 32))


# --------------------------------------------------------------------------- losses (2.2)


def test_ragan_losses_match_the_equations():
    g = torch.Generator().manual_seed(3)
    c_r, c_f = torch.randn(4, 1, 3, 3, generator=g), torch.randn(4, 1, 3, 3, generator=g) - 0.5

    def d_pat(a, b):  # sigma(C(a) - E[C(b)]), expectation over every patch of the batch
        return torch.sigmoid(a - b.mean())

    l_d = -torch.log(d_pat(c_r, c_f)).mean() - torch.log(1 - d_pat(c_f, c_r)).mean()
    l_g = -torch.log(1 - d_pat(c_r, c_f)).mean() - torch.log(d_pat(c_f, c_r)).mean()
    l_g_literal = -(1 - torch.log(d_pat(c_r, c_f))).mean() - torch.log(d_pat(c_f, c_r)).mean()
    assert torch.allclose(ragan_d_loss(c_r, c_f), l_d, atol=1e-6)
    assert torch.allclose(ragan_g_loss(c_r, c_f), l_g, atol=1e-6)
    assert torch.allclose(ragan_g_loss(c_r, c_f, "literal"), l_g_literal, atol=1e-6)


def test_discriminator_steps_lower_l_d_on_a_separable_toy():
    g = torch.Generator().manual_seed(5)
    real = torch.rand(8, 1, 24, 24, generator=g)                             # sharp noise
    fake = F.avg_pool2d(torch.rand(8, 1, 24, 24, generator=g), 5, 1, 2, count_include_pad=False)  # blurred
    d = PatchDiscriminator(1, 8, 2)
    opt = torch.optim.Adam(d.parameters(), lr=1e-3, betas=(0.9, 0.999))
    losses = []
    for _ in range(6):
        opt.zero_grad()
        loss = ragan_d_loss(d(real), d(fake))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    after = ragan_d_loss(d(real), d(fake)).item()
    assert after < losses[0] and losses[1] < losses[0]
    with torch.no_grad():
        assert torch.sigmoid(d(real) - d(fake).mean()).mean() > 0.5  # D_Pat(x_r, x_f): real judged more real


def test_structural_loss_uses_gradient_maps():
    y = torch.rand(2, 1, 16, 16)
    assert structural_loss(y, gradient_map(y), y).item() < 1e-6
    assert structural_loss(y + 0.3, None, y).item() < 1e-6     # a shift keeps the structure
    blurred = F.avg_pool2d(y, 3, 1, 1, count_include_pad=False)
    assert structural_loss(blurred, None, y).item() > 0.05     # blur loses it


def test_lpips_loss_on_grey_planes_uses_the_project_lpips():
    torch.manual_seed(0)
    m = L.LPIPS()
    for lin in m.lins:
        lin.weight.data.abs_()
    a, b = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    expected = m(a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1), normalize=True).mean()
    assert torch.allclose(lpips_loss(m, a, b), expected)
    assert lpips_loss(m, a, a).item() == 0.0


# --------------------------------------------------------------------------- params


def test_params_errors_name_the_key():
    assert spilf_config({"variant": "arabica"}).weights == VARIANTS["arabica"]
    cfg = spilf_config({"variant": "arabica", "weights": {"lpips": 2}})
    assert cfg.weights == {"l1": 1.0, "lpips": 2.0, "adv": 0.0, "struct": 5e-3} and cfg.disc_lr == cfg.lr == 1e-4
    bad = [({"variant": "robusta"}, r"train\.spilf\.variant"),
           ({"weights": {"lpips": -1}}, r"train\.spilf\.weights\.lpips"),
           ({"weights": {"gan": 1}}, r"train\.spilf\.weights\.gan"),
           ({"weights": {"l1": 0, "struct": 0}}, r"train\.spilf\.weights"),
           ({"stage1_steps": -1}, r"train\.spilf\.stage1_steps"),
           ({"lr": 1e-3}, r"train\.spilf\.lr: not a SPiLF training parameter.*the learning rate is train\.lr"),
           ({"disc_lr": "fast"}, r"train\.spilf\.disc_lr"),
           ({"plateau_window": 0}, r"train\.spilf\.plateau_window"),
           ({"plateau_patience": 1.5}, r"train\.spilf\.plateau_patience"),
           ({"gan_form": "wgan"}, r"train\.spilf\.gan_form"),
           ({"disc_layers": 0}, r"train\.spilf\.disc_layers"),
           ({"stage_one": 3}, r"train\.spilf\.stage_one: not a SPiLF")]
    for params, match in bad:
        with pytest.raises(ParamsError, match=match):
            spilf_config(params)
    with pytest.raises(ParamsError, match=r"^train\.lr: "):
        spilf_config({}, lr=0)


def test_one_learning_rate_key_reaches_the_generator():
    """Issue #21: SPiLF read `train.spilf.lr` while `train.lr` (its identity) was silently ignored. Now the
    generator's Adam runs at train.lr, and the discriminator's at disc_lr, defaulting to the same."""
    from inloop.training.run import make_task

    gen = build_model("spilf", channels=4, grad_blocks=1, pixel_units=1, dru_layers=1, growth=4, fusion_units=1,
                      reduction=2)
    task = make_task("spilf", gen, TrainConfig(steps=2, lr=3e-3),
                     {"spilf": {"variant": "arabica", "weights": {"adv": 0.05}}})
    assert task.opt_g.param_groups[0]["lr"] == 3e-3 and task.opt_d.param_groups[0]["lr"] == 3e-3


def test_schema_spilf_block_matches_the_training_code():
    """The params schema validates `train.spilf` before any job runs; it must name exactly the keys, variants,
    GAN forms and loss weights inloop.training.spilf accepts."""
    from inloop.params import _schema
    from inloop.training.spilf import DEFAULTS, GAN_FORMS, WEIGHT_KEYS

    block = _schema()["properties"]["train"]["properties"]["spilf"]["properties"]
    assert set(block) == set(DEFAULTS)
    assert block["variant"]["enum"] == list(VARIANTS) and block["gan_form"]["enum"] == list(GAN_FORMS)
    assert list(block["weights"]["properties"]) == list(WEIGHT_KEYS)
    with pytest.raises(ParamsError, match=r"models\.spilf\.growth"):
        build_model("spilf", growth=0)


# --------------------------------------------------------------------------- task


def test_lpips_unavailable_warns_once_and_the_rest_trains(tmp_path):
    params = {"variant": "arabica-perceptual", "stage1_steps": 0, **TINY_D}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        task = SPiLFTask(SPiLF(**TINY), params, lpips_params=no_lpips_params(tmp_path))
    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(msgs) == 1 and "LPIPS unavailable" in msgs[0] and "dropped" in msgs[0]
    assert task.lpips_available is False and "LPIPS unavailable" in task.lpips_unavailable_reason
    x, y = pair(synthetic_store(4, 24))
    d0 = [p.clone() for p in task.discriminator.parameters()]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no further warning while training
        out = task.train_step((x, y), contextlib.nullcontext)
    assert "lpips" not in out and out["stage"].item() == 2
    assert out["d_adv"].item() > 0 and out["g_adv"].item() > 0
    w = task.config.weights
    assert torch.allclose(out["total"], w["l1"] * out["l1"] + w["struct"] * out["struct"] + w["adv"] * out["g_adv"])
    assert any(not torch.equal(a, b) for a, b in zip(d0, task.discriminator.parameters()))
    assert SPiLFTask(SPiLF(**TINY), {"variant": "arabica"}).lpips_available is None


def test_lpips_term_enters_the_total_loss_in_stage_two():
    torch.manual_seed(0)
    m = L.LPIPS()
    for lin in m.lins:
        lin.weight.data.abs_()
    task = SPiLFTask(SPiLF(**TINY), {"weights": {"adv": 0, "lpips": 2.0}, "stage1_steps": 1}, lpips=m)
    assert task.lpips_available is True and task.discriminator is None
    x, y = pair(synthetic_store(2, 32))
    first = task.train_step((x, y), contextlib.nullcontext)
    second = task.train_step((x, y), contextlib.nullcontext)
    assert first["stage"].item() == 1 and first["lpips"].item() == 0.0
    assert second["stage"].item() == 2 and second["lpips"].item() > 0
    assert torch.allclose(second["total"], second["l1"] + 5e-3 * second["struct"] + 2.0 * second["lpips"])


def make_trainer(tmp_path, ckpt: str, steps: int, params: dict, keep_states: tuple[int, ...] = ()):
    seed_everything(0)
    store = synthetic_store(24, 24, seed=1)
    gen = SPiLF(**TINY)
    task = SPiLFTask(gen, params, lpips_params=no_lpips_params(tmp_path), lr=1e-3)
    cfg = TrainConfig(steps=steps, batch_size=4, checkpoint_every=2, val_every=2, log_every=1, device="cpu")
    sampler = PatchSampler(store[:20], cfg.batch_size, 8, "cpu", seed=cfg.seed)
    return Trainer(task, sampler, cfg, tmp_path / ckpt, val_array=store[20:], bitdepth=8,
                   describe={"model": "spilf"}, keep_states=keep_states), task


def test_stage_switch_and_bit_exact_resume(tmp_path):
    params = {"variant": "arabica", "weights": {"adv": 0.05}, "stage1_steps": 3, "plateau_window": 1,
              "plateau_patience": 0, **TINY_D}
    straight, t1 = make_trainer(tmp_path, "a.pt", 6, params)
    d_init = [p.clone() for p in t1.discriminator.parameters()]
    r1 = straight.run()
    stages = [h["stage"] for h in straight.history if "stage" in h]
    assert stages == [1, 1, 1, 2, 2, 2]
    assert [h["d_adv"] > 0 for h in straight.history if "d_adv" in h] == [False] * 3 + [True] * 3
    assert any(not torch.equal(a, b) for a, b in zip(d_init, t1.discriminator.parameters()))
    lrs = [t1.opt_g.param_groups[0]["lr"], t1.opt_d.param_groups[0]["lr"]]
    assert lrs[0] < 1e-3  # the plateau (window 1, patience 0) halved it on some step

    first, t2 = make_trainer(tmp_path, "b.pt", 4, params)
    first.run()
    resumed, t3 = make_trainer(tmp_path, "b.pt", 6, params)
    assert t3.step == 0 and resumed.load_checkpoint()
    assert resumed.step == 4 and t3.step == 4 and t3.stage == 2
    r2 = resumed.run()
    assert r2["resumed_from"] == 4 and r2["steps_this_run"] == 2
    for name in ("generator", "discriminator"):
        for a, b in zip(t1.modules()[name].state_dict().values(), t3.modules()[name].state_dict().values()):
            assert torch.equal(a, b), name
    assert [t3.opt_g.param_groups[0]["lr"], t3.opt_d.param_groups[0]["lr"]] == lrs
    assert t3.plateaus[0].state_dict() == t1.plateaus[0].state_dict()
    assert r1["val_delta_psnr"] == r2["val_delta_psnr"]
    assert straight.history[-1]["l1"] == resumed.history[-1]["l1"]


def test_stage1_from_another_training_ends_where_running_stage1_ends(tmp_path):
    """``stage1_from``: a GAN training that continues the state an L_1 + L_ST training kept at the end of its
    stage 1 ends bit for bit where the same training from step 0 ends, also when the plateau halved the rates
    during stage 1 and the discriminator has a rate of its own (its plateau mirrors the generator's)."""
    common = {"variant": "arabica", "plateau_window": 1, "plateau_patience": 0, **TINY_D}
    gan = {**common, "weights": {"adv": 0.05}, "stage1_steps": 4, "disc_lr": 4e-3}
    straight, t1 = make_trainer(tmp_path, "straight.pt", 6, gan)
    straight.run()
    # the source runs longer and switches later (Arabica: its stage 2 is its stage 1's loss)
    source, _ = make_trainer(tmp_path, "source.pt", 6, {**common, "stage1_steps": 6}, keep_states=(4,))
    source.run()
    kept = source.kept_states()
    assert sorted(kept) == [4] and kept[4]["step"] == 4 and "discriminator" not in kept[4]["modules"]
    assert kept[4]["optimizers"]["generator"]["param_groups"][0]["lr"] < 1e-3  # halved within stage 1
    cont, t2 = make_trainer(tmp_path, "cont.pt", 6, gan)
    cont.continue_from(kept[4])
    assert cont.step == 4 and t2.stage == 1
    assert t2.opt_d.param_groups[0]["lr"] == 4e-3 * t2.opt_g.param_groups[0]["lr"] / 1e-3
    r = cont.run()
    assert r["steps_this_run"] == 2
    for name in ("generator", "discriminator"):
        for a, b in zip(t1.modules()[name].state_dict().values(), t2.modules()[name].state_dict().values()):
            assert torch.equal(a, b), name
    assert [g.param_groups[0]["lr"] for g in (t1.opt_g, t1.opt_d)] == [g.param_groups[0]["lr"] for g in (t2.opt_g, t2.opt_d)]
    assert [h["l1"] for h in straight.history if "l1" in h] == [h["l1"] for h in cont.history if "l1" in h]
    # a stage 1 as long as the run: nothing left to train, the kept state is the model, validated
    whole, _ = make_trainer(tmp_path, "whole.pt", 4, gan)
    whole.continue_from(kept[4])
    r = whole.run()
    assert r["steps_this_run"] == 0 and math.isfinite(r["val_delta_psnr"])
    # a source job resumed after the step keeps the state its checkpoint kept
    first, _ = make_trainer(tmp_path, "again.pt", 5, {**common, "stage1_steps": 6}, keep_states=(4,))
    first.run()
    again, _ = make_trainer(tmp_path, "again.pt", 6, {**common, "stage1_steps": 6}, keep_states=(4,))
    assert again.load_checkpoint() and again.step == 5
    again.run()
    resumed = again.kept_states()[4]["modules"]["generator"]
    assert all(torch.equal(a, b) for a, b in zip(resumed.values(), kept[4]["modules"]["generator"].values()))
    again.kept = {}  # a checkpoint written before the state was asked for: the job says so
    with pytest.raises(InloopError, match="the state at step 4 was not kept"):
        again.kept_states()
    # a state from elsewhere than the end of stage 1 is refused
    other, _ = make_trainer(tmp_path, "other.pt", 6, gan)
    with pytest.raises(ParamsError, match="at step 6, not at the end of stage 1"):
        other.continue_from({**source.state(), "kept": {}})


def test_stage1_mismatch_names_the_setting_that_differs():
    from inloop.training.spilf import stage1_mismatch

    mine = {"lr": 1e-3, "seed": 0, "steps": 600, "threads": 1,
            "spilf": {"variant": "arabica-perceptual", "stage1_steps": 450, "plateau_window": 50}}
    source = {"lr": 1e-3, "seed": 0, "steps": 600, "threads": 2, "val_every": 100,
              "spilf": {"variant": "arabica", "stage1_steps": 450, "plateau_window": 50}}
    assert stage1_mismatch(mine, source, ("threads",)) is None
    assert "train.threads" in stage1_mismatch(mine, source)
    assert stage1_mismatch(mine, {**source, "lr": 2e-3}, ("threads",)).startswith("train.lr: 0.001 here, 0.002")
    assert stage1_mismatch(mine, {**source, "seed": 1}, ("threads",)).startswith("train.seed")
    shorter = {**source, "spilf": {**source["spilf"], "stage1_steps": 300}}
    assert stage1_mismatch(mine, shorter, ("threads",)).startswith("train.spilf.stage1_steps: 450 here, 300")
    window = {**source, "spilf": {**source["spilf"], "plateau_window": 10}}
    assert stage1_mismatch(mine, window, ("threads",)).startswith("train.spilf.plateau_window")
    l1 = {**source, "spilf": {**source["spilf"], "weights": {"l1": 2}}}
    assert stage1_mismatch(mine, l1, ("threads",)).startswith("train.spilf.weights.l1")
    assert stage1_mismatch(mine, {**source, "steps": 400}, ("threads",)).startswith("train.steps")
    warm = {**source, "warm_start": {"qp": 37, "steps": 5}}
    assert stage1_mismatch(mine, warm, ("threads",)).startswith("train.warm_start")


def test_a_few_steps_reduce_l1_on_a_degraded_image():
    torch.manual_seed(0)
    x, y = pair(synthetic_store(8, 32, seed=2))
    net = SPiLF(**{**TINY, "channels": 16, "growth": 8})
    task = SPiLFTask(net, {"variant": "arabica", "stage1_steps": 5}, lr=2e-3)
    with torch.no_grad():
        start = F.l1_loss(net(x), y).item()
    hist = [task.train_step((x, y), contextlib.nullcontext)["l1"].item() for _ in range(40)]
    with torch.no_grad():
        end = F.l1_loss(net(x), y).item()
    assert hist[0] == pytest.approx(255 * start, rel=1e-5)  # L_1 in 8-bit units (train.spilf.pixel_scale)
    assert end < 0.7 * start
    assert end < F.l1_loss(x, y).item()  # better than leaving the decoded image as it is


# --------------------------------------------------------------------------- several processes (torchrun / DDP)


def _two_rank_worker(rank: int, init_file: str, out_dir: str) -> None:
    """One of two gloo ranks: SPiLF's GAN task on this rank's own batches, then its state to out_dir."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        torch.manual_seed(100 + rank)  # different initial weights on each rank: the task must reconcile them
        gen = DistributedDataParallel(SPiLF(**TINY))  # DDP itself takes rank 0's generator
        task = SPiLFTask(gen, {"variant": "arabica-perceptual", "weights": {"lpips": 0.0}, "stage1_steps": 2,
                               "plateau_window": 2, "plateau_patience": 0, **TINY_D})
        x, y = pair(synthetic_store(2, 24, seed=10 + rank))  # each rank its own data
        for _ in range(6):
            task.train_step((x, y), contextlib.nullcontext)
        # The plateau on its own: rank 0 sees a falling L_1, rank 1 a rising one; both must act on the mean.
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0)
        sched = type(task.schedule)(0, 1, [plateau])
        for v in ([5.0, 4.0, 3.0] if rank == 0 else [1.0, 3.0, 6.0]):  # means over the ranks: 3.0, 3.5, 4.5
            sched.observe(torch.tensor(v))
        torch.save({"disc": task.discriminator.state_dict(), "gen": task._bare_generator.state_dict(),
                    "lr": [g["lr"] for o in (task.opt_g, task.opt_d) for g in o.param_groups],
                    "toy_lr": opt.param_groups[0]["lr"]}, f"{out_dir}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_hold_the_same_discriminator_and_learning_rates(tmp_path):
    """Under torchrun the generator is DDP; the discriminator is averaged by hand and the plateau on the
    ranks' mean L_1, so both ranks end with identical networks although their batches and seeds differ."""
    import torch.multiprocessing as mp

    torch.manual_seed(100)
    initial = PatchDiscriminator(1, TINY_D["disc_channels"], TINY_D["disc_layers"]).state_dict()
    mp.spawn(_two_rank_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in (0, 1))
    for k in r0["disc"]:
        assert torch.equal(r0["disc"][k], r1["disc"][k]) or "running" in k or "num_batches" in k, k
    assert any(not torch.equal(r0["disc"][k], initial[k]) for k in initial if k.endswith("weight"))  # it trained
    for k in r0["gen"]:
        assert torch.allclose(r0["gen"][k], r1["gen"][k]), k
    assert r0["lr"] == r1["lr"]
    # mean L_1 3.0 (best), 3.5 (worse: halve), 4.5 (worse: halve) -> 0.25 on both ranks
    assert r0["toy_lr"] == r1["toy_lr"] == 0.25
