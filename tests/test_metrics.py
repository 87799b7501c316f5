"""Frame metrics on real decoded frames, each checked against a second, independent implementation.

* PSNR (the project's psnr.py, through evaluate_sequence) vs FFmpeg's psnr filter, per frame, 0.01 dB;
* SSIM (pytorch-msssim) vs scikit-image's structural_similarity with matching Gaussian settings, 1e-4;
* MS-SSIM vs a numpy implementation of Wang et al. written out here;
* STD / PVD on a hand-made curve; YUV->RGB on known colours (rate: tests/test_bitstream.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import CITY as _CITY
import torch

from inloop.codecs import EncodeJob, get_codec
from inloop.evaluation.metrics import (MS_SSIM_WEIGHTS, MetricsError, delta, evaluate_delta, evaluate_sequence,
                                       fluctuation, ms_ssim, ms_ssim_scales, ms_ssim_weights, ssim, yuv_to_rgb)
from inloop.psnr import sequence_psnr
from inloop.yuv import Frame, YuvFormat, read_frames, write_yuv

CITY = _CITY
FMT = YuvFormat(128, 96, 8, 30.0)


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    """The real clip and its x265 decodes at QP 27 and 37 (filters off, LDP)."""
    d = tmp_path_factory.mktemp("metrics")
    src = d / "city_128x96_30fps_8bit_420.yuv"
    shutil.copyfile(CITY, src)
    codec = get_codec("x265")
    out = {"source": src}
    for qp in (27, 37):
        stats = codec.encode(EncodeJob(src, FMT, 5, qp, "ldp", "off"), d / f"qp{qp}.bin")
        out[qp] = Path(stats["decoded"])
        out[f"stats{qp}"] = stats
    return out


def ffmpeg_psnr(ref: Path, dec: Path, fmt: YuvFormat, stats_file: Path) -> list[dict]:
    """Per-frame PSNR from FFmpeg's psnr filter, read back from its stats_file."""
    from inloop.codecs.ffmpeg import find_ffmpeg

    raw = ["-f", "rawvideo", "-pix_fmt", fmt.pix_fmt, "-s", f"{fmt.width}x{fmt.height}"]
    subprocess.run([find_ffmpeg(), "-hide_banner", "-nostdin", *raw, "-i", str(dec), *raw, "-i", str(ref),
                    "-lavfi", f"[0:v][1:v]psnr=stats_file={stats_file}", "-f", "null", "-"],
                   capture_output=True, text=True, check=True)
    frames = []
    for line in stats_file.read_text().splitlines():
        vals = dict(re.findall(r"(\w+):(\S+)", line))
        frames.append({p: float(vals[f"psnr_{p}"]) for p in "yuv"})
    return frames


# --------------------------------------------------------------------------- PSNR vs FFmpeg


def test_psnr_equals_ffmpeg_on_real_decoded_frames(encoded, tmp_path):
    worst = 0.0
    for qp in (27, 37):
        ours = evaluate_sequence(encoded["source"], encoded[qp], ssim_y=False, ms_ssim_y=False)
        theirs = ffmpeg_psnr(encoded["source"], encoded[qp], FMT, tmp_path / f"psnr{qp}.log")
        assert len(theirs) == ours["frames"] == 5
        for o, t in zip(ours["per_frame"], theirs):
            for p in "yuv":
                worst = max(worst, abs(o[f"psnr_{p}"] - t[p]))
            assert o["psnr_yuv"] == pytest.approx((6 * o["psnr_y"] + o["psnr_u"] + o["psnr_v"]) / 8)
        # same numbers as psnr.py's sequence_psnr and as the encode's stats JSON
        seq = sequence_psnr(encoded["source"], encoded[qp])
        assert ours["mean"]["psnr_yuv"] == pytest.approx(seq["mean"]["yuv"], abs=1e-12)
        assert ours["mean"]["psnr_y"] == pytest.approx(encoded[f"stats{qp}"]["psnr"]["y"], abs=1e-12)
    print(f"PSNR vs FFmpeg psnr filter: max |diff| = {worst:.5f} dB")
    assert worst < 0.01


# --------------------------------------------------------------------------- SSIM vs scikit-image


def test_ssim_y_matches_scikit_image(encoded):
    from skimage.metrics import structural_similarity

    res = evaluate_sequence(encoded["source"], encoded[37], ms_ssim_y=False)
    ref, dec = read_frames(encoded["source"]), read_frames(encoded[37])
    worst = 0.0
    for row, r, t in zip(res["per_frame"], ref, dec):
        sk = structural_similarity(r.y, t.y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                   data_range=255)
        worst = max(worst, abs(row["ssim_y"] - sk))
    print(f"SSIM-Y vs skimage: max |diff| = {worst:.2e}")
    assert worst < 1e-4
    assert 0.5 < res["mean"]["ssim_y"] < 1


