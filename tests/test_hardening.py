"""Hardening (issue #18): values that reach a shell are quoted, datasets.out is honoured everywhere."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _workflow_copy(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for item in ("Snakefile", "params.yaml", "config", "workflow", "envs"):
        src = REPO / item
        shutil.copytree(src, d / item) if src.is_dir() else shutil.copy2(src, d / item)
    return d


def test_every_value_on_a_rule_command_line_is_quoted():
    """Static: every {input}/{output}/{params}/{wildcards}/{log}/{threads} in a shell directive carries :q."""
    bare = []
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for m in re.finditer(r"    shell:\n((?:        .*\n)+)", smk.read_text()):
            bare += [f"{smk.name}: {x}" for x in re.findall(r"\{(?:input|output|params|wildcards|log|threads)[^}:]*\}",
                                                             m.group(1))]
    assert not bare, bare


def test_shell_metacharacters_in_a_params_path_run_nothing(tmp_path):
    """datasets.out with `;`, `$(...)` and a space: the rule's command gets it as one argument, the payload
    never runs (it used to: `datasets.out: "results/data;$(touch pwned);x"` ran touch)."""
    d = _workflow_copy(tmp_path / "wf")
    out = "data dir;$(touch PWNED);x"
    for name, split, value in (("trainset", "train", 1), ("testset", "test", 2)):
        m = d / out / name
        m.mkdir(parents=True)
        (m / f"{name}_16x16_30fps_8bit_420.yuv").write_bytes(bytes([value]) * 384)
        (m / "manifest.json").write_text(json.dumps({"dataset": name, "clips": [
            {"name": name, "split": split, "path": f"{name}_16x16_30fps_8bit_420.yuv", "width": 16, "height": 16,
             "fps": 30, "frames": 1, "bitdepth": 8}]}))
    cfg = {"datasets": {"out": out}, "pipeline": {"train_datasets": {"ai": ["trainset"]}, "test_datasets": ["testset"]}}
    (d / "evil.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", "evil.yaml", "--",
                           "results/checks/splits.json"], cwd=d, capture_output=True, text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert json.loads((d / "results/checks/splits.json").read_text())["leaks"] == 0
    assert not list(tmp_path.rglob("PWNED")) and not Path("PWNED").exists()


def test_the_issues_own_probe_a_payload_in_datasets_out_runs_nothing(tmp_path, ffmpeg):
    """The probe of issue #18: rule data_registry put {params.out} unquoted on its command line."""
    d = _workflow_copy(tmp_path / "wf")
    clic = tmp_path / "clic"
    clic.mkdir()
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=16x16:rate=30", "-frames:v", "30",
                    str(clic / "img%02d.png")], check=True)
    out = "results/data;$(touch PWNED);x"
    cfg = {"datasets": {"out": out, "roots": {"clic2022-valid": str(clic)}}}
    (d / "evil.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", "evil.yaml", "--",
                           f"{out}/clic2022-valid/manifest.json"], cwd=d, capture_output=True, text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert len(json.loads((d / out / "clic2022-valid" / "manifest.json").read_text())["clips"]) == 30
    assert not list(tmp_path.rglob("PWNED"))


def test_a_payload_in_the_lpips_cache_dir_runs_nothing(tmp_path):
    """The other free-form string that reaches a rule's command line (as the lpips_weights rule's output):
    metrics.lpips.cache_dir. Dataset and model names do too, but the wildcards' patterns refuse `;`, `$`, spaces."""
    d = _workflow_copy(tmp_path / "wf")
    cache = "c dir;$(touch PWNED);x"
    (d / "evil.yaml").write_text(yaml.safe_dump({"metrics": {"lpips": {"cache_dir": cache, "download": False}}}))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", "evil.yaml", "--",
                           f"{cache}/status.json"], cwd=d, capture_output=True, text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    status = json.loads((d / cache / "status.json").read_text())
    assert status["available"] is False and "downloads are off" in status["reason"]
    assert not list(tmp_path.rglob("PWNED"))


def test_another_data_folder_is_used_everywhere(tmp_path):
    """datasets.out is the one place the data live: encodes, evaluation and the split check read it (a
    hard-coded results/data used to make any other value a CyclicGraphException)."""
    d = _workflow_copy(tmp_path / "wf")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "1", "all", "--configfile",
                           "config/tiny.yaml", "--config", "datasets={'out': 'results/data2'}"], cwd=d,
                          capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "results/data2/demo/manifest.json" in out and "--in results/data2/demo/" in out
    assert "results/data/" not in out.replace("results/data2/", "")


