"""The FFmpeg binary: where it is, what it can do, and the few jobs the project gives it.

The default FFmpeg is the static build bundled in the ``imageio-ffmpeg`` wheel,
which includes libx265 and the HEVC decoder, so the default path needs no
system package. ``INLOOP_FFMPEG`` (or ``codecs.x265.ffmpeg`` in params.yaml)
points the project at another build.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess

from ..errors import CodecError
from ..fsutil import atomic_path
from ..yuv import YuvFormat, fps_fraction

_INSTALL_HINT = (
    "install the project's dependencies (`make test` does; the imageio-ffmpeg wheel bundles an "
    "FFmpeg with libx265), or point INLOOP_FFMPEG / params.yaml codecs.x265.ffmpeg at an FFmpeg "
    "configured with --enable-libx265"
)


def find_ffmpeg(explicit: str | os.PathLike | None = None) -> str:
    """Path of the FFmpeg to use: ``explicit``, else ``$INLOOP_FFMPEG``, else the bundled one."""
    candidate = explicit or os.environ.get("INLOOP_FFMPEG")
    if candidate:
        resolved = shutil.which(str(candidate))
        if not resolved:
            raise CodecError(f"FFmpeg binary {candidate!r} not found or not executable; {_INSTALL_HINT}")
        return resolved
    try:
        import imageio_ffmpeg
    except ImportError:  # pragma: no cover - a dependency of the package
        raise CodecError(f"imageio-ffmpeg is not installed; {_INSTALL_HINT}") from None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise CodecError(f"imageio-ffmpeg has no FFmpeg binary for this platform ({exc}); {_INSTALL_HINT}") from None


def run_ffmpeg(ffmpeg: str, args: list[str], what: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run FFmpeg quietly; raise :class:`CodecError` with its last lines of stderr on failure."""
    cmd = [ffmpeg, "-hide_banner", "-nostdin", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise CodecError(f"FFmpeg binary {ffmpeg!r} not found; {_INSTALL_HINT}") from None
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        raise CodecError(f"FFmpeg failed ({what}), exit code {proc.returncode}:\n{tail}")
    return proc


@functools.lru_cache(maxsize=None)
def ffmpeg_capabilities(ffmpeg: str) -> dict:
    """Version, encoders, decoders and bitstream filters of one FFmpeg binary (cached)."""
    version = run_ffmpeg(ffmpeg, ["-version"], "version").stdout.splitlines()[0]
    encoders = run_ffmpeg(ffmpeg, ["-encoders"], "list encoders").stdout
    decoders = run_ffmpeg(ffmpeg, ["-decoders"], "list decoders").stdout
    bsfs = run_ffmpeg(ffmpeg, ["-bsfs"], "list bitstream filters").stdout

    def names(listing: str) -> set[str]:
        return {m.group(1) for m in re.finditer(r"^\s*[A-Z.]{6}\s+(\S+)", listing, re.M)}

    return {
        "version": version,
        "encoders": names(encoders),
        "decoders": names(decoders),
        "bsfs": set(bsfs.split()),
    }


def require_ffmpeg(ffmpeg: str, encoder: str | None = "libx265") -> dict:
    """Check at start-up that ``ffmpeg`` has ``encoder``, the HEVC decoder and trace_headers."""
    caps = ffmpeg_capabilities(ffmpeg)
    missing = []
    if encoder and encoder not in caps["encoders"]:
        missing.append(f"encoder {encoder}")
    if "hevc" not in caps["decoders"]:
        missing.append("decoder hevc")
    if "trace_headers" not in caps["bsfs"]:
        missing.append("bitstream filter trace_headers")
    if missing:
        raise CodecError(f"FFmpeg at {ffmpeg} ({caps['version']}) lacks {', '.join(missing)}; {_INSTALL_HINT}")
    return caps


def rawvideo_input_args(fmt: YuvFormat) -> list[str]:
    """FFmpeg input options for a raw 4:2:0 file of format ``fmt``."""
    fr = fps_fraction(fmt.fps)
    return ["-f", "rawvideo", "-pix_fmt", fmt.pix_fmt, "-s", f"{fmt.width}x{fmt.height}",
            "-r", f"{fr.numerator}/{fr.denominator}"]


def decode_to_yuv(ffmpeg: str, bitstream: str | os.PathLike, out: str | os.PathLike, fmt: YuvFormat,
                  input_format: str = "hevc") -> list[str]:
    """Decode an elementary stream to raw YUV at ``fmt``'s bit depth, atomically.

    Every decoded frame is written once, in display order (``-fps_mode passthrough``:
    no frame is dropped or duplicated). Returns the command line run.
    """
    with atomic_path(out) as tmp:
        args = ["-y", "-f", input_format, "-i", str(bitstream), "-fps_mode", "passthrough",
                "-f", "rawvideo", "-pix_fmt", fmt.pix_fmt, str(tmp)]
        run_ffmpeg(ffmpeg, args, f"decode {bitstream}")
        cmd = [ffmpeg, "-hide_banner", "-nostdin", *args[:-1], str(out)]
    return cmd


_TRACE_RE = re.compile(r"\[trace_headers @ [^\]]+\]\s+\d+\s+(\w+)\s+[01]+\s+=\s+(-?\d+)")


def trace_hevc_headers(ffmpeg: str, bitstream: str | os.PathLike) -> list[tuple[str, int]]:
    """All syntax elements of the parameter sets and slice headers, in stream order,
    as printed by FFmpeg's ``trace_headers`` bitstream filter."""
    proc = run_ffmpeg(
        ffmpeg,
        ["-f", "hevc", "-i", str(bitstream), "-c", "copy", "-bsf:v", "trace_headers", "-f", "null", "-"],
        f"trace headers of {bitstream}",
    )
    return [(m.group(1), int(m.group(2))) for m in _TRACE_RE.finditer(proc.stderr)]


def hevc_filter_flags(ffmpeg: str, bitstream: str | os.PathLike) -> dict:
    """What an HEVC bitstream's own headers say about deblocking and SAO.

    Returns the enabling flags (``pps_deblocking_filter_disabled_flag``,
    ``sample_adaptive_offset_enabled_flag``: the sets of values seen) and, per
    slice, whether deblocking and SAO are in effect after slice-level overrides.
    """
    pps_dbf: list[int] = []
    sps_sao: list[int] = []
    slices_dbf_on = slices_sao_on = n_slices = 0
    current_pps_disabled = None
    slice_open = False
    slice_dbf_disabled = slice_sao = None

    def close_slice() -> None:
        nonlocal slices_dbf_on, slices_sao_on, n_slices
        if slice_open:
            n_slices += 1
            slices_dbf_on += not slice_dbf_disabled
            slices_sao_on += bool(slice_sao)

    for name, value in trace_hevc_headers(ffmpeg, bitstream):
        if name == "pps_pic_parameter_set_id":
            # Absent unless deblocking_filter_control_present_flag: inferred 0 (enabled).
            pps_dbf.append(0)
            current_pps_disabled = 0
        elif name == "pps_deblocking_filter_disabled_flag":
            pps_dbf[-1] = current_pps_disabled = value
        elif name == "sample_adaptive_offset_enabled_flag":
            sps_sao.append(value)
        elif name == "first_slice_segment_in_pic_flag":
            close_slice()
            slice_open = True
            slice_dbf_disabled = current_pps_disabled
            slice_sao = 0
        elif name == "slice_deblocking_filter_disabled_flag":
            slice_dbf_disabled = value
        elif name in ("slice_sao_luma_flag", "slice_sao_chroma_flag"):
            slice_sao = slice_sao or value
    close_slice()
    if not pps_dbf or not sps_sao or not n_slices:
        raise CodecError(f"{bitstream}: trace_headers found no PPS/SPS/slice headers; is it an HEVC Annex B stream?")
    return {
        "pps_deblocking_filter_disabled_flag": sorted(set(pps_dbf)),
        "sample_adaptive_offset_enabled_flag": sorted(set(sps_sao)),
        "slices": n_slices,
        "slices_with_deblocking": slices_dbf_on,
        "slices_with_sao": slices_sao_on,
        "deblocking_enabled": 0 in pps_dbf,
        "sao_enabled": 1 in sps_sao,
    }


def filter_flags_match(flags: dict, filters: str) -> bool:
    """True if the header flags agree with ``filters`` ('off' or 'on')."""
    if filters == "off":
        return (not flags["deblocking_enabled"] and not flags["sao_enabled"]
                and flags["slices_with_deblocking"] == 0 and flags["slices_with_sao"] == 0)
    return flags["deblocking_enabled"] and flags["sao_enabled"]

