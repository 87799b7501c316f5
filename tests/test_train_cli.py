"""The train stage end to end: `inloop patches` and `inloop train` as a user runs them,
killed midway and re-run, tracked in a real MLflow store."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import INLOOP, train_cmd  # noqa: F401  (shared with tests/test_mlflow_server.py)


@pytest.fixture(scope="module")
def workdir(train_workdir):
    return train_workdir


def test_killed_training_resumes_from_its_checkpoint(workdir, tmp_path):
    from mlflow.tracking import MlflowClient

    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    out = tmp_path / "model.pt"
    proc = subprocess.Popen(train_cmd(workdir, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    ckpts = workdir / "ckpt"
    deadline = time.time() + 120
    while time.time() < deadline and not list(ckpts.rglob("qp*.ckpt")):
        assert proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.05)
    (ckpt,) = list(ckpts.rglob("qp*.ckpt"))
    os.killpg(proc.pid, signal.SIGKILL)  # as a scheduler or an out-of-memory killer would
    proc.wait()
    step_at_kill = torch.load(ckpt, weights_only=True)["step"]
    assert 0 < step_at_kill < 300 and not out.exists()

    again = subprocess.run(train_cmd(workdir, out), env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming" in again.stdout and "300 steps" in again.stdout
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["result"]["resumed_from"] >= step_at_kill and report["result"]["steps"] == 300
    assert report["result"]["steps_this_run"] == 300 - report["result"]["resumed_from"]

    # One MLflow run across both processes, with params, tags, metrics and the model.
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    run = client.get_run(report["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == "0.002" and run.data.params["model.channels"] == "4"
    assert run.data.tags["qp"] == "37" and len(run.data.tags["git_commit"]) >= 7
    assert run.data.tags["dataset_manifest_sha256"] != "none"
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "train_mse"))
    assert steps[0] == 10 and steps[-1] == 300
    assert "val_delta_psnr" in run.data.metrics
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["model.pt"]


def test_trained_model_loads_and_filters(workdir, tmp_path):
    from inloop.models.io import load_trained

    out = tmp_path / "m.pt"
    r = subprocess.run(train_cmd(workdir, out) + ["--no-mlflow"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    model, payload = load_trained(out)
    assert payload["planes"] == ["y"] and payload["describe"]["qp"] == 37
    x = torch.rand(1, 1, 40, 56)
    assert model(x).shape == x.shape


def test_bad_model_param_names_the_key(workdir, tmp_path):
    p = yaml.safe_load((workdir / "params.yaml").read_text())
    p["models"]["glfusion"] = {"fusion": "multiply"}
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(p))
    cmd = train_cmd(workdir, tmp_path / "m.pt")
    cmd[cmd.index("--params") + 1] = str(bad)
    r = subprocess.run(cmd + ["--no-mlflow"], capture_output=True, text=True)
    assert r.returncode == 2 and "models.glfusion.fusion" in r.stderr


def _torchrun(workdir, tmp_path, out, ckpt, steps, processes=2):
    p = yaml.safe_load((workdir / "params.yaml").read_text())
    p["train"].update(steps=steps, checkpoint_every=10, device="cpu", checkpoint_dir=str(ckpt))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    cmd = train_cmd(workdir, out) + ["--no-mlflow"]
    cmd[cmd.index("--params") + 1] = str(tmp_path / "params.yaml")
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    r = subprocess.run([torchrun, "--standalone", "--nproc_per_node", str(processes), "-m", "inloop.cli", *cmd[1:]],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    return r


def test_ddp_training_with_torchrun_on_cpu_resumes_each_ranks_own_batches(workdir, tmp_path):
    """Two processes under torchrun (gloo on CPU): the DDP code path a multi-GPU node uses. A run stopped at its
    checkpoint and resumed ends with the weights of an uninterrupted run: each rank gets back its own batch
    stream (only rank 0's was saved and every rank loaded it, so after a resume both ranks trained on the same
    batches: issue #28 item 5). train.batch_size is the global batch: each of 2 processes draws half (item 6)."""
    r = _torchrun(workdir, tmp_path, tmp_path / "ddp.pt", tmp_path / "ckpt-a", 20)
    assert r.stdout.count("20 steps") == 1  # one report, from rank 0
    report = json.loads((tmp_path / "ddp.json").read_text())
    assert report["result"]["steps"] == 20 and report["result"]["samples_per_s"] > 0
    assert report["result"]["processes"] == 2 and report["result"]["batch_per_process"] == 2  # batch_size 4
    _torchrun(workdir, tmp_path, tmp_path / "half.pt", tmp_path / "ckpt-b", 10)  # stops at its step-10 checkpoint
    again = _torchrun(workdir, tmp_path, tmp_path / "resumed.pt", tmp_path / "ckpt-b", 20)
    assert "resuming" in again.stdout and "from step 10" in again.stdout
    whole = torch.load(tmp_path / "ddp.pt", weights_only=True)["state_dict"]
    resumed = torch.load(tmp_path / "resumed.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


def test_the_process_count_is_part_of_the_checkpoint_and_the_batch_must_divide(workdir, tmp_path, monkeypatch):
    """Issue #28 item 6: `gpus` was a job key outside the checkpoint's identity, so a job resumed across GPU counts
    (streams it cannot continue); and the global batch became batch_size x processes at the same learning rate."""
    from inloop.training.run import default_checkpoint

    args = (workdir / "store", "glfusion", {"channels": 4}, {"steps": 20, "lr": 2e-3},
            {"codec": "x265", "config": "ai", "qp": 37})
    monkeypatch.setenv("WORLD_SIZE", "1")
    one = default_checkpoint(*args)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert default_checkpoint(*args) != one
    p = yaml.safe_load((workdir / "params.yaml").read_text())
    p["train"].update(batch_size=3, checkpoint_dir=str(tmp_path / "ckpt"))
    (tmp_path / "p3.yaml").write_text(yaml.safe_dump(p))
    cmd = train_cmd(workdir, tmp_path / "m.pt") + ["--no-mlflow"]
    cmd[cmd.index("--params") + 1] = str(tmp_path / "p3.yaml")
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    r = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "inloop.cli", *cmd[1:]],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "train.batch_size=3 is the global batch" in r.stderr, r.stderr[-2000:]


def test_a_forced_rerun_trains_again_and_a_lost_mlflow_run_starts_a_new_one(workdir, tmp_path):
    """`snakemake --forcerun train` (or a deleted model file) used to resume the finished checkpoint:
    "20 steps (0 this run)" and no validation. And a checkpoint whose MLflow run is not in the current
    store (MLFLOW_TRACKING_URI changed since) used to crash with RESOURCE_DOES_NOT_EXIST."""
    p = yaml.safe_load((workdir / "params.yaml").read_text())
    p["train"].update(steps=20, val_every=10, checkpoint_dir=str(tmp_path / "ckpt"))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    cmd = train_cmd(workdir, tmp_path / "m.pt")
    cmd[cmd.index("--params") + 1] = str(tmp_path / "params.yaml")
    first = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'first.db'}"}
    assert subprocess.run(cmd, env=first, capture_output=True, text=True).returncode == 0
    (ckpt,) = list((tmp_path / "ckpt").rglob("qp*.ckpt"))
    assert torch.load(ckpt, weights_only=True)["step"] == 20
    # again, in another MLflow store: trains all 20 steps afresh, validates, tracks in a new run
    other = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'other.db'}"}
    again = subprocess.run(cmd, env=other, capture_output=True, text=True)
    assert again.returncode == 0, (again.stdout + again.stderr)[-2000:]
    assert "training again from scratch" in again.stdout
    r = json.loads((tmp_path / "m.json").read_text())
    assert r["result"]["steps_this_run"] == 20 and r["result"]["val_delta_psnr"] == r["result"]["val_delta_psnr"]
    # an interrupted run resumed in a store that does not know its run: a warning and a new run
    from inloop.training.tracking import Tracker

    with pytest.warns(RuntimeWarning, match="not in .* the resumed training is tracked in a new run"):
        t = Tracker("inloop", "x", uri=other["MLFLOW_TRACKING_URI"], resume_run_id="0" * 32)
    assert t.run_id and t.run_id != "0" * 32 and t.resumed_elsewhere == "0" * 32


