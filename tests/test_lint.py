"""Workflow checks: `snakemake --lint` is clean, params.yaml is validated before any job runs,
and every rule runs in a conda environment (envs/*.yaml) generated from pyproject.toml's pins.

Snakemake runs on a copy of the workflow: parsing it writes .snakemake/inloop/params-<hash>.yaml
in the working directory, and the checks leave the repository's own .snakemake alone."""

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
WORKFLOW_FILES = ["Snakefile", "workflow", "envs", "config", "params.yaml", "datasets.lock.json"]


def conda_envs():
    spec = importlib.util.spec_from_file_location("conda_envs", REPO / "workflow" / "scripts" / "conda_envs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("workflow")
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, d / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, d / name)
    return d


def test_snakemake_lint_is_clean(workflow_copy):
    r = subprocess.run([SNAKEMAKE, "--lint"], cwd=workflow_copy, capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "Congratulations, your workflow is in a good condition!" in out, out[-5000:]


@pytest.mark.parametrize("bad, key", [
    ("train:\n  steps: 0\n", "train.steps: 0 is less than the minimum of 1"),
    ("encode:\n  qps: [22, 99]\n", "encode.qps.1: 99 is greater than the maximum of 63"),
    ("evaluate:\n  device: gpu\n", "evaluate.device: 'gpu' does not match"),
    ("evaluate:\n  tiles: 64\n", "evaluate.tiles: unknown key; known: device, tile"),
])
def test_bad_param_stops_the_run_before_any_job(workflow_copy, tmp_path, bad, key):
    (tmp_path / "bad.yaml").write_text(bad)
    r = subprocess.run([SNAKEMAKE, "--cores", "1", "all", "--configfile", str(tmp_path / "bad.yaml")],
                       cwd=workflow_copy, capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "ParamsError" in out and f"params.yaml with --configfile/--config: {key}" in out, out[-3000:]
    assert "Job stats" not in out and not (workflow_copy / "results").exists()


def test_conda_envs_are_generated_from_pyproject():
    ce = conda_envs()
    files = ce.render_all()
    assert sorted(files) == sorted(str(p.relative_to(REPO)) for p in (REPO / "envs").iterdir()), \
        "envs/ holds files the generator does not write"
    for path, text in files.items():
        assert (REPO / path).read_text() == text, f"{path} is stale: run python workflow/scripts/conda_envs.py"
    # pip installs pyproject's own requirement strings; the workflow's drivers stay out of job environments.
    pins = set(ce.pins(ce.pyproject()).values())
    for group in ce.GROUPS:
        reqs = ce.group_requirements(group)
        assert reqs and set(reqs) <= pins
        assert not any(r.startswith(("snakemake", "dvc")) for r in reqs)
    assert "torch==2.13.0" in ce.group_requirements("train") and "mlflow>=3,<4" in ce.group_requirements("train")


def test_an_import_missing_from_pyproject_is_named(tmp_path):
    ce = conda_envs()
    shutil.copytree(REPO / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy2(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    report = tmp_path / "src" / "inloop" / "reporting" / "report.py"
    report.write_text("import seaborn\n" + report.read_text())
    with pytest.raises(SystemExit, match=r"inloop\.reporting\.report imports 'seaborn'"):
        ce.group_requirements("report", tmp_path)


def _rules():
    """(file, rule, block text) of every rule in workflow/rules/*.smk."""
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        for m in re.finditer(r"^rule (\w+):\n((?:[ \t]+.*\n|[ \t]*\n)*)", text, re.M):
            yield smk, m.group(1), m.group(2)


def test_every_rule_runs_in_the_conda_env_of_its_group():
    groups = conda_envs().GROUPS
    checked = 0
    for smk, rule, block in _rules():
        shell = re.search(r"^    (shell|script):\n\s+(.+)", block, re.M)
        if not shell:
            continue  # a target rule: no job of its own
        env = re.search(r"^    conda:\n\s+\"([^\"]+)\"", block, re.M)
        assert env, f"{smk.name}: rule {rule} has no conda: directive (envs/*.yaml)"
        path = (smk.parent / env.group(1)).resolve()
        assert path.is_file() and path.parent == REPO / "envs", f"{smk.name}: rule {rule}: {env.group(1)} not in envs/"
        cmd = re.search(r"(?:inloop|\{params\.launch(?::q)?\}) ([a-z]+)", shell.group(2))
        assert cmd, f"{smk.name}: rule {rule}: shell does not run an inloop sub-command"
        assert cmd.group(1) in groups[path.stem][1], \
            f"{smk.name}: rule {rule} runs `inloop {cmd.group(1)}`, not a command of envs/{path.name}"
        checked += 1
    assert checked >= 8
