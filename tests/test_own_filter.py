"""Your own filter and your own footage (issue #31): networks from outside the package, named in params by entry
point, ``package.module:Class`` or ``file.py:Class``; the contract check before any job; the source hash in
training's identity; model files that name code; folders of the user's sequences as datasets; and the worked
example (examples/own-filter) installed into a temporary environment and run through the tiny chain."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from inloop.errors import ParamsError
from inloop.params import check_models, merge_configs, model_spec, train_identity

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "own-filter"
CITY_SIZE = (128, 96, 30)  # tests/conftest.py's city_yuv: real footage, 5 frames

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

GOOD = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self, channels: int = 4):
        super().__init__()
        self.a = nn.Conv2d(1, channels, 3, padding=1)
        self.b = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, x):
        return x + self.b(torch.relu(self.a(x)))
"""

# Each breach of the contract, and the words its one line must hold.
BREACHES = {
    "changes the frame size": ("return self.c(x)[..., :-1, :]", "gave a (1, 1, 31, 32) output"),
    "returns another dtype": ("return self.c(x).double()", "returned torch.float64 for a torch.float32 input"),
    "returns NaN": ("return self.c(x) * float('nan')", "returned NaN or inf"),
    "returns a tuple": ("return self.c(x), x", "returned a tuple, not a tensor"),
    "has a detached output": ("return self.c(x).detach()", "no gradient reaches its parameters"),
    "cannot run on the tile": ("return self.c(x.unflatten(-1, (-1, 16)).mean(-1).repeat_interleave(16, -1))",
                               "forward on a (1, 1, 72, 72) input failed"),
}


def _net_file(d: Path, body: str, name: str = "mynet.py") -> Path:
    f = d / name
    f.write_text(textwrap.dedent(body))
    return f


def _params(arch: str, **over) -> dict:
    p = merge_configs([REPO / "config" / "tiny.yaml"], REPO / "params.yaml")
    p["train"]["models"] = ["mine"]
    p["models"]["mine"] = {"arch": arch, **over}
    return p


@pytest.mark.parametrize("case", sorted(BREACHES))
def test_each_contract_breach_is_one_line_naming_the_class(tmp_path, case):
    forward, words = BREACHES[case]
    f = _net_file(tmp_path, f"""
        from torch import nn

        class Bad(nn.Module):
            def __init__(self):
                super().__init__()
                self.c = nn.Conv2d(1, 1, 3, padding=1)

            def forward(self, x):
                {forward}
        """)
    p = _params(f"{f}:Bad")
    if case == "cannot run on the tile":
        p["evaluate"]["tile"] = 72  # a multiple of 8, not of 16: this network reshapes into 16-pixel blocks
    with pytest.raises(ParamsError) as e:
        check_models(p, "my.yaml")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"my.yaml: models.mine ({f}:Bad): "), msg
    assert words in msg, msg


def test_a_class_that_is_not_a_module_no_weights_or_another_window_is_refused(tmp_path):
    f = _net_file(tmp_path, """
        import torch
        from torch import nn

        class Plain:
            def __init__(self):
                pass

        class Identity(nn.Module):
            def forward(self, x):
                return x

        class Clip(nn.Module):
            frames = 3

            def __init__(self):
                super().__init__()
                self.c = nn.Conv2d(1, 1, 3, padding=1)

            def forward(self, x):
                return self.c(x[:, 1])
        """)
    for cls, words in (("Plain", "is type 'Plain', not an nn.Module subclass"),
                       ("Identity", "Identity has no trainable parameters"),
                       ("Clip", "takes 3 frame(s) (its `frames` attribute) but its settings say 1")):
        with pytest.raises(ParamsError, match=re.escape(words)):
            check_models(_params(f"{f}:{cls}"), "my.yaml")


