"""Reliability, round two (issue #27): each probe of the issue reproduced, and what it gets now
(docs/reliability.md lists each fault with the test here that tries it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from inloop.models.io import ModelFileError, torch_load

REPO = Path(__file__).resolve().parents[1]


class _Payload:
    """A pickle that runs a shell command when loaded (the issue's probe: ``__reduce__`` -> os.system)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def _evil_model(path: Path, marker: Path) -> Path:
    torch.save({"name": "glfusion", "kwargs": {}, "state_dict": {}, "x": _Payload(marker)}, path)
    assert not marker.exists()
    return path


def test_a_pickle_payload_in_a_model_file_runs_nothing(tmp_path):
    """Item 1: torch.load(weights_only=False) ran the payload; now the restricted unpickler refuses the file
    with one line naming it, and the file the payload would create is absent."""
    marker = tmp_path / "PWNED"
    evil = _evil_model(tmp_path / "model.pt", marker)
    with pytest.raises(ModelFileError, match=r"model\.pt: refused: .*posix\.system.*nothing from it was run"):
        torch_load(evil, "model file")
    assert not marker.exists()


def test_a_pickle_payload_through_the_cli_runs_nothing(tmp_path):
    """The same file handed to a sub-command a user runs on a model from a colleague (``inloop export``):
    exit 2, one line, nothing run."""
    marker = tmp_path / "PWNED"
    evil = _evil_model(tmp_path / "model.pt", marker)
    proc = subprocess.run([sys.executable, "-m", "inloop.cli", "export", str(evil), "--out", str(tmp_path / "x")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert f"{evil}: refused" in proc.stderr
    assert not marker.exists()


def test_a_checkpoint_with_a_payload_is_refused_too(tmp_path):
    marker = tmp_path / "PWNED"
    ck = tmp_path / "qp37.ckpt"
    torch.save({"step": 3, "sampler": _Payload(marker)}, ck)
    with pytest.raises(ModelFileError, match="checkpoint holds code"):
        torch_load(ck, "checkpoint")
    assert not marker.exists()


@pytest.mark.parametrize("key,value,message", [
    ("train.models", ["../evil"], r"train.models.0: '../evil': a model name is lower-case letters"),
    ("train.models", ["a/b"], r"train.models.0: 'a/b': a model name"),
    ("datasets.out", "../../../elsewhere", r"datasets.out: '../../../elsewhere': must stay inside the project"),
    ("datasets.out", "/tmp/elsewhere", r"datasets.out: '/tmp/elsewhere': must stay inside the project"),
    ("datasets.cache", "results/../../x", r"datasets.cache: .*must stay inside the project"),
])
def test_names_and_paths_that_leave_the_project_are_refused(key, value, message, tmp_path):
    """Item 6: `train.models: ["../evil"]` passed the check and was then ignored ("Nothing to be done", rc 0);
    `datasets.out: ../../../elsewhere` would have written data outside the project. Both are refused, by the
    params check and by Snakemake before any job, naming the key."""
    import shutil

    import yaml

    from inloop.errors import ParamsError
    from inloop.params import check_params, load_params, normalize

    params = load_params(REPO / "params.yaml")
    section, name = key.split(".")
    params[section][name] = value
    with pytest.raises(ParamsError, match=message):
        check_params(normalize(params), "params.yaml")
    for item in ("Snakefile", "params.yaml", "config", "workflow"):
        src = REPO / item
        shutil.copytree(src, tmp_path / item) if src.is_dir() else shutil.copy2(src, tmp_path / item)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({section: {name: value}}))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "all", "--configfile", "bad.yaml", "--cores", "1"],
                          cwd=tmp_path, capture_output=True, text=True)
    said = proc.stdout + proc.stderr
    assert proc.returncode != 0 and ("must stay inside" in said or "a model name" in said), said[-2000:]


def test_a_model_block_named_with_a_slash_is_refused():
    from inloop.errors import ParamsError
    from inloop.params import check_params, load_params, normalize

    params = load_params(REPO / "params.yaml")
    params["models"]["x/../y"] = {"arch": "dncnn"}
    with pytest.raises(ParamsError, match=r"models: 'x/\.\./y': a model name"):
        check_params(normalize(params), "params.yaml")


