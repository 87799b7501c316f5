"""x265 through the bundled FFmpeg, on real camera footage (issue #2 acceptance)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from inloop.bitstream import read_nal_units
from inloop.cli import main
from inloop.codecs import EncodeJob, get_codec
from inloop.codecs.ffmpeg import find_ffmpeg
from inloop.errors import CodecError, YuvError
from inloop.yuv import YuvFormat, YuvReader

QPS = (22, 27, 32, 37)


def ffmpeg_psnr(ffmpeg, ref, dec, fmt):
    """Per-frame PSNR of FFmpeg's own psnr filter (an independent implementation)."""
    raw = ["-f", "rawvideo", "-pix_fmt", fmt.pix_fmt, "-s", f"{fmt.width}x{fmt.height}"]
    proc = subprocess.run([ffmpeg, "-hide_banner", *raw, "-i", str(dec), *raw, "-i", str(ref),
                           "-lavfi", "[0:v][1:v]psnr=stats_file=-", "-f", "null", "-"],
                          capture_output=True, text=True, check=True)
    frames = []
    for line in proc.stdout.splitlines():
        vals = dict(re.findall(r"(\w+):(\S+)", line))
        if "psnr_y" in vals:
            frames.append({p: float(vals[f"psnr_{p}"]) for p in "yuv"})
    return frames


def trace_flags(ffmpeg, bitstream):
    """The raw trace_headers text, read here without the project's parser."""
    proc = subprocess.run([ffmpeg, "-hide_banner", "-i", str(bitstream), "-c", "copy", "-bsf:v", "trace_headers",
                           "-f", "null", "-"], capture_output=True, text=True, check=True)
    pps = re.findall(r"pps_deblocking_filter_disabled_flag\s+\d+ = (\d)", proc.stderr)
    sao = re.findall(r" sample_adaptive_offset_enabled_flag\s+\d+ = (\d)", proc.stderr)
    return set(pps), set(sao)


@pytest.mark.parametrize("config", ["ai", "ldp", "ra"])
@pytest.mark.parametrize("filters", ["off", "on"])
def test_encode_four_qps(city_yuv, tmp_path, ffmpeg, config, filters, capsys):
    fmt = YuvFormat(128, 96, 8, 30)
    previous_bits = None
    for qp in QPS:
        out = tmp_path / "enc" / config / filters / f"qp{qp}.bin"
        assert main(["encode", "--in", str(city_yuv), "--out", str(out), "--qp", str(qp),
                     "--config", config, "--filters", filters]) == 0
        stats = json.loads(out.with_suffix(".json").read_text())
        decoded = out.with_name(f"qp{qp}_128x96_30fps_8bit_420.yuv")
        assert stats["decoded"] == str(decoded) and len(YuvReader(decoded)) == 5

        # Rate: every NAL unit but SEI, without start codes; x265 counts its frames' bits the same way
        # (parameter sets included), and the file adds only the start codes.
        assert stats["bits"] == sum(f["bits"] for f in stats["frames_reported"])
        units = read_nal_units(out)
        assert stats["file_bytes"] == out.stat().st_size == stats["bits"] // 8 + sum(u.start_code for u in units)
        assert stats["sei_bytes"] == 0 and not any(u.is_sei("hevc") for u in units)
        assert stats["kbps"] == pytest.approx(stats["bits"] / (5 / 30) / 1000)
        if previous_bits is not None:
            assert stats["bits"] < previous_bits  # higher QP, fewer bits
        previous_bits = stats["bits"]

        # Constant QP, and the GOP structure the configuration asks for.
        reported = stats["frames_reported"]
        assert [f["frame"] for f in reported] == [0, 1, 2, 3, 4]
        assert {f["qp"] for f in reported} == {qp}
        types = [f["type"] for f in reported]
        if config == "ai":
            assert set(types) == {"I"}
        elif config == "ldp":
            assert types[0] == "I" and set(types[1:]) == {"P"}
        else:
            assert types[0] == "I" and {"B", "b"} & set(types)

        # Headers: filters off -> deblocking disabled in the PPS and SAO off in the SPS.
        pps, sao = trace_flags(ffmpeg, out)
        if filters == "off":
            assert pps == {"1"} and sao == {"0"}
        else:
            assert pps <= {"0"} and sao == {"1"}  # absent pps flag means 0 (enabled)
        flags = stats["checks"]["header_flags"]
        assert flags["deblocking_enabled"] == flags["sao_enabled"] == (filters == "on")

        # Decoded == the encoder's reconstruction (x265's per-frame PSNR of its recon).
        assert stats["checks"]["codec_psnr_max_abs_diff_db"] < 2e-3

        # The project's PSNR agrees with FFmpeg's psnr filter within 0.01 dB on every frame.
        theirs = ffmpeg_psnr(ffmpeg, city_yuv, decoded, fmt)
        assert len(theirs) == 5
        for ours, ref in zip(stats["psnr_per_frame"], theirs):
            for p in "yuv":
                assert ours[p] == pytest.approx(ref[p], abs=0.01)
    assert "kbps" in capsys.readouterr().out


