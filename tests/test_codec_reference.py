"""HM and ECM: parsing real logs, decoding real bitstreams, command lines (fixtures in tests/fixtures/codecs)."""

import hashlib
import os
import shlex
from pathlib import Path

import numpy as np
import pytest

from inloop.bitstream import read_nal_units
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


@pytest.fixture(autouse=True)
def _replays_ignore_live_binaries(request, monkeypatch):
    """INLOOP_<CODEC>_* override params; the replay tests must run their replays even where they are set."""
    if "live" not in request.node.name:
        for codec in ("HM", "VTM", "ECM"):
            for key in ("ENCODER", "DECODER", "CFG_DIR"):
                monkeypatch.delenv(f"INLOOP_{codec}_{key}", raising=False)


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
    """The options of a fixture command line, without its file paths and its hash SEI (added for checking)."""
    argv = shlex.split(cmd_file.read_text())[1:]
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("-c", "-i", "-b", "-o"):
            skip = True
            continue
        if not a.startswith("--SEIDecodedPictureHash"):
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
    assert "--SEIDecodedPictureHash=0" in ours  # no hash SEI in the rate (the CTC send none)
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
    ours = filters_off_args("ECM-1.0 (VTM-10.0)")
    # + LoopFilterOffsetInPPS=1 (the cfgs' own value, explicit): the PPS then forbids deblocking overrides.
    assert sorted(ours) == sorted(fixture + ["--LoopFilterOffsetInPPS=1"])
    base = ["--LoopFilterDisable=1", "--LoopFilterOffsetInPPS=1", "--SAO=0", "--ALF=0", "--CCALF=0"]
    # Each release's own parameter list (EncAppCfg.cpp): CCSAO from 2.0; the chroma bilateral filter is
    # CBIF in 3.0/3.1 (SPiLF's ECM 3.1) and ChromaBIF from 4.0.
    assert filters_off_args("ECM-2.0") == base + ["--BIF=0", "--CCSAO=0"]
    assert filters_off_args("ECM-3.1 (VTM-11.0)") == base + ["--BIF=0", "--CCSAO=0", "--CBIF=0"]
    assert filters_off_args("ECM-4.0") == base + ["--BIF=0", "--CCSAO=0", "--ChromaBIF=0"]
    assert filters_off_args("VTM-23.0") == base


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
# in tests/fixtures/codecs for the command line it is given. Like HM, it opens the
# -c, -i, -b and -o paths from its working directory, and after failing to open
# the input it prints HM-16.9's own message and exits 0.
import shutil, sys
a = sys.argv[1:]
opt = lambda k: a[a.index(k) + 1]
open(opt("-c")).close()
cfg = {"encoder_intra_main.cfg": "ai", "encoder_lowdelay_P_main.cfg": "ldp", "encoder_randomaccess_main.cfg": "ra"}
case = "%s/%s_qp%s_filters-%s" % (FIXTURES, cfg[opt("-c").split("/")[-1]], opt("-q"),
                                  "off" if "--LoopFilterDisable=1" in a else "on")
try:
    open(opt("-i"), "rb").close()
except OSError:
    print("HM software: Encoder Version [16.9] (including RExt)[Linux][GCC 12.2.0][64 bit]")
    print("\\n\\nfailed to open Input YUV file")
    sys.exit(0)
