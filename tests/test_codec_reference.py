"""HM and ECM: parsing real logs, decoding real bitstreams, command lines (fixtures in ../shared)."""

import hashlib
import os
import shlex
from pathlib import Path

import numpy as np
import pytest

from inloop.codecs import EncodeJob, get_codec
from inloop.codecs.ffmpeg import decode_to_yuv, hevc_filter_flags
from inloop.codecs.hm import HM
from inloop.codecs.logs import parse_reference_log
from inloop.codecs.vtm import ECM, filters_off_args
from inloop.errors import CodecError
from inloop.fsutil import files_equal
from inloop.yuv import YuvFormat, YuvReader

FMT = YuvFormat(128, 96, 8, 30)
HM_CASES = [f"{c}_qp{q}_filters-{f}" for c in ("ai", "ldp", "ra") for q in (22, 27, 32, 37) for f in ("off", "on")]
ECM_CASES = [f"ai_qp{q}_filters-{f}" for q in (27, 37) for f in ("off", "on")]


@pytest.fixture()
def cfg_dir(tmp_path: Path) -> Path:
    """An HM cfg directory (the files' content matters only to a real HM)."""
    d = tmp_path / "cfg"
    d.mkdir()
    for name in HM.cfg_files.values():
        (d / name).write_text("")
    return d


@pytest.mark.parametrize("case", HM_CASES)
def test_hm_log_parses_to_its_own_numbers(codec_fixtures, case):
    log = (codec_fixtures / "hm-16.9" / f"{case}.log").read_text()
    parsed = parse_reference_log(log)
    frames, summary = parsed["frames"], parsed["summary"]
    assert parsed["version"] == "HM-16.9"
    assert [f["poc"] for f in frames] == [0, 1, 2, 3, 4] and summary["frames"] == 5
    # The per-POC lines add up to the SUMMARY block the encoder printed.
    assert sum(f["bits"] for f in frames) * 30 / 5 / 1000 == pytest.approx(summary["kbps"], abs=1e-4)
    for plane in "yuv":
        assert np.mean([f[f"psnr_{plane}"] for f in frames]) == pytest.approx(summary[plane], abs=1e-4)
    # The bitstream file is what the encoder said it wrote.
    assert parsed["bytes_written"] == (codec_fixtures / "hm-16.9" / f"{case}.bin").stat().st_size
    qp = int(case.split("_qp")[1][:2])
    assert frames[0]["type"] == "I" and frames[0]["qp"] == qp
    if case.startswith("ai"):
        assert {f["type"] for f in frames} == {"I"} and {f["qp"] for f in frames} == {qp}
    else:  # HM's LDP and RA cfgs add per-picture QP offsets
        assert max(f["qp"] for f in frames) > qp
    assert parsed["tool_cfg"]["SAO"] == (1 if case.endswith("on") else 0)


def test_hm_log_spot_values(codec_fixtures):
    parsed = parse_reference_log((codec_fixtures / "hm-16.9" / "ra_qp37_filters-off.log").read_text())
    f = {x["poc"]: x for x in parsed["frames"]}
    assert (f[0]["type"], f[0]["qp"], f[0]["bits"], f[0]["psnr_y"]) == ("I", 37, 7304, 30.7610)
    assert (f[4]["type"], f[4]["qp"], f[4]["bits"], f[4]["psnr_v"]) == ("B", 39, 160, 33.7389)
    assert parsed["coding_order"] == [0, 4, 2, 1, 3]
    assert parsed["summary"] == {"kbps": 46.2240, "y": 30.4660, "u": 37.4019, "v": 33.8892, "yuv": 31.5606, "frames": 5}
    assert parsed["total_time_s"] == 0.373


@pytest.mark.parametrize("case", HM_CASES)
def test_hm_bitstream_decodes_with_bundled_ffmpeg(codec_fixtures, tmp_path, ffmpeg, case):
    d = codec_fixtures / "hm-16.9"
    out = tmp_path / "dec.yuv"
    decode_to_yuv(ffmpeg, d / f"{case}.bin", out, FMT)
    recon = d / f"{case}.recon.yuv"
    if recon.exists():
        assert files_equal(out, recon)
    # Every picture's MD5 (SEI decoded picture hash, printed in the log) matches the decode.
    parsed = parse_reference_log((d / f"{case}.log").read_text())
    with YuvReader(out, FMT) as r:
        assert len(r) == 5
        for f in parsed["frames"]:
            assert [hashlib.md5(p.tobytes()).hexdigest() for p in r[f["poc"]]] == f["md5"]