def test_filters_change_the_picture_and_encodes_are_deterministic(city_yuv, tmp_path):
    codec = get_codec("x265", {})
    fmt = YuvFormat(128, 96, 8, 30)
    runs = {}
    for name, filters in (("off", "off"), ("off2", "off"), ("on", "on")):
        stats = codec.encode(EncodeJob(city_yuv, fmt, 5, 37, "ra", filters), tmp_path / name / "qp37.bin")
        runs[name] = stats
    assert (tmp_path / "off/qp37.bin").read_bytes() == (tmp_path / "off2/qp37.bin").read_bytes()
    assert runs["off"]["psnr"]["y"] != runs["on"]["psnr"]["y"]
    # The rate is the coded pictures' (plus parameter sets), as with HM: no x265 version/options SEI.
    assert b"x265 (build" not in (tmp_path / "off/qp37.bin").read_bytes()
    assert runs["off"]["sei_bytes"] == 0 and runs["off"]["bits"] < 8 * (tmp_path / "off/qp37.bin").stat().st_size


def test_ten_bit(city_yuv, tmp_path, ffmpeg):
    src10 = tmp_path / "city10_128x96_30fps_10bit_420.yuv"
    subprocess.run([ffmpeg, "-v", "error", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", "128x96", "-i", str(city_yuv),
                    "-f", "rawvideo", "-pix_fmt", "yuv420p10le", str(src10)], check=True)
    stats = get_codec("x265").encode(EncodeJob(src10, YuvFormat(128, 96, 10, 30), 3, 32, "ldp", "off"),
                                     tmp_path / "ten" / "qp32.bin")
    assert stats["bitdepth"] == 10 and stats["checks"]["codec_psnr_max_abs_diff_db"] < 2e-3
    assert (tmp_path / "ten" / "qp32_128x96_30fps_10bit_420.yuv").stat().st_size == 3 * 128 * 96 * 3


def no_outputs(d):
    return not d.exists() or not any(d.rglob("*"))


def test_qp_out_of_range_writes_nothing(city_yuv, tmp_path, capsys):
    out = tmp_path / "bad" / "qp52.bin"
    assert main(["encode", "--in", str(city_yuv), "--out", str(out), "--qp", "52", "--config", "ai",
                 "--filters", "off"]) == 2
    assert "QP 52 is outside x265's range 0..51" in capsys.readouterr().err
    assert no_outputs(tmp_path / "bad")


@pytest.mark.parametrize("section, message", [
    ({"preset": "no-such-preset"}, "FFmpeg failed .*exit code"),
    ({"extra_params": "no-such-option=1"}, "x265 rejected parameters.*Unknown option: no-such-option"),
    ({"extra_params": "bframes=abc"}, "x265 rejected parameters.*Invalid value for bframes"),
])
def test_failing_encoder_leaves_no_partial_output(city_yuv, tmp_path, section, message):
    codec = get_codec("x265", {"codecs": {"x265": section}})
    with pytest.raises(CodecError, match=message):
        codec.encode(EncodeJob(city_yuv, YuvFormat(128, 96), 5, 32, "ai", "off"), tmp_path / "x" / "qp32.bin")
    assert no_outputs(tmp_path / "x")


def test_missing_ffmpeg_is_a_clear_error(monkeypatch, city_yuv, tmp_path):
    monkeypatch.setenv("INLOOP_FFMPEG", "/nonexistent/ffmpeg")
    with pytest.raises(CodecError, match="'/nonexistent/ffmpeg' not found.*libx265"):
        find_ffmpeg()


def test_ffmpeg_without_libx265_is_refused(tmp_path, monkeypatch, ffmpeg):
    """A real FFmpeg-like binary that lacks libx265: the start-up check names what to do."""
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\nexec " + ffmpeg + " \"$@\" | grep -v libx265\n")
    fake.chmod(0o755)
    monkeypatch.setenv("INLOOP_FFMPEG", str(fake))
    with pytest.raises(CodecError, match="lacks encoder libx265.*--enable-libx265"):
        get_codec("x265").check()