def test_ssim_rgb_and_ten_bit_match_scikit_image(encoded, tmp_path):
    from skimage.metrics import structural_similarity

    ref, dec = read_frames(encoded["source"], count=2), read_frames(encoded[37], count=2)
    rr = yuv_to_rgb(*(np.stack(p) for p in zip(*ref)), 8, "bt601").numpy()
    tr = yuv_to_rgb(*(np.stack(p) for p in zip(*dec)), 8, "bt601").numpy()
    ours = ssim(rr, tr, 1.0).tolist()
    for k in range(2):
        sk = structural_similarity(rr[k], tr[k], channel_axis=0, gaussian_weights=True, sigma=1.5,
                                   use_sample_covariance=False, data_range=1.0)
        assert abs(ours[k] - sk) < 1e-4
    # 10-bit: data_range 1023, files read through the 10-bit path
    f10 = YuvFormat(128, 96, 10, 30.0)
    up = lambda frames: [Frame(*(p.astype(np.uint16) * 4 + 1 for p in f)) for f in frames]  # noqa: E731
    write_yuv(tmp_path / "a_128x96_30fps_10bit_420.yuv", up(ref), f10)
    write_yuv(tmp_path / "b_128x96_30fps_10bit_420.yuv", up(dec), f10)
    res = evaluate_sequence(tmp_path / "a_128x96_30fps_10bit_420.yuv", tmp_path / "b_128x96_30fps_10bit_420.yuv",
                            ms_ssim_y=False)
    for row, r, t in zip(res["per_frame"], up(ref), up(dec)):
        sk = structural_similarity(r.y, t.y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                   data_range=1023)
        assert abs(row["ssim_y"] - sk) < 1e-4


# --------------------------------------------------------------------------- MS-SSIM vs a numpy reference


def _np_ssim_cs(x, y, L):
    """Wang et al. SSIM / contrast-structure means over the valid region, 11-tap Gaussian, sigma 1.5."""
    from numpy.lib.stride_tricks import sliding_window_view

    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    g /= g.sum()
    w = np.outer(g, g)

    def filt(a):
        return np.einsum("ijkl,kl->ij", sliding_window_view(a, (11, 11)), w)

    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    mx, my = filt(x), filt(y)
    vx, vy, cxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    cs = (2 * cxy + c2) / (vx + vy + c2)
    lum = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
    return float(np.mean(lum * cs)), float(np.mean(cs))