def test_filters_written_unquoted_by_dvc_still_mean_off_and_on(tmp_path):
    """`dvc exp run -S train.lr=1e-3` rewrites params.yaml with `filters: [off, on]` unquoted: YAML reads
    booleans, which the schema refused (after DVC had deleted the stage outputs)."""
    d = _workflow_copy(tmp_path / "wf")
    text = (d / "params.yaml").read_text()
    assert 'filters: ["off", "on"]' in text
    (d / "params.yaml").write_text(text.replace('filters: ["off", "on"]', "filters: [off, on]"))
    from inloop.params import load_params

    assert load_params(d / "params.yaml")["encode"]["filters"] == ["off", "on"]
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "all", "--configfile",
                           "config/tiny.yaml"], cwd=d, capture_output=True, text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    assert "results/encoded/x265/ai/off/" in proc.stdout


def test_a_multi_gpu_training_job_asks_a_cpu_per_process(tmp_path):
    """train.gpus: 2 used to ask --cpus-per-task=1 for two DDP processes: the job's threads are
    train.threads per process (issue #18, item 13), and each process uses its share."""
    d = _workflow_copy(tmp_path / "wf")
    (d / "gpus.yaml").write_text(yaml.safe_dump({"train": {"gpus": 3, "threads": 2}}))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "16", "all", "--configfile",
                           "config/tiny.yaml", "gpus.yaml"], cwd=d, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    train = [line for line in out.splitlines() if " train --model " in line]
    assert train and all(line.startswith("Shell command: torchrun --standalone --nproc-per-node 3 -m inloop.cli train")
                         and "--threads 6 " in line for line in train), train[:2]


@pytest.mark.parametrize("jobs", ["per-clip", "per-qp"])
def test_what_every_rule_asks_comes_from_params(tmp_path, jobs):
    """Issue #28 item 11: encode, patches, evaluate_codec and report typed their threads, memory and time in the
    rule (evaluation one thread, 2-4 GB, 20-30 min whatever the sequences); now `resources.<rule>` and
    `evaluate.threads` set them, as a paper config does. evaluate.jobs: per-qp -- the batch rules ask them (the
    time limit once per clip: tiny has one held-out clip)."""
    d = _workflow_copy(tmp_path / "wf")
    want = {"encode": (1, 3000, 600), "patches": (1, 5000, 240), "evaluate_codec": (3, 16000, 600),
            "report": (1, 7000, 45)}
    (d / "res.yaml").write_text(yaml.safe_dump({
        "resources": {r: {"threads": t, "mem_mb": m, "runtime_min": rt} for r, (t, m, rt) in want.items()},
        "evaluate": {"threads": 2, "mem_mb": 9000, "runtime_min": 90, "jobs": jobs}}))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "16", "all", "--configfile",
                           "config/tiny.yaml", "res.yaml"], cwd=d, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    want["evaluate_model"] = (2, 9000, 90)
    if jobs == "per-qp":
        want = {k + ("_batch" if k.startswith("evaluate") else ""): v for k, v in want.items()}
    seen = set()
    for rule, body in re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n)+)", out, re.M):
        if rule not in want:
            continue
        threads = re.search(r"^    threads: (\d+)$", body, re.M)
        res = dict(kv.split("=", 1) for kv in re.search(r"^    resources: (.*)$", body, re.M).group(1).split(", "))
        t, m, rt = want[rule]
        assert (int(threads.group(1)) if threads else 1, int(res["mem_mb"]), int(res["runtime"])) == (t, m, rt), rule
        seen.add(rule)
    assert seen == set(want)


def test_the_encodes_target_builds_what_all_needs_and_no_more(tmp_path):
    """`snakemake encodes` (DVC's encode stage) built 328 encodes where `all` needed 182: training clips in every
    configuration, filters off and on (issue #18, item 8)."""
    d = _workflow_copy(tmp_path / "wf")

    def encodes(target, *configfiles):
        extra = ["--configfile", *configfiles] if configfiles else []
        proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "1", target, *extra], cwd=d,
                              capture_output=True, text=True)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
        return sorted(re.findall(r"--out (\S+\.bin)", proc.stdout))

    counts = {}
    for configs in ((), ("config/nlconvlstm-ablation.yaml",)):
        wanted = encodes("all", *configs)
        assert wanted and encodes("encodes", *configs) == wanted
        counts[configs] = len(wanted)
    # the demo; NL-ConvLSTM and its ablation alone (LDP, QP 32/37: the ablation adds no encode of its own, #26)
    assert counts == {(): 258, ("config/nlconvlstm-ablation.yaml",): 136}  # 8 held-out clips, AI + LDP (#29)
