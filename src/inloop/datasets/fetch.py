"""Fetching registry datasets: download + verify + extract + convert, or check a user-provided folder.

* ``download`` datasets (DIV2K, Flickr2K, Xiph derf, Vimeo-90K): every file is
  fetched with :func:`~inloop.datasets.download.fetch_file` (resume, sha256 or
  lock file), archives are unpacked with
  :func:`~inloop.datasets.download.safe_extract`, and items are converted to
  YUV (images: one frame, cropped to multiples of 8; y4m: all frames;
  septuplets: 7 frames) with a manifest. ``limit`` converts only the first N
  items of each split (a smoke test of a 3.5 GB archive need not convert 800
  2K images).
* ``user`` datasets (JCT-VC CTC, MFQE, CLIC 2022): :func:`check_user_dataset`
  checks the folder against the registry and fails with a message saying what
  to put where; the manifest links the user's files under this project's names.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..fsutil import atomic_path
from ..yuv import YuvFormat, read_y4m_header, yuv_name
from .demo import Clip, cache_dir
from .download import DatasetError, HashLock, fetch_file, safe_extract
from .manifest import manifest_entry, write_manifest
from .registry import Dataset, get_dataset

_SIZE_RE = re.compile(r"(\d{2,5})x(\d{2,5})")


def _safe_name(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]+", "-", stem).strip("-") or "item"


def missing_message(ds: Dataset, root: str | os.PathLike | None, what: str) -> str:
    where = f"folder {root}" if root else f"a folder given by --root or params datasets.roots.{ds.name}"
    return (f"dataset {ds.name} ({ds.title}) is user-provided and {what}. Put {ds.layout} in {where}. "
            f"Source: {ds.homepage}. Licence: {ds.license}.")


def check_user_dataset(name: str, root: str | os.PathLike | None) -> list[tuple[Clip, Path]]:
    """Match a user-provided folder against the registry; returns ``(clip, file)`` pairs."""
    ds = get_dataset(name)
    if ds.kind != "user":
        raise DatasetError(f"dataset {name} is not user-provided (kind {ds.kind}); use `inloop datasets fetch {name}`")
    if not root:
        raise DatasetError(missing_message(ds, None, "no folder is configured"))
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(missing_message(ds, root, "the folder does not exist"))
    files = [p for p in root.rglob("*") if p.is_file()]
    out: list[tuple[Clip, Path]] = []
    if ds.sequences:  # JCT-VC CTC: exact names, sizes and frame counts
        from .demo import clips as _clips

        by_name = {p.name: p for p in files}
        missing, wrong = [], []
        for clip, seq in zip(_clips({}, name), ds.sequences):
            p = by_name.get(seq.file) or by_name.get(clip.filename)
            if p is None:
                missing.append(seq.file)
                continue
            want = clip.fmt.frame_bytes * clip.frames
            if p.stat().st_size != want:
                wrong.append(f"{p} has {p.stat().st_size} bytes, expected {want} ({seq.frames} frames of "
                             f"{seq.width}x{seq.height} 8-bit 4:2:0)")
            out.append((clip, p))
        if missing:
            raise DatasetError(missing_message(ds, root, f"{len(missing)} of {len(ds.sequences)} sequences are "
                                                         f"missing ({', '.join(missing)})"))
        if wrong:
            raise DatasetError(f"dataset {name} in {root}: " + "; ".join(wrong))
        return out
    if ds.test_names:  # MFQE: train/ and test/ folders
        counts = ds.extra.get("counts", {})
        for split in ("train", "test"):
            d = root / split
            yuvs = sorted(d.glob("*.yuv")) if d.is_dir() else []
            if not yuvs:
                raise DatasetError(missing_message(ds, root, f"{d} holds no .yuv files"))
            if split == "test":
                lower = [p.name.lower() for p in yuvs]
                absent = [t for t in ds.test_names if not any(n.startswith(t.lower() + "_") for n in lower)]
                if absent:
                    raise DatasetError(missing_message(ds, root, f"test sequences are missing: {', '.join(absent)}"))
            if counts.get(split) and len(yuvs) != counts[split]:
                print(f"warning: {d} holds {len(yuvs)} sequences; MFQE's split has {counts[split]}")
            for p in yuvs:
                m = _SIZE_RE.search(p.name)
                if not m:
                    raise DatasetError(f"{p}: the name must carry WxH (e.g. BasketballPass_416x240_50.yuv)")
                w, h = int(m.group(1)), int(m.group(2))
                fps_m = re.search(r"x\d+_(\d+(?:\.\d+)?)", p.name)
                fmt = YuvFormat(w, h, 8, float(fps_m.group(1)) if fps_m else 30.0)
                if p.stat().st_size % fmt.frame_bytes:
                    raise DatasetError(f"{p}: size is not a whole number of {w}x{h} 8-bit 4:2:0 frames")
                base = _safe_name(p.name.split("_")[0])
                out.append((Clip(base, split, "video", fmt, p.stat().st_size // fmt.frame_bytes, base,
                                 ds.license, cls=split, origin=str(p)), p))
        return out
    # CLIC: images, converted on fetch
    imgs = sorted(p for p in files if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not imgs:
        raise DatasetError(missing_message(ds, root, "the folder holds no images"))
    return [(Clip(_safe_name(p.stem), "test", "image", YuvFormat(16, 16), 1, p.stem, ds.license, origin=str(p)), p)
            for p in imgs]


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
        entries.append(manifest_entry(clip, out, rec))
    return entries


def fetch_dataset(name: str, params: dict, out_root: str | os.PathLike = "results/data",
                  cache: str | os.PathLike | None = None, root: str | os.PathLike | None = None,
                  limit: int | None = None, progress: bool = True, log=print) -> Path:
    """Fetch (or check) a registry dataset and write ``{out_root}/{name}/manifest.json``."""
    from ..codecs.ffmpeg import find_ffmpeg

    ds = get_dataset(name)
    dcfg = params.get("datasets") or {}
    out_dir = Path(out_root) / name
    conv = {"matrix": dcfg.get("matrix", "bt601"), "range_": dcfg.get("range", "tv"),
            "scaler": dcfg.get("scaler", "bicubic")}
    multiple = int(dcfg.get("multiple", 8))
    ffmpeg = None

    if ds.kind == "user":
        root = root or (dcfg.get("roots") or {}).get(name)
        pairs = check_user_dataset(name, root)
        entries = []
        if ds.media == "image":
            ffmpeg = find_ffmpeg()
            entries = _convert_images(ffmpeg, ds, [(c.split, p) for c, p in pairs][:limit], out_dir, conv,
                                      multiple, progress)
        else:
            for clip, p in pairs[:limit]:
                _link(p, out_dir / clip.filename)
                entries.append(manifest_entry(clip, out_dir / clip.filename))
        log(f"{name}: {len(entries)} items checked in {root}")
        return write_manifest(out_dir, name, entries, extra={"root": str(root)})

    if ds.kind != "download":
        raise DatasetError(f"dataset {name}: use `inloop datasets fetch demo`")
    cache = Path(cache) if cache else cache_dir(params)
    lock = HashLock(dcfg.get("lock") or "datasets.lock.json")
    dl_dir = cache / name
    ffmpeg = find_ffmpeg()
    entries: list[dict] = []
    for f in ds.files[:limit] if ds.media == "video" else ds.files:
        path, new = fetch_file(f.url, dl_dir / f.fname, f.sha256, lock=lock, key=f"{name}/{f.fname}",
                               progressbar=progress)
        log(f"{name}: {f.fname} {'downloaded' if new else 'present'} and verified")
        if ds.media == "video":  # y4m: convert all frames
            from .convert import plan_geometry, to_yuv

            hdr = read_y4m_header(path)
            geom = plan_geometry((hdr.fmt.width, hdr.fmt.height), None, multiple)
            frames = (path.stat().st_size - hdr.header_bytes) // (6 + hdr.fmt.frame_bytes)
            clip = Clip(_safe_name(path.stem), f.split or "train", "video",
                        YuvFormat(geom.width, geom.height, 8, hdr.fmt.fps), frames, f.fname, ds.license,
                        cls="xiph", geometry=geom, origin=f.url)
            out = out_dir / clip.filename
            rec = None if out.is_file() else to_yuv(ffmpeg, path, out, geom, fps=hdr.fmt.fps, frames=frames,
                                                    **conv)
            entries.append(manifest_entry(clip, out, rec))
            continue
        target = safe_extract(path, dl_dir / (f.fname.split(".")[0]))
        if ds.media == "image":
            imgs = sorted(p for p in target.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
            entries += _convert_images(ffmpeg, ds, [(f.split or "train", p) for p in imgs][:limit], out_dir,
                                       conv, multiple, progress)
        elif ds.media == "septuplet":
            entries += _convert_septuplets(ffmpeg, ds, target, out_dir, conv, multiple, limit, progress)
    return write_manifest(out_dir, name, entries)


def _convert_septuplets(ffmpeg, ds, target, out_dir, conv, multiple, limit, progress):
    from tqdm.auto import tqdm

    from .convert import plan_geometry, to_yuv

    lists = list(target.rglob("sep_testlist.txt"))
    if not lists:
        raise DatasetError(f"{target}: sep_testlist.txt not found; is this the Vimeo-90K septuplet archive?")
    base = lists[0].parent
    entries = []
    for split, lst in (("test", "sep_testlist.txt"), ("train", "sep_trainlist.txt")):
        ids = [ln.strip() for ln in (base / lst).read_text().splitlines() if ln.strip()][:limit]
        w, h = ds.extra["size"]
        geom = plan_geometry((w, h), None, multiple)
        for sid in tqdm(ids, desc=f"{ds.name} {split}", unit="clip", disable=not progress):
            clip = Clip(_safe_name(sid.replace("/", "-")), split, "video", YuvFormat(geom.width, geom.height, 8, 30.0),
                        7, sid, ds.license, cls="septuplet", geometry=geom, origin=sid)
            out = out_dir / clip.filename
            rec = None if out.is_file() else to_yuv(
                ffmpeg, base / "sequences" / sid / "im%d.png", out, geom, frames=7,
                input_args=["-framerate", "30", "-start_number", "1"], **conv)
            entries.append(manifest_entry(clip, out, rec))
    return entries


__all__ = ["check_user_dataset", "fetch_dataset", "missing_message", "yuv_name"]