shutil.copyfile(case + ".bin", opt("-b"))
shutil.copyfile(case + ".recon.yuv", opt("-o"))
sys.stdout.write(open(case + ".log").read())
"""


def _script(path: Path, template: str, fixtures: Path, **replace: str) -> Path:
    """An executable replay script at ``path``: ``template`` pointed at ``fixtures``, with ``replace`` applied."""
    text = template.replace("FIXTURES", repr(str(fixtures)))
    for old, new in replace.items():
        text = text.replace(old, new)
    path.write_text(text)
    path.chmod(0o755)
    return path


def _replay_hm(codec_fixtures: Path, where: Path, **replace: str) -> Path:
    return _script(where / "TAppEncoder", REPLAY, codec_fixtures / "hm-16.9", **replace)


@pytest.mark.parametrize("config", ["ai", "ldp", "ra"])
@pytest.mark.parametrize("filters", ["off", "on"])
def test_hm_pipeline_on_replayed_real_outputs(codec_fixtures, tmp_path, cfg_dir, city_yuv, config, filters):
    """The whole HM path (command, log, FFmpeg decode, recon check, header check, stats)
    on the real HM-16.9 outputs, replayed for the command line the wrapper builds."""
    enc = _replay_hm(codec_fixtures, tmp_path)
    hm = get_codec("hm", {"codecs": {"hm": {"encoder": str(enc), "cfg_dir": str(cfg_dir)}}})
    out = tmp_path / "out" / "qp37.bin"
    stats = hm.encode(EncodeJob(city_yuv, FMT, 5, 37, config, filters), out)
    real = codec_fixtures / "hm-16.9" / f"{config}_qp37_filters-{filters}"
    assert files_equal(out, real.with_suffix(".bin"))
    assert stats["checks"]["decoded_equals_recon"] is True
    assert stats["checks"]["header_flags"]["deblocking_enabled"] is (filters == "on")
    assert stats["codec_version"] == "HM-16.9" and stats["file_bytes"] == real.with_suffix(".bin").stat().st_size
    # The rate is HM's own, to the bit (the replayed fixture's hash SEI is left out of it).
    assert stats["bits"] == sum(f["bits"] for f in stats["frames_reported"]) and stats["sei_bytes"] > 0
    assert [f["bits"] for f in stats["frames_reported"]] == [
        f["bits"] for f in parse_reference_log(real.with_suffix(".log").read_text())["frames"]]
    assert stats["encode_command"][stats["encode_command"].index("-q") + 1] == "37"


def test_hm_output_that_contradicts_the_filters_is_refused(codec_fixtures, tmp_path, cfg_dir, city_yuv):
    """A bitstream whose headers say deblocking is on, from an encode asked to turn it off."""
    enc = _replay_hm(codec_fixtures, tmp_path, **{'"off" if "--LoopFilterDisable=1" in a else "on"': '"on"'})
    hm = HM(encoder=str(enc), cfg_dir=str(cfg_dir))
    with pytest.raises(CodecError, match="headers contradict filters=off"):
        hm.encode(EncodeJob(city_yuv, FMT, 5, 37, "ai", "off"), tmp_path / "o" / "qp37.bin")
    assert not any((tmp_path / "o").iterdir())


def test_reference_encode_with_relative_paths_from_any_directory(codec_fixtures, tmp_path, monkeypatch, city_yuv):
    """Snakemake passes paths relative to the project root, and the encoder runs in a temporary
    directory: every path on its command line must be absolute (HM used to fail to open
    'results/encoded/.../.qp22.encode-.../out.bin')."""
    (tmp_path / "bin").mkdir()
    enc = _replay_hm(codec_fixtures, tmp_path / "bin")
    (tmp_path / "cfg").mkdir()
    for name in HM.cfg_files.values():
        (tmp_path / "cfg" / name).write_text("")
    (tmp_path / "data").mkdir()
    city_yuv.rename(tmp_path / "data" / city_yuv.name)
    monkeypatch.chdir(tmp_path)
    src = Path("data") / city_yuv.name
    for encoder, cfg in ((str(enc), str(tmp_path / "cfg")), ("bin/TAppEncoder", "cfg")):  # as params hold them
        hm = get_codec("hm", {"codecs": {"hm": {"encoder": encoder, "cfg_dir": cfg}}})
        stats = hm.encode(EncodeJob(src, FMT, 5, 37, "ra", "off"), "results/enc/qp37.bin",
                          decoded="results/enc/dec.yuv", stats="results/enc/qp37.json")
        assert files_equal(tmp_path / "results/enc/qp37.bin", codec_fixtures / "hm-16.9" / "ra_qp37_filters-off.bin")
        assert stats["checks"]["decoded_equals_recon"] and (tmp_path / "results/enc/dec.yuv").is_file()
        cmd = stats["encode_command"]
        assert all(Path(cmd[cmd.index(k) + 1]).is_absolute() for k in ("-c", "-i", "-b", "-o"))
        assert stats["source"] == str(tmp_path / src) and stats["bitstream"] == str(tmp_path / "results/enc/qp37.bin")


def test_hm_that_cannot_read_its_input_is_reported_in_its_own_words(codec_fixtures, tmp_path, cfg_dir, city_yuv):
    """HM-16.9 prints 'failed to open Input YUV file' and exits 0: the error carries its output's tail."""
    enc = _replay_hm(codec_fixtures, tmp_path, **{'open(opt("-i"), "rb")': 'open("/nonexistent/in.yuv", "rb")'})
    hm = HM(encoder=str(enc), cfg_dir=str(cfg_dir))
    with pytest.raises(CodecError, match=r"(?s)no per-picture 'POC \.\.\.' lines.*\| failed to open Input YUV file"):
        hm.encode(EncodeJob(city_yuv, FMT, 5, 37, "ai", "off"), tmp_path / "o" / "qp37.bin")
    assert not any((tmp_path / "o").iterdir())


