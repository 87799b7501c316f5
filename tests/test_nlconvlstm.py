"""NL-ConvLSTM (Xu et al., ICCV 2019): the non-local warp (exact and two-stage), the network and its ablations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import adam_fit
from inloop.errors import ParamsError
from inloop.models import MODELS, NLConvLSTM, build_model
from inloop.models.nlconvlstm import (
    MODES,
    approx_nonlocal_warp,
    approx_nonlocal_weights,
    exact_nonlocal_warp,
    exact_nonlocal_weights,
    from_blocks,
    sq_distances,
    to_blocks,
)

SMALL = dict(channels=8, pool=4, topk=2, enc_layers=2, dec_layers=2)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _feats(n=2, c=5, h=12, w=8, dtype=torch.float64):
    return torch.randn(n, c, h, w, dtype=dtype), torch.randn(n, c, h, w, dtype=dtype)


# -- the non-local operation ------------------------------------------------------------------


def test_sq_distances_is_eq7():
    a, b = torch.randn(3, 7, 5, dtype=torch.float64), torch.randn(3, 4, 5, dtype=torch.float64)
    direct = (a[:, :, None, :] - b[:, None, :, :]).square().sum(-1)
    torch.testing.assert_close(sq_distances(a, b), direct)


@pytest.mark.parametrize("tau", [1e-3, 0.5, 2.0])
def test_similarity_is_eq4_euclidean_with_the_authors_temperature(tau):
    """softmax(-d / tau) with d the Euclidean distance over channels, clamped at 1e-30 before the root,
    as the authors' NonLocalBlock computes it (temperature 1e-3 there, the default here)."""
    q, r = _feats(c=5, h=4, w=4)
    qq, rr = q.flatten(2).transpose(1, 2), r.flatten(2).transpose(1, 2)
    d = (qq[:, :, None] - rr[:, None]).square().sum(-1).clamp_min(1e-30).sqrt()
    torch.testing.assert_close(exact_nonlocal_weights(q, r, tau), torch.softmax(-d / tau, -1))
    state = torch.randn(2, 3, 4, 4, dtype=torch.float64)  # the two-stage warp keeps the same similarity
    torch.testing.assert_close(approx_nonlocal_warp(q, r, state, pool=2, topk=4, temperature=tau),
                               exact_nonlocal_warp(q, r, state, tau), atol=1e-10, rtol=0)
    # tau = 0: the project's earlier similarity (squared distance, no temperature), for old model files
    torch.testing.assert_close(exact_nonlocal_weights(q, r, 0.0), torch.softmax(-d.square(), -1))


def test_model_files_written_before_the_temperature_load_with_the_old_similarity():
    new = build_model("nlconvlstm", **SMALL)
    assert float(new.temperature) == pytest.approx(1e-3)
    old_file = {k: v for k, v in new.state_dict().items() if k != "temperature"}
    old = build_model("nlconvlstm", **SMALL)
    old.load_state_dict(old_file)
    assert float(old.temperature) == 0.0
    clip = torch.rand(1, 7, 1, 8, 8)
    with torch.no_grad():
        new.tail.weight.normal_()
        old.tail.weight.copy_(new.tail.weight)
        assert not torch.allclose(new(clip), old(clip))
    with pytest.raises(ParamsError, match="temperature: expected a number >= 0"):
        build_model("nlconvlstm", **SMALL, temperature=-1)


def test_blocks_round_trip():
    x = torch.randn(2, 3, 8, 12)
    blocks = to_blocks(x, 4)
    assert blocks.shape == (2, 6, 16, 3)
    assert torch.equal(blocks[0, 1, :, 0], x[0, 0, 0:4, 4:8].reshape(-1))  # raster order of blocks and pixels
    assert torch.equal(from_blocks(blocks, 4, 8, 12), x)