def _np_ms_ssim(x, y, L, weights):
    x, y = x.astype(np.float64), y.astype(np.float64)
    out = 1.0
    for i, wt in enumerate(weights):
        s, cs = _np_ssim_cs(x, y, L)
        if i == len(weights) - 1:
            out *= s**wt
        else:
            out *= cs**wt
            x = x.reshape(x.shape[0] // 2, 2, x.shape[1] // 2, 2).mean(axis=(1, 3))
            y = y.reshape(y.shape[0] // 2, 2, y.shape[1] // 2, 2).mean(axis=(1, 3))
    return out


def _smooth_pair(h, w, seed=0, noise=10):
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    a = np.clip(gaussian_filter(rng.normal(128, 60, (h, w)), 3) * 4 - 384, 0, 255)
    b = np.clip(a + rng.normal(0, noise, (h, w)), 0, 255)
    return np.round(a).astype(np.uint8), np.round(b).astype(np.uint8)


def test_ms_ssim_five_scales_matches_numpy_reference():
    a, b = _smooth_pair(176, 208)
    assert ms_ssim_scales(176, 208) == 5 and ms_ssim_scales(160, 999) == 4
    ours = ms_ssim(a, b, 255.0, 5, torch.float64).item()
    ref = _np_ms_ssim(a, b, 255.0, MS_SSIM_WEIGHTS)
    print(f"MS-SSIM (5 scales) ours={ours:.7f} numpy={ref:.7f} diff={abs(ours - ref):.1e}")
    assert abs(ours - ref) < 1e-5


def test_ms_ssim_fewer_scales_on_small_frames(encoded):
    ref, dec = read_frames(encoded["source"], count=1)[0], read_frames(encoded[37], count=1)[0]
    assert ms_ssim_scales(96, 128) == 4
    w4 = ms_ssim_weights(4)
    assert sum(w4) == pytest.approx(1.0) and w4[0] == pytest.approx(0.0448 / sum(MS_SSIM_WEIGHTS[:4]))
    ours = ms_ssim(ref.y, dec.y, 255.0, 4, torch.float64).item()
    assert abs(ours - _np_ms_ssim(ref.y, dec.y, 255.0, w4)) < 1e-5
    with pytest.raises(MetricsError, match="5 scale"):
        ms_ssim(ref.y, dec.y, 255.0, 5)

    with pytest.warns(RuntimeWarning, match="4 scales with renormalised weights"):
        res = evaluate_sequence(encoded["source"], encoded[37], rgb=True)
    assert res["notes"]["ms_ssim_scales"] == 4 and "too small" in res["notes"]["ms_ssim"]
    assert res["per_frame"][0]["ms_ssim_y"] == pytest.approx(ours, abs=1e-5)
    assert 0 < res["mean"]["ms_ssim_rgb"] <= 1 and 0 < res["mean"]["ssim_rgb"] <= 1

    with pytest.warns(RuntimeWarning, match="unavailable"):
        res = evaluate_sequence(encoded["source"], encoded[37], ms_ssim_small="unavailable")
    assert res["mean"]["ms_ssim_y"] is None and res["per_frame"][0]["ms_ssim_y"] is None
    assert res["notes"]["ms_ssim"].startswith("unavailable")


def test_batches_are_bounded_and_do_not_change_results(encoded):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        big = evaluate_sequence(encoded["source"], encoded[37])
        tiny = evaluate_sequence(encoded["source"], encoded[37], batch_bytes=1)  # one frame per batch
    assert len(big["per_frame"]) == len(tiny["per_frame"]) == 5
    for a, b in zip(big["per_frame"], tiny["per_frame"]):
        for k in a:
            assert a[k] == pytest.approx(b[k], abs=1e-6)


# --------------------------------------------------------------------------- delta, fluctuation


def test_delta_against_the_unfiltered_decode(encoded):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        # QP 27 plays "enhanced", QP 37 the unfiltered decode: both measured against the original.
        out = evaluate_delta(encoded["source"], encoded[37], encoded[27])
    d = out["delta"]["mean"]
    assert d["psnr_y"] == pytest.approx(out["enhanced"]["mean"]["psnr_y"] - out["decoded"]["mean"]["psnr_y"])
    assert d["psnr_y"] > 1 and d["ssim_y"] > 0
    assert len(out["delta"]["per_frame"]) == 5
    with pytest.raises(MetricsError):
        delta(out["enhanced"], {**out["decoded"], "frames": 4})


def test_fluctuation_std_and_pvd_on_a_hand_made_curve():
    # peaks at frames 1 (32), 4 (33) and 7 (31); valleys at 2 (29) and 5 (28); first/last frames are not extrema
    curve = [30, 32, 29, 30, 33, 28, 29, 31, 30]
    f = fluctuation(curve)
    # pairs: peak1-valley2 = 3; peak4-valley2 = 4, peak4-valley5 = 5; peak7-valley5 = 3 (no valley after 7)
    assert f["pvd_pairs"] == 4
    assert f["pvd"] == pytest.approx((3 + 4 + 5 + 3) / 4)
    assert f["std"] == pytest.approx(np.std(curve))
    # a flat top (two equal frames) is one peak
    assert fluctuation([30, 29, 31, 31, 28, 30])["pvd"] == pytest.approx(((31 - 29) + (31 - 28)) / 2)
    mono = fluctuation([30, 31, 32, 33])
    assert np.isnan(mono["pvd"]) and mono["pvd_pairs"] == 0 and mono["std"] > 0
    with pytest.raises(MetricsError, match="finite"):
        fluctuation([30, float("inf"), 30])


def test_yuv_to_rgb_known_colours():
    def px(y, u, v, **kw):
        return yuv_to_rgb(np.full((2, 2), y), np.full((1, 1), u), np.full((1, 1), v), quantize=False, **kw)[0, :, 0, 0]

    assert px(16, 128, 128).tolist() == pytest.approx([0, 0, 0], abs=1e-6)
    assert px(235, 128, 128).tolist() == pytest.approx([1, 1, 1], abs=1e-6)
    # BT.601 limited-range red is (81, 90, 240); BT.709 red is (63, 102, 240)
    assert px(81, 90, 240, matrix="bt601").tolist() == pytest.approx([1, 0, 0], abs=0.01)
    assert px(63, 102, 240, matrix="bt709").tolist() == pytest.approx([1, 0, 0], abs=0.01)
    assert px(255, 128, 128, full_range=True).tolist() == pytest.approx([1, 1, 1], abs=1e-6)
    assert px(64, 512, 512, bitdepth=10).tolist() == pytest.approx([0, 0, 0], abs=1e-6)
    with pytest.raises(MetricsError, match="metrics.rgb_matrix"):
        px(16, 128, 128, matrix="bt2020")


def test_mismatched_inputs(encoded, tmp_path):
    other = tmp_path / "c_64x48_30fps_8bit_420.yuv"
    write_yuv(other, [Frame(np.zeros((48, 64), np.uint8), np.zeros((24, 32), np.uint8),
                            np.zeros((24, 32), np.uint8))], YuvFormat(64, 48))
    with pytest.raises(Exception, match="does not match"):
        evaluate_sequence(encoded["source"], other)
    with pytest.raises(MetricsError, match="ms_ssim_small"):
        evaluate_sequence(encoded["source"], encoded[37], ms_ssim_small="maybe")
