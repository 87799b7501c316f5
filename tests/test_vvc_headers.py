"""The project's VVC/ECM parameter-set reader on the real ECM-1.0 streams (fixtures in tests/fixtures/codecs)."""

from pathlib import Path

import pytest

from inloop.bitstream import VVC_PPS, VVC_SPS, ebsp_to_rbsp, rbsp_to_ebsp, read_nal_units
from inloop.codecs.vvc_headers import (VvcSyntax, parse_pps, parse_sps, syntax_for, vvc_filter_flags,
                                       vvc_filter_flags_mismatch)
from inloop.errors import CodecError

ECM = "ECM-1.0 (VTM-10.0)"
FILTERS = ("deblocking", "sao", "alf", "ccalf", "bif")


@pytest.mark.parametrize("qp", [27, 37])
def test_ecm_streams_say_what_their_encoder_was_told(codec_fixtures, qp):
    d = codec_fixtures / "ecm-1.0"
    off = vvc_filter_flags(d / f"ai_qp{qp}_filters-off.bin", ECM)
    on = vvc_filter_flags(d / f"ai_qp{qp}_filters-on.bin", ECM)
    assert off["syntax"] == "ECM-1.0" and (off["sps"], off["pps"]) == (1, 1)
    assert {f: off[f"{f}_enabled"] for f in FILTERS} == dict.fromkeys(FILTERS, False)
    assert {f: on[f"{f}_enabled"] for f in FILTERS} == dict.fromkeys(FILTERS, True)
    assert off["pps_deblocking_filter_disabled_flag"] == [1] and on["pps_deblocking_filter_disabled_flag"] == [0]
    assert off["deblocking_overridable"] is False
    assert vvc_filter_flags_mismatch(off, "off") == [] and vvc_filter_flags_mismatch(on, "on") == []


def test_a_filters_on_ecm_stream_is_refused_as_filters_off(codec_fixtures):
    on = vvc_filter_flags(codec_fixtures / "ecm-1.0" / "ai_qp37_filters-on.bin", ECM)
    assert vvc_filter_flags_mismatch(on, "off") == [f"{f} enabled" for f in FILTERS]
    off = vvc_filter_flags(codec_fixtures / "ecm-1.0" / "ai_qp37_filters-off.bin", ECM)
    assert vvc_filter_flags_mismatch(off, "on") == [f"{f} disabled" for f in FILTERS]


def _flip(stream: Path, nal_type: int, element: str, out: Path) -> Path:
    """``stream`` with one flag of its SPS or PPS inverted (re-escaped), written to ``out``."""
    data = bytearray()
    for u in read_nal_units(stream):
        body = u.data
        if u.type("vvc") == nal_type:
            rbsp = bytearray(ebsp_to_rbsp(body[2:]))
            parse = parse_sps if nal_type == VVC_SPS else parse_pps
            pos, width = parse(bytes(rbsp), VvcSyntax("ECM-1.0", (1, 0)))["reader"].names[element]
            assert width == 1
            rbsp[pos >> 3] ^= 0x80 >> (pos & 7)
            body = body[:2] + rbsp_to_ebsp(bytes(rbsp))
        data += b"\x00\x00\x00\x01" + body
    out.write_bytes(bytes(data))
    return out


def test_one_flag_turned_on_is_seen(codec_fixtures, tmp_path):
    """A filters-off stream whose SPS says SAO (one bit), or whose PPS lets slices re-enable deblocking."""
    off = codec_fixtures / "ecm-1.0" / "ai_qp37_filters-off.bin"
    sao = vvc_filter_flags(_flip(off, VVC_SPS, "sps_sao_enabled_flag", tmp_path / "sao.bin"), ECM)
    assert sao["sao_enabled"] is True and vvc_filter_flags_mismatch(sao, "off") == ["sao enabled"]
    over = vvc_filter_flags(_flip(off, VVC_PPS, "pps_deblocking_filter_override_enabled_flag",
                                  tmp_path / "override.bin"), ECM)
    assert over["deblocking_enabled"] is False and over["deblocking_overridable"] is True
    (why,) = vvc_filter_flags_mismatch(over, "off")
    assert "pps_deblocking_filter_override_enabled_flag=1" in why


def test_a_syntax_that_does_not_fit_the_stream_is_an_error(codec_fixtures, tmp_path):
    """Read with another version's syntax (ECM-3.0 has more SPS flags) or cut short, the parameter
    sets do not end at their trailing bits: an error, never a wrong flag."""
    off = codec_fixtures / "ecm-1.0" / "ai_qp37_filters-off.bin"
    with pytest.raises(CodecError, match=r"read with the syntax of ECM-3.0"):
        vvc_filter_flags(off, "ECM-3.0 (VTM-11.0)")
    with pytest.raises(CodecError, match=r"read with the syntax of VTM-10"):
        vvc_filter_flags(off, "VTM-10.0")
    units = read_nal_units(off)
    cut = tmp_path / "cut.bin"
    cut.write_bytes(b"".join(b"\x00\x00\x00\x01" + (u.data[:12] if u.type("vvc") == VVC_SPS else u.data)
                             for u in units))
    with pytest.raises(CodecError, match=r"cut\.bin: .*SPS at byte 4"):
        vvc_filter_flags(cut, ECM)
    no_ps = tmp_path / "slice.bin"
    no_ps.write_bytes(b"\x00\x00\x00\x01" + units[-1].data)
    with pytest.raises(CodecError, match="no SPS or no PPS"):
        vvc_filter_flags(no_ps, ECM)


def test_known_syntaxes():
    assert syntax_for("ECM-1.0 (VTM-10.0)") == VvcSyntax("ECM-1.0", (1, 0))
    assert syntax_for("ECM-3.1 (VTM-11.0)").since(3) and not syntax_for("ECM-2.0").since(3)
    assert syntax_for("VTM-11.0").ecm is None
    for unknown in ("ECM-4.0", "VTM-23.0", "HM-16.9"):
        with pytest.raises(CodecError, match="knows VTM-10/11 and ECM-1.0 to ECM-3.1"):
            syntax_for(unknown)