@pytest.mark.parametrize("max_elements", [2**26, 1, 300])  # one chunk, one block per chunk, uneven chunks
def test_approx_equals_exact_when_topk_covers_all_blocks(max_elements):
    q, r = _feats()  # 12 x 8 with pool 4: 3 x 2 = 6 blocks
    state = torch.randn(2, 3, 12, 8, dtype=torch.float64)
    exact = exact_nonlocal_warp(q, r, state)
    for k in (6, 50):  # k = B, and k > B (capped)
        approx = approx_nonlocal_warp(q, r, state, pool=4, topk=k, max_elements=max_elements)
        torch.testing.assert_close(approx, exact, atol=1e-10, rtol=0)
    # fewer blocks than all: a different (sparser) operator
    assert (approx_nonlocal_warp(q, r, state, pool=4, topk=2) - exact).abs().max() > 1e-3


def test_approx_weights_equal_exact_weights_when_topk_covers_all_blocks():
    """Warping a one-hot state (channel i = indicator of reference pixel i) returns the dense
    weight matrix itself: the approximate one scattered back equals eq. (4)'s S."""
    q, r = _feats(h=8, w=12)
    hw = 8 * 12
    eye = torch.eye(hw, dtype=torch.float64).view(1, hw, 8, 12).expand(2, -1, -1, -1)
    dense = approx_nonlocal_warp(q, r, eye, pool=4, topk=6).flatten(2)  # (N, i_ref, j_query)
    torch.testing.assert_close(dense.transpose(1, 2), exact_nonlocal_weights(q, r), atol=1e-12, rtol=0)
    # with k < B each query pixel puts all its weight on k p^2 reference pixels
    sparse = approx_nonlocal_warp(q, r, eye, pool=4, topk=2).flatten(2)
    assert ((sparse > 0).sum(1) <= 2 * 16).all()
    torch.testing.assert_close(sparse.sum(1), torch.ones(2, hw, dtype=torch.float64))


def test_weights_sum_to_one():
    q, r = _feats(c=4, h=16, w=20, dtype=torch.float32)
    w, idx = approx_nonlocal_weights(q, r, pool=4, topk=3)
    assert w.shape == (2, 20, 16, 3 * 16) and idx.shape == (2, 20, 3)
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 20, 16))
    s = exact_nonlocal_weights(q, r)
    assert s.shape == (2, 320, 320)
    torch.testing.assert_close(s.sum(-1), torch.ones(2, 320))


def test_stage1_keeps_the_nearest_pooled_blocks():
    q, r = _feats(c=6, h=16, w=16, dtype=torch.float32)
    _, idx = approx_nonlocal_weights(q, r, pool=4, topk=3)
    qp = F.avg_pool2d(q, 4).flatten(2).transpose(1, 2)  # (N, 16, C)
    rp = F.avg_pool2d(r, 4).flatten(2).transpose(1, 2)
    brute = (qp[:, :, None] - rp[:, None]).square().sum(-1)  # eq. (5), the plain way
    want = brute.argsort(-1)[..., :3]
    assert torch.equal(idx.sort(-1).values, want.sort(-1).values)


def test_warp_follows_block_motion():
    """Frame t is frame t-1 moved by one block down and two blocks right: with distinctive
    features the warp (k = 1) carries the state along the motion, without any flow."""
    ref = 3.0 * torch.randn(1, 16, 16, 24)
    query = ref.roll((4, 8), dims=(-2, -1))
    state = torch.randn(1, 5, 16, 24)
    warped = approx_nonlocal_warp(query, ref, state, pool=4, topk=1)
    torch.testing.assert_close(warped, state.roll((4, 8), dims=(-2, -1)), atol=1e-4, rtol=0)
    torch.testing.assert_close(exact_nonlocal_warp(query, ref, state), state.roll((4, 8), dims=(-2, -1)),
                               atol=1e-4, rtol=0)