@pytest.mark.parametrize("case", HM_CASES)
def test_hm_bitstream_headers_say_filters(codec_fixtures, ffmpeg, case):
    flags = hevc_filter_flags(ffmpeg, codec_fixtures / "hm-16.9" / f"{case}.bin")
    on = case.endswith("on")
    assert flags["deblocking_enabled"] is on and flags["sao_enabled"] is on
    assert flags["pps_deblocking_filter_disabled_flag"] == [0 if on else 1]
    assert flags["slices"] == 5 and flags["slices_with_deblocking"] == (5 if on else 0)


def _fixture_options(cmd_file: Path) -> list[str]:
    """The options of a fixture command line, without its file paths."""
    argv = shlex.split(cmd_file.read_text())[1:]
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("-c", "-i", "-b", "-o"):
            skip = True
            continue
        out.append(a)
    return out


@pytest.mark.parametrize("case", [c for c in HM_CASES if "qp37" in c])
def test_hm_command_line_matches_the_fixture(codec_fixtures, cfg_dir, city_yuv, case):
    config, filters = case.split("_")[0], case.split("-")[-1]
    hm = HM(encoder="/bin/true", cfg_dir=str(cfg_dir))
    cmd = hm.encoder_command(EncodeJob(city_yuv, FMT, 5, 37, config, filters), Path("x.bin"), Path("x.yuv"))
    ours = cmd[1:]
    for opt in _fixture_options(codec_fixtures / "hm-16.9" / f"{case}.cmd"):
        assert opt in ours, f"{opt} missing from {cmd}"
    fixture_cfg = shlex.split((codec_fixtures / "hm-16.9" / f"{case}.cmd").read_text())[2]
    assert Path(cmd[cmd.index("-c") + 1]).name == Path(fixture_cfg).name


@pytest.mark.parametrize("case", ECM_CASES)
def test_ecm_logs_and_recon(codec_fixtures, case, tmp_path):
    d = codec_fixtures / "ecm-1.0"
    parsed = parse_reference_log((d / f"{case}.log").read_text())
    assert parsed["version"] == "ECM-1.0 (VTM-10.0)"
    (f,) = parsed["frames"]
    assert (f["poc"], f["type"], f["nal"], f["qp"]) == (0, "I", "IDR_N_LP", int(case[5:7]))
    # TemporalSubsampleRatio 8: one coded picture stands for 8 at 30 fps.
    assert f["bits"] * 30 / 8 / 1000 == pytest.approx(parsed["summary"]["kbps"], abs=1e-4)
    expect = 1 if case.endswith("on") else 0
    assert {k: parsed["tool_cfg"][k] for k in ("SAO", "ALF", "CCALF", "BIF")} == dict.fromkeys(
        ("SAO", "ALF", "CCALF", "BIF"), expect)
    assert len(YuvReader(d / f"{case}.recon.yuv", FMT)) == 1


def test_ecm_filter_switches_match_the_real_command_line(codec_fixtures):
    fixture = [a for a in _fixture_options(codec_fixtures / "ecm-1.0" / "ai_qp27_filters-off.cmd")
               if a.split("=")[0] in ("--LoopFilterDisable", "--SAO", "--ALF", "--CCALF", "--BIF")]
    assert sorted(filters_off_args("ECM-1.0 (VTM-10.0)")) == sorted(fixture)
    assert "--CCSAO=0" in filters_off_args("ECM-2.0") and "--ChromaBIF=0" not in filters_off_args("ECM-2.0")
    assert "--ChromaBIF=0" in filters_off_args("ECM-13.0")
    assert filters_off_args("VTM-23.0") == ["--LoopFilterDisable=1", "--SAO=0", "--ALF=0", "--CCALF=0"]


