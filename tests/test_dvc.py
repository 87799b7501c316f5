"""The DVC pipeline (dvc.yaml) on the tiny configuration, in a temporary git repository:
`dvc repro` runs every stage through Snakemake, after which neither tool wants to rerun; a
training param reruns training and what follows it, nothing before; a Snakemake run recorded
with `dvc commit` leaves DVC nothing to do; `dvc push` then `dvc pull` into an empty clone
restores the models and results through the default remote (~/.cache/inloop-dvc-remote)."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COPY = ["Snakefile", "workflow", "envs", "config", "src", "docs/benchmarks", "datasets.lock.json", "dvc.yaml",
        ".dvcignore", ".gitignore", ".dvc/config", ".dvc/.gitignore"]
PRECIOUS = ["results/models", "results/eval", "results/report"]
STAGES = ("data", "encode", "patches", "train", "evaluate_codecs", "evaluate", "report")


def merge(base: dict, over: dict) -> dict:
    """Snakemake's --configfile merge: nested mappings merged, anything else replaced."""
    for k, v in over.items():
        base[k] = merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return base


def run(cmd, cwd, env, timeout=900):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{(r.stdout + r.stderr)[-5000:]}"
    return r.stdout + r.stderr


def git(cwd, *args):
    return subprocess.run(["git", "-c", "user.name=inloop-test", "-c", "user.email=test@inloop", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout


def digests(root: Path, dirs) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for d in dirs for p in sorted((root / d).rglob("*")) if p.is_file()}


def mtimes(root: Path, dirs) -> dict:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for d in dirs for p in (root / d).rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")  # the default remote ~/.cache/inloop-dvc-remote lands here
    e = {**os.environ, "HOME": str(home), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    e.pop("MLFLOW_TRACKING_URI", None)
    if (REPO / "results" / "cache").is_dir() and "INLOOP_CACHE" not in os.environ:
        e["INLOOP_CACHE"] = str(REPO / "results" / "cache")  # the pinned wheels, already downloaded
    return e


@pytest.fixture(scope="module")
def repo(tmp_path_factory, env):
    """A git repository with the workflow, params.yaml = params.yaml + config/tiny.yaml, after `dvc repro`."""
    d = tmp_path_factory.mktemp("dvc") / "inloop"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in COPY:
        src, dst = REPO / name, d / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dst, ignore=ignore) if src.is_dir() else shutil.copy2(src, dst)
    params = merge(yaml.safe_load((REPO / "params.yaml").read_text()),
                   yaml.safe_load((REPO / "config" / "tiny.yaml").read_text()))
    (d / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git(d, "init", "-q")
    git(d, "add", "-A")
    git(d, "commit", "-qm", "tiny")
    out = run(["dvc", "repro"], d, env)
    for stage in STAGES:
        assert f"Running stage '{stage}'" in out
    git(d, "add", "dvc.lock")
    git(d, "commit", "-qm", "dvc repro")
    return d


def snakemake_has_nothing_to_do(d, env):
    out = run(["snakemake", "-n", "--cores", "2", "all"], d, env)
    assert "Nothing to be done" in out, out[-3000:]


@pytest.mark.slow
def test_after_dvc_repro_neither_tool_wants_to_rerun(repo, env):
    assert "Data and pipelines are up to date" in run(["dvc", "status"], repo, env)
    snakemake_has_nothing_to_do(repo, env)
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert set(lock) == set(STAGES)
    assert set(lock["train"]["params"]["params.yaml"]) == {"train", "models", "encode.codec", "encode.configs",
                                                           "encode.qps"}
    assert any(o["path"] == "results/models" for o in lock["train"]["outs"])

    # A Snakemake run with nothing to do touches nothing DVC tracks.
    before = mtimes(repo, ["results/data", "results/encoded", *PRECIOUS])
    run(["snakemake", "--cores", "2", "all"], repo, env)
    assert mtimes(repo, ["results/data", "results/encoded", *PRECIOUS]) == before
    assert "Data and pipelines are up to date" in run(["dvc", "status"], repo, env)

    metrics = json.loads(run(["dvc", "metrics", "show", "--json"], repo, env))
    values = metrics[""]["data"]["results/report/metrics.json"]["data"]["x265"]["demo"]["ai"]
    assert set(values) == {"glfusion", "filters_off"}
    assert isinstance(values["glfusion"]["delta_psnr_y_db"], float)
    assert isinstance(values["filters_off"]["bd_rate_y_vs_anchor_pct"], float)
    run(["dvc", "plots", "show", "-o", "plots"], repo, env)
    html = (repo / "plots" / "index.html").read_text()
    assert "Training loss (MSE) per network" in html and "glfusion_x265_ai_qp22" in html
    assert "x265 demo AI glfusion" in html


@pytest.mark.slow
def test_another_model_or_qp_trains_only_the_new_networks(repo, env):
    """Adding an entry to train.models (an ablation config) or a QP to encode.qps used to retrain every network:
    rule train's params held the whole merged train section, model list included (issue #18, item 8)."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    qps = params["encode"]["qps"]
    extra = {"train": {"models": [*params["train"]["models"], "glfusion-b"], "threads": 2},
             "encode": {"qps": [*qps, 42]},
             "models": {"glfusion-b": {"base": "glfusion", "qps": [37]}}}
    (repo / "more.yaml").write_text(yaml.safe_dump(extra))
    try:
        out = run(["snakemake", "-n", "--cores", "2", "all", "--configfile", "more.yaml"], repo, env)
    finally:
        (repo / "more.yaml").unlink()
    trained = sorted(re.findall(r"wildcards: model=([\w-]+), codec=x265, cfg=ai, qp=(\d+)", out))
    assert trained == [("glfusion", "42"), ("glfusion-b", "37")], out[-3000:]
    assert "reason: Params have changed" not in out


@pytest.mark.slow
def test_a_training_param_reruns_training_and_what_follows_only(repo, env):
    upstream = ["results/data", "results/encoded"]
    before = mtimes(repo, upstream)
    models_before = digests(repo, ["results/models"])
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["steps"] = 30
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    diff = run(["dvc", "params", "diff"], repo, env)
    assert "train.steps" in diff and "20" in diff and "30" in diff
    out = run(["dvc", "repro"], repo, env)
    assert "Stage 'data' didn't change, skipping" in out and "Stage 'encode' didn't change, skipping" in out
    for stage in ("train", "evaluate", "report"):
        assert f"Running stage '{stage}'" in out
    # patch stores are their own stage: a training setting does not rebuild them (it did, issue #18 item 8);
    # nor does it redo the codec's own evaluations (anchor vs filters off): their own stage too
    assert "Stage 'patches' didn't change, skipping" in out
    assert "Stage 'evaluate_codecs' didn't change, skipping" in out and "rule evaluate_codec:" not in out
    assert "rule encode:" not in out and "rule data_demo:" not in out and "rule patches:" not in out
    assert mtimes(repo, upstream) == before
    report = json.loads((repo / "results/models/glfusion/x265/ai/qp22/model.json").read_text())
    assert report["result"]["steps"] == 30
    assert digests(repo, ["results/models"]) != models_before
    snakemake_has_nothing_to_do(repo, env)
    assert "Data and pipelines are up to date" in run(["dvc", "status"], repo, env)
    git(repo, "add", "dvc.lock", "params.yaml")
    git(repo, "commit", "-qm", "train.steps 30")


@pytest.mark.slow
def test_a_snakemake_run_recorded_by_dvc_commit(repo, env):
    """Snakemake first: a param no rule names (bdrate.method) is DVC's to see; after Snakemake rebuilt
    the report, `dvc commit` records it and `dvc repro` has nothing left to run."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["bdrate"]["method"] = "pchip"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert "bdrate" in run(["dvc", "status"], repo, env)
    run(["snakemake", "--cores", "2", "report", "--forcerun", "report"], repo, env)
    assert "pchip" in (repo / "results/report/tables/bd_summary.csv").read_text()
    run(["dvc", "commit", "--force"], repo, env)
    assert "Data and pipelines are up to date" in run(["dvc", "status"], repo, env)
    out = run(["dvc", "repro"], repo, env)
    assert "Running stage" not in out
    snakemake_has_nothing_to_do(repo, env)
    git(repo, "add", "dvc.lock", "params.yaml")
    git(repo, "commit", "-qm", "bdrate pchip")


@pytest.mark.slow
def test_push_then_pull_into_an_empty_clone_restores_models_and_results(repo, env, tmp_path):
    remote = Path(env["HOME"]) / ".cache" / "inloop-dvc-remote"
    run(["dvc", "push"], repo, env)
    assert remote.is_dir() and any(remote.rglob("*"))
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    assert not (clone / "results").exists()
    run(["dvc", "pull"], clone, env)
    want = digests(repo, PRECIOUS)
    assert any(k.endswith("model.pt") for k in want) and "results/report/metrics.json" in want
    assert digests(clone, PRECIOUS) == want
    # Uncached outputs (data, encodes, patch stores, enhanced YUVs) are rebuilt, never pulled.
    assert not (clone / "results" / "encoded").exists()


def test_headline_metrics_from_a_bd_summary():
    from inloop.reporting.summary import headline_metrics

    rows = [("glfusion", "model_vs_anchor", -4.0, 0.2, 0.3), ("glfusion", "model_vs_off", -9.0, 0.5, 0.3),
            ("none", "off_vs_anchor", 5.0, -0.25, float("nan")), ("glfusion", "model_vs_anchor", float("nan"), 0, 0)]
    summary = pd.DataFrame([{"model": m, "codec": "x265", "config": "ai" if i < 3 else "ra", "dataset": "demo",
                             "comparison": c, "metric": "y", "level": "average", "bd_rate_pct": r, "bd_psnr_db": p,
                             "delta_psnr_y_mean": dp} for i, (m, c, r, p, dp) in enumerate(rows)]
                           + [{"model": "glfusion", "codec": "x265", "config": "ai", "dataset": "demo",
                               "comparison": "model_vs_anchor", "metric": "yuv", "level": "average",
                               "bd_rate_pct": 99.0, "bd_psnr_db": 0, "delta_psnr_y_mean": 0}])
    m = headline_metrics(summary)["x265"]["demo"]
    assert m["ai"]["glfusion"] == {"bd_rate_y_vs_anchor_pct": -4.0, "bd_psnr_y_vs_anchor_db": 0.2,
                                   "delta_psnr_y_db": 0.3, "bd_rate_y_vs_off_pct": -9.0}
    assert m["ai"]["filters_off"] == {"bd_rate_y_vs_anchor_pct": 5.0, "bd_psnr_y_vs_anchor_db": -0.25}
    assert m["ra"]["glfusion"]["bd_rate_y_vs_anchor_pct"] is None  # NaN -> null in metrics.json


def test_snakemakes_own_report_shows_the_plots_and_tables(repo, env, tmp_path):
    """`snakemake --report` had an empty results section: no rule marked its outputs with report()."""
    import zipfile

    out = tmp_path / "report.zip"
    run(["snakemake", "--report", str(out)], repo, env)
    names = zipfile.ZipFile(out).namelist()
    assert any(n.endswith("/bdrate_x265_demo.png") for n in names), names[:20]
    assert any(n.endswith("bd_summary.csv") for n in names) and any(n.endswith("index.html") for n in names)


@pytest.mark.slow
def test_dvc_exp_run_with_a_training_param_reruns_training_and_what_follows(repo, env):
    """Issue #18's acceptance: `dvc exp run -S train.lr=0.001` on the tiny config reruns training and what
    follows, nothing before, and ends clean (it used to write `filters: [off, on]` back unquoted, which the
    schema refused after DVC had deleted the stage outputs)."""
    upstream = ["results/data", "results/encoded"]
    before = mtimes(repo, upstream)
    out = run(["dvc", "exp", "run", "-S", "train.lr=0.001"], repo, env)
    assert "Stage 'data' didn't change, skipping" in out and "Stage 'encode' didn't change, skipping" in out
    assert "Stage 'patches' didn't change, skipping" in out and "rule patches:" not in out
    assert "Stage 'evaluate_codecs' didn't change, skipping" in out
    for stage in ("train", "evaluate", "report"):
        assert f"Running stage '{stage}'" in out
    assert "rule encode:" not in out and mtimes(repo, upstream) == before
    assert yaml.safe_load((repo / "params.yaml").read_text())["train"]["lr"] == 0.001
    assert "Data and pipelines are up to date" in run(["dvc", "status"], repo, env)
    snakemake_has_nothing_to_do(repo, env)
    exps = run(["dvc", "exp", "show", "--csv"], repo, env)
    assert "0.001" in exps


def _readme_keys() -> list[str]:
    """The params keys the README names (`section.key`), that params.yaml holds as a scalar or a list."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    found = set()
    for key in re.findall(r"`((?:codecs|encode|train|models|evaluate|metrics|report|bdrate|datasets|pipeline)"
                          r"(?:\.[a-z0-9_]+)+)", (REPO / "README.md").read_text()):
        node = params
        for part in key.split("."):
            node = node.get(part, KeyError) if isinstance(node, dict) else KeyError
        if node is not KeyError and not isinstance(node, dict):
            found.add(key)
    return sorted(found)


def test_dvc_set_params_round_trips_every_key_the_readme_names(tmp_path):
    """`dvc exp run -S key=value` rewrites params.yaml through DVC's own writer (dvc.utils.hydra.apply_overrides)
    before it runs anything; that rewrite broke the pipeline once (`[off, on]` unquoted -> booleans, issue #18).
    For every key the README mentions, set it to its own value the way `-S` does: the whole file must still pass
    the schema and read back equal to params.yaml (the change reaches the stages unchanged in type)."""
    from dvc.utils.hydra import apply_overrides

    from inloop.params import load_params

    keys = _readme_keys()
    assert {"train.lr", "train.steps", "bdrate.method", "codecs.x265.preset", "encode.qps"} <= set(keys), keys
    original = load_params(REPO / "params.yaml")
    for key in keys:
        node = original
        for part in key.split("."):
            node = node[part]
        path = tmp_path / "params.yaml"
        shutil.copy2(REPO / "params.yaml", path)
        value = json.dumps(node) if isinstance(node, (list, bool)) or node is None else str(node)
        apply_overrides(str(path), [f"{key}={value}"])
        assert load_params(path) == original, key


@pytest.mark.slow
@pytest.mark.parametrize("key, value, stale", [
    ("bdrate.method", "akima", {"report"}),  # (pchip: test_a_snakemake_run_recorded_by_dvc_commit's)
    ("metrics.ms_ssim_small", "unavailable", {"evaluate_codecs", "evaluate"}),
    ("codecs.x265.preset", "faster", {"encode", "report"}),
    ("train.steps", "25", {"train", "report"}),
])
def test_dvc_set_params_make_stale_only_the_stages_that_read_them(repo, env, key, value, stale):
    """What `dvc exp run -S key=value` would rerun first, read from `dvc status` after DVC's own rewrite of
    params.yaml: the stages that read the key (the stages after them rerun when their inputs change)."""
    from dvc.utils.hydra import apply_overrides

    saved = (repo / "params.yaml").read_text()
    node = yaml.safe_load(saved)
    for part in key.split("."):
        node = node[part]
    assert str(node) != value, f"{key} is already {value}: the test would change nothing"
    try:
        apply_overrides(str(repo / "params.yaml"), [f"{key}={value}"])
        status = json.loads(run(["dvc", "status", "--json"], repo, env))
    finally:
        (repo / "params.yaml").write_text(saved)
    changed = {stage for stage, what in status.items() if "params.yaml" in json.dumps(what)}
    assert changed == stale, status


@pytest.mark.slow
def test_dvc_repro_during_a_snakemake_run_deletes_nothing_and_stops(repo, env):
    """Issue #27 item 2: `dvc repro` started while a Snakemake run was going (in a clone without dvc.lock, so
    every stage stale) removed `results/data` before its own Snakemake call stopped on the lock, and the running
    training failed on the missing manifest. Now DVC deletes nothing (`persist: true`); the stage's Snakemake
    call forces the stage's rules under Snakemake's lock, so it stops at once with results/ whole, and the
    running Snakemake ends rc 0. (Last in this module: it retrains the tiny networks.)"""
    watched = ["results/data", "results/encoded"]
    before = digests(repo, watched)
    lock = repo / "dvc.lock"
    saved = lock.read_text()
    lock.unlink()
    locks = repo / ".snakemake" / "locks"
    sm = subprocess.Popen(["snakemake", "--cores", "1", "all", "--forcerun", "patches"], cwd=repo, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(600):
            if sm.poll() is not None or (locks.is_dir() and any(locks.iterdir())):
                break
            time.sleep(0.1)
        assert sm.poll() is None, "the Snakemake run ended before it took its lock:\n" + sm.stdout.read()[-3000:]
        dvc = subprocess.run(["dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
        running_when_dvc_ended = sm.poll() is None
        log, _ = sm.communicate(timeout=900)
    finally:
        if sm.poll() is None:
            sm.kill()
        lock.write_text(saved)
    said = dvc.stdout + dvc.stderr
    assert running_when_dvc_ended, "the Snakemake run ended before dvc repro stopped: the test proved nothing"
    assert dvc.returncode != 0 and "cannot be locked" in said, said[-3000:]
    assert "Running stage 'data'" in said and "Running stage 'encode'" not in said
    assert sm.returncode == 0, log[-3000:]
    assert digests(repo, watched) == before