def test_warp_ignores_bf16_autocast():
    q, r = _feats(c=8, h=16, w=16, dtype=torch.float32)
    state = torch.randn(2, 6, 16, 16)
    plain = approx_nonlocal_warp(q, r, state, pool=4, topk=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = approx_nonlocal_warp(q, r, state, pool=4, topk=2)
    assert auto.dtype == torch.float32
    torch.testing.assert_close(auto, plain)


def test_warp_gradients_reach_features_and_state():
    q, r = _feats(c=4, h=8, w=8, dtype=torch.float64)
    q.requires_grad_(True)
    r.requires_grad_(True)
    state = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    approx_nonlocal_warp(q, r, state, pool=4, topk=2).square().sum().backward()
    for t in (q, r, state):
        assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


# -- the network ------------------------------------------------------------------------------


def test_registered_and_params_errors():
    assert MODELS["nlconvlstm"] is NLConvLSTM
    m = build_model("nlconvlstm", **SMALL)
    assert isinstance(m, NLConvLSTM) and m.frames == 7 and m.is_clip_model and m.pad_multiple == 4
    assert build_model("nlconvlstm", exact=True, **SMALL).pad_multiple == 1
    assert build_model("nlconvlstm", mode="convlstm", **SMALL).pad_multiple == 1
    bad = [
        (dict(frames=6), r"models\.nlconvlstm\.frames: 6 is even"),
        (dict(frames=0), r"models\.nlconvlstm\.frames"),
        (dict(mode="lstm"), r"models\.nlconvlstm\.mode: 'lstm' is not one of"),
        (dict(exact="yes"), r"models\.nlconvlstm\.exact"),
        (dict(pool=0), r"models\.nlconvlstm\.pool"),
        (dict(topk=0), r"models\.nlconvlstm\.topk"),
        (dict(channels=2.5), r"models\.nlconvlstm\.channels"),
        (dict(in_channels=0), r"models\.nlconvlstm\.in_channels"),
    ]
    for kw, msg in bad:
        with pytest.raises(ParamsError, match=msg):
            build_model("nlconvlstm", **{**SMALL, **kw})


@pytest.mark.parametrize("mode", MODES)
def test_modes_any_frame_size_forward_backward(mode):
    m = build_model("nlconvlstm", mode=mode, **SMALL)
    for h, w in [(37, 29), (16, 20), (3, 5)]:
        clip = torch.rand(2, 7, 1, h, w)
        y = m(clip)
        assert y.shape == (2, 1, h, w)
    y.square().mean().backward()
    unused = [n for n, p in m.named_parameters() if p.grad is None]
    assert not unused, f"parameters outside the graph: {unused}"
    assert all(torch.isfinite(p.grad).all() for p in m.parameters())


def test_exact_mode_and_three_planes():
    m = build_model("nlconvlstm", exact=True, in_channels=3, frames=5, **SMALL)
    clip = torch.rand(1, 5, 3, 13, 11)
    assert m(clip).shape == (1, 3, 13, 11)
    with pytest.raises(ValueError, match="expects a clip"):
        m(torch.rand(1, 7, 3, 13, 11))
    with pytest.raises(ValueError, match="expects a clip"):
        m(torch.rand(1, 3, 13, 11))


def test_exact_model_equals_approx_model_when_topk_covers_all_blocks():
    approx = NLConvLSTM(**{**SMALL, "topk": 10**6}).double()
    exact = NLConvLSTM(**{**SMALL, "exact": True}).double()
    exact.load_state_dict(approx.state_dict())
    clip = torch.rand(2, 7, 1, 12, 16, dtype=torch.float64)  # multiple of pool: no padding either way
    with torch.no_grad():
        torch.testing.assert_close(approx(clip), exact(clip), atol=1e-10, rtol=0)
        # and the warp matters: plain ConvLSTM with the same weights differs
        plain = NLConvLSTM(**{**SMALL, "mode": "convlstm"}).double()
        plain.load_state_dict(approx.state_dict())
        assert (plain(clip) - approx(clip)).abs().max() > 1e-6


@pytest.mark.parametrize("mode", MODES)
def test_zero_last_layer_is_identity(mode):
    m = build_model("nlconvlstm", mode=mode, **SMALL)
    with torch.no_grad():
        m.last_conv.weight.zero_()
        m.last_conv.bias.zero_()
    clip = torch.rand(2, 7, 1, 19, 30)
    assert torch.equal(m(clip), clip[:, 3])
    assert torch.equal(m.eval()(clip), clip[:, 3])


def test_which_frames_each_mode_sees():
    clip = torch.rand(1, 7, 1, 16, 16)
    other = clip.clone()
    other[:, [0, 1, 2, 4, 5, 6]] = torch.rand(1, 6, 1, 16, 16)  # same target, other neighbours
    with torch.no_grad():
        single = NLConvLSTM(mode="single", **SMALL).eval()
        assert torch.equal(single(clip), single(other))  # Table 2: Encoder-Decoder with 1 frame
        for mode in ("convlstm", "nlconvlstm"):
            m = NLConvLSTM(mode=mode, **SMALL).eval()
            assert (m(clip) - m(other)).abs().max() > 1e-6  # 7 frames
            # both directions: changing only the last (or only the first) frame changes the output
            for t in (0, 6):
                one = clip.clone()
                one[:, t] = torch.rand(1, 1, 16, 16)
                assert (m(clip) - m(one)).abs().max() > 1e-7, (mode, t)


def test_macs_per_pixel():
    kw = dict(channels=8, enc_layers=2, dec_layers=2, pool=4, topk=2)
    enc = 9 * 1 * 8 + 9 * 8 * 8
    single_dec = 8 * 8 + 9 * 8 * 8 + 9 * 8 * 1  # 1x1 merge, 3x3, last 3x3
    assert NLConvLSTM(mode="single", **kw).macs_per_pixel((32, 32)) == pytest.approx(enc + single_dec)
    lstm_step = 9 * (8 + 8) * 4 * 8
    dec = 16 * 8 + 9 * 8 * 8 + 9 * 8 * 1
    conv = 7 * enc + 8 * lstm_step + dec  # 7 frames encoded, 4 steps per direction
    assert NLConvLSTM(mode="convlstm", **kw).macs_per_pixel((32, 32)) == pytest.approx(conv)
    # 2 directions x 3 warps, their matmuls counted by hand: section 3.3's two stages, and eq. (4) exactly
    m = NLConvLSTM(**kw)
    nb, hw = 64, 32 * 32  # 8 x 8 blocks of 4 x 4
    per_warp = nb * nb * 8 + hw * 2 * 16 * (8 + 16)  # stage 1 + stage 2 (distances, weighted sum of H and C)
    assert m.macs_per_pixel((32, 32)) == pytest.approx(conv + 6 * per_warp / hw, rel=1e-15)
    assert m.macs_per_pixel((64, 64)) > m.macs_per_pixel((32, 32))  # stage 1 grows with the frame
    exact = NLConvLSTM(exact=True, **kw).macs_per_pixel((32, 32))
    assert exact == pytest.approx(conv + 6 * hw * hw * 24 / hw, rel=1e-15)
    # padded to the block grid (30 x 30 -> 32 x 32), per pixel of the unpadded frame; top-k capped at B
    assert m.macs_per_pixel((30, 30)) * 900 == pytest.approx(conv * hw + 6 * per_warp, rel=1e-15)
    tiny = NLConvLSTM(**{**kw, "topk": 9}).macs_per_pixel((8, 8))  # 4 blocks: k = 4
    assert tiny * 64 == pytest.approx(conv * 64 + 6 * (4 * 4 * 8 + 64 * 4 * 16 * 24), rel=1e-15)


def test_a_few_adam_steps_reduce_mse():
    """A moving pattern, each frame noisy: a few Adam steps bring the output below the input's error."""
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 24), torch.linspace(0, 1, 24), indexing="ij")
    frames = torch.stack([0.5 + 0.3 * torch.sin(6 * (xx + 0.05 * t) + 4 * yy) for t in range(7)])
    tgt = frames[3].view(1, 1, 24, 24).expand(4, -1, -1, -1)
    clip = (frames.view(1, 7, 1, 24, 24) + 0.1 * torch.randn(4, 7, 1, 24, 24)).clamp(0, 1)
    m = NLConvLSTM(**SMALL)
    with torch.no_grad():
        m.last_conv.weight.mul_(0.01)  # start close to the identity
        m.last_conv.bias.zero_()
    input_mse = float((clip[:, 3] - tgt).square().mean())
    _, end = adam_fit(m, clip, tgt, steps=70, lr=5e-3)
    print(f"input MSE {input_mse:.2e} -> output MSE {end:.2e}")
    assert end < 0.6 * input_mse, (input_mse, end)