def test_output_paths_that_would_overwrite_the_source_are_refused(codec_fixtures, tmp_path, cfg_dir, city_yuv):
    hm = HM(encoder=str(_replay_hm(codec_fixtures, tmp_path)), cfg_dir=str(cfg_dir))
    job = EncodeJob(city_yuv, FMT, 5, 37, "ai", "off")
    before = city_yuv.read_bytes()
    for kwargs in ({"decoded": city_yuv}, {"stats": city_yuv}, {"decoded": tmp_path / "x.json", "stats": tmp_path / "x.json"}):
        with pytest.raises(CodecError, match="must differ"):
            hm.encode(job, tmp_path / "o" / "qp37.bin", **kwargs)
    assert city_yuv.read_bytes() == before and not (tmp_path / "o").exists()


ECM_REPLAY = """#!/usr/bin/env python3
# Stands in for ECM-1.0's EncoderApp / DecoderApp where ECM cannot run: replays the real outputs in
# tests/fixtures/codecs (ai_qp37). The encoder answers --help with ECM's banner; the decoder writes the
# reconstruction of the fixture whose bitstream it is given.
import glob, shutil, sys
a = sys.argv[1:]
opt = lambda k: a[a.index(k) + 1]
if "--help" in a:
    print("VVCSoftware: ECM Encoder Version 1.0 (VTM-10.0) [Linux][GCC 12.2.0][64 bit] [SIMD=AVX2]")
    sys.exit(0)
if "-i" in a:
    case = "%s/ai_qp37_filters-%s" % (FIXTURES, "off" if "--LoopFilterDisable=1" in a else "on")
    shutil.copyfile(case + ".bin", opt("-b"))
    shutil.copyfile(case + ".recon.yuv", opt("-o"))
    sys.stdout.write(open(case + ".log").read())
else:
    data = open(opt("-b"), "rb").read()
    (case,) = [f[:-4] for f in glob.glob(FIXTURES + "/*.bin") if open(f, "rb").read() == data]
    shutil.copyfile(case + ".recon.yuv", opt("-o"))
"""


def _replay_ecm(codec_fixtures: Path, tmp_path: Path, **replace: str) -> dict:
    exe = _script(tmp_path / "ecm-replay", ECM_REPLAY, codec_fixtures / "ecm-1.0", **replace)
    cfg = tmp_path / "ecm-cfg"
    cfg.mkdir()
    for name in ECM.cfg_files.values():
        (cfg / name).write_text("")
    return {"codecs": {"ecm": {"encoder": str(exe), "decoder": str(exe), "cfg_dir": str(cfg)}}}


@pytest.mark.parametrize("filters", ["off", "on"])
def test_ecm_pipeline_on_replayed_real_outputs(codec_fixtures, tmp_path, city_yuv, filters):
    """The ECM path (command, log, decode, recon check, SPS/PPS check, rate) on ECM-1.0's own outputs."""
    ecm = get_codec("ecm", _replay_ecm(codec_fixtures, tmp_path))
    stats = ecm.encode(EncodeJob(city_yuv, FMT, 1, 37, "ai", filters), tmp_path / "o" / "qp37.bin")
    flags = stats["checks"]["header_flags"]
    assert stats["codec_version"] == "ECM-1.0 (VTM-10.0)" and flags["syntax"] == "ECM-1.0"
    assert {flags[f"{f}_enabled"] for f in ("deblocking", "sao", "alf", "ccalf", "bif")} == {filters == "on"}
    assert stats["checks"]["decoded_equals_recon"] is True
    # ECM's log counts start codes too (4 + 4 + 3 bytes here); the project's rate does not.
    assert stats["bits"] == stats["frames_reported"][0]["bits"] - 8 * 11 and stats["sei_bytes"] == 0
    cmd = stats["encode_command"]
    assert "--TemporalSubsampleRatio=1" in cmd and "--SEIDecodedPictureHash=0" in cmd


