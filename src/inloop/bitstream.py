"""Elementary streams at the byte and bit level: Annex B NAL units, the project's rate, RBSP bits.

The one definition of rate (issue #14): **the bits of every NAL unit except SEI,
without start codes**, counted by the project from the bitstream itself, the same
way for every codec. This is what HM-16.9 reports in its per-picture lines and
SUMMARY (``TEncGOP::xCalculateAddPSNR`` adds the size of each NAL unit of the
access unit, parameter sets included, skipping prefix/suffix SEI; equal to the bit
on every HM fixture and live encode). VTM and ECM print a larger figure: their
``EncGOP::xCalculateAddPSNR`` adds a start code per NAL unit (4 bytes for the
first of an access unit and for VPS/DCI/SPS/PPS/APS, 3 otherwise);
:func:`reference_summary_bytes` reproduces that count so that tests can tie the
project's rate to their logs exactly.

Only low-level pieces live here (no numpy, no codec, no metric): the codecs and
the evaluation both build on it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import CodecError, InloopError

# NAL unit types (HEVC: H.265 Table 7-1; VVC: H.266 Table 5).
HEVC_SEI = frozenset({39, 40})              # PREFIX_SEI_NUT, SUFFIX_SEI_NUT
HEVC_PARAMETER_SETS = frozenset({32, 33, 34})  # VPS, SPS, PPS
VVC_SEI = frozenset({23, 24})               # PREFIX_SEI_NUT, SUFFIX_SEI_NUT
VVC_PARAMETER_SETS = frozenset({13, 14, 15, 16, 17, 18})  # DCI, VPS, SPS, PPS, PREFIX_APS, SUFFIX_APS
VVC_SPS, VVC_PPS = 15, 16
STANDARDS = ("hevc", "vvc")


@dataclass(frozen=True)
class NalUnit:
    """One NAL unit of an Annex B stream: its bytes (header + EBSP, no start code)."""

    offset: int          # byte offset of the NAL unit (after its start code) in the file
    start_code: int      # bytes of the start code before it (3, or 4 with the zero_byte)
    data: bytes

    def type(self, standard: str) -> int:
        """``nal_unit_type`` from the NAL unit header (HEVC: 6 bits after the forbidden bit;
        VVC: the 5 high bits of the second byte)."""
        if len(self.data) < 2:
            raise CodecError(f"NAL unit at byte {self.offset} is {len(self.data)} byte(s) long: no header")
        if standard == "hevc":
            return (self.data[0] >> 1) & 0x3F
        if standard == "vvc":
            return (self.data[1] >> 3) & 0x1F
        raise ValueError(f"unknown standard {standard!r}; expected one of {STANDARDS}")

    def is_sei(self, standard: str) -> bool:
        return self.type(standard) in (HEVC_SEI if standard == "hevc" else VVC_SEI)


def nal_units(data: bytes) -> list[NalUnit]:
    """Split an Annex B byte stream (H.265 / H.266 Annex B) into NAL units.

    A NAL unit starts after each ``00 00 01``; the zero bytes before a start code
    (``zero_byte`` of a 4-byte start code, ``trailing_zero_8bits``) belong to no NAL
    unit, since a NAL unit never ends in a zero byte (its last byte holds the
    rbsp_stop_one_bit or a ``cabac_zero_word``'s emulation-prevention byte).
    """
    starts = []
    i = data.find(b"\x00\x00\x01")
    if i < 0 or data[:i].strip(b"\x00"):  # only leading_zero_8bits may come before the first start code
        raise CodecError("not an Annex B byte stream: it does not begin with a start code")
    while i >= 0:
        starts.append(i + 3)
        i = data.find(b"\x00\x00\x01", i + 3)
    units = []
    for k, s in enumerate(starts):
        end = starts[k + 1] - 3 if k + 1 < len(starts) else len(data)
        body = data[s:end].rstrip(b"\x00")
        lead = 4 if s >= 4 and data[s - 4] == 0 else 3
        if body:
            units.append(NalUnit(offset=s, start_code=lead, data=body))
    return units


def read_nal_units(path: str | os.PathLike) -> list[NalUnit]:
    p = Path(path)
    if not p.is_file():
        raise CodecError(f"{p}: no such bitstream file")
    try:
        return nal_units(p.read_bytes())
    except CodecError as exc:
        raise CodecError(f"{p}: {exc}") from None


def nal_bytes(path: str | os.PathLike, standard: str) -> dict:
    """Bytes of ``path`` by kind: NAL units counted in the rate, SEI, start codes and the file."""
    units = read_nal_units(path)
    sei = [u for u in units if u.is_sei(standard)]
    return {
        "nal_units": len(units),
        "rate_bytes": sum(len(u.data) for u in units if not u.is_sei(standard)),
        "sei_nal_units": len(sei),
        "sei_bytes": sum(len(u.data) for u in sei),
        "file_bytes": Path(path).stat().st_size,
        "file_sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
    }


def rate(bitstream_path: str | os.PathLike, standard: str, frames: int, fps: float, width: int,
         height: int) -> dict:
    """The project's one definition of rate (see the module docstring).

    ``bits`` = 8 x the bytes of every non-SEI NAL unit, start codes excluded;
    ``kbps = bits / (frames / fps) / 1000``; ``bpp = bits / (width * height * frames)``
    (luma pixels, as SPiLF's bpp). ``file_bytes`` (the whole file, start codes and SEI
    included) and ``sei_bytes`` are reported beside it.
    """
    if frames < 1 or not fps > 0 or width < 1 or height < 1:
        raise CodecError(f"rate of {bitstream_path}: frames, fps, width and height must be positive, "
                         f"got {frames}, {fps}, {width}, {height}")
    counts = nal_bytes(bitstream_path, standard)
    bits = 8 * counts["rate_bytes"]
    return {"bits": bits, "kbps": bits / (frames / fps) / 1000.0, "bpp": bits / (width * height * frames),
            "file_bytes": counts["file_bytes"], "file_sha256": counts["file_sha256"], "sei_bytes": counts["sei_bytes"]}


def read_stats(path: str | os.PathLike, decoded: str | os.PathLike | None = None) -> dict:
    """An encode's stats JSON, checked against the files it describes before anyone uses them: a damaged JSON,
    a bitstream whose size or sha256 is not the one recorded (a truncated .bin kept its old rate), a decode of
    the wrong size (cut short), or, with ``decoded``, stats that describe another decode, are one line naming
    the file and how to rebuild it (docs/reliability.md). The evaluation and the patch stores read encodes
    through it."""
    path = Path(path)
    rebuild = f"delete {path.parent} and run again to encode it anew"
    if not path.is_file():
        raise InloopError(f"encode stats {path} not found; run the encode stage first")
    try:
        stats = json.loads(path.read_text())
        bitstream, recorded = Path(stats["bitstream"]), Path(stats["decoded"])
        want = int(stats["width"]) * int(stats["height"]) * 3 // 2 * (2 if int(stats["bitdepth"]) > 8 else 1) \
            * int(stats["frames"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InloopError(f"{path}: damaged encode stats ({type(exc).__name__}); {rebuild}") from None
    if decoded is not None and recorded.name != Path(decoded).name:
        raise InloopError(f"{path} describes the decode {recorded.name}, not {Path(decoded).name}: give each "
                          "decode its own encode's stats")
    if stats.get("file_bytes") is not None:
        have = bitstream.stat().st_size if bitstream.is_file() else None
        if have != stats["file_bytes"]:
            raise InloopError(f"{bitstream}: {have if have is not None else 'no'} bytes where {path} recorded "
                              f"{stats['file_bytes']}: the bitstream changed after it was measured; {rebuild}")
    if stats.get("file_sha256") is not None and \
            hashlib.sha256(bitstream.read_bytes()).hexdigest() != stats["file_sha256"]:
        raise InloopError(f"{bitstream}: its sha256 is not the one {path} recorded: the bitstream changed after "
                          f"it was measured; {rebuild}")
    target = Path(decoded) if decoded is not None else recorded
    have = target.stat().st_size if target.is_file() else None
    if have != want:
        raise InloopError(f"{target}: {have if have is not None else 'no'} bytes where {path} describes "
                          f"{stats['frames']} frames ({want} bytes); {rebuild}")
    return stats


def reference_summary_bytes(units: list[NalUnit], standard: str, access_unit_starts: set[int]) -> int:
    """Bytes as VTM/ECM's ``EncGOP::xCalculateAddPSNR`` counts them: every non-SEI NAL unit
    plus 4 bytes for the first of an access unit and for parameter sets/APS, 3 for others.

    ``access_unit_starts``: indices into ``units`` of each access unit's first NAL unit.
    """
    total = 0
    for i, u in enumerate(units):
        if u.is_sei(standard):
            continue
        long_code = i in access_unit_starts or u.type(standard) in VVC_PARAMETER_SETS
        total += len(u.data) + (4 if long_code else 3)
    return total


# --------------------------------------------------------------------------- RBSP bits


def ebsp_to_rbsp(payload: bytes) -> bytes:
    """Remove emulation-prevention bytes: every ``00 00 03`` becomes ``00 00``."""
    out = bytearray()
    zeros = 0
    for b in payload:
        if zeros >= 2 and b == 3:
            zeros = 0
            continue
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def rbsp_to_ebsp(rbsp: bytes) -> bytes:
    """Insert emulation-prevention bytes (the inverse of :func:`ebsp_to_rbsp`)."""
    out = bytearray()
    zeros = 0
    for b in rbsp:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


class BitReader:
    """Reads an RBSP MSB first: fixed-length codes, Exp-Golomb codes, trailing bits.

    ``u(n)``, ``flag()``, ``ue()``, ``se()`` follow H.265/H.266 clause 9.2; every read
    past the end raises :class:`CodecError`. ``names`` records where each named
    element was read (its bit position and width) so that a test can point at it.
    """

    def __init__(self, rbsp: bytes, what: str = "RBSP"):
        self.data = rbsp
        self.pos = 0
        self.what = what
        self.names: dict[str, tuple[int, int]] = {}

    @property
    def bits_left(self) -> int:
        return 8 * len(self.data) - self.pos

    def u(self, n: int, name: str | None = None) -> int:
        if n == 0:
            return 0
        if n > self.bits_left:
            raise CodecError(f"{self.what}: ran out of bits reading {name or f'u({n})'} at bit {self.pos}")
        start, value = self.pos, 0
        for _ in range(n):
            value = (value << 1) | ((self.data[self.pos >> 3] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        if name:
            self.names[name] = (start, n)
        return value

    def flag(self, name: str | None = None) -> int:
        return self.u(1, name)

    def ue(self, name: str | None = None) -> int:
        start, zeros = self.pos, 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 32:
                raise CodecError(f"{self.what}: Exp-Golomb code longer than 32 bits at bit {start} ({name or 'ue(v)'})")
        value = (1 << zeros) - 1 + self.u(zeros)
        if name:
            self.names[name] = (start, self.pos - start)
        return value

    def se(self, name: str | None = None) -> int:
        k = self.ue(name)
        return (k + 1) // 2 if k & 1 else -(k // 2)

    def byte_aligned(self) -> bool:
        return self.pos % 8 == 0

    def skip(self, n: int) -> None:
        if n > self.bits_left:
            raise CodecError(f"{self.what}: ran out of bits skipping {n} at bit {self.pos}")
        self.pos += n

    def more_rbsp_data(self) -> bool:
        """True while bits remain before the rbsp_stop_one_bit (the last 1 of the RBSP)."""
        last = len(self.data) - 1
        while last >= 0 and self.data[last] == 0:
            last -= 1
        if last < 0:
            return False
        stop = 8 * last + (7 - (self.data[last] & -self.data[last]).bit_length() + 1)
        return self.pos < stop

    def trailing_bits(self) -> None:
        """``rbsp_trailing_bits()``: a one bit, zero bits to the byte boundary, and nothing after.

        Reading a structure to exactly this point is the reader's proof that it
        followed the encoder's syntax: one element too many or too few moves it.
        """
        at = self.pos
        if self.bits_left < 1 or self.u(1) != 1:
            raise CodecError(f"{self.what}: no rbsp_stop_one_bit at bit {at} (the syntax read does not fit "
                             f"this stream)")
        while not self.byte_aligned():
            if self.u(1):
                raise CodecError(f"{self.what}: non-zero rbsp_alignment_zero_bit at bit {self.pos - 1}")
        if any(self.data[self.pos >> 3:]):
            raise CodecError(f"{self.what}: {self.bits_left} bits of data after the rbsp_trailing_bits read at bit "
                             f"{at} (the syntax read does not fit this stream)")