def test_me_convlstm_starts_as_the_convlstm_and_learns_a_motion_field():
    """ME-ConvLSTM (the ablation's third column): zero motion at initialisation is the plain ConvLSTM; its
    flow layers get gradients; a known shift of the state is carried by the motion field."""
    from inloop.models.nlconvlstm import FlowWarp

    torch.manual_seed(0)
    me = build_model("nlconvlstm", **SMALL, mode="meconvlstm")
    plain = build_model("nlconvlstm", **SMALL, mode="convlstm")
    plain.load_state_dict({k: v for k, v in me.state_dict().items() if "flow_" not in k})
    clip = torch.rand(2, 7, 1, 12, 16)
    with torch.no_grad():
        me.tail.weight.normal_()
        plain.tail.weight.copy_(me.tail.weight)
        torch.testing.assert_close(me(clip), plain(clip))
    me(clip).square().mean().backward()
    assert me.flow_fwd.net[-1].weight.grad.abs().sum() > 0
    warp = FlowWarp(4)
    state = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        warp.net[-1].bias.copy_(torch.tensor([1.0, 0.0]))  # every pixel comes from one pixel to the right
    moved = warp(torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 8, 8), state)
    torch.testing.assert_close(moved[..., :-1], state[..., 1:])


def test_nearest_blocks_ranks_as_the_euclidean_distance():
    """Stage 1 ranks by ||b||^2 - 2 a.b (no ||a||^2, no square root, one matmul): the same blocks as the
    smallest eq. (7) distances, in the same order."""
    from inloop.models.nlconvlstm import nearest_blocks

    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(2, 50, 8, generator=g), torch.randn(2, 70, 8, generator=g)
    want = sq_distances(a, b).topk(5, dim=-1, largest=False).indices
    assert torch.equal(nearest_blocks(a, b, 5), want)
    assert torch.equal(nearest_blocks(a, b, 5), (a[:, :, None] - b[:, None]).norm(dim=-1).topk(5, -1, False).indices)
    a.requires_grad_(True)
    assert not nearest_blocks(a, b, 5).requires_grad