def test_unconfigured_reference_codecs_say_what_to_set(city_yuv, tmp_path, monkeypatch):
    for var in ("INLOOP_HM_ENCODER", "INLOOP_ECM_ENCODER", "INLOOP_ECM_DECODER", "INLOOP_ECM_CFG_DIR"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(CodecError, match=r"set params.yaml codecs.hm.encoder \(or INLOOP_HM_ENCODER\)"):
        get_codec("hm", {}).encode(EncodeJob(city_yuv, FMT, 5, 37, "ai", "off"), tmp_path / "a.bin")
    with pytest.raises(CodecError, match="is not an executable file"):
        get_codec("ecm", {"codecs": {"ecm": {"encoder": str(tmp_path / "nope")}}}).check()
    with pytest.raises(CodecError, match="QP 64 is outside ecm's range -12..63"):
        ECM().validate(EncodeJob(city_yuv, FMT, 5, 64, "ai", "off"))
    assert not (tmp_path / "a.bin").exists()


REPLAY = """#!/usr/bin/env python3
# Stands in for TAppEncoder where HM cannot run: replays the real HM-16.9 outputs
# in ../shared/fixtures for the command line it is given.
import shutil, sys
a = sys.argv[1:]
opt = lambda k: a[a.index(k) + 1]
cfg = {"encoder_intra_main.cfg": "ai", "encoder_lowdelay_P_main.cfg": "ldp", "encoder_randomaccess_main.cfg": "ra"}
case = "%s/%s_qp%s_filters-%s" % (FIXTURES, cfg[opt("-c").split("/")[-1]], opt("-q"),
                                  "off" if "--LoopFilterDisable=1" in a else "on")
shutil.copyfile(case + ".bin", opt("-b"))
shutil.copyfile(case + ".recon.yuv", opt("-o"))
sys.stdout.write(open(case + ".log").read())
"""


@pytest.mark.parametrize("config", ["ai", "ldp", "ra"])
@pytest.mark.parametrize("filters", ["off", "on"])
def test_hm_pipeline_on_replayed_real_outputs(codec_fixtures, tmp_path, cfg_dir, city_yuv, config, filters):
    """The whole HM path (command, log, FFmpeg decode, recon check, header check, stats)
    on the real HM-16.9 outputs, replayed for the command line the wrapper builds."""
    enc = tmp_path / "TAppEncoder"
    enc.write_text(REPLAY.replace("FIXTURES", repr(str(codec_fixtures / "hm-16.9"))))
    enc.chmod(0o755)
    hm = get_codec("hm", {"codecs": {"hm": {"encoder": str(enc), "cfg_dir": str(cfg_dir)}}})
    out = tmp_path / "out" / "qp37.bin"
    stats = hm.encode(EncodeJob(city_yuv, FMT, 5, 37, config, filters), out)
    real = codec_fixtures / "hm-16.9" / f"{config}_qp37_filters-{filters}"
    assert files_equal(out, real.with_suffix(".bin"))
    assert stats["checks"]["decoded_equals_recon"] is True
    assert stats["checks"]["header_flags"]["deblocking_enabled"] is (filters == "on")
    assert stats["codec_version"] == "HM-16.9" and stats["bytes"] == real.with_suffix(".bin").stat().st_size
    assert [f["bits"] for f in stats["frames_reported"]] == [
        f["bits"] for f in parse_reference_log(real.with_suffix(".log").read_text())["frames"]]
    assert stats["encode_command"][stats["encode_command"].index("-q") + 1] == "37"


def test_hm_output_that_contradicts_the_filters_is_refused(codec_fixtures, tmp_path, cfg_dir, city_yuv):
    """A bitstream whose headers say deblocking is on, from an encode asked to turn it off."""
    enc = tmp_path / "TAppEncoder"
    enc.write_text(REPLAY.replace("FIXTURES", repr(str(codec_fixtures / "hm-16.9")))
                   .replace('"off" if "--LoopFilterDisable=1" in a else "on"', '"on"'))
    enc.chmod(0o755)
    hm = HM(encoder=str(enc), cfg_dir=str(cfg_dir))
    with pytest.raises(CodecError, match="headers contradict filters=off"):
        hm.encode(EncodeJob(city_yuv, FMT, 5, 37, "ai", "off"), tmp_path / "o" / "qp37.bin")
    assert not any((tmp_path / "o").iterdir())


def _configured(name: str) -> dict | None:
    enc = os.environ.get(f"INLOOP_{name.upper()}_ENCODER")
    return {"encoder": enc} if enc else None


@pytest.mark.skipif(not _configured("hm"), reason="no HM binary configured: set INLOOP_HM_ENCODER, "
                    "INLOOP_HM_CFG_DIR (and optionally INLOOP_HM_DECODER) to run live HM encodes")
@pytest.mark.parametrize("config", ["ai", "ldp", "ra"])
def test_live_hm_encode(city_yuv, tmp_path, codec_fixtures, config):
    hm = get_codec("hm", {})
    stats = hm.encode(EncodeJob(city_yuv, FMT, 5, 37, config, "off"), tmp_path / "qp37.bin")
    assert stats["checks"]["decoded_equals_recon"] and not stats["checks"]["header_flags"]["deblocking_enabled"]
    if stats["codec_version"] == "HM-16.9":  # same binary, same command: same bitstream as the fixture
        assert files_equal(tmp_path / "qp37.bin", codec_fixtures / "hm-16.9" / f"{config}_qp37_filters-off.bin")


@pytest.mark.skipif(not _configured("ecm"), reason="no ECM binary configured: set INLOOP_ECM_ENCODER, "
                    "INLOOP_ECM_DECODER and INLOOP_ECM_CFG_DIR to run live ECM encodes")
def test_live_ecm_encode(city_yuv, tmp_path):
    stats = get_codec("ecm", {}).encode(EncodeJob(city_yuv, FMT, 1, 37, "ai", "off"), tmp_path / "qp37.bin")
    assert stats["checks"]["decoded_equals_recon"]
    assert set(stats["checks"]["header_flags"]["tool_cfg"].values()) == {0}
