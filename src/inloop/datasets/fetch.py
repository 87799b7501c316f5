"""Fetching registry datasets: download + check + extract + convert, or check a user-provided folder.

* ``download`` datasets (DIV2K, Flickr2K, Xiph derf, Vimeo-90K): every file is
  fetched with :func:`~inloop.download.fetch_file` (resume; the
  published checksum and size, else the lock file; the log says which, and
  "NOT verified" where nothing published was compared), archives are unpacked
  with :func:`~inloop.datasets.download.safe_extract`, and items are converted
  to YUV (images: one frame, cropped to multiples of 8; y4m: all frames;
  septuplets: 7 frames) with a manifest. A copy the user already has stands in
  for the download: ``archive`` (the published file, checked the same way) or
  ``root`` (its unpacked folder). ``limit`` converts only the first N items of
  each split (a smoke test of a 3.5 GB archive need not convert 800 2K images).
* ``user`` datasets (JCT-VC CTC, MFQE, CLIC 2022): :func:`check_user_dataset`
  checks the folder against the registry and fails with a message saying what
  to put where; the manifest links the user's files under this project's names.
  The CTC's class E, openly on Xiph.org, is fetched when absent.
* Every dataset's item count per split is checked against the registry
  (:attr:`~inloop.datasets.registry.Dataset.counts`) before anything is
  converted: an error names the dataset, the split, the expected and the found
  count. Only the folder a dataset is defined by is used (Flickr2K: ``Flickr2K_HR``,
  never its low-resolution sets).
* Every manifest entry carries the sha256 of its YUV file, so that
  :mod:`inloop.datasets.splits` can prove no test item is in a training set.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .. import paths
from ..download import ChecksumError, Fetched, cache_dir, digest, fetch_file
from ..fsutil import sha256_file
from ..yuv import YuvFormat, yuv_name
from .download import DatasetError, HashLock, lock_path, safe_extract
from .items import _SIZE_RE, IMAGE_SUFFIXES, Clip, _convert_images, _convert_y4m, _entry, _link, _safe_name, sequence_base
from .manifest import write_manifest
from .registry import Dataset, RemoteFile, get_dataset

def missing_message(ds: Dataset, root: str | os.PathLike | None, what: str) -> str:
    where = f"folder {root}" if root else f"a folder given by --root or params datasets.roots.{ds.name}"
    return (f"dataset {ds.name} ({ds.title}) is user-provided and {what}. Put {ds.layout} in {where}. "
            f"Source: {ds.homepage}. Licence: {ds.license}.")


def check_count(ds: Dataset, split: str, found: int, where: str | os.PathLike) -> None:
    """The registry's item count for ``split``, or a DatasetError naming dataset, split and both counts."""
    want = ds.counts.get(split)
    if want is not None and found != want:
        raise DatasetError(f"dataset {ds.name}: {where} holds {found} {split} items, a complete copy has {want} "
                           f"({ds.split}); nothing was converted")


def _ctc_pairs(ds: Dataset, root: Path | None, files: list[Path]) -> tuple[list, list, list]:
    from .demo import clips as _clips

    by_name = {p.name: p for p in files}
    found, missing, wrong = [], [], []
    for clip, seq in zip(_clips({}, ds.name), ds.sequences):
        p = by_name.get(seq.file) or by_name.get(clip.filename)
        if p is None:
            missing.append((clip, seq))
            continue
        want = clip.fmt.frame_bytes * clip.frames
        if p.stat().st_size != want:
            wrong.append(f"{p} has {p.stat().st_size} bytes, expected {want} ({seq.frames} frames of "
                         f"{seq.width}x{seq.height} 8-bit 4:2:0)")
        found.append((clip, p))
    return found, missing, wrong