@pytest.mark.parametrize("bf16", [False, True])
def test_sliding_windows_compute_each_pair_of_frames_weights_once_and_filter_the_same(bf16):
    torch.manual_seed(0)
    model = NLConvLSTM(frames=7, **SMALL).eval()
    seq = torch.rand(9, 1, 24, 32)  # nine frames, windows clamped at the ends as evaluation builds them
    windows = [[min(max(j, 0), 8) for j in range(i - 3, i + 4)] for i in range(9)]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        plain = [model(seq[w][None]) for w in windows]
        model.remember_warps()
        kept = [model(seq[w][None]) for w in windows]
        memory = model._warps
        assert model.forget_warps() == memory.hits and model._warps is None
        model.remember_warps(1)  # no pair's weights fit: computed each time, never looked up
        assert torch.equal(model(seq[windows[4]][None]), plain[4])
        assert model._warps.hits == model._warps.misses == len(model._warps) == 0
    for i, (a, b) in enumerate(zip(plain, kept)):
        assert torch.equal(a, b), f"window {i}: not the output computed without the memory"
    # the warps (query frame, reference frame) of each window: forward t-3 -> ... -> t, backward t+3 -> ... -> t
    warps = [(w[j + 1], w[j]) for w in windows for j in range(3)] + [(w[j], w[j + 1]) for w in windows
                                                                    for j in range(3, 6)]
    assert memory.misses == len(set(warps)) and memory.hits == len(warps) - len(set(warps))
    with torch.enable_grad():  # training never keeps weights
        model.remember_warps()
        model(seq[windows[4]][None]).sum().backward()
        assert len(model._warps) == 0
