"""Raw YUV 4:2:0 and y4m reading and writing, 8-bit and high bit depth.

Conventions (docs/design.md, "Conventions"):

* Raw files are named ``{name}_{W}x{H}_{fps}fps_{bits}bit_420.yuv``;
  :func:`parse_yuv_name` and :func:`yuv_name` convert between the name and a
  :class:`YuvFormat`.
* 8-bit samples are stored as bytes; deeper samples (10, 12, 16 bit) as 16-bit
  little-endian words, as HM, VTM and FFmpeg's ``yuv420p10le`` do.
* Frames are read through a memory map, so iterating over a 4K sequence never
  loads the whole file; a file whose size is not a whole number of frames is
  rejected with the file name and the sizes.
* Writers are atomic (see :mod:`inloop.fsutil`).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import numpy as np

from .errors import YuvError
from .fsutil import atomic_write

# The planes of a 4:2:0 frame, in file order (what params `train.planes` and metric keys name).
PLANES = ("y", "u", "v")
PLANE_INDEX = {p: i for i, p in enumerate(PLANES)}

SUPPORTED_BITDEPTHS = (8, 10, 12, 16)

_NAME_RE = re.compile(
    r"^(?P<name>.+)_(?P<w>\d+)x(?P<h>\d+)_(?P<fps>\d+(?:\.\d+)?)fps_(?P<bits>\d+)bit_420\.yuv$"
)


class Frame(NamedTuple):
    """One 4:2:0 frame: full-resolution luma and two half-resolution chroma planes."""

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray


@dataclass(frozen=True)
class YuvFormat:
    """Geometry and sample format of a raw 4:2:0 sequence."""

    width: int
    height: int
    bitdepth: int = 8
    fps: float = 30.0

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise YuvError(f"frame size must be positive, got {self.width}x{self.height}")
        if self.width % 2 or self.height % 2:
            raise YuvError(
                f"4:2:0 needs even width and height, got {self.width}x{self.height}"
            )
        if self.bitdepth not in SUPPORTED_BITDEPTHS:
            raise YuvError(
                f"unknown bit depth {self.bitdepth}; supported: {', '.join(map(str, SUPPORTED_BITDEPTHS))}"
            )
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise YuvError(f"frame rate must be positive, got {self.fps}")

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8) if self.bitdepth == 8 else np.dtype("<u2")

    @property
    def bytes_per_sample(self) -> int:
        return self.dtype.itemsize

    @property
    def chroma_shape(self) -> tuple[int, int]:
        return (self.height // 2, self.width // 2)

    @property
    def samples_per_frame(self) -> int:
        return self.width * self.height * 3 // 2

    @property
    def frame_bytes(self) -> int:
        return self.samples_per_frame * self.bytes_per_sample

    @property
    def max_value(self) -> int:
        return (1 << self.bitdepth) - 1

    @property
    def pix_fmt(self) -> str:
        """FFmpeg's name of this sample format."""
        return "yuv420p" if self.bitdepth == 8 else f"yuv420p{self.bitdepth}le"

    def split(self, flat: np.ndarray) -> Frame:
        """Split one frame's flat sample array into its three planes (views, no copy)."""
        h, w = self.height, self.width
        ch, cw = self.chroma_shape
        ny, nc = h * w, ch * cw
        return Frame(
            flat[:ny].reshape(h, w),
            flat[ny : ny + nc].reshape(ch, cw),
            flat[ny + nc : ny + 2 * nc].reshape(ch, cw),
        )


def format_fps(fps: float) -> str:
    """``30.0 -> '30'``, ``29.97 -> '29.97'``: the fps as it appears in file names."""
    return str(int(fps)) if float(fps).is_integer() else f"{fps:g}"


def fps_fraction(fps: float) -> Fraction:
    """An exact rational for FFmpeg and y4m headers (29.97 -> 30000/1001)."""
    for num, den in ((24000, 1001), (30000, 1001), (60000, 1001)):
        if abs(fps - num / den) < 5e-3:
            return Fraction(num, den)
    return Fraction(fps).limit_denominator(1001)


def yuv_name(name: str, fmt: YuvFormat) -> str:
    """Build ``{name}_{W}x{H}_{fps}fps_{bits}bit_420.yuv``."""
    return f"{name}_{fmt.width}x{fmt.height}_{format_fps(fmt.fps)}fps_{fmt.bitdepth}bit_420.yuv"


