"""Shared code of the reference encoders (HM, VTM, ECM): binaries the user names.

The project never downloads, vendors or builds codec source: the user builds
HM / VTM / ECM and sets ``codecs.<name>.encoder``, ``.decoder`` and ``.cfg_dir``
in params.yaml (or ``INLOOP_<NAME>_ENCODER`` / ``_DECODER`` / ``_CFG_DIR``).
The encoder writes its reconstruction; the decoded bitstream must equal it
byte for byte (:mod:`inloop.codecs.base`).

The encoder runs in a temporary directory (whatever it writes beside its
outputs stays there), so every path on its command line is absolute: the
source, the outputs, the cfg directory, and each ``extra_args`` item that names
an existing file relative to the directory inloop runs in (e.g. a second
``-c per-sequence.cfg``).

No decoded-picture-hash SEI (``--SEIDecodedPictureHash=0``, as HM's and the
CTC's cfgs): the CTC do not send it, it would add about 500 bytes per 8 pictures
to the rate, and the byte comparison of decode and reconstruction already
proves the decode.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import CodecError
from ..yuv import format_fps
from .base import Codec, EncodeJob, EncoderRun, run_tool, tool_output_tail
from .logs import parse_reference_log


class ReferenceCodec(Codec):
    """An HM-style command-line encoder/decoder pair configured by .cfg files."""

    cfg_files: dict[str, str] = {}
    cfg_files_high_bitdepth: dict[str, str] = {}

    def __init__(self, encoder: str | None = None, decoder: str | None = None, cfg_dir: str | None = None,
                 extra_args: list[str] | None = None, timeout_s: float | None = None):
        self.encoder = os.path.abspath(encoder) if encoder and os.sep in encoder else encoder
        self.decoder = os.path.abspath(decoder) if decoder and os.sep in decoder else decoder
        self.cfg_dir = Path(os.path.abspath(cfg_dir)) if cfg_dir else None
        self.extra_args = [os.path.abspath(a) if not str(a).startswith("-") and os.path.isfile(a) else str(a)
                           for a in (extra_args or [])]
        self.timeout_s = timeout_s

    def _key(self, what: str) -> str:
        return f"params.yaml codecs.{self.name}.{what} (or INLOOP_{self.name.upper()}_{what.upper()})"

    def check(self) -> None:
        if not self.encoder:
            raise CodecError(f"no {self.name} encoder configured: build it yourself and set {self._key('encoder')}")
        if not (os.path.isfile(self.encoder) and os.access(self.encoder, os.X_OK)):
            raise CodecError(f"{self.name} encoder {self.encoder!r} ({self._key('encoder')}) is not an executable file")
        if self.decoder and not (os.path.isfile(self.decoder) and os.access(self.decoder, os.X_OK)):
            raise CodecError(f"{self.name} decoder {self.decoder!r} ({self._key('decoder')}) is not an executable file")
        if not self.cfg_dir or not self.cfg_dir.is_dir():
            raise CodecError(f"{self.name} cfg directory {self.cfg_dir} ({self._key('cfg_dir')}) does not exist")

    def cfg_path(self, job: EncodeJob) -> Path:
        table = self.cfg_files_high_bitdepth if job.fmt.bitdepth > 8 else self.cfg_files
        path = self.cfg_dir / table[job.config]
        if not path.is_file():
            raise CodecError(f"{self.name}: configuration file {path} not found (check {self._key('cfg_dir')})")
        return path

    def filter_args(self, job: EncodeJob) -> list[str]:
        raise NotImplementedError

    def encoder_command(self, job: EncodeJob, bitstream: Path, recon: Path) -> list[str]:
        b = job.fmt.bitdepth
        return [
            self.encoder, "-c", str(self.cfg_path(job)), "-i", str(job.source),
            "-wdt", str(job.fmt.width), "-hgt", str(job.fmt.height), "-fr", format_fps(round(job.fmt.fps)),
            "-f", str(job.frames), f"--InputBitDepth={b}", f"--OutputBitDepth={b}", "--InputChromaFormat=420",
            "-q", str(job.qp), *self.filter_args(job), "--SEIDecodedPictureHash=0",
            "-b", str(bitstream), "-o", str(recon), *self.extra_args,
        ]

    def _encode(self, job: EncodeJob, bitstream: Path, recon: Path, workdir: Path) -> EncoderRun:
        cmd = self.encoder_command(job, bitstream, recon)
        what = f"{self.name} encode of {job.source} at QP {job.qp}"
        log = run_tool(cmd, what, cwd=workdir, timeout=self.timeout_s)
        try:
            parsed = parse_reference_log(log)
            if not recon.is_file():
                raise CodecError(f"it wrote no reconstruction at {recon}")
        except CodecError as exc:  # e.g. HM exits 0 after "failed to open Input YUV file"
            raise CodecError(f"{what}: {exc}\n{tool_output_tail(log)}") from None
        return EncoderRun(command=cmd, log=log, version=parsed["version"], recon=recon, frames=parsed["frames"],
                          extra={"codec_summary": parsed["summary"], "tool_cfg": parsed["tool_cfg"]})

    def decoder_command(self, bitstream: Path, out: Path, job: EncodeJob) -> list[str]:
        return [self.decoder, "-b", str(bitstream), "-o", str(out), "-d", str(job.fmt.bitdepth)]

    def _decode(self, bitstream: Path, out: Path, job: EncodeJob) -> list[str]:
        cmd = self.decoder_command(bitstream, out, job)
        run_tool(cmd, f"{self.name} decode of {bitstream}", timeout=self.timeout_s)
        return cmd
