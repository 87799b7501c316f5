"""What a dataset item is and how one becomes a YUV file with a manifest entry, shared by the demo's clips,
the registry's datasets (:mod:`.fetch`) and the user's own folders (:mod:`.folder`)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..fsutil import atomic_path, sha256_file
from ..yuv import YuvFormat, read_y4m_header, yuv_name
from .convert import Geometry
from .manifest import manifest_entry
from .registry import Dataset

_SIZE_RE = re.compile(r"(\d{2,5})x(\d{2,5})")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Clip:
    """One demo (or registry) item as the pipeline sees it."""

    name: str
    split: str            # train | test
    kind: str             # image | video
    fmt: YuvFormat
    frames: int
    source: str           # source key (whole sources never cross splits)
    license: str
    cls: str = ""         # class (CTC A-E; demo: image/video)
    start: int = 0
    geometry: Geometry | None = None
    origin: str = ""      # where the media comes from (package and member, or file)
    spec: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def stem(self) -> str:
        return yuv_name(self.name, self.fmt)[:-4]

    @property
    def filename(self) -> str:
        return yuv_name(self.name, self.fmt)


def _safe_name(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]+", "-", stem).strip("-") or "item"


def sequence_base(filename: str) -> str:
    """A user-provided sequence's name: its file name up to the WxH token (``Kimono1_1920x1080_24.yuv`` -> ``Kimono1``)."""
    stem = Path(filename).stem
    m = _SIZE_RE.search(stem)
    return (stem[:m.start()] if m else stem).rstrip("_-") or stem


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        if dst.resolve() == src.resolve():
            return
        dst.unlink()
    try:
        os.symlink(src.resolve(), dst)
    except OSError:  # no symlinks here: copy
        import shutil

        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)


def _entry(clip: Clip, path: Path, record: dict | None = None) -> dict:
    """A manifest entry with the YUV file's sha256 (what the split check compares)."""
    e = manifest_entry(clip, path, record)
    e["sha256"] = sha256_file(path)
    return e


def _convert_images(ffmpeg, ds, items, out_dir, conv, multiple, progress):
    from tqdm.auto import tqdm

    from .convert import plan_geometry, probe_size, to_yuv

    entries = []
    for split, p in tqdm(items, desc=f"{ds.name}: to YUV", unit="img", disable=not progress):
        geom = plan_geometry(probe_size(ffmpeg, p), None, multiple)
        clip = Clip(_safe_name(p.stem), split, "image", YuvFormat(geom.width, geom.height, 8, 30.0), 1,
                    p.name, ds.license, cls="image", geometry=geom, origin=str(p))
        out = out_dir / clip.filename
        rec = to_yuv(ffmpeg, p, out, geom, image=True, **conv) if not out.is_file() else None
        entries.append(_entry(clip, out, rec))
    return entries


def _convert_y4m(ffmpeg, path: Path, out: Path, clip_name: str, split: str, ds: Dataset, cls: str, origin: str,
                 conv: dict, multiple: int) -> dict:
    """All frames of a y4m, cropped to multiples of ``multiple``, as one manifest entry."""
    from .convert import plan_geometry, to_yuv

    hdr = read_y4m_header(path)
    geom = plan_geometry((hdr.fmt.width, hdr.fmt.height), None, multiple)
    frames = (path.stat().st_size - hdr.header_bytes) // (6 + hdr.fmt.frame_bytes)
    clip = Clip(clip_name, split, "video", YuvFormat(geom.width, geom.height, 8, hdr.fmt.fps), frames, path.name,
                ds.license, cls=cls, geometry=geom, origin=origin)
    target = out if out.suffix == ".yuv" and out.name != "" else out / clip.filename
    rec = None if target.is_file() else to_yuv(ffmpeg, path, target, geom, fps=hdr.fmt.fps, frames=frames, **conv)
    return _entry(clip, target, rec)