def parse_yuv_name(path: str | os.PathLike) -> tuple[str, YuvFormat]:
    """Parse a name built by :func:`yuv_name` into ``(name, YuvFormat)``."""
    base = Path(path).name
    m = _NAME_RE.match(base)
    if not m:
        raise YuvError(
            f"{path}: name does not follow {{name}}_{{W}}x{{H}}_{{fps}}fps_{{bits}}bit_420.yuv; "
            "pass width, height, fps and bit depth explicitly"
        )
    try:
        fmt = YuvFormat(int(m["w"]), int(m["h"]), int(m["bits"]), float(m["fps"]))
    except YuvError as exc:
        raise YuvError(f"{path}: {exc}") from None
    return m["name"], fmt


# --------------------------------------------------------------------------- raw YUV


class YuvReader:
    """Memory-mapped reader of a raw 4:2:0 file; ``reader[i]`` is a :class:`Frame`.

    The planes returned are read-only views into the map; copy them
    (``np.array(frame.y)``) to keep them after the reader is closed.
    """

    def __init__(self, path: str | os.PathLike, fmt: YuvFormat | None = None):
        self.path = Path(path)
        if fmt is None:
            _, fmt = parse_yuv_name(self.path)
        self.fmt = fmt
        if not self.path.is_file():
            raise YuvError(f"{self.path}: no such YUV file")
        size = self.path.stat().st_size
        if size == 0 or size % fmt.frame_bytes:
            raise YuvError(
                f"{self.path}: size {size} bytes is not a whole number of "
                f"{fmt.width}x{fmt.height} {fmt.bitdepth}-bit 4:2:0 frames "
                f"({fmt.frame_bytes} bytes each; {size / fmt.frame_bytes:.3f} frames)"
            )
        self.num_frames = size // fmt.frame_bytes
        self._map = np.memmap(self.path, dtype=fmt.dtype, mode="r")

    def __len__(self) -> int:
        return self.num_frames

    def __getitem__(self, index: int) -> Frame:
        if not -self.num_frames <= index < self.num_frames:
            raise IndexError(f"{self.path}: frame {index} out of range (0..{self.num_frames - 1})")
        index %= self.num_frames
        n = self.fmt.samples_per_frame
        return self.fmt.split(self._map[index * n : (index + 1) * n])

    def __iter__(self) -> Iterator[Frame]:
        for i in range(self.num_frames):
            yield self[i]

    def close(self) -> None:
        self._map = None  # type: ignore[assignment]

    def __enter__(self) -> "YuvReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def count_frames(path: str | os.PathLike, fmt: YuvFormat | None = None) -> int:
    """Number of frames in a raw file, with the same checks as :class:`YuvReader`."""
    with YuvReader(path, fmt) as r:
        return len(r)


def read_frames(
    path: str | os.PathLike, fmt: YuvFormat | None = None, start: int = 0, count: int | None = None
) -> list[Frame]:
    """Read (copies of) ``count`` frames from ``start``."""
    with YuvReader(path, fmt) as r:
        stop = len(r) if count is None else start + count
        if start < 0 or stop > len(r):
            raise YuvError(f"{path}: asked for frames {start}..{stop - 1}, file has {len(r)}")
        return [Frame(*(np.array(p) for p in r[i])) for i in range(start, stop)]


def _check_frame(frame: Frame, fmt: YuvFormat, where: str) -> None:
    expect = ((fmt.height, fmt.width), fmt.chroma_shape, fmt.chroma_shape)
    for plane, shape, label in zip(frame, expect, "YUV"):
        if plane.shape != shape:
            raise YuvError(f"{where}: plane {label} has shape {plane.shape}, expected {shape}")
        if plane.size and int(plane.max()) > fmt.max_value:
            raise YuvError(f"{where}: plane {label} has sample {int(plane.max())} > {fmt.max_value}")


def write_yuv(path: str | os.PathLike, frames: Iterable[Frame], fmt: YuvFormat) -> int:
    """Write frames to a raw file atomically; returns the number of frames written."""
    with atomic_write(path) as fh:
        return _write_frames(fh, frames, fmt, path)


def _write_frames(fh, frames: Iterable[Frame], fmt: YuvFormat, path, frame_header: bytes = b"") -> int:
    """Write checked frames (each after ``frame_header``); at least one frame."""
    n = 0
    for frame in frames:
        _check_frame(frame, fmt, f"{path} frame {n}")
        fh.write(frame_header)
        for plane in frame:
            fh.write(np.ascontiguousarray(plane, dtype=fmt.dtype).tobytes())
        n += 1
    if n == 0:
        raise YuvError(f"{path}: no frames to write")
    return n


# --------------------------------------------------------------------------- y4m

_Y4M_MAGIC = b"YUV4MPEG2"
_Y4M_COLORSPACES = {
    "420": 8, "420jpeg": 8, "420paldv": 8, "420mpeg2": 8,
    "420p10": 10, "420p12": 12, "420p16": 16,
}


