import subprocess

import numpy as np
import pytest

from inloop.errors import YuvError
from inloop.yuv import (Frame, Y4mReader, YuvFormat, YuvReader, count_frames, open_video, parse_yuv_name,
                        read_frames, write_y4m, write_yuv, yuv_name)


def random_frames(fmt: YuvFormat, n: int, seed: int = 0) -> list[Frame]:
    rng = np.random.default_rng(seed)
    ch, cw = fmt.chroma_shape
    return [Frame(rng.integers(0, fmt.max_value + 1, (fmt.height, fmt.width), dtype=fmt.dtype),
                  rng.integers(0, fmt.max_value + 1, (ch, cw), dtype=fmt.dtype),
                  rng.integers(0, fmt.max_value + 1, (ch, cw), dtype=fmt.dtype)) for _ in range(n)]


def test_name_round_trip():
    fmt = YuvFormat(352, 288, 10, 29.97)
    name = yuv_name("foreman-cif", fmt)
    assert name == "foreman-cif_352x288_29.97fps_10bit_420.yuv"
    assert parse_yuv_name(f"/data/{name}") == ("foreman-cif", fmt)
    assert parse_yuv_name("BQMall_832x480_60fps_8bit_420.yuv") == ("BQMall", YuvFormat(832, 480, 8, 60.0))


def test_bad_names_and_formats():
    with pytest.raises(YuvError, match="does not follow"):
        parse_yuv_name("clip.yuv")
    with pytest.raises(YuvError, match="even width and height"):
        parse_yuv_name("a_351x288_30fps_8bit_420.yuv")
    with pytest.raises(YuvError, match="unknown bit depth 9"):
        parse_yuv_name("a_352x288_30fps_9bit_420.yuv")


@pytest.mark.parametrize("bits", [8, 10])
def test_raw_round_trip_and_layout(tmp_path, bits):
    fmt = YuvFormat(64, 48, bits, 25)
    frames = random_frames(fmt, 3)
    path = tmp_path / yuv_name("r", fmt)
    assert write_yuv(path, frames, fmt) == 3
    assert path.stat().st_size == 3 * 64 * 48 * 3 // 2 * (1 if bits == 8 else 2)
    # The layout is planar Y, U, V per frame, little-endian words above 8 bit.
    raw = np.fromfile(path, dtype=np.uint8 if bits == 8 else "<u2")
    assert np.array_equal(raw[: 64 * 48], frames[0].y.ravel())
    assert np.array_equal(raw[64 * 48 : 64 * 48 + 32 * 24], frames[0].u.ravel())
    with YuvReader(path) as r:
        assert len(r) == 3
        assert isinstance(r._map, np.memmap)
        for got, want in zip(r, frames):
            for a, b in zip(got, want):
                assert np.array_equal(a, b)
    assert count_frames(path) == 3
    assert np.array_equal(read_frames(path, start=2, count=1)[0].v, frames[2].v)


def test_size_not_whole_frames_is_rejected_with_sizes(tmp_path):
    path = tmp_path / "cut_64x48_30fps_8bit_420.yuv"
    path.write_bytes(b"\0" * (64 * 48 * 3 // 2 * 2 + 100))
    with pytest.raises(YuvError) as exc:
        YuvReader(path)
    msg = str(exc.value)
    assert str(path) in msg and "9316 bytes" in msg and "4608 bytes each" in msg


def test_failed_write_leaves_nothing(tmp_path):
    fmt = YuvFormat(16, 16)
    good = random_frames(fmt, 1)[0]
    bad = Frame(good.y[:8], good.u, good.v)
    path = tmp_path / "x_16x16_30fps_8bit_420.yuv"
    with pytest.raises(YuvError, match="plane Y has shape"):
        write_yuv(path, [good, bad], fmt)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(YuvError, match="sample 1024 > 1023"):
        f10 = YuvFormat(16, 16, 10)
        y = np.full((16, 16), 1024, np.uint16)
        write_yuv(path, [Frame(y, y[:8, :8], y[:8, :8])], f10)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bits", [8, 10])
def test_y4m_agrees_with_ffmpeg(tmp_path, ffmpeg, bits):
    """Our y4m writer and reader against FFmpeg's, in both directions."""
    fmt = YuvFormat(32, 16, bits, 30)
    frames = random_frames(fmt, 2, seed=bits)
    ours_y4m = tmp_path / "ours.y4m"
    write_y4m(ours_y4m, frames, fmt)
    raw = tmp_path / "ff.yuv"
    subprocess.run([ffmpeg, "-v", "error", "-i", str(ours_y4m), "-f", "rawvideo", "-pix_fmt", fmt.pix_fmt, str(raw)],
                   check=True)
    assert np.array_equal(np.fromfile(raw, fmt.dtype).view(np.uint8),
                          np.concatenate([np.concatenate([p.ravel() for p in f]) for f in frames]).astype(fmt.dtype).view(np.uint8))
    ff_y4m = tmp_path / "ff.y4m"
    subprocess.run([ffmpeg, "-v", "error", "-f", "rawvideo", "-pix_fmt", fmt.pix_fmt, "-s", "32x16", "-r", "30",
                    "-i", str(raw), "-strict", "-1", str(ff_y4m)], check=True)
    with open_video(ff_y4m) as r:
        assert isinstance(r, Y4mReader) and r.fmt == fmt and len(r) == 2
        for got, want in zip(r, frames):
            assert all(np.array_equal(a, b) for a, b in zip(got, want))


def test_y4m_truncated_is_rejected(tmp_path):
    fmt = YuvFormat(16, 16)
    p = tmp_path / "t.y4m"
    write_y4m(p, random_frames(fmt, 2), fmt)
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(YuvError, match="not a whole number"):
        Y4mReader(p)
