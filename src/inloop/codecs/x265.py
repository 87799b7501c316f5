"""x265 through FFmpeg/libx265: the default HEVC codec, no system package needed.

Settings (issue #2, and the NL-ConvLSTM paper's x265 setting with loop filter
and SAO off):

* constant QP: ``qp=QP`` with ``ipratio=pbratio=1`` (no I/P/B offsets unless
  params ask for them), no adaptive quantisation, no cu-tree, no psycho-visual
  RD (the equivalent of ``--tune psnr``), no scene-cut detection;
* filters off: ``no-deblock=1:no-sao=1`` (``deblock=0`` would leave deblocking
  ON with zero offsets, and a bare ``no-deblock`` without ``=1`` is ignored);
  filters on: x265's default deblocking plus ``sao=1``;
* AI: every frame intra (``keyint=1``); LDP: one I frame then P frames, no B
  (``bframes=0``, infinite GOP); RA: hierarchical B in a fixed GOP of 8 (or
  params' ``gop``), closed GOP, intra period the multiple of the GOP closest to
  ``intra_period_s`` seconds;
* one thread per encode (``pools=1:frame-threads=1:lookahead-slices=0``) so the
  result does not depend on the machine.

libx265 in FFmpeg cannot write a reconstruction file, so the per-frame PSNR
x265 measures on its own reconstruction (``psnr=1``, CSV log) is compared with
the project's PSNR of the decoded frames (see :mod:`inloop.codecs.base`).
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

from ..errors import CodecError
from .base import Codec, EncodeJob, EncoderRun
from .ffmpeg import (decode_to_yuv, ffmpeg_capabilities, filter_flags_match, find_ffmpeg, hevc_filter_flags, rawvideo_input_args,
                     require_ffmpeg, run_ffmpeg)


class X265(Codec):
    name = "x265"
    qp_range = (0, 51)

    def __init__(self, ffmpeg: str | None = None, preset: str = "medium", ipratio: float = 1.0,
                 pbratio: float = 1.0, gop: int = 8, intra_period_s: float = 1.0, extra_params: str = ""):
        self._ffmpeg_arg = ffmpeg
        self.preset = preset
        self.ipratio = float(ipratio)
        self.pbratio = float(pbratio)
        self.gop = int(gop)
        self.intra_period_s = float(intra_period_s)
        self.extra_params = extra_params or ""
        if self.gop not in (4, 8, 16):
            raise CodecError(f"codecs.x265.gop must be 4, 8 or 16, got {gop}")

    @property
    def ffmpeg(self) -> str:
        return find_ffmpeg(self._ffmpeg_arg)

    def check(self) -> None:
        require_ffmpeg(self.ffmpeg, "libx265")

    def intra_period(self, fps: float) -> int:
        """RA intra period: the multiple of the GOP closest to ``intra_period_s`` seconds."""
        return max(self.gop, self.gop * round(fps * self.intra_period_s / self.gop))

    def x265_params(self, job: EncodeJob, csv_path: Path) -> list[str]:
        p = [f"qp={job.qp}", f"ipratio={self.ipratio:g}", f"pbratio={self.pbratio:g}",
             "aq-mode=0", "no-cutree=1", "psy-rd=0", "psy-rdoq=0", "scenecut=0",
             "pools=1", "frame-threads=1", "lookahead-slices=0",
             "psnr=1", f"csv={x265_escape(str(csv_path))}", "csv-log-level=1",
             # No SEI with x265's version and options string: 2-4 kB per stream that HM, VTM and
             # ECM do not write, which would dominate the rate of small clips at high QP.
             "info=0"]
        if job.config == "ai":
            p += ["keyint=1", "min-keyint=1", "bframes=0"]
        elif job.config == "ldp":
            p += ["keyint=-1", "bframes=0", "open-gop=0"]
        else:  # ra
            period = self.intra_period(job.fmt.fps)
            p += [f"keyint={period}", f"min-keyint={period}", f"bframes={self.gop - 1}", "b-adapt=0",
                  "b-pyramid=1", "open-gop=0", f"rc-lookahead={max(self.gop, 20)}"]
        p += ["no-deblock=1", "no-sao=1"] if job.filters == "off" else ["sao=1"]
        if self.extra_params:
            p += [x for x in self.extra_params.split(":") if x]
        return p

    def _encode(self, job: EncodeJob, bitstream: Path, recon: Path, workdir: Path) -> EncoderRun:
        ffmpeg = self.ffmpeg
        csv_path = workdir / "x265.csv"
        params = self.x265_params(job, csv_path)
        args = ["-y", *rawvideo_input_args(job.fmt), "-i", str(job.source), "-frames:v", str(job.frames),
                "-c:v", "libx265", "-preset", self.preset, "-pix_fmt", job.fmt.pix_fmt,
                "-x265-params", ":".join(params), "-f", "hevc", str(bitstream)]
        proc = run_ffmpeg(ffmpeg, args, f"x265 encode of {job.source} at QP {job.qp}")
        log = proc.stderr
        # libx265 in FFmpeg only warns about a parameter it does not accept and encodes
        # anyway; a silently ignored "no-deblock=1" would be a wrong experiment.
        rejected = re.findall(r"\[libx265 @ [^\]]+\] ((?:Unknown option|Invalid value for)[^\n]*)", log)
        if rejected:
            raise CodecError(f"x265 rejected parameters (check codecs.x265 in params.yaml): {'; '.join(rejected)}")
        m = re.search(r"HEVC encoder version (\S+)", log)
        version = f"x265 {m.group(1) if m else 'unknown'} ({ffmpeg_capabilities(ffmpeg)['version']})"
        frames = parse_x265_csv(csv_path)
        if job.fmt.bitdepth > 8:
            # x265 measures PSNR against a peak of 255 << (depth - 8) (1020 at 10 bit);
            # the project's peak is 2^depth - 1. Restate x265's figures on that peak.
            offset = 20 * math.log10(job.fmt.max_value / (255 << (job.fmt.bitdepth - 8)))
            for f in frames:
                for plane in "yuv":
                    f[f"psnr_{plane}"] += offset
        cmd = [ffmpeg, "-hide_banner", "-nostdin", *args]
        return EncoderRun(command=cmd, log=log, version=version, recon=None, frames=frames)

    def _decode(self, bitstream: Path, out: Path, job: EncodeJob) -> list[str]:
        return decode_to_yuv(self.ffmpeg, bitstream, out, job.fmt)

    def header_flags(self, bitstream: Path, job: EncodeJob, run: EncoderRun) -> dict:
        flags = hevc_filter_flags(self.ffmpeg, bitstream)
        if not filter_flags_match(flags, job.filters):
            raise CodecError(f"{bitstream}: headers contradict filters={job.filters}: {flags}")
        return flags


def x265_escape(value: str) -> str:
    """A value for FFmpeg's ``-x265-params`` list: FFmpeg splits it with ``av_dict_parse_string`` (pairs on
    ``:``, key and value on ``=``, ``'`` quotes), whose tokens take a backslash escape; a path holding any of
    them (``results/run:2``) would otherwise be cut into other options."""
    return re.sub(r"([\\:='])", r"\\\1", value)


def parse_x265_csv(path: Path) -> list[dict]:
    """Per-frame rows of x265's CSV log (``csv-log-level=1``): POC, type, QP, bits, PSNR."""
    if not path.is_file():
        raise CodecError(f"x265 wrote no CSV log at {path}")
    rows = []
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader)]
        col = {name: i for i, name in enumerate(header)}
        for r in reader:
            if not r or not r[0].strip():
                continue
            cells = [c.strip() for c in r]
            if not cells[col["POC"]].lstrip("-").isdigit():
                continue  # summary lines at the end of some versions
            rows.append({
                "poc": int(cells[col["POC"]]),
                "encode_order": int(cells[col["Encode Order"]]),
                "type": cells[col["Type"]].split("-")[0],
                "qp": float(cells[col["QP"]]),
                "bits": int(cells[col["Bits"]]),
                "psnr_y": float(cells[col["Y PSNR"]]),
                "psnr_u": float(cells[col["U PSNR"]]),
                "psnr_v": float(cells[col["V PSNR"]]),
            })
    # x265 restarts the POC at every IDR (every frame in AI). In a closed GOP every
    # frame shown before an IDR is coded before it, so the display index is the
    # number of frames coded before the IDR plus the POC.
    rows.sort(key=lambda f: f["encode_order"])
    base = 0
    for i, f in enumerate(rows):
        if f["type"] == "I" and f["poc"] == 0:
            base = i
        f["frame"] = base + f["poc"]
    return sorted(rows, key=lambda f: f["frame"])