def test_json_out_is_strict_and_a_nan_is_named_not_averaged_away(tmp_path):
    """Item 5: evaluation JSONs held bare `NaN` (`"pvd": NaN`: not JSON, JSON.parse fails), and a NaN delta at
    one QP made ΔPSNR-Y's mean quietly one over the other three QPs. Now JSON has null, and the mean over QPs is
    missing with a note naming the QP."""
    import json
    import math

    import pandas as pd

    from inloop.fsutil import write_json
    from inloop.reporting.aggregate import bd_per_sequence

    write_json(tmp_path / "x.json", {"pvd": float("nan"), "a": [1.0, float("inf")], "b": {"c": float("-inf")}})
    text = (tmp_path / "x.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c}")) == {"pvd": None, "a": [1.0, None],
                                                                                   "b": {"c": None}}
    rows = []
    for qp, rate, delta in ((22, 4000, 0.20), (27, 2000, 0.25), (32, 1000, float("nan")), (37, 500, 0.30)):
        psnr = 30 + 2 * math.log2(rate / 500)
        rows.append({"model": "m", "codec": "x265", "config": "ai", "dataset": "d", "sequence": "s", "seq_class": "",
                     "seed": 0, "qp": qp, "anchor_kbps": rate, "anchor_psnr_y": psnr + 0.1, "anchor_psnr_yuv": psnr,
                     "decoded_kbps": rate, "decoded_psnr_y": psnr, "decoded_psnr_yuv": psnr,
                     "enhanced_kbps": rate, "enhanced_psnr_y": psnr + (0 if math.isnan(delta) else delta),
                     "enhanced_psnr_yuv": psnr, "delta_psnr_y": delta})
    bd = bd_per_sequence(pd.DataFrame(rows), metrics=("y",))
    row = bd[bd["comparison"] == "model_vs_off"].iloc[0]
    assert math.isnan(row["delta_psnr_y_mean"]) and "ΔPSNR-Y missing at QP 32" in row["note"]


def test_an_mlflow_server_that_does_not_answer_is_one_line_in_seconds(monkeypatch):
    """Item 9: `MLFLOW_TRACKING_URI=http://127.0.0.1:9 inloop train` printed nothing for 200 s (MLflow's
    default retries). The server's /health is asked first with a time limit; MLflow's retries are bounded."""
    import socket
    import time

    from inloop.errors import InloopError
    from inloop.training import tracking

    for k in tracking.HTTP_LIMITS:
        monkeypatch.delenv(k, raising=False)
    t0 = time.perf_counter()
    with pytest.raises(InloopError, match=r"MLflow server http://127.0.0.1:9 does not answer"):
        tracking.Tracker("e", "r", uri="http://127.0.0.1:9")
    assert time.perf_counter() - t0 < 10
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        t0 = time.perf_counter()
        with pytest.raises(InloopError, match=r"does not answer \(ReadTimeout within 1 s\)"):
            tracking.check_server(uri, timeout=1)
        assert time.perf_counter() - t0 < 5
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "9")  # the user's own setting is kept
    with pytest.raises(InloopError):
        tracking.check_server("http://127.0.0.1:9", timeout=1)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "9"


def _bomb() -> str:
    """report.deviations.glfusion holding the classic chain: 9 levels of 9 aliases each (9**9 strings expanded)."""
    levels = ["&l0 [" + ", ".join(['"lol"'] * 9) + "]"]
    levels += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "report:\n  deviations:\n    glfusion: [" + ", ".join(levels) + "]\n"


BOMB = _bomb()


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path):
    """Item 9: an alias bomb under report.deviations ran for over a minute with no output and ended in a
    MemoryError inside jsonschema. The params tree is counted first, in time bounded by the limit."""
    import shutil
    import time

    import yaml

    from inloop.errors import ParamsError
    from inloop.params import load_params

    (tmp_path / "bomb.yaml").write_text(BOMB)
    bomb_params = tmp_path / "params.yaml"
    bomb_params.write_text((REPO / "params.yaml").read_text() + "\n" + BOMB)
    t0 = time.perf_counter()
    with pytest.raises(ParamsError, match=r"expands to more than 200000 values \(YAML anchors and aliases"):
        load_params(bomb_params)
    assert time.perf_counter() - t0 < 10
    (tmp_path / "wf").mkdir()
    for item in ("Snakefile", "params.yaml", "config", "workflow"):
        src = REPO / item
        shutil.copytree(src, tmp_path / "wf" / item) if src.is_dir() else shutil.copy2(src, tmp_path / "wf" / item)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "all", "--configfile", str(tmp_path / "bomb.yaml"),
                           "--cores", "1"], cwd=tmp_path / "wf", capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "expands to more than" in proc.stdout + proc.stderr
    assert time.perf_counter() - t0 < 60