def check_user_dataset(name: str, root: str | os.PathLike | None,
                       fetchable: bool = False) -> list[tuple[Clip, Path | None]]:
    """Match a user-provided folder against the registry; returns ``(clip, file)`` pairs.

    With ``fetchable``, CTC sequences that are openly downloadable (class E) may be
    absent: they come back with file ``None`` for :func:`fetch_dataset` to fetch.
    """
    ds = get_dataset(name)
    if ds.kind != "user":
        raise DatasetError(f"dataset {name} is not user-provided (kind {ds.kind}); use `inloop datasets fetch {name}`")
    if ds.sequences and not root and fetchable and all(s.url for s in ds.sequences):
        root = None  # nothing user-provided is needed
    elif not root:
        raise DatasetError(missing_message(ds, None, "no folder is configured"))
    root = Path(root) if root else None
    if root is not None and not root.is_dir():
        raise DatasetError(missing_message(ds, root, "the folder does not exist"))
    files = [p for p in root.rglob("*") if p.is_file()] if root else []
    if ds.sequences:  # JCT-VC CTC: exact names, sizes and frame counts
        found, missing, wrong = _ctc_pairs(ds, root, files)
        absent = [seq.file for _, seq in missing if not (fetchable and seq.url)]
        if absent:
            can = [seq.file for _, seq in missing if seq.url]
            raise DatasetError(missing_message(ds, root, f"{len(absent)} of {len(ds.sequences)} sequences are "
                                                         f"missing ({', '.join(absent)})")
                               + (f" ({', '.join(can)} can be fetched from Xiph.org: `inloop datasets fetch "
                                  f"{name}`)" if can and not fetchable else ""))
        if wrong:
            raise DatasetError(f"dataset {name} in {root}: " + "; ".join(wrong))
        return found + [(clip, None) for clip, _ in missing]
    if ds.test_names:  # MFQE: train/ and test/ folders
        return _mfqe_pairs(ds, root)
    # CLIC: images, converted on fetch
    imgs = sorted(p for p in files if p.suffix.lower() in IMAGE_SUFFIXES)
    if not imgs:
        raise DatasetError(missing_message(ds, root, "the folder holds no images"))
    check_count(ds, "test", len(imgs), root)
    return [(Clip(_safe_name(p.stem), "test", "image", YuvFormat(16, 16), 1, p.stem, ds.license, origin=str(p)), p)
            for p in imgs]


def _mfqe_pairs(ds: Dataset, root: Path) -> list[tuple[Clip, Path]]:
    aliases = ds.extra.get("aliases", {})
    out: list[tuple[Clip, Path]] = []
    seen: dict[str, Path] = {}
    for split in ("train", "test"):
        d = root / split
        yuvs = sorted(d.glob("*.yuv")) if d.is_dir() else []
        if not yuvs:
            raise DatasetError(missing_message(ds, root, f"{d} holds no .yuv files"))
        if split == "test":
            bases = {sequence_base(p.name).lower() for p in yuvs}
            absent = [t for t in ds.test_names
                      if not any(a.lower() in bases for a in aliases.get(t, (t,)))]
            if absent:
                raise DatasetError(missing_message(ds, root, f"test sequences are missing: {', '.join(absent)}"))
        check_count(ds, split, len(yuvs), d)
        for p in yuvs:
            m = _SIZE_RE.search(p.name)
            if not m:
                raise DatasetError(f"{p}: the name must carry WxH (e.g. BasketballPass_416x240_50.yuv)")
            w, h = int(m.group(1)), int(m.group(2))
            fps_m = re.search(r"x\d+_(\d+(?:\.\d+)?)", p.name)
            fmt = YuvFormat(w, h, 8, float(fps_m.group(1)) if fps_m else 30.0)
            if p.stat().st_size % fmt.frame_bytes:
                raise DatasetError(f"{p}: size is not a whole number of {w}x{h} 8-bit 4:2:0 frames")
            base = _safe_name(sequence_base(p.name))
            if base.lower() in seen:
                raise DatasetError(f"dataset {ds.name}: {seen[base.lower()]} and {p} would both be sequence "
                                   f"{base!r}; rename one (a sequence is named by its file name up to WxH)")
            seen[base.lower()] = p
            out.append((Clip(base, split, "video", fmt, p.stat().st_size // fmt.frame_bytes, base,
                             ds.license, cls=split, origin=str(p)), p))
    return out


def _image_items(ds: Dataset, f: RemoteFile, folder: Path) -> list[Path]:
    """The images of one file's split: under the folder the dataset is defined by (``extra.select``)."""
    select = ds.extra.get("select")
    if not select and len(ds.files) > 1:
        select = f.fname.split(".")[0]  # DIV2K_train_HR.zip -> DIV2K_train_HR/
    imgs = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and (not select or select in p.relative_to(folder).parts or folder.name == select))
    if not imgs:
        raise DatasetError(f"dataset {ds.name}: no images under {folder}" + (f" in a folder {select}/" if select else "")
                           + f" ({ds.layout or ds.split})")
    return imgs


