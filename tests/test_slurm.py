"""The SLURM profile (workflow/profiles/slurm) on a real one-node cluster started on this machine.

tests/slurm/cluster.sh starts munged, slurmctld and slurmd (configuration under /etc/slurm,
accounting off, partitions cpu and gpu, two fake GPUs). The tiny workflow (config/tiny.yaml, with
train.gpus: 1 so that training asks for a GPU, and train.device: cpu) runs twice from one copy of
the repository: locally, then through the profile. Checked: every job but the local rules went
through sbatch, once, to the partition and with the time, memory, CPUs and GPUs of its rule, and
finished; the results equal the local run's. The daemons are stopped by their PIDs at the end.

Needs root and Debian's slurm-wlm and munge; skips, saying why, otherwise. .ci/run installs the
packages when it runs as root and sets INLOOP_REQUIRE_SLURM=1, which turns the skip into a failure.
"""
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
PROFILE = "workflow/profiles/slurm"
CONFIG = ["config/tiny.yaml", "slurm-test.yaml"]
# Training and the networks' evaluations ask for one GPU (a fake one) and run on the CPU: deterministic, so both
# runs agree. Two QPs, not tiny's four: every rule still goes through sbatch, with half the jobs (each sbatch job
# of a second's work takes 8-15 s here; at four QPs this module's setup was 410 s of the suite's 30 minutes).
# A cluster evaluates each clip in its own job (evaluate.jobs: per-clip, as the paper configs).
TEST_CONFIG = "encode:\n  qps: [32, 37]\ntrain:\n  gpus: 1\n  device: cpu\nevaluate:\n  gpus: 1\n  jobs: per-clip\n"
# Quick status checks for a test whose jobs last seconds (the profile's are for real clusters);
# the cluster's MinJobAge (3600 s) stays far above them, so squeue sees every finished job.
FAST_STATUS = ["--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2"]
# Rules the workflow runs on the submitting host (localrules, and the target rule `all`).
LOCAL_RULES = {"all", "data_demo", "data_registry", "lpips_weights"}
# Fields that measure time or name a run: they differ between any two runs.
VOLATILE = {"seconds_per_frame", "time_s", "samples_per_s", "mlflow_run_id"}


def _unavailable():
    """Why the cluster cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (munged, slurmd, /etc/slurm)"
    missing = [t for t in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "srun")
               if shutil.which(t) is None]
    if missing:
        return f"SLURM is not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge"
    conf = Path("/etc/slurm/slurm.conf")
    if conf.exists() and "inloop-test-cluster" not in conf.read_text(errors="replace"):
        return f"{conf} belongs to a real cluster; the test would replace it"
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = _unavailable()
    if reason:
        if os.environ.get("INLOOP_REQUIRE_SLURM") == "1":
            pytest.fail(f"INLOOP_REQUIRE_SLURM=1 but the SLURM test cannot run: {reason}")
        print(f"test_slurm: skipped: {reason}")
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("slurm-state")
    start = subprocess.run([str(CLUSTER), "start", str(state)], capture_output=True, text=True, timeout=120)
    print(start.stdout + start.stderr)
    try:
        assert start.returncode == 0, f"cluster.sh start failed:\n{start.stdout}{start.stderr}"
        yield state
    finally:
        stop = subprocess.run([str(CLUSTER), "stop", str(state)], capture_output=True, text=True, timeout=120)
        print(stop.stdout + stop.stderr)
        assert stop.returncode == 0, stop.stderr


def _copy_repo(dst):
    """The working tree as git sees it (tracked and new files, nothing ignored), or the tree minus outputs."""
    try:
        listing = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                                 capture_output=True, check=True).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(REPO, dst, ignore=shutil.ignore_patterns(
            ".git", ".venv", "results", ".snakemake", "__pycache__", "*.egg-info", ".pytest_cache"))
    else:
        for rel in filter(None, listing.split("\0")):
            src = REPO / rel
            if src.is_file():
                (dst / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst / rel)
    (dst / "results").mkdir(exist_ok=True)
    (dst / "slurm-test.yaml").write_text(TEST_CONFIG)


def _run(cmd, cwd, env, timeout):
    # the copy's own package, not the one the virtual environment may install from the repository
    env = dict(env, PYTHONPATH=os.pathsep.join(filter(None, [str(cwd / "src"), env.get("PYTHONPATH")])))
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.monotonic() - t0
    (cwd / "test-run.log").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed in {cwd}:\n{(proc.stdout + proc.stderr)[-6000:]}"
    return proc.stdout + proc.stderr, seconds


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """The tiny workflow run locally and through the SLURM profile, from one copy of the repository."""
    base = tmp_path_factory.mktemp("slurm-runs")
    local, slurm = base / "local", base / "slurm"
    local.mkdir()
    _copy_repo(local)
    shutil.copytree(local, slurm)

    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)  # each run tracks into its own results/mlflow.db
    # the pinned wheels of the demo data: the repository's cache when it has one, else one for both runs
    cache = REPO / "results" / "cache"
    env.setdefault("INLOOP_CACHE", str(cache if cache.is_dir() else base / "cache"))
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")

    log_local, t_local = _run([SNAKEMAKE, "--cores", "2", "all", "--configfile", *CONFIG], local, env, 1200)
    log_slurm, t_slurm = _run([SNAKEMAKE, "--profile", PROFILE, "all", "--configfile", *CONFIG,
                               *FAST_STATUS, "--slurm-keep-successful-logs"], slurm, env, 1800)
    print(f"local run {t_local:.0f} s, SLURM run {t_slurm:.0f} s")
    return {"local": local, "slurm": slurm, "log": log_slurm, "local_log": log_local}


def _job_stats(log):
    """Snakemake's `Job stats` table of a run: {rule: count}, without the total."""
    table = log.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    rows = [line.split() for line in table.strip().splitlines()[2:]]
    return {rule: int(n) for rule, n in rows if rule != "total"}