@pytest.mark.parametrize("header,message", [
    (b"YUV4MPEG2 W16 H16 F30:1 C420jpeg X\xff\xfe\n", r"bad y4m header .* \(not ASCII\)"),
    (b"YUV4MPEG2 W16 H16 F30:1 It C420jpeg\n", r"interlaced y4m \(It\); deinterlace it first"),
])
def test_a_y4m_header_that_cannot_be_read_as_progressive_ascii_is_one_line(tmp_path, header, message):
    """Item 10 (a non-ASCII byte: UnicodeDecodeError traceback) and item 11 (interlaced read as progressive)."""
    from inloop.yuv import Y4mReader, YuvError

    f = tmp_path / "clip.y4m"
    f.write_bytes(header + (b"FRAME\n" + b"\x80" * 384) * 2)
    with pytest.raises(YuvError, match=message):
        Y4mReader(f)
    proc = subprocess.run([sys.executable, "-c", f"from inloop.yuv import Y4mReader; Y4mReader({str(f)!r})"],
                          capture_output=True, text=True)
    assert "UnicodeDecodeError" not in proc.stderr


def test_qps_outside_the_codecs_range_and_zero_frames_are_refused_up_front(tmp_path):
    """Item 11: QP 52 or -1 with x265 passed the up-front check (the encode refused it later); `--frames 0`
    meant all frames while -3 was refused."""
    from inloop.cli import main
    from inloop.errors import ParamsError
    from inloop.params import check_models, load_params

    params = load_params(REPO / "params.yaml")
    for qps, bad in (([22, 52], 52), ([-1, 37], -1)):
        params["encode"]["qps"] = qps
        with pytest.raises(ParamsError, match=rf"encode.qps: QP {bad} is outside x265's range 0..51"):
            check_models(params)
    params["encode"]["qps"] = [22, 37]
    params["models"]["spilf-arabica"]["qps"] = [37, 57]
    with pytest.raises(ParamsError, match=r"models.spilf-arabica.qps: QP 57 is outside x265's range"):
        check_models(params)
    params["encode"]["codec"] = "ecm"  # ECM codes QP 57 (SPiLF's top QP)
    check_models(params)
    src = tmp_path / "c_16x16_30fps_8bit_420.yuv"
    src.write_bytes(b"\x80" * 384 * 2)
    for frames in ("0", "-3"):
        assert main(["encode", "--codec", "x265", "--in", str(src), "--out", str(tmp_path / "x.bin"), "--qp", "37",
                     "--config", "ai", "--filters", "off", "--frames", frames]) == 2
    assert not (tmp_path / "x.bin").exists()


@pytest.mark.parametrize("channels,message", [
    (100_000_000, r"models.glfusion: glfusion cannot be built with \{'channels': 100000000\}"),
    (20_000, r"models.glfusion: glfusion with \{'channels': 20000\} has .* parameters, more than 1e\+09"),
])
def test_a_network_too_large_to_build_is_refused_before_any_job(channels, message):
    """Item 10: `models.glfusion.channels: 1e8` went to the train job, which tried to allocate 3.6e17 bytes.
    Every network is built on the meta device (no memory) when the workflow starts, and its size checked."""
    import time

    from inloop.errors import ParamsError
    from inloop.params import check_models, load_params

    params = load_params(REPO / "params.yaml")
    params["models"]["glfusion"]["channels"] = channels
    t0 = time.perf_counter()
    with pytest.raises(ParamsError, match=message):
        check_models(params, "params.yaml")
    assert time.perf_counter() - t0 < 30