def fetch_dataset(name: str, params: dict, out_root: str | os.PathLike = paths.DATA,
                  cache: str | os.PathLike | None = None, root: str | os.PathLike | None = None,
                  limit: int | None = None, progress: bool = True, log=print, archive: str | os.PathLike | None = None,
                  url: str | None = None) -> Path:
    """Fetch (or check) a registry dataset and write ``{out_root}/{name}/manifest.json``.

    ``archive``: a local copy of a single-file dataset's published file (checked as a
    download would be); ``url``: another address for it (a mirror); ``root``: for a
    download dataset, its unpacked folder (nothing published can be compared: the
    log says so), for a user dataset the folder to check.
    """
    from ..codecs.ffmpeg import find_ffmpeg
    from .folder import fetch_folder, folder_spec

    if folder_spec(params, name) is not None:  # the user's own folder (datasets.folders)
        return fetch_folder(name, params, out_root, progress=progress, log=log)
    ds = get_dataset(name)
    dcfg = params.get("datasets") or {}
    out_dir = Path(out_root) / name
    conv = {"matrix": dcfg.get("matrix", "bt601"), "range_": dcfg.get("range", "tv"),
            "scaler": dcfg.get("scaler", "bicubic")}
    multiple = int(dcfg.get("multiple", 8))
    cache = Path(cache) if cache else cache_dir(params)
    lock = HashLock(lock_path(params))

    if ds.kind == "user":
        root = root or (dcfg.get("roots") or {}).get(name)
        pairs = check_user_dataset(name, root, fetchable=True)
        entries = []
        if ds.media == "image":
            entries = _convert_images(find_ffmpeg(), ds, [(c.split, p) for c, p in pairs][:limit], out_dir, conv,
                                      multiple, progress)
        else:
            seqs = {s.name: s for s in ds.sequences}
            for clip, p in pairs[:limit]:
                if p is None:  # openly downloadable (CTC class E on Xiph.org)
                    seq = seqs[clip.name]
                    got = fetch_file(seq.url, cache / name / Path(seq.url).name, lock=lock,
                                     key=f"{name}/{Path(seq.url).name}", progressbar=progress)
                    log(f"{name}: {Path(seq.url).name} {'downloaded' if got.downloaded else 'present'}: {got.check}")
                    entry = _convert_y4m(find_ffmpeg(), got.path, out_dir / clip.filename, clip.name, "test", ds,
                                         clip.cls, seq.url, conv, multiple)
                    if (entry["width"], entry["height"], entry["frames"]) != (seq.width, seq.height, seq.frames):
                        raise DatasetError(f"{seq.url}: {entry['width']}x{entry['height']}, {entry['frames']} frames; "
                                           f"the CTC's {seq.file} has {seq.width}x{seq.height}, {seq.frames}")
                    entries.append(entry)
                    continue
                _link(p, out_dir / clip.filename)
                entries.append(_entry(clip, out_dir / clip.filename))
        log(f"{name}: {len(entries)} items checked" + (f" in {root}" if root else ""))
        return write_manifest(out_dir, name, entries, extra={"root": str(root) if root else None})

    if ds.kind != "download":
        raise DatasetError(f"dataset {name}: use `inloop datasets fetch demo`")
    if (archive or url) and len(ds.files) != 1:
        raise DatasetError(f"dataset {name} has {len(ds.files)} files: --archive/--url take a single-file dataset's "
                           f"file (use --root with the unpacked folder instead)")
    dl_dir = cache / name
    ffmpeg = find_ffmpeg()
    entries: list[dict] = []
    if ds.media == "video":  # one y4m per file: the count is the registry's list
        check_count(ds, "train", len(ds.files), "the registry's file list")
    for f in ds.files[:limit] if ds.media == "video" else ds.files:
        if root:
            folder = Path(root)
            if not folder.is_dir():
                raise DatasetError(f"dataset {name}: --root {folder} is not a folder")
            log(f"{name}: using the unpacked copy in {folder}: NOT verified (no archive to compare with "
                f"{'its published checksum' if f.sha256 or f.md5 else 'the lock file'})")
        else:
            source = Path(archive) if archive else None
            if source is not None and not source.is_file():
                raise DatasetError(f"dataset {name}: --archive {source} is not a file")
            dest = source if source is not None else dl_dir / f.fname
            pending = PendingLock(lock)  # a first download's sha256 is pinned once the file is accepted
            got = fetch_file(url or f.url, dest, f.sha256, md5=f.md5, size=f.size, lock=pending,
                             key=f"{name}/{f.fname}", progressbar=progress) \
                if source is None else _check_local(source, f, pending, name)
            log(f"{name}: {f.fname} {'downloaded' if got.downloaded else 'present'}: {got.check}")
            if ds.media == "video":
                entries.append(_convert_y4m(ffmpeg, got.path, out_dir, _safe_name(got.path.stem), f.split or "train",
                                            ds, "xiph", f.url, conv, multiple))
                pending.commit()
                continue
            folder = safe_extract(got.path, dl_dir / (f.fname.split(".")[0]))
            pending.commit()
        if ds.media == "image":
            imgs = _image_items(ds, f, folder)
            check_count(ds, f.split or "train", len(imgs), folder)
            entries += _convert_images(ffmpeg, ds, [(f.split or "train", p) for p in imgs][:limit], out_dir,
                                       conv, multiple, progress)
        elif ds.media == "septuplet":
            entries += _convert_septuplets(ffmpeg, ds, folder, out_dir, conv, multiple, limit, progress)
    return write_manifest(out_dir, name, entries)