def test_a_filters_on_ecm_stream_is_refused_as_filters_off(codec_fixtures, tmp_path, city_yuv):
    """The encoder asked for filters off returns a stream with every loop filter on: refused, nothing written."""
    params = _replay_ecm(codec_fixtures, tmp_path, **{'"off" if "--LoopFilterDisable=1" in a else "on"': '"on"'})
    with pytest.raises(CodecError, match=r"parameter sets contradict filters=off: deblocking enabled; sao enabled"):
        get_codec("ecm", params).encode(EncodeJob(city_yuv, FMT, 1, 37, "ai", "off"), tmp_path / "o" / "qp37.bin")
    assert not any((tmp_path / "o").iterdir())


def _configured(name: str) -> dict | None:
    enc = os.environ.get(f"INLOOP_{name.upper()}_ENCODER")
    return {"encoder": enc} if enc else None


LIVE_HM = "no HM binary configured: set INLOOP_HM_ENCODER, INLOOP_HM_CFG_DIR (and optionally INLOOP_HM_DECODER) " \
          "to run live HM encodes"
LIVE_ECM = "no ECM binary configured: set INLOOP_ECM_ENCODER, INLOOP_ECM_DECODER and INLOOP_ECM_CFG_DIR to run " \
           "live ECM encodes"


@pytest.mark.skipif(not _configured("hm"), reason=LIVE_HM)
@pytest.mark.parametrize("config", ["ai", "ldp", "ra"])
@pytest.mark.parametrize("filters", ["off", "on"])
def test_live_hm_encode(city_yuv, tmp_path, codec_fixtures, monkeypatch, config, filters):
    """Real HM from a relative working directory: the fixture's stream without its hash SEI, HM's own rate."""
    monkeypatch.chdir(tmp_path)
    hm = get_codec("hm", {})
    stats = hm.encode(EncodeJob(Path(city_yuv.name), FMT, 5, 37, config, filters), Path("out") / "qp37.bin")
    assert stats["checks"]["decoded_equals_recon"]
    assert stats["checks"]["header_flags"]["deblocking_enabled"] is (filters == "on")
    units = read_nal_units(tmp_path / "out" / "qp37.bin")
    assert stats["sei_bytes"] == 0 and not any(u.is_sei("hevc") for u in units)
    assert stats["bits"] == sum(f["bits"] for f in stats["frames_reported"])
    assert round(stats["kbps"], 4) == pytest.approx(stats["codec_summary"]["kbps"], abs=1e-4)
    if stats["codec_version"] == "HM-16.9":  # same binary and options: the fixture's NAL units but its SEI
        fixture = read_nal_units(codec_fixtures / "hm-16.9" / f"{config}_qp37_filters-{filters}.bin")
        assert [u.data for u in units] == [u.data for u in fixture if not u.is_sei("hevc")]


@pytest.mark.skipif(not _configured("ecm"), reason=LIVE_ECM)
def test_live_ecm_encode(city_yuv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ecm = get_codec("ecm", {})
    stats = ecm.encode(EncodeJob(Path(city_yuv.name), FMT, 1, 37, "ai", "off"), Path("out") / "qp37.bin")
    flags = stats["checks"]["header_flags"]
    assert stats["checks"]["decoded_equals_recon"] and flags["deblocking_overridable"] is False
    assert not any(v for k, v in flags.items() if k.endswith("_enabled"))
    assert stats["sei_bytes"] == 0


@pytest.mark.skipif(not _configured("ecm"), reason=LIVE_ECM)
def test_live_ecm_with_deblocking_left_on_is_refused_as_filters_off(city_yuv, tmp_path):
    """ECM's TOOL CFG echo says nothing about deblocking: only the PPS shows that it stayed on."""
    ecm = get_codec("ecm", {"codecs": {"ecm": {"extra_args": ["--LoopFilterDisable=0"]}}})
    with pytest.raises(CodecError, match=r"contradict filters=off: deblocking enabled$"):
        ecm.encode(EncodeJob(city_yuv, FMT, 1, 37, "ai", "off"), tmp_path / "o" / "qp37.bin")
    assert not any((tmp_path / "o").iterdir())


def test_an_ecm_whose_streams_cannot_be_checked_is_refused_before_encoding(codec_fixtures, tmp_path, city_yuv):
    params = _replay_ecm(codec_fixtures, tmp_path, **{"ECM Encoder Version 1.0": "ECM Encoder Version 4.0"})
    with pytest.raises(CodecError, match="knows VTM-10/11 and ECM-1.0 to ECM-3.1, not ECM-4.0"):
        get_codec("ecm", params).encode(EncodeJob(city_yuv, FMT, 1, 37, "ai", "off"), tmp_path / "o" / "qp37.bin")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
