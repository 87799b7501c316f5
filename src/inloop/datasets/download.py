"""Download, verify and safely extract dataset files.

* Fetching and verification go through `pooch <https://www.fatiando.org/pooch>`_
  (``pooch.retrieve``): the file lands in a temporary name in the target folder,
  its sha256 is checked, and only then is it moved onto its final name. A
  failed or mismatched download therefore never leaves a file that looks
  complete.
* The transfer itself is :class:`ResumableDownloader`, a pooch downloader built
  on ``requests`` that keeps the bytes received so far in ``<name>.part`` and
  continues with an HTTP ``Range`` request after a broken connection (in the
  same call, up to ``retries`` times, or in a later run).
* Where a source publishes a checksum (sha256 or md5) and a size, the registry
  pins them and every file, downloaded or found on disk, is compared with them.
  Where it publishes none, the first download is *not verified*: the log says
  so and its sha256 is written to the lock file (``datasets.lock.json`` at the
  project root, kept under version control, see :class:`HashLock`); every later
  download must match it. Only a comparison with a published checksum is called
  "verified" (:class:`Fetched`).
* :func:`safe_extract` unpacks tar and zip archives after checking every member:
  no absolute paths, no ``..``, no links that point outside the target, no
  device files. The archive is unpacked into a temporary folder that is renamed
  onto the target only when everything went well.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import posixpath
import secrets
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from ..errors import InloopError
from ..fsutil import sha256_file, write_json

LOCK_VERSION = 1


class DatasetError(InloopError):
    """A dataset is missing, incomplete or does not match its registry entry."""


class DownloadError(DatasetError, RuntimeError):
    """A transfer failed (network, HTTP status, broken connection)."""


class ChecksumError(DownloadError):
    """A downloaded file's sha256 differs from the registry or the lock file."""


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


# --------------------------------------------------------------------------- transfer


class ResumableDownloader:
    """A pooch downloader that resumes broken transfers with HTTP Range requests.

    Bytes received so far live in ``partial`` (``<name>.part``: a name that never
    looks like the finished file). On success the partial file is moved onto
    the temporary file pooch hands in, and pooch verifies the hash.
    """

    def __init__(self, partial: str | os.PathLike, retries: int = 3, timeout: float = 60.0,
                 progressbar: bool = True, chunk_size: int = 1 << 16, desc: str | None = None):
        self.partial = Path(partial)
        self.retries = retries
        self.timeout = timeout
        self.progressbar = progressbar
        self.chunk_size = chunk_size
        self.desc = desc or self.partial.name.removesuffix(".part")

    def __call__(self, url: str, output_file, pooch=None, check_only: bool = False):
        import requests

        if check_only:  # pooch asks whether the URL exists
            with requests.head(url, timeout=self.timeout, allow_redirects=True) as r:
                return r.status_code == 200
        last: Exception | None = None
        for _attempt in range(self.retries + 1):
            try:
                self._transfer(url)
                break
            except DownloadError:
                raise
            except (requests.RequestException, OSError, _Incomplete) as exc:
                last = exc
        else:
            raise DownloadError(
                f"{url}: transfer broke {self.retries + 1} times ({last}); the {self._have()} bytes received "
                f"are kept in {self.partial} and the next run resumes from there"
            )
        os.replace(self.partial, output_file)

    def _have(self) -> int:
        return self.partial.stat().st_size if self.partial.exists() else 0

    def _transfer(self, url: str) -> None:
        import requests
        from tqdm.auto import tqdm

        have = self._have()
        headers = {"Range": f"bytes={have}-"} if have else {}
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout) as r:
            if have and r.status_code == 416:
                # Our partial is not a prefix the server can continue: start over.
                self.partial.unlink()
                raise _Incomplete("server refused the range; restarting from zero")
            if r.status_code >= 400:
                raise DownloadError(f"{url}: HTTP {r.status_code} {r.reason}")
            if have and r.status_code == 206 and r.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
                mode = "ab"
            else:  # 200: the server sends everything again
                mode, have = "wb", 0
            length = r.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            self.partial.parent.mkdir(parents=True, exist_ok=True)
            with open(self.partial, mode) as fh, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                desc=self.desc, disable=not self.progressbar, leave=False,
            ) as bar:
                for block in r.iter_content(chunk_size=self.chunk_size):
                    fh.write(block)
                    bar.update(len(block))
        if total is not None and self._have() != total:
            raise _Incomplete(f"got {self._have()} of {total} bytes")


