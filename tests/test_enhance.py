"""Filter application: whole frames and overlapping tiles, and a YUV file round trip."""

import numpy as np
import pytest
import torch
from torch import nn

from inloop.evaluation.enhance import _windows, apply_model, enhance_file
from inloop.yuv import Frame, YuvFormat, YuvReader, write_yuv


class PoolNet(nn.Module):
    """Residual net with two 2x2 poolings (needs sizes that are multiples of 4)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.c = nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, x):
        f = torch.relu(self.a(x))
        g = torch.relu(self.b(nn.functional.max_pool2d(nn.functional.max_pool2d(f, 2), 2)))
        g = nn.functional.interpolate(g, scale_factor=4, mode="nearest")
        return x + 0.1 * self.c(torch.cat([f, g], 1))


def test_windows_cover_the_axis_with_aligned_context():
    for size, tile, ov, mult in [(100, 32, 8, 4), (64, 64, 16, 16), (1080, 256, 64, 16)]:
        wins = _windows(size, tile, ov, mult)
        covered = np.zeros(size, int)
        for c0, c1, w0, w1 in wins:
            covered[c0:c1] += 1
            assert w0 % mult == 0 and w0 <= max(0, c0 - ov) and w1 >= min(size, c1 + ov)
            assert (w1 - w0) % mult == 0 or w1 == size
        assert (covered == 1).all()


def test_tiled_output_equals_whole_frame_output():
    torch.manual_seed(1)
    model = PoolNet().eval()
    x = torch.rand(1, 1, 72, 100)
    whole = apply_model(model, x)
    # receptive field radius of PoolNet: 1 + 4 * 1 + 4 (upsampling block) + 1 < 24
    tiled = apply_model(model, x, tile=32, overlap=24, multiple=4)
    assert torch.allclose(whole, tiled, atol=1e-6)
    too_little = apply_model(model, x, tile=32, overlap=0, multiple=4)
    assert not torch.allclose(whole, too_little, atol=1e-6)  # the test can tell the difference


def test_enhance_file_filters_only_the_listed_planes(tmp_path):
    fmt = YuvFormat(40, 24)
    rng = np.random.default_rng(0)
    frames = [Frame(rng.integers(0, 256, (24, 40), dtype=np.uint8), rng.integers(0, 256, (12, 20), dtype=np.uint8),
                    rng.integers(0, 256, (12, 20), dtype=np.uint8)) for _ in range(3)]
    src = tmp_path / "in_40x24_30fps_8bit_420.yuv"
    write_yuv(src, frames, fmt)
    out = tmp_path / "out_40x24_30fps_8bit_420.yuv"

    class Brighten(nn.Module):
        def forward(self, x):
            return x + 10 / 255

    stats = enhance_file(Brighten(), src, out, fmt, planes=("y",))
    assert stats["frames"] == 3 and stats["seconds_per_frame"] >= 0
    with YuvReader(out) as r:
        for got, want in zip(r, frames):
            assert np.array_equal(got.y, np.minimum(want.y.astype(int) + 10, 255))
            assert np.array_equal(got.u, want.u) and np.array_equal(got.v, want.v)


def test_tile_must_match_the_network_multiple():
    from inloop.errors import InloopError

    with pytest.raises(InloopError, match="multiple of the network.s down-sampling factor 16"):
        apply_model(nn.Identity(), torch.zeros(1, 1, 64, 64), tile=40, overlap=8, multiple=16)


class NextFrame(nn.Module):
    """A 3-frame 'network' that outputs the window's last frame: shows which frames it was given."""

    frames = 3

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, clip):
        assert clip.dim() == 5 and clip.shape[1] == 3
        return clip[:, 2] * self.w


def test_multi_frame_networks_get_centred_windows_clamped_at_the_ends(city_yuv, tmp_path):
    fmt = YuvFormat(128, 96)
    out = tmp_path / "next_128x96_30fps_8bit_420.yuv"
    timing = enhance_file(NextFrame(), city_yuv, out, fmt, planes=("y",), tile=32, overlap=8, multiple=16)
    assert timing["frames"] == 5
    with YuvReader(city_yuv, fmt) as src, YuvReader(out, fmt) as res:
        for i in range(5):
            assert np.array_equal(res[i][0], src[min(i + 1, 4)][0]), f"frame {i}: not frame {min(i + 1, 4)}'s luma"
            assert np.array_equal(res[i][1], src[i][1])  # chroma passes through


