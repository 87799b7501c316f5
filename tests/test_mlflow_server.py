"""Training against an MLflow tracking server, as cluster jobs do (README: "MLflow on a cluster"):
a real `mlflow server` on 127.0.0.1, two `inloop train` processes logging to it at once through
MLFLOW_TRACKING_URI, the model uploaded through the server, and no sqlite file beside the jobs."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import train_cmd

MLFLOW = str(Path(sys.executable).with_name("mlflow"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def mlflow_server(tmp_path):
    """`mlflow server` with a sqlite store and proxied artifacts in its own folder (a login node's disk)."""
    home = tmp_path / "server"
    home.mkdir()
    port = _free_port()
    log = open(home / "server.log", "wb")
    proc = subprocess.Popen(
        [MLFLOW, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}", "--artifacts-destination", str(home / "artifacts")],
        cwd=home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            log.close()
            pytest.fail(f"mlflow server did not start: {(home / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    try:
        yield uri, home
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.mark.slow
def test_training_jobs_log_to_a_tracking_server(train_workdir, mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    uri, server_home = mlflow_server
    params = yaml.safe_load((train_workdir / "params.yaml").read_text())
    params["train"].update(steps=20, log_every=5, val_every=10, checkpoint_every=10)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    jobs = tmp_path / "jobs"  # the jobs' working directory: the tracking URI must keep it free of mlflow.db
    jobs.mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    procs = {}
    for qp in (32, 37):  # two jobs at once, as two cluster nodes would
        (tmp_path / f"qp{qp}").mkdir()
        cmd = train_cmd(train_workdir, tmp_path / f"qp{qp}" / "model.pt")
        cmd[cmd.index("--qp") + 1] = str(qp)
        cmd[cmd.index("--params") + 1] = str(tmp_path / "params.yaml")
        cmd += ["--checkpoint", str(tmp_path / f"qp{qp}.ckpt")]
        procs[qp] = subprocess.Popen(cmd, cwd=jobs, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for qp, p in procs.items():
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out[-3000:]

    client = MlflowClient(uri)
    for qp in (32, 37):
        report = json.loads((tmp_path / f"qp{qp}" / "model.json").read_text())
        run = client.get_run(report["mlflow_run_id"])
        assert run.info.status == "FINISHED"
        assert run.data.tags["qp"] == str(qp) and run.data.params["train.steps"] == "20"
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_mse")]
        assert sorted(steps) == [5, 10, 15, 20]
        assert "val_delta_psnr" in run.data.metrics
        # The model went through the server into its artifact store, byte for byte.
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["model.pt"]
        stored = [p for p in (server_home / "artifacts").rglob("model.pt") if run.info.run_id in p.parts]
        assert len(stored) == 1 and stored[0].read_bytes() == (tmp_path / f"qp{qp}" / "model.pt").read_bytes()
    runs = client.search_runs([run.info.experiment_id])
    assert len(runs) == 2
    assert not list(jobs.rglob("mlflow.db")) and not list(tmp_path.glob("results"))