class _Incomplete(Exception):
    pass


class Fetched(NamedTuple):
    """What :func:`fetch_file` did: the file, whether it was downloaded now, and what it was checked against."""

    path: Path
    downloaded: bool
    check: str          # a sentence for the log
    verified: bool      # True only when a checksum published by the source was compared


def _digest(path: Path, algo: str) -> str:
    if algo == "sha256":
        return sha256_file(path)
    import hashlib

    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def fetch_file(url: str, dest: str | os.PathLike, sha256: str | None = None, *, md5: str | None = None,
               size: int | None = None, lock: HashLock | None = None, key: str | None = None, retries: int = 3,
               timeout: float = 60.0, progressbar: bool = True) -> Fetched:
    """Make ``dest`` a checked copy of ``url``.

    The expected checksum is ``sha256`` or ``md5`` (published by the source: the
    file is *verified*), else the lock file's sha256 under ``key`` (recorded on an
    earlier first download), else none: the file is downloaded, its sha256
    recorded in the lock and the result says plainly that it was not verified.
    ``size`` (published) is checked too. A file already at ``dest`` that passes is
    not downloaded again; one of the wrong size or checksum is replaced.
    """
    import pooch
    import requests

    logging.getLogger("pooch").setLevel(logging.WARNING)
    dest = Path(dest)
    key = key or dest.name
    locked = lock.get(key) if lock else None
    if sha256 or md5:
        algo, known, source = ("sha256", sha256, "the published sha256") if sha256 else ("md5", md5, "the published md5")
    elif locked:
        algo, known, source = "sha256", locked, f"the sha256 recorded in {lock.path} (not a published checksum)"
    else:
        algo = known = source = None
    pinned = bool(sha256 or md5)

    def unverified(path: Path, how: str) -> Fetched:
        digest = sha256_file(path)
        where = "not recorded (no lock file)"
        if lock is not None:
            lock.record(key, digest, path.stat().st_size, url, verified=False,
                        note=f"{how}; the source publishes no checksum")
            where = f"recorded in {lock.path}"
        return Fetched(path, how == "downloaded", f"NOT verified: the source publishes no checksum; its sha256 "
                       f"{digest} is {where}, and later copies must match it", False)

    if dest.is_file():
        have = dest.stat().st_size
        if size is not None and have != size:
            logging.getLogger(__name__).warning("%s has %d bytes, the source publishes %d: fetching it again",
                                                dest, have, size)
        elif known is None:
            return unverified(dest, "found on disk")
        elif _digest(dest, algo) == known:
            return Fetched(dest, False, f"{'verified: ' if pinned else ''}matches {source}", pinned)
    downloader = ResumableDownloader(dest.with_name(dest.name + ".part"), retries=retries, timeout=timeout,
                                     progressbar=progressbar, desc=dest.name)
    try:
        pooch.retrieve(url, known_hash=f"{algo}:{known}" if known else None, fname=dest.name,
                       path=dest.parent, downloader=downloader)
    except ValueError as exc:  # pooch: hash mismatch (the temporary file is already deleted)
        with contextlib.suppress(FileNotFoundError):
            dest.unlink()
        raise ChecksumError(
            f"{url}: {algo} does not match {source} ({known}); the download was deleted. "
            + (f"If the source really changed, delete the entry {key!r} from the lock file and fetch again. "
               if not pinned else "") + f"({exc})"
        ) from None
    except requests.RequestException as exc:
        raise DownloadError(f"{url}: {exc}") from None
    if size is not None and dest.stat().st_size != size:
        got = dest.stat().st_size
        dest.unlink()
        raise ChecksumError(f"{url}: {got} bytes, the source publishes {size}; the download was deleted")
    if known is None:
        return unverified(dest, "downloaded")
    return Fetched(dest, True, f"{'verified: ' if pinned else ''}matches {source}", pinned)


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


def safe_extract(archive: str | os.PathLike, target: str | os.PathLike, members: list[str] | None = None) -> Path:
    """Extract ``archive`` (tar, tar.gz/bz2/xz, zip) into ``target`` after :func:`check_archive`.

    ``target`` appears only when extraction finished (temporary sibling folder,
    then rename); an existing ``target`` is returned as is. ``members`` limits
    extraction to those names.
    """
    archive, target = Path(archive), Path(target)
    if target.is_dir():
        return target
    names = check_archive(archive)
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