def test_the_checkpoint_name_changes_with_the_training_code(workdir, monkeypatch):
    from inloop.training import run

    args = (workdir / "store", "glfusion", {"channels": 4}, {"steps": 20, "lr": 1e-3},
            {"model": "glfusion", "codec": "x265", "config": "ai", "qp": 37})
    before = run.default_checkpoint(*args)
    monkeypatch.setattr(run, "TRAINING_CODE", "another-code")
    assert run.default_checkpoint(*args) != before


# ------------------------------------------------------------- faults as one-line errors (issue #18, items 7 and 12)

def _params_copy(workdir, tmp_path, **train):
    p = yaml.safe_load((workdir / "params.yaml").read_text())
    p["train"].update(train)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    return tmp_path / "params.yaml"


def _cmd(workdir, out, params):
    cmd = train_cmd(workdir, out)
    cmd[cmd.index("--params") + 1] = str(params)
    return cmd


def _one_line_error(proc, *fragments):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines and lines[-1].startswith("inloop train: error: "), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for f in fragments:
        assert f in lines[-1], lines[-1]


def test_a_truncated_checkpoint_is_one_line_naming_it(workdir, tmp_path):
    params = _params_copy(workdir, tmp_path, steps=20, checkpoint_dir=str(tmp_path / "ckpt"))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}"}
    assert subprocess.run(_cmd(workdir, tmp_path / "m.pt", params), env=env, capture_output=True).returncode == 0
    (ckpt,) = list((tmp_path / "ckpt").rglob("qp*.ckpt"))
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    proc = subprocess.run(_cmd(workdir, tmp_path / "m.pt", params), env=env, capture_output=True, text=True)
    _one_line_error(proc, str(ckpt), "unreadable checkpoint", "delete it and run again")