def test_a_clip_network_keeps_nlconvlstms_contract(tmp_path):
    """(N, T, C, H, W) in, the centre frame (N, C, H, W) out; returning the whole clip is refused."""
    f = _net_file(tmp_path, """
        from torch import nn

        class Clip(nn.Module):
            def __init__(self, frames: int = 3, whole: bool = False):
                super().__init__()
                self.frames, self.whole = frames, whole
                self.c = nn.Conv3d(1, 1, 3, padding=1)

            def forward(self, x):
                y = self.c(x.transpose(1, 2)).transpose(1, 2)
                return y if self.whole else x[:, self.frames // 2] + y[:, self.frames // 2]
        """)
    p = _params(f"{f}:Clip", frames=3)
    check_models(p, "my.yaml")
    assert model_spec(p, "mine")["frames"] == 3
    p["models"]["mine"]["whole"] = True
    with pytest.raises(ParamsError, match=re.escape("gave a (1, 3, 1, 32, 32) output; it must return the filtered "
                                                    "target frame, (1, 1, 32, 32)")):
        check_models(p, "my.yaml")


def test_unknown_names_bad_references_and_settings_name_the_key(tmp_path):
    f = _net_file(tmp_path, GOOD)
    cases = {"nope": "models.mine.arch: unknown network 'nope'; known: arcnn, ",
             "os:system": "models.mine.arch: 'os:system' is builtin_function_or_method 'system', not an nn.Module",
             "no_such_module_x:Net": "importing no_such_module_x failed (ModuleNotFoundError",
             f"{f}:Nope": f"{f} has no 'Nope'",
             "missing/file.py:Net": "file missing/file.py not found"}
    for arch, words in cases.items():
        with pytest.raises(ParamsError, match=re.escape(words)):
            check_models(_params(arch), "my.yaml")
    with pytest.raises(ParamsError, match=r"models\.mine\.chanels: not a parameter of .*; accepted: channels"):
        check_models(_params(f"{f}:Net", chanels=8), "my.yaml")
    check_models(_params(f"{f}:Net", channels=8), "my.yaml")


