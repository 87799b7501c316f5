"""HM, the HEVC reference software (GL-Fusion, section IV.A: HM-16.9, deblocking and SAO off).

Filters off = ``--LoopFilterDisable=1 --SAO=0``; on = ``--LoopFilterDisable=0 --SAO=1``.
The cfg files are HM's own (``cfg/encoder_intra_main.cfg`` ...): LDP and RA add
HM's per-picture QP offsets, as the common test conditions do. Decoding uses
HM's decoder when ``codecs.hm.decoder`` is set, else the bundled FFmpeg (both
are checked against the encoder's reconstruction). The filter setting is read
back from the bitstream's PPS/SPS with FFmpeg's trace_headers.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CodecError
from .base import EncodeJob, EncoderRun
from .ffmpeg import decode_to_yuv, filter_flags_match, find_ffmpeg, hevc_filter_flags
from .reference import ReferenceCodec


class HM(ReferenceCodec):
    name = "hm"
    qp_range = (0, 51)
    cfg_files = {"ai": "encoder_intra_main.cfg", "ldp": "encoder_lowdelay_P_main.cfg",
                 "ra": "encoder_randomaccess_main.cfg"}
    cfg_files_high_bitdepth = {"ai": "encoder_intra_main10.cfg", "ldp": "encoder_lowdelay_P_main10.cfg",
                               "ra": "encoder_randomaccess_main10.cfg"}

    def __init__(self, *args, ffmpeg: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._ffmpeg_arg = ffmpeg

    def filter_args(self, job: EncodeJob) -> list[str]:
        off = job.filters == "off"
        return [f"--LoopFilterDisable={int(off)}", f"--SAO={int(not off)}"]

    def _decode(self, bitstream: Path, out: Path, job: EncodeJob) -> list[str]:
        if self.decoder:
            return super()._decode(bitstream, out, job)
        return decode_to_yuv(find_ffmpeg(self._ffmpeg_arg), bitstream, out, job.fmt)

    def header_flags(self, bitstream: Path, job: EncodeJob, run: EncoderRun) -> dict:
        flags = hevc_filter_flags(find_ffmpeg(self._ffmpeg_arg), bitstream)
        if not filter_flags_match(flags, job.filters):
            raise CodecError(f"{bitstream}: headers contradict filters={job.filters}: {flags}")
        return flags