def test_a_damaged_mlflow_store_is_one_line_naming_it(workdir, tmp_path):
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"SQLite format 3\x00" + b"\x07" * 300)  # a truncated database
    params = _params_copy(workdir, tmp_path, steps=20, checkpoint_dir=str(tmp_path / "ckpt"))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    proc = subprocess.run(_cmd(workdir, tmp_path / "m.pt", params), env=env, capture_output=True, text=True)
    _one_line_error(proc, f"MLflow store sqlite:///{db}", "MLFLOW_TRACKING_URI")
    assert not (tmp_path / "m.pt").exists()


def test_an_unwritable_output_folder_is_one_line_naming_it(workdir, tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    out = tmp_path / "afile" / "m.pt"
    params = _params_copy(workdir, tmp_path, steps=10, checkpoint_dir=str(tmp_path / "ckpt"))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}"}
    proc = subprocess.run(_cmd(workdir, out, params), env=env, capture_output=True, text=True)
    _one_line_error(proc, str(tmp_path / "afile"))


def test_a_full_disk_while_saving_a_checkpoint_is_one_line_and_keeps_nothing_half_written(workdir, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(full)], capture_output=True).returncode:
        pytest.skip("cannot mount a 4 KiB tmpfs here (needs root and mount rights) to fill a disk")
    try:
        params = _params_copy(workdir, tmp_path, steps=20, checkpoint_dir=str(full))
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}"}
        proc = subprocess.run(_cmd(workdir, tmp_path / "m.pt", params), env=env, capture_output=True, text=True)
        _one_line_error(proc, "could not write the checkpoint", str(full))
        assert not [p for p in full.rglob("*") if p.is_file()]  # no partial checkpoint left behind
    finally:
        subprocess.run(["umount", str(full)], check=True)


def test_a_job_killed_before_its_first_checkpoint_leaves_no_run_running(workdir, tmp_path):
    """The run of a job killed before its first checkpoint stayed RUNNING forever beside the next one."""
    from mlflow.tracking import MlflowClient

    params = _params_copy(workdir, tmp_path, steps=300, checkpoint_every=1000, checkpoint_dir=str(tmp_path / "ckpt"))
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    cmd = _cmd(workdir, tmp_path / "m.pt", params)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    # Watch the store read-only with sqlite3: an MLflow client here would race the job's table creation.
    import sqlite3

    deadline = time.time() + 120
    rows = []
    while time.time() < deadline and not rows:
        assert proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.2)
        try:
            with sqlite3.connect(f"file:{tmp_path / 'm.db'}?mode=ro", uri=True) as db:
                rows = db.execute("SELECT run_uuid, status FROM runs").fetchall()
        except sqlite3.Error:  # not created yet, or being created
            rows = []
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not list((tmp_path / "ckpt").rglob("*.ckpt")) and rows == [(rows[0][0], "RUNNING")]
    killed_run = rows[0][0]
    again = subprocess.run(_cmd(workdir, tmp_path / "m.pt", _params_copy(workdir, tmp_path, steps=20,
                                                                              checkpoint_every=1000,
                                                                              checkpoint_dir=str(tmp_path / "ckpt"))),
                           env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    client = MlflowClient(uri)
    exp = client.get_run(killed_run).info.experiment_id
    status = {r.info.run_id: r.info.status for r in client.search_runs([exp])}
    assert status.pop(killed_run) == "KILLED" and list(status.values()) == ["FINISHED"]


def test_a_training_log_file_has_one_line_per_interval_and_per_validation(workdir, tmp_path):
    """Issue #30 item 3: into a file (the rule's log) the progress bar was one line of thousands of carriage
    returns, with no line to grep for a step, a loss or a validation. Into a file each log interval is now one
    line (step, losses, rate, elapsed) and each validation another; on a terminal the bar stays."""
    p = yaml.safe_load((workdir / "params.yaml").read_text())
    p["train"].update(steps=20, log_every=5, val_every=10, checkpoint_dir=str(tmp_path / "ckpt"))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    cmd = train_cmd(workdir, tmp_path / "m.pt") + ["--no-mlflow"]
    cmd[cmd.index("--params") + 1] = str(tmp_path / "params.yaml")
    log = tmp_path / "train.log"
    with open(log, "w") as fh:
        assert subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT).returncode == 0
    text = log.read_text()
    assert "\r" not in text
    steps = [ln for ln in text.splitlines() if ln.startswith("step ")]
    assert [ln.split()[1] for ln in steps] == ["5/20", "10/20", "15/20", "20/20"]
    assert all(" mse=" in ln and " step/s elapsed " in ln for ln in steps)
    vals = [ln for ln in text.splitlines() if ln.startswith("validation step ")]
    assert [ln.split()[2] for ln in vals] == ["10:", "20:"] and all("val_delta_psnr=" in ln for ln in vals)