def test_a_module_reference_and_its_source_hash(tmp_path, monkeypatch):
    """``package.module:Class`` from sys.path; the whole package's source is hashed, so an edit of a helper module
    changes the identity; this package's networks carry no source hash (their code is the stage's code hash)."""
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "helpers.py").write_text("WIDTH = 4\n")
    _net_file(pkg, GOOD, "net.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    p = _params("mypkg.net:Net")
    check_models(p, "my.yaml")
    first = train_identity(model_spec(p, "mine"))
    assert re.fullmatch(r"[0-9a-f]{16}", first["source"])
    assert "source" not in train_identity(model_spec(merge_configs([], REPO / "params.yaml"), "glfusion"))

    from inloop.models import registry

    (pkg / "helpers.py").write_text("WIDTH = 5\n")
    registry._RESOLVED.clear()
    assert train_identity(model_spec(p, "mine"))["source"] != first["source"]
    assert {k: v for k, v in train_identity(model_spec(p, "mine")).items() if k != "source"} == \
        {k: v for k, v in first.items() if k != "source"}


def test_a_model_file_naming_code_params_do_not_name_imports_nothing(tmp_path):
    """A model file names its network; a code reference is imported only if params name it: a file from someone
    else naming `their.py:Net` must not run their.py."""
    from inloop.models.io import ModelFileError, load_trained, torch_save

    marker = tmp_path / "IMPORTED"
    f = _net_file(tmp_path, f"open({str(marker)!r}, 'w').close()\n" + GOOD)
    ref = f"{f}:Net"
    torch_save({"name": ref, "kwargs": {}, "state_dict": {}}, tmp_path / "model.pt", "model file")
    with pytest.raises(ModelFileError, match=r"refused: the file names the network .*nothing was imported"):
        load_trained(tmp_path / "model.pt", allow=set())
    assert not marker.exists()
    from inloop.models.registry import build_model

    torch_save({"name": ref, "kwargs": {}, "state_dict": build_model(ref).state_dict()}, tmp_path / "model.pt",
               "model file")
    net, _ = load_trained(tmp_path / "model.pt", allow={ref})
    assert marker.exists() and not net.training


def test_a_plain_module_exports_to_onnx_and_runs_there(tmp_path):
    """ONNX export of a network without the ResidualFilter base: its forward as it is, dynamic size."""
    import onnxruntime as ort

    from inloop.models.export import export_onnx
    from inloop.models.registry import build_model

    f = _net_file(tmp_path, GOOD)
    net = build_model(f"{f}:Net").eval()
    out = export_onnx(net, tmp_path / "net.onnx")
    x = torch.rand(1, 1, 40, 56)
    with torch.no_grad():
        want = net(x).numpy()
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    np.testing.assert_allclose(got, want, atol=1e-5)


# ---------------------------------------------------------------- your own footage


def _folder_params(root: Path, **spec) -> dict:
    return {"datasets": {"multiple": 8, "folders": {"mine": {"path": str(root), **spec}}}}


def test_a_folder_of_yuv_y4m_and_images_becomes_a_dataset_with_hashes_and_splits(tmp_path, city_yuv, ffmpeg):
    from inloop.datasets import clips
    from inloop.datasets.fetch import fetch_dataset
    from inloop.datasets.splits import check_splits
    from inloop.datasets.download import DatasetError
    w, h, fps = CITY_SIZE
    root = tmp_path / "footage"
    root.mkdir()
    frame = w * h * 3 // 2
    raw = city_yuv.read_bytes()[:3 * frame]
    (root / f"City_{w}x{h}_{fps:g}.yuv").write_bytes(raw)
    subprocess.run([ffmpeg, "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{w}x{h}", "-i",
                    str(root / f"City_{w}x{h}_{fps:g}.yuv"), "-vf", "crop=100:60:0:0", "-f", "yuv4mpegpipe",
                    str(root / "Crop.y4m")], check=True)
    subprocess.run([ffmpeg, "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{w}x{h}", "-i",
                    str(root / f"City_{w}x{h}_{fps:g}.yuv"), "-frames:v", "1", str(root / "still.png")], check=True)
    params = _folder_params(root, split="test", splits={"still": "train"})
    listed = {c.name: c for c in clips(params, "mine")}
    assert {n: (c.split, c.kind, c.fmt.width, c.fmt.height, c.frames) for n, c in listed.items()} == {
        "City": ("test", "video", w, h, 3), "Crop": ("test", "video", 96, 56, 3), "still": ("train", "image", w, h, 1)}
    manifest = fetch_dataset("mine", params, tmp_path / "data", progress=False, log=lambda *a: None)
    entries = {e["name"]: e for e in json.loads(manifest.read_text())["clips"]}
    for name, c in listed.items():  # what the Snakefile listed at parse time is what was written
        yuv = tmp_path / "data" / "mine" / entries[name]["path"]
        assert entries[name]["path"] == c.filename and yuv.stat().st_size == c.fmt.frame_bytes * c.frames
        assert re.fullmatch(r"[0-9a-f]{64}", entries[name]["sha256"])
    assert (tmp_path / "data" / "mine" / entries["City"]["path"]).read_bytes() == raw  # linked as it is

    # No test item's content in training: the same city frames as a training item elsewhere are caught.
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / f"Again_{w}x{h}_{fps:g}.yuv").write_bytes(raw)
    train = fetch_dataset("mine", _folder_params(tmp_path / "train", split="train"), tmp_path / "data2",
                          progress=False, log=lambda *a: None)
    with pytest.raises(DatasetError, match=r"City.*Again|Again.*City"):
        check_splits([train], [manifest], out=tmp_path / "splits.json")

    # What a folder cannot say is one line naming the file and the params key.
    (root / "noname.yuv").write_bytes(raw)
    with pytest.raises(DatasetError, match=r"noname\.yuv: the name says no size .* datasets\.folders\.mine\.size"):
        clips(params, "mine")
    (root / "noname.yuv").unlink()
    (root / f"Short_{w}x{h}_30.yuv").write_bytes(raw[:-1])
    with pytest.raises(DatasetError, match=rf"Short_{w}x{h}_30\.yuv: {len(raw) - 1} bytes is not a whole number"):
        clips(params, "mine")
    with pytest.raises(ParamsError, match=r"datasets\.folders\.div2k: 'div2k' is a registry dataset's name"):
        clips({"datasets": {"folders": {"div2k": {"path": str(root)}}}}, "div2k")


