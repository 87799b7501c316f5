"""A researcher's own footage: a folder of YUV, y4m and image files as a dataset (README, "Your own footage").

``datasets.folders.<name>`` in params names the folder and what its files do not say::

    datasets:
      folders:
        mine:
          path: /data/my-sequences   # *.yuv, *.y4m, *.png, *.jpg (sub-folders included)
          split: test                # every item's split (test | train) ...
          splits: {Campfire: train}  # ... unless named here (by item name)
          fps: 30                    # for .yuv files whose name says no rate (Name_WxH.yuv)
          bitdepth: 8                # for .yuv files whose name says no depth (_10bit)
          size: null                 # [W, H] for .yuv files whose name says no size
          license: "own footage"

What is read, per file:

* ``.y4m``: size, rate and depth from its header; converted to 8-bit 4:2:0 YUV, cropped (centred) to multiples of
  ``datasets.multiple`` (:func:`inloop.datasets.fetch._convert_y4m`, as the Xiph sequences are).
* ``.yuv``: 4:2:0 planar; size from the name's ``WxH`` token (else ``size``), rate from the number after it
  (``_30``, ``_29.97fps``; else ``fps``), depth from ``_10bit``/``_8bit`` (else ``bitdepth``); frames from the
  file size, which must be a whole number of frames; linked, not copied. Its sides must be multiples of
  ``datasets.multiple``: the workflow does not crop raw files.
* images: one frame each, converted and cropped as the registry's images (DIV2K).

The item name is the file name up to the size token, with anything but letters, digits and '-' made '-'.
:func:`folder_clips` lists the clips from the folder alone (headers, names and sizes, no conversion), so a
Snakefile knows them at parse time; :func:`fetch_folder` writes the YUV files and the manifest with each file's
sha256, which the split check compares (no test item's content in training).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import ParamsError
from ..yuv import YuvError, YuvFormat, read_y4m_header
from .convert import plan_geometry
from .download import DatasetError
from .items import IMAGE_SUFFIXES, Clip, _convert_images, _convert_y4m, _entry, _link, _safe_name, sequence_base
from .manifest import write_manifest
from .registry import Dataset

SUFFIXES = (".yuv", ".y4m", *IMAGE_SUFFIXES)
_SIZE = re.compile(r"(?:^|[_-])(\d{2,5})x(\d{2,5})(?=$|[_-])")
_FPS = re.compile(r"^[_-](\d+(?:\.\d+)?)(?:fps|hz)?(?=$|[_-])", re.IGNORECASE)
_DEPTH = re.compile(r"[_-](8|10|12|16)bit(?=$|[_-])", re.IGNORECASE)


def folder_spec(params: dict, name: str) -> dict | None:
    """``datasets.folders.<name>``, checked; ``None`` where ``name`` is not a folder dataset."""
    folders = ((params.get("datasets") or {}).get("folders") or {})
    spec = folders.get(name)
    if spec is None:
        return None
    key = f"datasets.folders.{name}"
    from .registry import REGISTRY

    if name == "demo" or name in REGISTRY:
        raise ParamsError(f"{key}: {name!r} is a registry dataset's name (`inloop datasets list`); choose another")
    if not spec.get("path"):
        raise ParamsError(f"{key}.path: the folder of your sequences is missing")
    for item, split in {"split": spec.get("split", "test"), **{f"splits.{k}": v for k, v in
                                                                (spec.get("splits") or {}).items()}}.items():
        if split not in ("train", "test"):
            raise ParamsError(f"{key}.{item}: {split!r} is not train or test")
    return spec


def _dataset(name: str, spec: dict) -> Dataset:
    return Dataset(name, f"folder {spec['path']}", "folder", "", str(spec["path"]), spec.get("license", "own footage"),
                   "params datasets.folders")


def _yuv_format(path: Path, spec: dict, key: str) -> YuvFormat:
    stem = path.stem
    m = _SIZE.search(stem)
    if m:
        w, h = int(m.group(1)), int(m.group(2))
        rest = stem[m.end():]
    elif spec.get("size"):
        w, h = (int(v) for v in spec["size"])
        rest = ""
    else:
        raise DatasetError(f"{path}: the name says no size (Name_WxH.yuv) and {key}.size is not set")
    fps = _FPS.match(rest)
    depth = _DEPTH.search(stem)
    if not fps and not spec.get("fps"):
        raise DatasetError(f"{path}: the name says no frame rate (Name_{w}x{h}_30.yuv) and {key}.fps is not set")
    return YuvFormat(w, h, int(depth.group(1)) if depth else int(spec.get("bitdepth", 8)),
                     float(fps.group(1)) if fps else float(spec["fps"]))


def _items(name: str, spec: dict, multiple: int) -> list[tuple[Clip, Path]]:
    """Every usable file of the folder as ``(clip, file)``; a file that cannot be read is one error naming it."""
    from PIL import Image

    key = f"datasets.folders.{name}"
    root = Path(spec["path"]).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{key}.path: {root} is not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise DatasetError(f"{key}.path: {root} holds no {', '.join(SUFFIXES)} file")
    license_ = spec.get("license", "own footage")
    splits = spec.get("splits") or {}
    out: list[tuple[Clip, Path]] = []
    seen: dict[str, Path] = {}
    for p in files:
        item = _safe_name(p.stem if p.suffix.lower() in IMAGE_SUFFIXES else sequence_base(p.name))
        if item in seen:
            raise DatasetError(f"{p} and {seen[item]} both name the item {item!r}: rename one")
        seen[item] = p
        split = splits.get(item, spec.get("split", "test"))
        suffix = p.suffix.lower()
        try:
            if suffix == ".yuv":
                fmt = _yuv_format(p, spec, key)
                if fmt.width % multiple or fmt.height % multiple:
                    raise DatasetError(f"{p}: {fmt.width}x{fmt.height} is not a multiple of datasets.multiple="
                                       f"{multiple}; crop it (the workflow does not crop raw files) or give a y4m")
                frames, extra = divmod(p.stat().st_size, fmt.frame_bytes)
                if extra or not frames:
                    raise DatasetError(f"{p}: {p.stat().st_size} bytes is not a whole number of {fmt.width}x"
                                       f"{fmt.height} {fmt.bitdepth}-bit 4:2:0 frames ({fmt.frame_bytes} bytes each)")
                clip = Clip(item, split, "video", fmt, frames, p.name, license_, cls="video", origin=str(p))
            elif suffix == ".y4m":
                hdr = read_y4m_header(p)
                geom = plan_geometry((hdr.fmt.width, hdr.fmt.height), None, multiple)
                frames = (p.stat().st_size - hdr.header_bytes) // (6 + hdr.fmt.frame_bytes)
                clip = Clip(item, split, "video", YuvFormat(geom.width, geom.height, 8, hdr.fmt.fps), frames, p.name,
                            license_, cls="video", geometry=geom, origin=str(p))
            else:
                with Image.open(p) as im:
                    geom = plan_geometry(im.size, None, multiple)
                clip = Clip(item, split, "image", YuvFormat(geom.width, geom.height, 8, 30.0), 1, p.name, license_,
                            cls="image", geometry=geom, origin=str(p))
        except (YuvError, OSError, ValueError) as exc:
            raise DatasetError(f"{p}: cannot read it ({exc})") from None
        out.append((clip, p))
    return out


def folder_clips(params: dict, name: str) -> list[Clip]:
    """The clips of folder dataset ``name`` as :func:`fetch_folder` will write them (nothing converted)."""
    spec = folder_spec(params, name)
    multiple = int((params.get("datasets") or {}).get("multiple", 8))
    return [c for c, _ in _items(name, spec, multiple)]


def fetch_folder(name: str, params: dict, out_root: str | os.PathLike, progress: bool = True, log=print) -> Path:
    """Convert or link every item of folder dataset ``name`` into ``{out_root}/{name}/`` and write its manifest."""
    from ..codecs.ffmpeg import find_ffmpeg

    spec = folder_spec(params, name)
    dcfg = params.get("datasets") or {}
    multiple = int(dcfg.get("multiple", 8))
    conv = {"matrix": dcfg.get("matrix", "bt601"), "range_": dcfg.get("range", "tv"),
            "scaler": dcfg.get("scaler", "bicubic")}
    ds = _dataset(name, spec)
    out_dir = Path(out_root) / name
    items = _items(name, spec, multiple)
    entries = []
    for clip, p in items:
        if clip.kind == "image":
            entries += _convert_images(find_ffmpeg(), ds, [(clip.split, p)], out_dir, conv, multiple, False)
        elif p.suffix.lower() == ".y4m":
            entries.append(_convert_y4m(find_ffmpeg(), p, out_dir / clip.filename, clip.name, clip.split, ds,
                                        clip.cls, str(p), conv, multiple))
        else:
            _link(p, out_dir / clip.filename)
            entries.append(_entry(clip, out_dir / clip.filename))
    counts = {s: sum(e["split"] == s for e in entries) for s in ("train", "test")}
    log(f"{name}: {len(entries)} items from {spec['path']} ({counts['train']} train, {counts['test']} test)")
    return write_manifest(out_dir, name, entries, extra={"root": str(spec["path"])})
