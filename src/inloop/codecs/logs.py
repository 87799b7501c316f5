"""Parsing the encoder logs of the reference software (HM, VTM, ECM).

The per-picture lines look like (HM, then VTM/ECM)::

    POC    4 TId: 1 ( B-SLICE, nQP 39 QP 39 )        160 bits [Y 30.0793 dB    U 37.2546 dB    V 33.7389 dB] ...
    POC    0 LId:  0 TId: 0 ( IDR_N_LP, I-SLICE, QP 27 )      12808 bits [Y 38.5865 dB    U 41.0068 dB    V 37.5145 dB] ...

and the summary (HM after ``SUMMARY ---``, VTM/ECM after ``LayerId  0``)::

    Total Frames |   Bitrate     Y-PSNR    U-PSNR    V-PSNR    YUV-PSNR
            5    a      46.2240   30.4660   37.4019   33.8892   31.5606

HM-16.9's per-picture bits and SUMMARY bitrate count every NAL unit except SEI,
parameter sets included, without start codes: the project's rate
(:func:`inloop.bitstream.rate`) equals them to the bit. VTM/ECM add a start code
per NAL unit to theirs (:func:`inloop.bitstream.reference_summary_bytes`). PSNR
is always the project's own, from the decoded frames.
"""

from __future__ import annotations

import math
import re

from ..errors import CodecError

_NUM = r"(?:-?\d+(?:\.\d+)?|-?nan|-?inf)"
_POC_RE = re.compile(
    r"^POC\s+(?P<poc>\d+)\s+(?:LId:\s*(?P<lid>\d+)\s+)?TId:\s*(?P<tid>\d+)\s+\(\s*(?:(?P<nal>[A-Z_]+),\s*)?"
    r"(?P<type>[IPB])-SLICE,\s*(?:nQP\s+(?P<nqp>-?\d+)\s+)?QP\s+(?P<qp>-?\d+)\s*\)\s+(?P<bits>\d+)\s+bits\s+"
    rf"\[Y\s+(?P<y>{_NUM})\s+dB\s+U\s+(?P<u>{_NUM})\s+dB\s+V\s+(?P<v>{_NUM})\s+dB\]"
    r"(?:.*?\[MD5:(?P<md5>[0-9a-f,]+)\])?",
    re.M,
)
_SUMMARY_RE = re.compile(
    rf"^\s*(?P<frames>\d+)\s+a\s+(?P<kbps>{_NUM})\s+(?P<y>{_NUM})\s+(?P<u>{_NUM})\s+(?P<v>{_NUM})\s+(?P<yuv>{_NUM})",
    re.M,
)
_VERSION_RES = (
    re.compile(r"HM software: Encoder Version \[(?P<v>[^\]]+)\]"),
    re.compile(r"(?P<name>ECM|VTM) Encoder Version (?P<v>[\d.]+)(?: \((?P<base>[^)]*)\))?"),
)
_TOOL_CFG_RE = re.compile(r"\b([A-Za-z]+):\s*(-?\d+)\b")


def _num(s: str) -> float:
    return float(s) if "nan" not in s.lower() else math.nan


def parse_version(log: str) -> str:
    """``HM-16.9``, ``ECM-1.0 (VTM-10.0)``, ``VTM-23.0``, or raise."""
    m = _VERSION_RES[0].search(log)
    if m:
        return f"HM-{m.group('v')}"
    m = _VERSION_RES[1].search(log)
    if m:
        base = f" ({m.group('base')})" if m.group("base") else ""
        return f"{m.group('name')}-{m.group('v')}{base}"
    raise CodecError("no encoder version line found in the log (is this an HM/VTM/ECM encoder log?)")


def parse_tool_cfg(log: str) -> dict[str, int]:
    """The ``TOOL CFG:`` echo of the encoder (e.g. ``SAO: 0``, ``ALF: 0``, ``BIF: 0``)."""
    out: dict[str, int] = {}
    for line in log.splitlines():
        if line.startswith("TOOL CFG:"):
            for key, val in _TOOL_CFG_RE.findall(line):
                out.setdefault(key, int(val))
    return out


def parse_reference_log(log: str) -> dict:
    """Per-POC lines, the all-frames summary, bytes written and time of an HM/VTM/ECM log."""
    frames = []
    for m in _POC_RE.finditer(log):
        f = {
            "poc": int(m["poc"]),
            "tid": int(m["tid"]),
            "type": m["type"],
            "qp": int(m["qp"]),
            "bits": int(m["bits"]),
            "psnr_y": _num(m["y"]),
            "psnr_u": _num(m["u"]),
            "psnr_v": _num(m["v"]),
        }
        if m["nal"]:
            f["nal"] = m["nal"]
        if m["md5"]:
            f["md5"] = m["md5"].split(",")
        frames.append(f)
    if not frames:
        raise CodecError("no per-picture 'POC ...' lines in the encoder log")
    s = _SUMMARY_RE.search(log)
    if not s:
        raise CodecError("no summary block ('Total Frames | Bitrate ...' with an 'a' row) in the encoder log")
    summary = {k: _num(s[k]) for k in ("kbps", "y", "u", "v", "yuv")}
    summary["frames"] = int(s["frames"])
    out = {"version": parse_version(log), "frames": sorted(frames, key=lambda f: f["poc"]),
           "coding_order": [f["poc"] for f in frames], "summary": summary, "tool_cfg": parse_tool_cfg(log)}
    m = re.search(r"Bytes written to file:\s*(\d+)", log)
    if m:
        out["bytes_written"] = int(m.group(1))
    m = re.search(r"Total Time:\s*([\d.]+)\s*sec", log)
    if m:
        out["total_time_s"] = float(m.group(1))
    return out