# ---------------------------------------------------------------- the worked example, as a user runs it


def _run(cmd, cwd, env) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_the_worked_example_installed_trained_reported_and_only_it_retrained_after_an_edit(tmp_path, city_yuv):
    """README "Your own filter": the example package pip-installed into a temporary environment (a --target folder
    on PYTHONPATH: its entry point is found there), the tiny chain with its config and a folder of footage as the
    test set: the report names the network; an edit of one line of the installed network reruns its trainings
    and nothing else's."""
    site = tmp_path / "site"
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target",
          str(site), str(EXAMPLE)], REPO, os.environ.copy())
    shutil.rmtree(EXAMPLE / "build", ignore_errors=True)
    for leftover in (EXAMPLE / "src").glob("*.egg-info"):
        shutil.rmtree(leftover)
    d = tmp_path / "wf"
    d.mkdir()
    for item in ("Snakefile", "params.yaml", "config", "workflow", "envs", "examples"):
        src = REPO / item
        shutil.copytree(src, d / item) if src.is_dir() else shutil.copy2(src, d / item)
    footage = tmp_path / "footage"
    footage.mkdir()
    w, h, fps = CITY_SIZE
    (footage / f"City_{w}x{h}_{fps:g}.yuv").write_bytes(city_yuv.read_bytes()[:2 * w * h * 3 // 2])
    (d / "short.yaml").write_text(yaml.safe_dump({
        "encode": {"qps": [32, 37]},
        "train": {"models": ["glfusion", "tiny-filter"]},
        "datasets": {"folders": {"mine": {"path": str(footage), "split": "test"}}},
        "pipeline": {"test_datasets": ["mine"]}}))
    env = {**os.environ, "PYTHONPATH": str(site), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "INLOOP_CACHE": os.environ.get("INLOOP_CACHE", str(REPO / "results" / "cache"))}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "all", "--configfile", "config/tiny.yaml",
           "examples/own-filter/config.yaml", "short.yaml"]
    _run(cmd, d, env)

    report = (d / "results" / "report" / "index.html").read_text()
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", report))
    assert re.search(r"Networks of no paper \(x265, mine\): tiny-filter \(tiny-filter, source sha256 [0-9a-f]{16}\) "
                     r"20 steps of 4 on cpu", text), text[:3000]
    summary = (d / "results" / "report" / "tables" / "bd_summary.csv").read_text()
    assert "tiny-filter,x265,ai,mine,model_vs_anchor" in summary
    log = (d / "results" / "logs" / "train" / "tiny-filter" / "x265" / "ai" / "qp37.log").read_text()
    assert "TinyFilter is not a ResidualFilter: its own initialisation and output are used" in log
    assert (d / "results" / "data" / "mine" / "manifest.json").is_file()

    net = site / "tiny_filter" / "net.py"
    net.write_text(net.read_text().replace("return x + self.body(x)", "return x + 1.0 * self.body(x)"))
    dry = _run([*cmd, "--dry-run"], d, env)
    trains = re.findall(r"rule train:\n(?:    .*\n)*?    wildcards: model=([a-z-]+), codec=x265, cfg=ai, qp=(\d+)", dry)
    assert sorted(trains) == [("tiny-filter", "32"), ("tiny-filter", "37")], dry[-3000:]
    evals = set(re.findall(r"rule evaluate_model:\n(?:    .*\n)*?    wildcards: .*model=([a-z-]+)", dry))
    assert evals == {"tiny-filter"}, dry[-3000:]


def test_the_bench_takes_your_own_network_by_entry_or_reference(tmp_path):
    from inloop.bench.networks import model_entries
    from inloop.errors import InloopError

    f = _net_file(tmp_path, GOOD)
    p = _params(f"{f}:Net", channels=6)
    assert [(e["name"], e["arch"], e["kwargs"]) for e in model_entries(["mine"], "demo", p)] == \
        [("mine", f"{f}:Net", {"channels": 6})]
    with pytest.raises(InloopError, match=r"--models nope: not a network or a models: entry with arch"):
        model_entries(["nope"], "demo", p)
