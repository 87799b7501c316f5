"""Conversion of images and videos to raw 8-bit YUV 4:2:0 through the bundled FFmpeg.

GL-Fusion IV.A converts its DIV2K/Flickr2K images "to YUV420 format" before
compressing them; SPiLF 3.1 does the same for DIV2K; NL-ConvLSTM 4.1 compresses
Vimeo-90K septuplets and Yang et al.'s sequences. All of them go through
:func:`to_yuv`:

* optional resize to ``scale`` (W, H) first, then a centred crop down to the
  nearest multiples of 8 (``multiple``) -- the crop is returned as
  :class:`Geometry` and recorded in the manifest;
* RGB -> Y'CbCr with the matrix (``bt601`` / ``bt709``) and range (``tv`` =
  limited 16-235, ``pc`` = full) named in ``params.yaml`` (``datasets.matrix``,
  ``datasets.range``); one swscale pass does the resize and the conversion,
  with accurate rounding;
* videos: frames ``start .. start+frames-1`` in decoding order, each written
  once (no frame-rate conversion);
* the output file is written atomically and its size checked against
  W x H x 1.5 x frames.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from ..codecs.ffmpeg import run_ffmpeg
from ..errors import InloopError
from ..fsutil import atomic_path
from ..yuv import YuvFormat

MATRICES = ("bt601", "bt709")
RANGES = ("tv", "pc")


class ConversionError(InloopError):
    """A source could not be converted as asked (too few frames, bad size, bad option)."""


@dataclass(frozen=True)
class Geometry:
    """Source size -> optional resize -> centred crop to multiples of ``multiple``."""

    source_w: int
    source_h: int
    scale_w: int
    scale_h: int
    width: int
    height: int
    crop_x: int
    crop_y: int

    @property
    def resized(self) -> bool:
        return (self.scale_w, self.scale_h) != (self.source_w, self.source_h)

    @property
    def cropped(self) -> bool:
        return (self.width, self.height) != (self.scale_w, self.scale_h)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["crop"] = {"x": self.crop_x, "y": self.crop_y, "w": self.width, "h": self.height,
                     "of": [self.scale_w, self.scale_h]}
        return d


def plan_geometry(source_size: tuple[int, int], scale: tuple[int, int] | None = None, multiple: int = 8) -> Geometry:
    """Where the output size comes from; pure arithmetic (no media is opened)."""
    sw, sh = (int(v) for v in source_size)
    tw, th = (int(v) for v in (scale or (sw, sh)))
    if min(sw, sh, tw, th) <= 0:
        raise ConversionError(f"sizes must be positive: source {sw}x{sh}, scale {tw}x{th}")
    w, h = tw - tw % multiple, th - th % multiple
    if w == 0 or h == 0:
        raise ConversionError(f"{tw}x{th} is smaller than one {multiple}x{multiple} block")
    # Even offsets keep the 4:2:0 chroma grid aligned with the crop.
    x, y = ((tw - w) // 2) & ~1, ((th - h) // 2) & ~1
    return Geometry(sw, sh, tw, th, w, h, x, y)


def probe_size(ffmpeg: str, src: str | os.PathLike) -> tuple[int, int]:
    """Width and height of the first video stream (from FFmpeg's stream line)."""
    import re
    import subprocess

    proc = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-i", str(src)], capture_output=True, text=True)
    for line in proc.stderr.splitlines():
        if "Video:" in line:
            m = re.search(r",\s*(\d{2,5})x(\d{2,5})[\s,\[]", line + " ")
            if m:
                return int(m.group(1)), int(m.group(2))
    raise ConversionError(f"{src}: FFmpeg found no video stream or size")


def filter_chain(geom: Geometry, matrix: str, range_: str, scaler: str = "bicubic",
                 start: int | None = None, frames: int | None = None) -> str:
    if matrix not in MATRICES:
        raise ConversionError(f"colour matrix {matrix!r} unknown (params datasets.matrix: one of {', '.join(MATRICES)})")
    if range_ not in RANGES:
        raise ConversionError(f"range {range_!r} unknown (params datasets.range: one of {', '.join(RANGES)})")
    parts = []
    if start is not None and frames is not None:
        parts.append(f"trim=start_frame={start}:end_frame={start + frames},setpts=PTS-STARTPTS")
    parts.append(f"scale={geom.scale_w}:{geom.scale_h}:flags={scaler}+accurate_rnd+full_chroma_int"
                 f":out_color_matrix={matrix}:out_range={range_}")
    # The format filter right after scale makes that one scaler do the RGB->YUV step.
    parts.append("format=yuv420p")
    if geom.cropped:
        parts.append(f"crop={geom.width}:{geom.height}:{geom.crop_x}:{geom.crop_y}")
    return ",".join(parts)


def to_yuv(ffmpeg: str, src: str | os.PathLike, out: str | os.PathLike, geom: Geometry, *, fps: float = 30.0,
           start: int = 0, frames: int = 1, image: bool = False, matrix: str = "bt601", range_: str = "tv",
           scaler: str = "bicubic", input_args: list[str] | None = None) -> dict:
    """Convert ``frames`` frames of ``src`` from frame ``start`` into raw yuv420p at ``out``.

    Returns a record of what was done (geometry, crop, colour options, command).
    """
    fmt = YuvFormat(geom.width, geom.height, 8, fps)
    vf = filter_chain(geom, matrix, range_, scaler, None if image else start, None if image else frames)
    if image and (start, frames) != (0, 1):
        raise ConversionError(f"{src}: an image has one frame (asked for {frames} from {start})")
    with atomic_path(out) as tmp:
        args = ["-y", *(input_args or []), "-i", str(src), "-map", "0:v:0", "-an", "-sn", "-dn",
                "-vf", vf, "-fps_mode", "passthrough", "-frames:v", str(frames),
                "-f", "rawvideo", "-pix_fmt", "yuv420p", str(tmp)]
        run_ffmpeg(ffmpeg, args, f"convert {src}")
        size = tmp.stat().st_size if tmp.exists() else 0
        if size != fmt.frame_bytes * frames:
            got = size / fmt.frame_bytes
            raise ConversionError(
                f"{src}: asked for {frames} frames from frame {start}, FFmpeg produced {got:g} "
                f"({size} bytes of {fmt.width}x{fmt.height} 4:2:0); the source is shorter than the clip")
    return {
        "geometry": geom.as_dict(),
        "matrix": matrix,
        "range": range_,
        "scaler": scaler,
        "start_frame": start,
        "frames": frames,
        "command": [ffmpeg, "-hide_banner", "-nostdin", *args[:-1], str(out)],
    }
