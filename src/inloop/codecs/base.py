"""The one interface every codec sits behind.

``Codec.encode(job, bitstream)`` encodes ``job.frames`` frames of a raw YUV file
at one QP, configuration (AI | LDP | RA) and loop-filter setting (off | on),
decodes the bitstream again, checks the result, and writes three files:

* the bitstream (``.bin``, Annex B),
* the decoded YUV (named by the YUV convention next to it, or where asked),
* a JSON of stats next to the bitstream (``.json``): the rate as the project
  counts it for every codec (:func:`inloop.bitstream.rate`: the bits of every
  NAL unit except SEI, without start codes) beside the file's size, per-frame
  bits and QP as the codec reports them, PSNR computed by the project from the
  decoded frames, encode and decode time, codec name and version and the exact
  command lines.

Checks made on every encode (a failed check is an error, nothing is written):

* the bitstream is not empty and decodes to exactly ``job.frames`` frames;
* the decoded output equals the encoder's reconstruction byte for byte where
  the codec writes one (HM, VTM, ECM); x265 through FFmpeg writes none, so
  there the per-frame PSNR the encoder measured on its reconstruction must
  equal the project's PSNR of the decoded frames;
* the filter setting is what the bitstream says (HEVC: the PPS
  ``pps_deblocking_filter_disabled_flag`` and SPS
  ``sample_adaptive_offset_enabled_flag``, read with FFmpeg's trace_headers;
  VVC/ECM: every loop filter's SPS/PPS flag, read by
  :mod:`inloop.codecs.vvc_headers`).

All outputs are produced in a temporary directory beside the bitstream and
moved into place only when every check passed; the JSON comes last. Every path
is made absolute first, so a codec may run in any working directory.
"""

from __future__ import annotations

import math
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..bitstream import rate
from ..errors import CodecError
from ..psnr import sequence_psnr
from ..fsutil import atomic_write, files_equal, write_json
from ..names import CONFIGS, FILTERS
from ..yuv import YuvFormat, YuvReader, yuv_name


# Tolerance when comparing an encoder's own per-frame PSNR (printed with 3 or 4
# decimals) with the project's: rounding alone is below 5e-4 dB.
CODEC_PSNR_TOLERANCE_DB = 2e-3
# What x265 prints for a plane equal to the source (MSE 0), where the project says inf.
CODEC_PSNR_CAP_DB = 99.99


@dataclass(frozen=True)
class EncodeJob:
    """What to encode: ``frames`` frames of ``source`` (format ``fmt``) at ``qp``."""

    source: Path
    fmt: YuvFormat
    frames: int
    qp: int
    config: str
    filters: str


@dataclass
class EncoderRun:
    """What a codec-specific encode returns to :meth:`Codec.encode`."""

    command: list[str]
    log: str
    version: str
    recon: Path | None = None
    frames: list[dict] = field(default_factory=list)  # per coded picture: poc, type, qp, bits, psnr_*
    extra: dict = field(default_factory=dict)


def tool_output_tail(output: str, lines: int = 10) -> str:
    """The last ``lines`` non-empty lines of a codec's output, for an error message."""
    tail = [ln for ln in output.strip().splitlines() if ln.strip()][-lines:]
    return "its last output lines:\n" + "\n".join(f"  | {ln}" for ln in tail) if tail else "it printed nothing"


def run_tool(cmd: list[str], what: str, cwd: Path | None = None, timeout: float | None = None) -> str:
    """Run a codec binary; its stdout+stderr is returned, a failure raises CodecError with its output's tail."""
    exe = cmd[0]
    if not (shutil.which(exe) or (os.path.isfile(exe) and os.access(exe, os.X_OK))):
        raise CodecError(f"{what}: binary {exe!r} not found or not executable")
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except OSError as exc:
        raise CodecError(f"{what}: cannot run {exe!r}: {exc}") from None
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        raise CodecError(f"{what}: stopped after its time limit of {timeout:g} s; {tool_output_tail(out)}") from None
    out = proc.stdout + (("\n" + proc.stderr) if proc.stderr else "")
    if proc.returncode != 0:
        raise CodecError(f"{what} failed with exit code {proc.returncode}: {shlex.join(cmd)}\n{tool_output_tail(out)}")
    return out