def _slurm_jobs(run_id):
    """Every job the cluster knows of with the run's name, as scontrol's key=value fields."""
    out = subprocess.run(["scontrol", "--oneliner", "show", "job"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    jobs = []
    for line in out.splitlines():
        fields = dict(f.split("=", 1) for f in re.split(r"\s+(?=[\w/:]+=)", line.strip()) if "=" in f)
        if fields.get("JobName") == run_id:
            jobs.append(fields)
    return jobs


def _submitted(log):
    """{SLURM job id: (rule, threads, resources)} from the run's log: the rule blocks Snakemake
    prints for its jobs, joined with the plugin's `Job N has been submitted with SLURM jobid M`."""
    blocks = {}
    for rule, body in re.findall(r"^rule (\w+):\n((?:    .*\n)+)", log, re.M):
        jobid = re.search(r"^    jobid: (\d+)$", body, re.M).group(1)
        threads = re.search(r"^    threads: (\d+)$", body, re.M)
        res = re.search(r"^    resources: (.*)$", body, re.M).group(1)
        blocks[jobid] = (rule, int(threads.group(1)) if threads else 1,
                         dict(kv.split("=", 1) for kv in res.split(", ")))
    return {slurm_id: blocks[jobid]
            for jobid, slurm_id in re.findall(r"^Job (\d+) has been submitted with SLURM jobid (\d+)", log, re.M)}


def test_every_job_goes_through_sbatch_with_its_rules_resources(runs):
    log = runs["log"]
    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    stats = _job_stats(log)
    local = Counter(re.findall(r"^localrule (\w+):", log, re.M))
    assert set(local) <= LOCAL_RULES, f"rules run on the submitting host: {dict(local)}"
    assert not re.search(r"Falling back to 'sacct'", log), "status checks must go through squeue"

    jobs = _slurm_jobs(run_id)
    by_rule = Counter(re.match(r"rule_(\w+?)(?:_wildcards_|$)", j["Comment"]).group(1) for j in jobs)
    expected = {rule: n - local[rule] for rule, n in stats.items() if n - local[rule]}
    print(f"sbatch jobs: {len(jobs)} {dict(by_rule)}; local: {dict(local)}; stats: {stats}")
    assert dict(by_rule) == expected
    assert {"encode", "patches", "train", "evaluate_codec", "evaluate_model", "report"} <= set(by_rule)

    submitted = _submitted(log)
    assert sorted(submitted) == sorted(j["JobId"] for j in jobs), "one sbatch per submitted job"
    for job in jobs:
        rule, threads, res = submitted[job["JobId"]]
        what = f"SLURM job {job['JobId']} ({rule})"
        assert job["Comment"].startswith(f"rule_{rule}"), what
        assert (job["JobState"], job["ExitCode"]) == ("COMPLETED", "0:0"), what
        assert job["WorkDir"] == str(runs["slurm"]), what
        # the rule's runtime (minutes) -> time limit, mem_mb -> memory, threads -> CPUs, gpu -> GPUs
        hours, minutes = divmod(int(res["runtime"]), 60)
        assert job["TimeLimit"] == f"{hours:02d}:{minutes:02d}:00", what
        assert job["MinMemoryNode"] == f"{res['mem_mb']}M", what
        assert job["NumCPUs"] == str(threads), what
        gpus = int(res.get("gpu", 0))
        tres = job.get("TresPerJob", "")  # e.g. gres:gpu:1 (Slurm 22.05) or gres/gpu:1
        if rule in ("train", "evaluate_model"):  # evaluate_model went to the CPU partition (issue #28 item 2)
            assert gpus == 1 and re.search(r"gpu:1$", tres) and job["Partition"] == "gpu", f"{what}: {tres}"
        else:
            assert gpus == 0 and "gpu" not in tres and job["Partition"] == "cpu", f"{what}: {tres}"


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _csv_rows(path):
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k not in VOLATILE} for row in csv.DictReader(f)]


