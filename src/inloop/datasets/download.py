"""The dataset side of downloading: the lock file of recorded hashes, and safe extraction of archives.

* Fetching and checking a file is :func:`inloop.download.fetch_file` (pooch, resumable
  transfers; the package's one download module). Where a source publishes a
  checksum (sha256 or md5) and a size, the registry pins them and every file,
  downloaded or found on disk, is compared with them. Where it publishes none,
  the first download is *not verified*: the log says so and its sha256 is written
  to the lock file (``datasets.lock.json`` at the project root, kept under version
  control, see :class:`HashLock`); every later download must match it. Only a
  comparison with a published checksum is called "verified".
* :func:`safe_extract` unpacks tar and zip archives after checking every member:
  no absolute paths, no ``..``, no links that point outside the target, no
  device files. The archive is unpacked into a temporary folder that is renamed
  onto the target only when everything went well.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import posixpath
import secrets
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from ..errors import InloopError
from ..fsutil import write_json

LOCK_VERSION = 1


class DatasetError(InloopError):
    """A dataset is missing, incomplete or does not match its registry entry."""


class UnsafeArchiveError(DatasetError):
    """An archive member would land outside the target (path traversal, absolute path, link)."""


# --------------------------------------------------------------------------- lock file


def lock_path(params: dict | None = None) -> Path:
    """``datasets.lock`` (default ``datasets.lock.json``), relative to the project root (not the working directory)."""
    from ..params import project_root

    p = Path(((params or {}).get("datasets") or {}).get("lock") or "datasets.lock.json").expanduser()
    return p if p.is_absolute() else project_root() / p


class HashLock:
    """The lock file: sha256 and size of every download whose source publishes no checksum.

    Format (JSON, sorted, one entry per file)::

        {"version": 1,
         "files": {"div2k/DIV2K_valid_HR.zip": {"sha256": "...", "size": 123,
                    "url": "http://...", "recorded": "2024-01-01T00:00:00Z"}}}

    Commit the file after a first download so that every later download (on
    any machine) is verified against the same bytes.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.files: dict[str, dict] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text() or "{}")
            except json.JSONDecodeError as exc:
                raise DatasetError(f"lock file {self.path} is not valid JSON ({exc}); fix or delete it") from None
            self.files = dict(data.get("files", {}))

    def get(self, key: str) -> str | None:
        entry = self.files.get(key)
        return entry["sha256"] if entry else None

    def record(self, key: str, sha256: str, size: int, url: str, **extra) -> None:
        self.files[key] = {
            "sha256": sha256,
            "size": size,
            "url": url,
            **extra,
            "recorded": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        write_json(self.path, {"version": LOCK_VERSION, "files": dict(sorted(self.files.items()))})


# --------------------------------------------------------------------------- extraction


def _check_member_name(archive: Path, name: str) -> str:
    if not name or "\x00" in name:
        raise UnsafeArchiveError(f"{archive}: member with an empty or invalid name")
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refusing to extract")
    if ".." in PurePosixPath(norm).parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} points outside the target (..); refusing to extract")
    return norm


def _inside(path: str) -> bool:
    """True if a normalised relative POSIX path stays inside the extraction root."""
    p = posixpath.normpath(path)
    return not (p == ".." or p.startswith("../") or p.startswith("/"))


def check_archive(archive: str | os.PathLike) -> list[str]:
    """Validate every member of a tar or zip archive; return the member names.

    Raises :class:`UnsafeArchiveError` for absolute paths, ``..`` components,
    symbolic or hard links whose target leaves the archive root, and device
    or FIFO members. Zip members that are symbolic links are refused outright.
    """
    archive = Path(archive)
    names: list[str] = []
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                norm = _check_member_name(archive, info.filename)
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a symbolic link; refusing to extract")
                names.append(norm)
        return names
    try:
        tf = tarfile.open(archive)
    except tarfile.TarError as exc:
        raise DatasetError(f"{archive}: neither a zip nor a readable tar archive ({exc})") from None
    with tf:
        for m in tf.getmembers():
            norm = _check_member_name(archive, m.name)
            if m.issym():
                if m.linkname.startswith("/") or not _inside(posixpath.join(posixpath.dirname(norm), m.linkname)):
                    raise UnsafeArchiveError(
                        f"{archive}: symbolic link {m.name!r} -> {m.linkname!r} points outside the target; refusing to extract")
            elif m.islnk():
                if m.linkname.startswith("/") or not _inside(m.linkname):
                    raise UnsafeArchiveError(
                        f"{archive}: hard link {m.name!r} -> {m.linkname!r} points outside the target; refusing to extract")
            elif not (m.isfile() or m.isdir()):
                raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a device or FIFO; refusing to extract")
            names.append(norm)
    return names


# An archive of images or video expands by little (PNG, JPEG and y4m hardly compress further): one that declares
# more than this many times its own size is refused before anything is written (a 200 KB zip filled 200 MB).
MAX_EXPANSION = 100
MIN_LIMIT_BYTES = 64 * 2**20


def unpacked_size(archive: str | os.PathLike) -> int:
    """The bytes an archive's members declare (zip: each member's uncompressed size; tar: each file's size)."""
    archive = Path(archive)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            return sum(i.file_size for i in zf.infolist())
    with tarfile.open(archive) as tf:
        return sum(m.size for m in tf.getmembers() if m.isfile())


def safe_extract(archive: str | os.PathLike, target: str | os.PathLike, members: list[str] | None = None,
                 max_bytes: int | None = None) -> Path:
    """Extract ``archive`` (tar, tar.gz/bz2/xz, zip) into ``target`` after :func:`check_archive`.

    ``target`` appears only when extraction finished (temporary sibling folder,
    then rename); an existing ``target`` is returned as is. ``members`` limits
    extraction to those names. ``max_bytes``: the most the members may declare (default
    ``MAX_EXPANSION`` times the archive's size, at least 64 MiB); more is refused before extraction.
    """
    archive, target = Path(archive), Path(target)
    if target.is_dir():
        return target
    names = check_archive(archive)
    limit = max_bytes if max_bytes is not None else max(MAX_EXPANSION * archive.stat().st_size, MIN_LIMIT_BYTES)
    declared = unpacked_size(archive)
    if declared > limit:
        raise UnsafeArchiveError(f"{archive}: its members declare {declared} bytes, more than the {limit} allowed "
                                 f"({MAX_EXPANSION} times the archive); refusing to extract")
    if members is not None:
        missing = sorted(set(members) - set(names))
        if missing:
            raise DatasetError(f"{archive}: members not found: {', '.join(missing)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.partial-{secrets.token_hex(4)}")
    tmp.mkdir()
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp, members=members)
        else:
            with tarfile.open(archive) as tf:
                sel = None if members is None else [tf.getmember(m) for m in members]
                tf.extractall(tmp, members=sel, filter="data")
        os.replace(tmp, target)
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(f"{archive}: extraction failed ({exc}); nothing was left in {target}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