def sweep_stale_workdirs(bitstream: Path) -> list[Path]:
    """Remove the working folders (``.<stem>.encode-<pid>-*`` beside ``bitstream``) that killed encodes left:
    a SIGKILL or a lost node skips :class:`tempfile.TemporaryDirectory`'s cleanup. A folder whose process
    is still alive (a concurrent encode of the same output) is kept. Returns the folders removed."""
    import psutil

    removed = []
    for d in bitstream.parent.glob(f".{bitstream.stem}.encode-*"):
        pid = d.name[len(f".{bitstream.stem}.encode-"):].split("-", 1)[0]
        if d.is_dir() and not (pid.isdigit() and psutil.pid_exists(int(pid))):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def _absolute(path: str | os.PathLike) -> Path:
    """``path`` from the current directory, without resolving links (codecs run in a temporary one)."""
    return Path(os.path.abspath(path))


def default_decoded_path(bitstream: Path, fmt: YuvFormat) -> Path:
    """``.../qp32.bin`` -> ``.../qp32_{W}x{H}_{fps}fps_{bits}bit_420.yuv``."""
    return bitstream.with_name(yuv_name(bitstream.stem, fmt))


class Codec(ABC):
    """A video codec the pipeline can run with in-loop filters off or on."""

    name: str = "codec"
    standard: str = "hevc"           # how its NAL units are counted (inloop.bitstream)
    qp_range: tuple[int, int] = (0, 51)

    # ---- to implement per codec
    @abstractmethod
    def check(self) -> None:
        """Raise CodecError naming the binary / params key if the codec cannot run."""

    @abstractmethod
    def _encode(self, job: EncodeJob, bitstream: Path, recon: Path, workdir: Path) -> EncoderRun:
        """Write ``bitstream`` (and ``recon`` if the codec can) for ``job``."""

    @abstractmethod
    def _decode(self, bitstream: Path, out: Path, job: EncodeJob) -> list[str]:
        """Decode ``bitstream`` to raw YUV at the job's bit depth; return the command."""

    def header_flags(self, bitstream: Path, job: EncodeJob, run: EncoderRun) -> dict | None:
        """What the bitstream says about the loop filters, checked against ``job.filters``."""
        return None

    # ---- shared
    def validate(self, job: EncodeJob) -> None:
        if job.config not in CONFIGS:
            raise CodecError(f"unknown configuration {job.config!r}; expected one of {', '.join(CONFIGS)}")
        if job.filters not in FILTERS:
            raise CodecError(f"unknown filter setting {job.filters!r}; expected one of {', '.join(FILTERS)}")
        lo, hi = self.qp_range
        if not lo <= job.qp <= hi:
            raise CodecError(f"QP {job.qp} is outside {self.name}'s range {lo}..{hi}")
        if job.frames < 1:
            raise CodecError(f"frames must be >= 1, got {job.frames}")
        available = len(YuvReader(job.source, job.fmt))
        if job.frames > available:
            raise CodecError(f"{job.source} has {available} frames, {job.frames} requested")

    def encode(self, job: EncodeJob, bitstream: str | os.PathLike, decoded: str | os.PathLike | None = None,
               stats: str | os.PathLike | None = None, keep_log: bool = True) -> dict:
        """Encode, decode, check, and write bitstream + decoded YUV + stats JSON. Returns the stats."""
        job = replace(job, source=_absolute(job.source))
        self.validate(job)
        self.check()
        bitstream = _absolute(bitstream)
        decoded = _absolute(decoded) if decoded else default_decoded_path(bitstream, job.fmt)
        stats_path = _absolute(stats) if stats else bitstream.with_suffix(".json")
        clash = {p for p in (bitstream, decoded, stats_path, bitstream.with_suffix(".log")) if p == job.source}
        if clash or len({bitstream, decoded, stats_path}) < 3:
            raise CodecError(f"the bitstream, decoded, stats and log paths must differ from each other and from the "
                             f"source {job.source} (got {bitstream}, {decoded}, {stats_path})")
        bitstream.parent.mkdir(parents=True, exist_ok=True)
        decoded.parent.mkdir(parents=True, exist_ok=True)

        sweep_stale_workdirs(bitstream)
        with tempfile.TemporaryDirectory(prefix=f".{bitstream.stem}.encode-{os.getpid()}-",
                                         dir=bitstream.parent) as tmpdir:
            work = Path(tmpdir)
            tmp_bin, tmp_rec, tmp_dec = work / "out.bin", work / "recon.yuv", work / "decoded.yuv"
            t0 = time.perf_counter()
            run = self._encode(job, tmp_bin, tmp_rec, work)
            encode_time = time.perf_counter() - t0
            if not tmp_bin.is_file() or tmp_bin.stat().st_size == 0:
                raise CodecError(f"{self.name} wrote no bitstream (or an empty one) for {job.source}")
            t0 = time.perf_counter()
            decode_cmd = self._decode(tmp_bin, tmp_dec, job)
            decode_time = time.perf_counter() - t0
            n_dec = len(YuvReader(tmp_dec, job.fmt))
            if n_dec != job.frames:
                raise CodecError(f"{bitstream}: decoded {n_dec} frames, encoded {job.frames}")

            checks: dict = {}
            if run.recon is not None:
                if not files_equal(run.recon, tmp_dec):
                    raise CodecError(f"{bitstream}: decoded output differs from the encoder's reconstruction")
                checks["decoded_equals_recon"] = True
            psnr = sequence_psnr(job.source, tmp_dec, job.fmt, frames=job.frames)
            checks.update(self._check_codec_psnr(run, psnr, bitstream))
            flags = self.header_flags(tmp_bin, job, run)
            if flags is not None:
                checks["header_flags"] = flags

            r = rate(tmp_bin, self.standard, job.frames, job.fmt.fps, job.fmt.width, job.fmt.height)
            stats_data = {
                "codec": self.name,
                "codec_version": run.version,
                "config": job.config,
                "filters": job.filters,
                "qp": job.qp,
                "source": str(job.source),
                "width": job.fmt.width,
                "height": job.fmt.height,
                "fps": job.fmt.fps,
                "bitdepth": job.fmt.bitdepth,
                "frames": job.frames,
                "bitstream": str(bitstream),
                "decoded": str(decoded),
                **r,
                "psnr": psnr["mean"],
                "psnr_per_frame": psnr["per_frame"],
                "frames_reported": run.frames,
                "encode_time_s": encode_time,
                "decode_time_s": decode_time,
                "encode_command": run.command,
                "decode_command": decode_cmd,
                "checks": checks,
                **run.extra,
            }
            if keep_log:
                with atomic_write(bitstream.with_suffix(".log"), "w") as fh:
                    fh.write(run.log)
            os.replace(tmp_dec, decoded)
            os.replace(tmp_bin, bitstream)
            write_json(stats_path, stats_data)
        return stats_data

    def _check_codec_psnr(self, run: EncoderRun, psnr: dict, bitstream: Path) -> dict:
        """Where the codec reports per-frame PSNR and writes no recon, its numbers must match ours."""
        if run.recon is not None or not run.frames or "psnr_y" not in run.frames[0]:
            return {}
        worst = 0.0
        for f in run.frames:
            ours = psnr["per_frame"][f.get("frame", f["poc"])]
            for plane in "yuv":
                theirs, mine = f[f"psnr_{plane}"], ours[plane]
                if theirs == mine or (mine == math.inf and theirs >= CODEC_PSNR_CAP_DB):
                    continue  # identical planes (a grey image's chroma): inf here, x265 prints 99.99
                worst = max(worst, abs(theirs - mine))
        if worst > CODEC_PSNR_TOLERANCE_DB:
            raise CodecError(
                f"{bitstream}: the encoder's reconstruction and the decoded frames differ "
                f"(per-frame PSNR differs by up to {worst:.4f} dB)"
            )
        return {"codec_psnr_max_abs_diff_db": worst}
