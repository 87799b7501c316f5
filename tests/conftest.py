"""Shared pytest fixtures: the real codec outputs in tests/fixtures/codecs, a real clip, and a small
patch store with params for `inloop train` (train_workdir, train_cmd)."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


# Real HM-16.9 and ECM-1.0 outputs and the clip they coded (tests/fixtures/codecs/README.md says how they were
# made): in the repository, so no test depends on a folder beside it.
CODEC_FIXTURES = REPO / "tests" / "fixtures" / "codecs"
CITY = CODEC_FIXTURES / "city_128x96_5f.yuv"


@pytest.fixture(scope="session")
def codec_fixtures() -> Path:
    return CODEC_FIXTURES


@pytest.fixture()
def city_yuv(codec_fixtures: Path, tmp_path: Path) -> Path:
    """The 128x96, 5-frame crop of real camera footage (cityCC0), under the YUV naming convention."""
    dst = tmp_path / "city_128x96_30fps_8bit_420.yuv"
    shutil.copyfile(codec_fixtures / "city_128x96_5f.yuv", dst)
    return dst


@pytest.fixture()
def one_thread():
    """Tiny tensors: one intra-op thread is much faster than two on a busy 2-core box (seeded)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(n)


def adam_fit(model, x, target, steps: int, lr: float) -> tuple[float, float]:
    """``steps`` Adam steps on MSE(model(x), target); the MSE before and after."""
    import torch

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    with torch.no_grad():
        start = float((model(x) - target).square().mean())
    for _ in range(steps):
        loss = (model(x) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        end = float((model(x) - target).square().mean())
    return start, end


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    from inloop.codecs.ffmpeg import find_ffmpeg

    return find_ffmpeg()


@pytest.fixture(scope="session")
def two_sources(tmp_path_factory, codec_fixtures) -> tuple[list[str], list[str]]:
    """Two real sources (cityA, cityB: copies of the city clip) and their real x265 AI decodes
    with filters off at QP 37: ``(originals, decodeds)``, for patch stores and training."""
    from inloop.codecs import EncodeJob, get_codec
    from inloop.yuv import YuvFormat

    d = tmp_path_factory.mktemp("sources")
    originals, decodeds = [], []
    for name in ("cityA", "cityB"):
        src = d / f"{name}_128x96_30fps_8bit_420.yuv"
        shutil.copyfile(codec_fixtures / "city_128x96_5f.yuv", src)
        out = d / "enc" / name / "qp37.bin"
        get_codec("x265").encode(EncodeJob(src, YuvFormat(128, 96), 5, 37, "ai", "off"), out)
        originals.append(str(src))
        decodeds.append(str(out.with_name("qp37_128x96_30fps_8bit_420.yuv")))
    return originals, decodeds


INLOOP = str(Path(sys.executable).with_name("inloop"))


@pytest.fixture(scope="module")
def train_workdir(tmp_path_factory, two_sources):
    """A patch store from real x265 decodes of two real sources, and a small params file."""
    d = tmp_path_factory.mktemp("train")
    originals, decodeds = two_sources
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["train"].update(patch_size=32, patches_per_frame=8, steps=300, batch_size=4, checkpoint_every=20,
                           val_every=100, log_every=10, val_sources=["cityB"], checkpoint_dir=str(d / "ckpt"))
    params["models"]["glfusion"] = {"channels": 4, "hgf_depth": 2, "hlf_modules": 1}
    (d / "params.yaml").write_text(yaml.safe_dump(params))
    manifest = d / "manifest.json"
    manifest.write_text(json.dumps({"clips": ["cityA", "cityB"]}))
    subprocess.run([INLOOP, "patches", "--original", *originals, "--decoded", *decodeds, "--out", str(d / "store"),
                    "--params", str(d / "params.yaml")], check=True, capture_output=True)
    return d


def dry_run(tmp_path: Path, overlay: str, target: str = "models") -> subprocess.CompletedProcess:
    """A Snakemake dry run (``-n -p``) of ``target`` over config/tiny.yaml and the YAML text ``overlay``, in a
    fresh copy of the workflow under ``tmp_path``: the finished process."""
    import tempfile

    wf = Path(tempfile.mkdtemp(dir=tmp_path))
    for item in ("Snakefile", "params.yaml", "config", "workflow", "envs"):
        (shutil.copytree if (REPO / item).is_dir() else shutil.copy2)(REPO / item, wf / item)
    (wf / "overlay.yaml").write_text(overlay)
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "1", target, "--configfile",
                           "config/tiny.yaml", "overlay.yaml"], capture_output=True, text=True, cwd=wf)


def dry_run_trains(tmp_path: Path, overlay: str) -> tuple[subprocess.CompletedProcess, list[tuple[str, str]]]:
    """:func:`dry_run` of ``models``: the finished process and its ``inloop train`` commands as (QP, command)."""
    out = dry_run(tmp_path, overlay)
    trains = [line for line in out.stdout.splitlines() if "inloop train " in line]
    return out, [(line.split("--qp ")[1].split()[0], line) for line in trains]


def train_cmd(d, out):
    return [INLOOP, "train", "--model", "glfusion", "--store", str(d / "store"), "--out", str(out), "--codec", "x265",
            "--config", "ai", "--qp", "37", "--threads", "1", "--manifest", str(d / "manifest.json"),
            "--params", str(d / "params.yaml")]


# --------------------------------------------------------------------------- a real HTTP server on 127.0.0.1


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files``; honours Range; cuts the first ``server.cut`` responses midway. A path
    ending in ``/`` is served as HTML (a package index page for pip)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        srv = self.server
        data = srv.files.get(self.path)
        rng = self.headers.get("Range")
        srv.requests.append((self.path, rng))
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = 0
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        if self.path.endswith("/"):
            self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if srv.cut > 0:
            srv.cut -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture()
def server():
    """An HTTP server on 127.0.0.1 serving ``server.files`` (path -> bytes) at ``server.url``."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.requests, srv.cut = {}, [], 0
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


def tar_bytes(members: dict[str, bytes], compress: bool = True) -> bytes:
    """A tar archive (gzip-compressed unless ``compress`` is False) holding ``members`` (name -> bytes)."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if compress else "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def wheel_bytes(name: str, version: str, members: dict[str, bytes]) -> bytes:
    """A minimal wheel of ``name`` ``version`` holding ``members`` (with the dist-info pip reads)."""
    import io
    import zipfile

    dist = f"{name.replace('-', '_')}-{version}.dist-info"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)
        zf.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: inloop-tests\nRoot-Is-Purelib: true\n"
                                     "Tag: py3-none-any\n")
        zf.writestr(f"{dist}/RECORD", "")
    return buf.getvalue()


@pytest.fixture()
def pip_index(server, monkeypatch):
    """A package index (PEP 503 simple pages) on the 127.0.0.1 server, the only one pip uses in the test:
    ``pip_index(filename, data)`` publishes a file (its project is the file name up to the first ``-``)."""
    import hashlib
    import re

    for var in ("PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", server.url + "/simple/")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")

    def publish(filename: str, data: bytes) -> None:
        project = re.sub(r"[-_.]+", "-", filename.split("-")[0]).lower()
        server.files[f"/files/{filename}"] = data
        link = f'<a href="/files/{filename}#sha256={hashlib.sha256(data).hexdigest()}">{filename}</a>'
        server.files[f"/simple/{project}/"] = f"<html><body>{link}</body></html>".encode()

    return publish