class PendingLock:
    """A :class:`HashLock` whose new records wait for :meth:`commit`: the sha256 of a first download (or a user's
    copy) is pinned only once that file was accepted (its archive checked and extracted, its video converted).
    A refused archive used to be pinned first, so the next, correct copy was refused as "does not match the
    sha256 recorded" until the line was removed by hand."""

    def __init__(self, lock: HashLock):
        self.lock, self.path, self.pending = lock, lock.path, {}

    def get(self, key: str) -> str | None:
        return self.lock.get(key)

    def record(self, key: str, *args, **kwargs) -> None:
        self.pending[key] = (args, kwargs)

    def commit(self) -> None:
        for key, (args, kwargs) in self.pending.items():
            self.lock.record(key, *args, **kwargs)
        self.pending.clear()


def _check_local(path: Path, f: RemoteFile, lock: HashLock | PendingLock, name: str):
    """A user's copy of a published file, checked as :func:`fetch_file` checks a download (never moved)."""
    if f.size is not None and path.stat().st_size != f.size:
        raise ChecksumError(f"{path}: {path.stat().st_size} bytes, {f.fname} as published has {f.size}")
    algo, known = ("sha256", f.sha256) if f.sha256 else ("md5", f.md5) if f.md5 else (None, None)
    if known is None:
        known = lock.get(f"{name}/{f.fname}")
        algo = "sha256" if known else None
    if known is None:
        sha = sha256_file(path)
        lock.record(f"{name}/{f.fname}", sha, path.stat().st_size, str(path), verified=False,
                    note="a local copy; the source publishes no checksum")
        return Fetched(path, False, f"NOT verified: the source publishes no checksum; its sha256 {sha} is "
                                    f"recorded in {lock.path}", False)
    have = digest(path, algo)
    if have != known:
        raise ChecksumError(f"{path}: {algo} {have}, {f.fname} as published has {known}: not that file")
    pinned = bool(f.sha256 or f.md5)
    return Fetched(path, False, f"{'verified: ' if pinned else ''}matches the {'published' if pinned else 'recorded'} "
                                f"{algo}", pinned)


def _convert_septuplets(ffmpeg, ds, target, out_dir, conv, multiple, limit, progress):
    from tqdm.auto import tqdm

    from .convert import plan_geometry, to_yuv

    lists = list(target.rglob("sep_testlist.txt"))
    if not lists:
        raise DatasetError(f"{target}: sep_testlist.txt not found; is this the Vimeo-90K septuplet archive?")
    base = lists[0].parent
    entries = []
    for split, lst in (("test", "sep_testlist.txt"), ("train", "sep_trainlist.txt")):
        all_ids = [ln.strip() for ln in (base / lst).read_text().splitlines() if ln.strip()]
        check_count(ds, split, len(all_ids), base / lst)
        w, h = ds.extra["size"]
        geom = plan_geometry((w, h), None, multiple)
        for sid in tqdm(all_ids[:limit], desc=f"{ds.name} {split}", unit="clip", disable=not progress):
            clip = Clip(_safe_name(sid.replace("/", "-")), split, "video", YuvFormat(geom.width, geom.height, 8, 30.0),
                        7, sid, ds.license, cls="septuplet", geometry=geom, origin=sid)
            out = out_dir / clip.filename
            rec = None if out.is_file() else to_yuv(
                ffmpeg, base / "sequences" / sid / "im%d.png", out, geom, frames=7,
                input_args=["-framerate", "30", "-start_number", "1"], **conv)
            entries.append(_entry(clip, out, rec))
    return entries


__all__ = ["check_count", "check_user_dataset", "fetch_dataset", "missing_message", "sequence_base", "yuv_name"]
