"""The dataset side of downloads against a real HTTP server on 127.0.0.1: a verified download
extracted, lock-file recording, and malicious archives (transfers and resuming: test_download.py)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import tar_bytes

from inloop.datasets.download import HashLock, UnsafeArchiveError, safe_extract
from inloop.download import ChecksumError, fetch_file


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _payload(n: int = 300_000) -> bytes:
    return bytes((i * 7919) % 251 for i in range(n))


def test_download_success_verified_and_cached(server, tmp_path):
    data = tar_bytes({"set/a.txt": b"hello", "set/b.bin": _payload()})
    server.files["/set.tar.gz"] = data
    dest = tmp_path / "dl" / "set.tar.gz"
    path, new, *_ = fetch_file(server.url + "/set.tar.gz", dest, _sha(data), progressbar=False)
    assert new and path.read_bytes() == data
    assert not list(dest.parent.glob("*.part")) and not list(dest.parent.glob("tmp*"))
    # Second call: verified from disk, no request.
    n = len(server.requests)
    _, new, *_ = fetch_file(server.url + "/set.tar.gz", dest, _sha(data), progressbar=False)
    assert not new and len(server.requests) == n
    out = safe_extract(path, tmp_path / "x")
    assert (out / "set" / "a.txt").read_bytes() == b"hello"


def test_lock_records_first_download_then_verifies(server, tmp_path):
    data = _payload(10_000)
    server.files["/img.zip"] = data
    lock_path = tmp_path / "datasets.lock.json"
    dest = tmp_path / "c" / "img.zip"
    fetch_file(server.url + "/img.zip", dest, None, lock=HashLock(lock_path), key="x/img.zip", progressbar=False)
    entry = json.loads(lock_path.read_text())["files"]["x/img.zip"]
    assert entry["sha256"] == _sha(data) and entry["size"] == len(data)
    # The source changes: a fresh download (cache deleted) is refused against the lock.
    dest.unlink()
    server.files["/img.zip"] = data[:-1] + b"X"
    with pytest.raises(ChecksumError, match="lock file"):
        fetch_file(server.url + "/img.zip", dest, None, lock=HashLock(lock_path), key="x/img.zip", progressbar=False)
    assert not dest.exists()
    # A local file tampered with is replaced by a verified download.
    server.files["/img.zip"] = data
    dest.write_bytes(b"tampered")
    _, new, *_ = fetch_file(server.url + "/img.zip", dest, None, lock=HashLock(lock_path), key="x/img.zip",
                        progressbar=False)
    assert new and dest.read_bytes() == data


def _evil_tar(kind: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ok = tarfile.TarInfo("good.txt")
        ok.size = 2
        tf.addfile(ok, io.BytesIO(b"ok"))
        if kind == "dotdot":
            info = tarfile.TarInfo("../escaped.txt")
            info.size = 4
            tf.addfile(info, io.BytesIO(b"evil"))
        elif kind == "absolute":
            info = tarfile.TarInfo("/tmp/inloop-absolute-escape.txt")
            info.size = 4
            tf.addfile(info, io.BytesIO(b"evil"))
        elif kind == "symlink":
            info = tarfile.TarInfo("link")
            info.type = tarfile.SYMTYPE
            info.linkname = "../../outside"
            tf.addfile(info)
        elif kind == "hardlink":
            info = tarfile.TarInfo("hl")
            info.type = tarfile.LNKTYPE
            info.linkname = "/etc/passwd"
            tf.addfile(info)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink"])
def test_malicious_tar_refused(server, tmp_path, kind):
    data = _evil_tar(kind)
    server.files["/evil.tar"] = data
    path, *_ = fetch_file(server.url + "/evil.tar", tmp_path / "dl" / "evil.tar", _sha(data), progressbar=False)
    target = tmp_path / "out" / "t"
    with pytest.raises(UnsafeArchiveError, match="refusing"):
        safe_extract(path, target)
    assert not target.exists() and not (tmp_path / "out" / "escaped.txt").exists()
    assert not Path("/tmp/inloop-absolute-escape.txt").exists()
    out = tmp_path / "out"
    assert not out.exists() or list(out.iterdir()) == []  # no partial folder either


@pytest.mark.parametrize("name", ["../escaped.txt", "/abs/escaped.txt", "a/../../escaped.txt", "symlink"])
def test_malicious_zip_refused(server, tmp_path, name):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("good.txt", b"ok")
        if name == "symlink":
            info = zipfile.ZipInfo("link")
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, "../../outside")
        else:
            zf.writestr(name, b"evil")
    data = buf.getvalue()
    server.files["/evil.zip"] = data
    path, *_ = fetch_file(server.url + "/evil.zip", tmp_path / "dl" / "evil.zip", _sha(data), progressbar=False)
    with pytest.raises(UnsafeArchiveError):
        safe_extract(path, tmp_path / "out" / "t")
    assert not (tmp_path / "out" / "t").exists() and not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "out" / "escaped.txt").exists()


def test_internal_symlink_allowed(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("d/file.txt")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"ok"))
        link = tarfile.TarInfo("d/alias.txt")
        link.type = tarfile.SYMTYPE
        link.linkname = "file.txt"
        tf.addfile(link)
    arc = tmp_path / "a.tar"
    arc.write_bytes(buf.getvalue())
    out = safe_extract(arc, tmp_path / "x")
    assert (out / "d" / "alias.txt").read_bytes() == b"ok"


def test_an_archive_that_expands_past_its_limit_is_refused(tmp_path):
    """#27 item 11: a 200 KB zip filled 200 MB. Members that declare more than 100 times the archive (at least
    64 MiB) are refused before anything is written; a limit can be given."""
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", b"\0" * (80 * 2**20))
    assert bomb.stat().st_size < 200_000
    with pytest.raises(UnsafeArchiveError, match=r"bomb.zip: its members declare 83886080 bytes, more than the "
                                                 r"67108864 allowed"):
        safe_extract(bomb, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))
    small = tmp_path / "small.tar"
    small.write_bytes(tar_bytes({"a/b.txt": b"x" * 5000}, compress=False))
    with pytest.raises(UnsafeArchiveError, match="more than the 1000 allowed"):
        safe_extract(small, tmp_path / "small", max_bytes=1000)
    assert (safe_extract(small, tmp_path / "small") / "a" / "b.txt").read_bytes() == b"x" * 5000