def test_the_overlap_is_measured_not_typed():
    """#26 item 2: overlap auto = the network's measured reach; tiles with it equal the whole frame; a typed
    overlap below the reach is refused (a typed 64 around GL-Fusion's ~99-pixel reach passed before)."""
    from inloop.errors import InloopError
    from inloop.evaluation.enhance import receptive_field, tile_overlap

    model = PoolNet().eval()
    field = receptive_field(model, multiple=4, max_value=255)
    assert 4 <= field["radius"] <= 24 and field["radius"] % 4 == 0 and not field["global_context"]
    rec = tile_overlap(model, "auto", 4, 255)
    assert rec["overlap"] == field["radius"] and rec["equals_whole_frame"]
    x = torch.rand(1, 1, 72, 100, generator=torch.Generator().manual_seed(2))
    assert (apply_model(model, x, 32, rec["overlap"], 4) * 255).round().equal((apply_model(model, x) * 255).round())
    with pytest.raises(InloopError, match=f"overlap=0 is below this network's measured reach of {field['radius']}"):
        tile_overlap(model, 0, 4, 255)


@pytest.mark.parametrize("arch,kwargs", [
    ("glfusion", {"channels": 8}),
    ("spilf", {"channels": 8, "grad_blocks": 1, "pixel_units": 1, "dru_layers": 2, "growth": 4, "fusion_units": 1,
               "reduction": 4}),
    ("nlconvlstm", {"channels": 8, "pool": 4, "frames": 3}),
])
def test_networks_with_global_context_are_measured_as_such(arch, kwargs):
    """GL-Fusion's attention, SPiLF's squeeze-excitation and NL-ConvLSTM's search see the whole frame: no overlap
    makes their tiles equal the whole frame, and the measurement says so (the papers' configs use whole frames)."""
    from inloop.evaluation.enhance import receptive_field
    from inloop.models import build_model

    torch.manual_seed(0)
    model = build_model(arch, **kwargs).eval()
    for p in model.parameters():  # a trained-like network: no zero-initialised output layer
        p.data.add_(0.05 * torch.randn_like(p))
    assert receptive_field(model, getattr(model, "pad_multiple", 1), 255, canvas=64)["global_context"]


def test_enhance_file_records_the_tiling(city_yuv, tmp_path):
    fmt = YuvFormat(128, 96)
    model = PoolNet().eval()
    whole = enhance_file(model, city_yuv, tmp_path / "w_128x96_30fps_8bit_420.yuv", fmt, tile=None)
    tiled = enhance_file(model, city_yuv, tmp_path / "t_128x96_30fps_8bit_420.yuv", fmt, tile=32, multiple=4)
    assert whole["tiling"] is None
    assert tiled["tiling"]["tile"] == 32 and tiled["tiling"]["equals_whole_frame"]
    assert (tmp_path / "w_128x96_30fps_8bit_420.yuv").read_bytes() == (tmp_path / "t_128x96_30fps_8bit_420.yuv").read_bytes()


def test_only_the_scored_frames_are_filtered(city_yuv, tmp_path):
    """#26 item 6: Vimeo-90K is scored on the 4th frame of each clip (NL-ConvLSTM 4.1, evaluate.frames [3]); the
    other six were filtered too (7x the GPU time of the paper's protocol). Now only the scored frame is filtered,
    from its own window, and the rest are the decode unchanged."""
    fmt = YuvFormat(128, 96)
    out = tmp_path / "next_128x96_30fps_8bit_420.yuv"
    timing = enhance_file(NextFrame(), city_yuv, out, fmt, planes=("y",), only=[3])
    assert timing["frames"] == 1
    with YuvReader(city_yuv, fmt) as src, YuvReader(out, fmt) as res:
        for i in range(5):
            want = src[4][0] if i == 3 else src[i][0]  # frame 3 filtered from its window (its next frame), others as decoded
            assert np.array_equal(res[i][0], want), i


def test_a_multi_frame_network_filters_a_file_the_same_with_its_warps_kept(city_yuv, tmp_path):
    from inloop.models import NLConvLSTM

    fmt = YuvFormat(128, 96)
    torch.manual_seed(0)
    model = NLConvLSTM(frames=7, channels=8, pool=4, topk=2, enc_layers=2, dec_layers=2)
    kept, alone = tmp_path / "kept_128x96_30fps_8bit_420.yuv", tmp_path / "alone_128x96_30fps_8bit_420.yuv"
    remembered = []
    model.register_forward_pre_hook(lambda module, args: remembered.append(module._warps is not None))
    timing = enhance_file(model, city_yuv, kept, fmt, planes=("y",))
    assert remembered == [True] * 5 and model._warps is None  # kept while filtering the file, then let go
    # five frames, windows of seven clamped at the ends: 30 warps between 10 distinct (query, reference) pairs
    assert timing["warps_reused"] == 30 - 10
    model.remember_warps = lambda *args: model  # every window on its own, as before the memory
    assert enhance_file(model, city_yuv, alone, fmt, planes=("y",))["warps_reused"] == 0
    assert kept.read_bytes() == alone.read_bytes()