@dataclass(frozen=True)
class Y4mHeader:
    fmt: YuvFormat
    header_bytes: int  # length of the stream header including its newline
    params: dict


def read_y4m_header(path: str | os.PathLike) -> Y4mHeader:
    """Parse the stream header of a y4m file (4:2:0 only)."""
    with open(path, "rb") as fh:
        line = fh.readline(4096)
    if not line.startswith(_Y4M_MAGIC) or not line.endswith(b"\n"):
        raise YuvError(f"{path}: not a YUV4MPEG2 file")
    params: dict[str, str] = {}
    try:
        for tok in line[len(_Y4M_MAGIC) :].split():
            params[chr(tok[0])] = tok[1:].decode("ascii")
    except UnicodeDecodeError:
        raise YuvError(f"{path}: bad y4m header {line[:80]!r} (not ASCII)") from None
    # Interlaced material read as progressive would pair lines of two fields: refused (I: p or ? only).
    if params.get("I", "p") not in ("p", "?"):
        raise YuvError(f"{path}: interlaced y4m (I{params['I']}); deinterlace it first "
                       "(ffmpeg -vf bwdif), the pipeline reads progressive frames")
    colorspace = params.get("C", "420jpeg")
    if colorspace not in _Y4M_COLORSPACES:
        raise YuvError(f"{path}: y4m colour space C{colorspace} is not 4:2:0 (supported: {sorted(_Y4M_COLORSPACES)})")
    try:
        num, den = (int(x) for x in params.get("F", "30:1").split(":"))
        fmt = YuvFormat(int(params["W"]), int(params["H"]), _Y4M_COLORSPACES[colorspace], num / den)
    except (KeyError, ValueError, ZeroDivisionError) as exc:
        if isinstance(exc, YuvError):
            raise YuvError(f"{path}: {exc}") from None
        raise YuvError(f"{path}: bad y4m header {line[:80]!r}") from None
    return Y4mHeader(fmt, len(line), params)


class Y4mReader(YuvReader):
    """Memory-mapped y4m reader. Frame headers must carry no parameters (``FRAME\\n``),
    which is what FFmpeg, x265 and the Xiph/derf files write; anything else is
    rejected rather than misread."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        hdr = read_y4m_header(self.path)
        self.fmt = fmt = hdr.fmt
        size = self.path.stat().st_size
        stride = 6 + fmt.frame_bytes  # b"FRAME\n" + samples
        body = size - hdr.header_bytes
        if body <= 0 or body % stride:
            raise YuvError(
                f"{self.path}: {body} bytes after the header are not a whole number of "
                f"{fmt.width}x{fmt.height} {fmt.bitdepth}-bit frames ({stride} bytes each with 'FRAME\\n')"
            )
        self.num_frames = body // stride
        raw = np.memmap(self.path, dtype=np.uint8, mode="r", offset=hdr.header_bytes)
        frames = raw.reshape(self.num_frames, stride)
        if not np.all(frames[:, :6] == np.frombuffer(b"FRAME\n", np.uint8)):
            raise YuvError(f"{self.path}: a frame header is not a bare 'FRAME' line")
        self._frames = frames[:, 6:]

    def __getitem__(self, index: int) -> Frame:
        if not -self.num_frames <= index < self.num_frames:
            raise IndexError(f"{self.path}: frame {index} out of range (0..{self.num_frames - 1})")
        flat = self._frames[index % self.num_frames].view(self.fmt.dtype)
        return self.fmt.split(flat)

    def close(self) -> None:
        self._frames = None  # type: ignore[assignment]


def write_y4m(path: str | os.PathLike, frames: Iterable[Frame], fmt: YuvFormat) -> int:
    """Write frames as y4m (C420jpeg / C420p10 ...), atomically."""
    fr = fps_fraction(fmt.fps)
    cs = "420jpeg" if fmt.bitdepth == 8 else f"420p{fmt.bitdepth}"
    header = f"YUV4MPEG2 W{fmt.width} H{fmt.height} F{fr.numerator}:{fr.denominator} Ip A1:1 C{cs}\n"
    with atomic_write(path) as fh:
        fh.write(header.encode("ascii"))
        return _write_frames(fh, frames, fmt, path, b"FRAME\n")


def open_video(path: str | os.PathLike, fmt: YuvFormat | None = None) -> YuvReader:
    """Open a ``.y4m`` or raw ``.yuv`` file for frame-wise reading."""
    if Path(path).suffix.lower() == ".y4m":
        return Y4mReader(path)
    return YuvReader(path, fmt)

