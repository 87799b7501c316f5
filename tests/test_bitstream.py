"""The project's rate (every NAL unit but SEI, no start codes) on the real HM-16.9 and ECM-1.0 streams."""

import hashlib
import re

import pytest

from inloop.bitstream import (BitReader, ebsp_to_rbsp, nal_bytes, nal_units, rate, rbsp_to_ebsp, read_nal_units,
                              reference_summary_bytes)
from inloop.codecs.logs import parse_reference_log
from inloop.errors import CodecError

HM_CASES = [f"{c}_qp{q}_filters-{f}" for c in ("ai", "ldp", "ra") for q in (22, 27, 32, 37) for f in ("off", "on")]
ECM_CASES = [f"ai_qp{q}_filters-{f}" for q in (27, 37) for f in ("off", "on")]


@pytest.mark.parametrize("case", HM_CASES)
def test_rate_equals_hm_summary_to_the_bit(codec_fixtures, case):
    """HM-16.9's per-picture bits and SUMMARY count every NAL unit but SEI, parameter sets included,
    without start codes: the project's count from the bitstream must give the same number."""
    d = codec_fixtures / "hm-16.9"
    log = parse_reference_log((d / f"{case}.log").read_text())
    r = rate(d / f"{case}.bin", "hevc", frames=5, fps=30, width=128, height=96)
    assert r["bits"] == sum(f["bits"] for f in log["frames"])
    assert round(r["kbps"], 4) == pytest.approx(log["summary"]["kbps"], abs=1e-4)  # printed with 4 decimals
    # The fixtures carry a decoded-picture-hash SEI per picture (made for checking): left out of the rate.
    assert r["sei_bytes"] > 0 and r["file_bytes"] == (d / f"{case}.bin").stat().st_size
    assert r["file_bytes"] > r["bits"] // 8 + r["sei_bytes"]  # + start codes
    assert r["bpp"] == r["bits"] / (128 * 96 * 5)


@pytest.mark.parametrize("case", ECM_CASES)
def test_ecm_log_is_the_rate_plus_its_start_codes(codec_fixtures, case):
    """VTM/ECM's per-picture bits add a start code per NAL unit (4 bytes for the first of an access
    unit and for parameter sets, 3 otherwise): the project's rate plus exactly those."""
    d = codec_fixtures / "ecm-1.0"
    (frame,) = parse_reference_log((d / f"{case}.log").read_text())["frames"]
    units = read_nal_units(d / f"{case}.bin")
    assert [u.type("vvc") for u in units] == [15, 16, 8]  # SPS, PPS, IDR_N_LP: one access unit
    assert 8 * reference_summary_bytes(units, "vvc", {0}) == frame["bits"]
    r = rate(d / f"{case}.bin", "vvc", frames=1, fps=30, width=128, height=96)
    assert r["bits"] == 8 * sum(len(u.data) for u in units) == frame["bits"] - 8 * (4 + 4 + 3)
    assert r["sei_bytes"] == 0


def test_annex_b_split_start_codes_and_trailing_zeros():
    # 4-byte start code, a NAL unit followed by trailing_zero_8bits, a 3-byte start code, an SEI.
    data = b"\x00\x00\x00\x01\x40\x01\xaa\x00\x00\x00\x00\x01\x42\x01\x03\x00\x00\x01\x4e\x01\x05\x80"
    units = nal_units(data)
    assert [u.data for u in units] == [b"\x40\x01\xaa", b"\x42\x01\x03", b"\x4e\x01\x05\x80"]
    assert [u.type("hevc") for u in units] == [32, 33, 39]
    assert [u.start_code for u in units] == [4, 4, 3]
    assert [u.is_sei("hevc") for u in units] == [False, False, True]
    with pytest.raises(CodecError, match="does not begin with a start code"):
        nal_units(b"\x12\x00\x00\x01\x40\x01")


def test_rate_counts_nal_units_not_the_file(tmp_path):
    p = tmp_path / "s.bin"
    p.write_bytes(b"\x00\x00\x00\x01\x40\x01\xaa\xbb" + b"\x00\x00\x01\x4e\x01\x05\x80" + b"\x00\x00\x01\x26\x01\x11")
    r = rate(p, "hevc", frames=2, fps=25, width=16, height=8)
    assert r == {"bits": 8 * (4 + 3), "kbps": 56 / (2 / 25) / 1000, "bpp": 56 / (16 * 8 * 2),
                 "file_bytes": 21, "file_sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "sei_bytes": 4}
    assert nal_bytes(p, "hevc")["sei_nal_units"] == 1
    with pytest.raises(CodecError, match="no such bitstream"):
        rate(tmp_path / "missing.bin", "hevc", 1, 30, 8, 8)
    with pytest.raises(CodecError, match="must be positive"):
        rate(p, "hevc", 0, 30, 8, 8)


def test_emulation_prevention_round_trip():
    rbsp = bytes([0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 3, 0, 0, 4, 7])
    ebsp = rbsp_to_ebsp(rbsp)
    assert ebsp == bytes([0, 0, 3, 0, 0, 3, 0, 1, 0, 0, 3, 2, 0, 0, 3, 3, 0, 0, 4, 7])
    assert ebsp_to_rbsp(ebsp) == rbsp
    assert not re.search(b"\x00\x00[\x00-\x02]", ebsp)


def test_bit_reader_codes_and_trailing_bits():
    # u(3)=5, ue: '1' -> 0, '010' -> 1, '011' -> 2, se '00100' -> 2 -> -2, flag 1, then stop bit + zeros.
    bits = "101" + "1" + "010" + "011" + "00101" + "1" + "1"
    bits += "0" * (-len(bits) % 8)
    r = BitReader(int(bits, 2).to_bytes(len(bits) // 8, "big"))
    assert (r.u(3, "a"), r.ue(), r.ue(), r.ue(), r.se(), r.flag("f")) == (5, 0, 1, 2, -2, 1)
    assert r.names == {"a": (0, 3), "f": (15, 1)}
    assert not r.more_rbsp_data()
    r.trailing_bits()
    r = BitReader(b"\x80")
    with pytest.raises(CodecError, match="ran out of bits"):
        r.u(9)
    with pytest.raises(CodecError, match="no rbsp_stop_one_bit"):
        BitReader(b"\x40").trailing_bits()
    with pytest.raises(CodecError, match="data after the rbsp_trailing_bits"):
        BitReader(b"\x80\x01").trailing_bits()