def test_a_full_disk_leaves_the_previous_report_whole(tmp_path):
    """Item 8: a disk-full report was half old, half new (new tables beside the previous index.html and
    metrics.json), and the one-line error named no file. The report is written into a new folder swapped in
    whole; a failure keeps the previous one and names the folder."""
    from inloop.reporting.aggregate import ReportError
    from inloop.reporting.report import build_report

    evals = tmp_path / "eval"
    evals.mkdir()
    full = tmp_path / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(full)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root and mount rights) to fill a disk")
    try:
        out = full / "report"
        res = build_report(evals, None, out, {"report": {"benchmarks": []}})
        assert res["index"] == out / "index.html"
        before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        assert Path("index.html") in before
        free = os.statvfs(full)
        (full / "filler").write_bytes(b"\0" * (free.f_bavail * free.f_frsize - 4096))
        with pytest.raises(ReportError, match=rf"{out}: could not write the report .*the previous report is kept"):
            build_report(evals, None, out, {"report": {"benchmarks": []}})
        after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        assert after == before
        assert sorted(p.name for p in full.iterdir()) == ["filler", "report"]  # no partial folder left
    finally:
        subprocess.run(["umount", str(full)], check=True)


def test_an_evaluation_out_of_memory_is_one_line(tmp_path):
    """Item 10: an evaluation under a memory limit ended in a MemoryError / "could not create a primitive"
    traceback. Under a 1.5 GB address-space limit a 64-channel GL-Fusion on a 1920x1088 frame cannot run: one
    line, exit 2, naming the params to change."""
    script = (
        "import resource, sys, torch\n"
        "from inloop.cli import main\n"
        "from inloop.models import build_model\n"
        "torch.save({'name': 'glfusion', 'instance': 'glfusion', 'kwargs': {'channels': 64},\n"
        "            'state_dict': build_model('glfusion', channels=64).state_dict(), 'bitdepth': 8, 'planes': ['y']},\n"
        f"           {str(tmp_path / 'm.pt')!r})\n"
        "resource.setrlimit(resource.RLIMIT_AS, (int(2.5 * 2**30),) * 2)\n"
        "x = torch.rand(1, 1, 1088, 1920)\n"
        "from inloop.cli import main as _m\n"
        "import inloop.cli as c\n"
        "def boom(args):\n"
        "    m = build_model('glfusion', channels=64).eval()\n"
        "    with torch.no_grad():\n"
        "        m(x)\n"
        "    return 0\n"
        "c.cmd_export = boom\n"
        f"sys.exit(main(['export', {str(tmp_path / 'm.pt')!r}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "out of memory" in proc.stderr and "evaluate.mem_mb" in proc.stderr


def test_lpips_on_a_clip_too_small_for_alexnet_is_named_not_a_traceback(tmp_path):
    """#27 item 10: LPIPS on a 4098x16 clip ended in a RuntimeError inside AlexNet (its second pooling had nothing
    left). Below LPIPS_MIN_SIDE on either side the metric is recorded as unavailable with the reason; the other
    metrics are computed."""
    import numpy as np

    from inloop.evaluation.metrics import LPIPS_MIN_SIDE, evaluate_sequence
    from inloop.models.lpips import LPIPS
    from inloop.yuv import YuvFormat

    torch.manual_seed(0)
    metric = LPIPS().eval()
    rng = np.random.default_rng(0)
    for w, h, available in ((4098, 16, False), (64, LPIPS_MIN_SIDE + 1, True)):
        fmt = YuvFormat(w, h)
        a, b = tmp_path / f"a_{w}x{h}.yuv", tmp_path / f"b_{w}x{h}.yuv"
        data = rng.integers(0, 256, 2 * fmt.frame_bytes, dtype=np.uint8)
        a.write_bytes(data.tobytes())
        b.write_bytes(np.clip(data.astype(int) + 5, 0, 255).astype(np.uint8).tobytes())
        with pytest.warns(RuntimeWarning) if not available else _nothing():
            ev = evaluate_sequence(a, b, fmt, lpips=metric)
        assert ev["mean"]["psnr_y"] > 0
        if available:
            assert 0 < ev["mean"]["lpips"] < 1
        else:
            assert ev["mean"]["lpips"] is None and "4098x16 is too small for LPIPS-Alex" in ev["notes"]["lpips"]


def _nothing():
    import contextlib

    return contextlib.nullcontext()