def test_source_problems(tmp_path, city_yuv):
    codec = get_codec("x265")
    with pytest.raises(CodecError, match="has 5 frames, 9 requested"):
        codec.encode(EncodeJob(city_yuv, YuvFormat(128, 96), 9, 32, "ai", "off"), tmp_path / "a.bin")
    cut = tmp_path / "cut_128x96_30fps_8bit_420.yuv"
    cut.write_bytes(city_yuv.read_bytes()[:-7])
    with pytest.raises(YuvError, match="not a whole number"):
        codec.encode(EncodeJob(cut, YuvFormat(128, 96), 1, 32, "ai", "off"), tmp_path / "b.bin")
    assert not (tmp_path / "a.bin").exists() and not (tmp_path / "b.bin").exists()


def test_console_script_check():
    exe = Path(sys.executable).with_name("inloop")  # the console script installed beside this Python
    proc = subprocess.run([str(exe), "check"], capture_output=True, text=True)
    status = json.loads(proc.stdout)
    assert proc.returncode == 0 and status["x265"]["ok"] and "ffmpeg version" in status["ffmpeg"]["version"]
    assert status["hm"]["ok"] or "codecs.hm.encoder" in status["hm"]["error"]  # names what to set


def test_an_empty_bitstream_is_an_error_and_leaves_nothing(city_yuv, tmp_path):
    """x265 through the base class, with the encoder's output truncated to nothing
    (as a crashed or misconfigured encoder can leave it)."""
    from inloop.codecs.x265 import X265

    class Truncating(X265):
        def _encode(self, job, bitstream, recon, workdir):
            run = super()._encode(job, bitstream, recon, workdir)
            bitstream.write_bytes(b"")
            return run

    with pytest.raises(CodecError, match="wrote no bitstream \\(or an empty one\\)"):
        Truncating().encode(EncodeJob(city_yuv, YuvFormat(128, 96), 5, 32, "ai", "off"), tmp_path / "e" / "qp32.bin")
    assert no_outputs(tmp_path / "e")


def test_a_grey_picture_encodes(tmp_path):
    """Grey sources (the demo's textures) have flat chroma: x265 prints 99.99 dB, the project inf."""
    import numpy as np

    fmt = YuvFormat(64, 64, 8, 30)
    rng = np.random.default_rng(0)
    src = tmp_path / "grey_64x64_30fps_8bit_420.yuv"
    y = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    src.write_bytes(y.tobytes() + np.full(2 * 32 * 32, 128, np.uint8).tobytes())
    stats = get_codec("x265", {}).encode(EncodeJob(src, fmt, 1, 27, "ai", "off"), tmp_path / "g" / "qp27.bin")
    assert stats["psnr"]["u"] == float("inf") and stats["psnr"]["y"] < 60


@pytest.mark.parametrize("folder", ["run:2", "it's=here"])
def test_output_folder_with_x265_param_separators(city_yuv, tmp_path, folder):
    """The x265 CSV log lives in the output folder and its path goes into FFmpeg's -x265-params list,
    which splits on ':' and '=' and quotes on "'" (issue #18, item 13): such a folder still encodes."""
    codec = get_codec("x265", {})
    out = tmp_path / folder / "qp37.bin"
    stats = codec.encode(EncodeJob(city_yuv, YuvFormat(128, 96, 8, 30), 3, 37, "ai", "off"), out)
    assert out.is_file() and stats["frames"] == 3 and len(stats["psnr_per_frame"]) == 3


def test_working_folders_of_killed_encodes_are_swept(city_yuv, tmp_path):
    """A SIGKILLed encode cannot clean its hidden working folder; the next encode of that output removes
    it, and keeps one whose process is alive (issue #18, item 13)."""
    import os

    out = tmp_path / "e" / "qp37.bin"
    dead = tmp_path / "e" / ".qp37.encode-999999999-abcd"
    alive = tmp_path / "e" / f".qp37.encode-{os.getppid()}-efgh"
    other = tmp_path / "e" / ".qp32.encode-999999999-ijkl"
    for d in (dead, alive, other):
        d.mkdir(parents=True)
        (d / "out.bin").write_bytes(b"partial")
    get_codec("x265", {}).encode(EncodeJob(city_yuv, YuvFormat(128, 96, 8, 30), 3, 37, "ai", "off"), out)
    assert out.is_file() and not dead.exists() and alive.is_dir() and other.is_dir()
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".")) == [other.name, alive.name]