def _most_at_once(log, rules=None):
    """The most jobs (of ``rules``, or any) that a local run's log shows running at the same time."""
    running, most = set(), 0
    for m in re.finditer(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    jobid: (\d+)$|^Finished jobid: (\d+)", log, re.M):
        if m.group(3):
            running.discard(m.group(3))
        elif rules is None or m.group(1) in rules:
            running.add(m.group(2))
            most = max(most, len(running))
    return most


def test_a_local_run_puts_one_gpu_job_at_a_time_on_a_gpu(runs):
    """Issue #28 item 12: a local run had no `gpu` limit, so Snakemake started as many GPU jobs as there were cores,
    all on one GPU. Now a local run may use as many GPUs as nvidia-smi lists (at least one): here the local run with
    --cores 2 ran two jobs at once, but never two of those that ask a GPU (train, evaluate_model)."""
    log = runs["local_log"]
    assert _most_at_once(log) >= 2, "the local run never ran two jobs at once: the test shows nothing"
    assert _most_at_once(log, {"train", "evaluate_model"}) == 1


def test_results_equal_the_local_run(runs):
    local, slurm = runs["local"], runs["slurm"]
    compared = Counter()
    for pattern in ("results/eval/**/*.json", "results/models/**/model.json"):
        files = sorted(p.relative_to(local) for p in local.glob(pattern))
        assert files and files == sorted(p.relative_to(slurm) for p in slurm.glob(pattern)), pattern
        for rel in files:
            a, b = (json.dumps(_strip(json.loads((d / rel).read_text())), sort_keys=True) for d in (local, slurm))
            assert a == b, f"{rel} differs between the local and the SLURM run"
            compared[pattern] += 1
    # the report's tables (not the run times) and the bitstreams
    tables = sorted(p.relative_to(local) for p in local.glob("results/report/tables/*.csv")
                    if not p.name.startswith("runtime"))
    assert tables
    for rel in tables:
        assert _csv_rows(local / rel) == _csv_rows(slurm / rel), f"{rel} differs"
    bitstreams = sorted(p.relative_to(local) for p in local.glob("results/encoded/**/*.bin"))
    assert bitstreams
    for rel in bitstreams:
        assert (local / rel).read_bytes() == (slurm / rel).read_bytes(), f"{rel} differs"
    assert (slurm / "results/report/index.html").is_file()
    print(f"equal: {dict(compared)}, {len(tables)} report tables, {len(bitstreams)} bitstreams")
