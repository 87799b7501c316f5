"""VTM and ECM, the VVC reference software and its enhanced model (SPiLF, section 3: ECM, filters off).

Filters off = ``--LoopFilterDisable=1 --LoopFilterOffsetInPPS=1 --SAO=0 --ALF=0
--CCALF=0`` (``--CCALF=0`` must be explicit when ALF is off; ``LoopFilterOffsetInPPS``
makes the PPS forbid picture- and slice-level deblocking overrides, so the PPS
alone proves deblocking off, see :mod:`inloop.codecs.vvc_headers`), plus the
in-loop filters ECM added, each switch named as that release's own parameter
list (``EncAppCfg.cpp``) names it:

=============  ======================================================
ECM-1.0        ``--BIF=0`` (bilateral filter, JVET-V0094)
ECM-2.0, 2.x   + ``--CCSAO=0`` (cross-component SAO)
ECM-3.0, 3.1   + ``--CBIF=0`` (chroma bilateral filter)
ECM-4.0 ..     the chroma bilateral switch is renamed ``--ChromaBIF``
=============  ======================================================

SPiLF used ECM 3.1 (its reference [1]). The version is read from the encoder's
banner. All-intra codes every frame (``--TemporalSubsampleRatio=1``; the VTM AI
cfg codes every 8th). FFmpeg cannot decode ECM, so ``codecs.<name>.decoder`` is
required. The filter setting is read back from the stream's own SPS and PPS
(:mod:`inloop.codecs.vvc_headers`); the encoder's ``TOOL CFG`` echo, which says
nothing about deblocking, is kept in the stats for reference only.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from ..errors import CodecError
from .base import EncodeJob, EncoderRun
from .logs import parse_version
from .reference import ReferenceCodec
from .vvc_headers import syntax_for, vvc_filter_flags, vvc_filter_flags_mismatch

# ECM's extra in-loop filters: (switch, first version with it, first version without it).
ECM_FILTER_SWITCHES = (("BIF", (1, 0), None), ("CCSAO", (2, 0), None), ("CBIF", (3, 0), (4, 0)),
                       ("ChromaBIF", (4, 0), None))


def filters_off_args(version: str) -> list[str]:
    """Every in-loop filter switch of this VTM/ECM version set to off."""
    args = ["--LoopFilterDisable=1", "--LoopFilterOffsetInPPS=1", "--SAO=0", "--ALF=0", "--CCALF=0"]
    m = re.match(r"ECM-(\d+)\.(\d+)", version)
    if m:
        v = (int(m.group(1)), int(m.group(2)))
        args += [f"--{sw}=0" for sw, since, until in ECM_FILTER_SWITCHES if v >= since and (until is None or v < until)]
    return args


def filters_on_args(version: str) -> list[str]:
    """Filters on is the cfg's own setting, the CTC anchor: every in-loop filter enabled."""
    return []


class VTM(ReferenceCodec):
    name = "vtm"
    standard = "vvc"
    qp_range = (-12, 63)
    cfg_files = {"ai": "encoder_intra_vtm.cfg", "ldp": "encoder_lowdelay_P_vtm.cfg",
                 "ra": "encoder_randomaccess_vtm.cfg"}
    cfg_files_high_bitdepth = cfg_files

    _version: str | None = None

    def check(self) -> None:
        super().check()
        if not self.decoder:
            raise CodecError(f"no {self.name} decoder configured (FFmpeg cannot decode it): set {self._key('decoder')}")
        syntax_for(self.version())  # a version whose streams cannot be checked is refused before encoding

    def version(self) -> str:
        """Read the encoder's banner (it prints it for ``--help``)."""
        if self._version is None:
            try:
                proc = subprocess.run([self.encoder, "--help"], capture_output=True, text=True, timeout=60)
            except OSError as exc:
                raise CodecError(f"cannot run {self.encoder}: {exc}") from None
            self._version = parse_version(proc.stdout + proc.stderr)
        return self._version

    def filter_args(self, job: EncodeJob) -> list[str]:
        v = self.version()
        return filters_off_args(v) if job.filters == "off" else filters_on_args(v)

    def encoder_command(self, job: EncodeJob, bitstream: Path, recon: Path) -> list[str]:
        cmd = super().encoder_command(job, bitstream, recon)
        if job.config == "ai":
            cmd.insert(cmd.index("-q"), "--TemporalSubsampleRatio=1")
        return cmd

    def header_flags(self, bitstream: Path, job: EncodeJob, run: EncoderRun) -> dict:
        flags = vvc_filter_flags(bitstream, run.version)
        wrong = vvc_filter_flags_mismatch(flags, job.filters)
        if wrong:
            raise CodecError(f"{bitstream}: the parameter sets contradict filters={job.filters}: {'; '.join(wrong)}")
        return flags


class ECM(VTM):
    name = "ecm"
