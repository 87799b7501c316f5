"""Warm start (``models.<name>.train.warm_start``): a model's other QPs start from one QP's trained model
(issue #20: the demo's GL-Fusion fits its time budget this way; docs/results.md, "warm start")."""

from __future__ import annotations

import pytest
import torch
import yaml

from conftest import dry_run_trains
from inloop.errors import InloopError
from inloop.models.io import torch_load
from inloop.training.run import train_model

GLF = {"channels": 4, "hgf_depth": 2, "hlf_modules": 1}
POINT = {"codec": "x265", "config": "ai", "qp": 22}


def _train(workdir, tmp_path, out, **changes):
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    train = {**params["train"], "steps": 3, "checkpoint_every": 3, "val_every": 3, "log_every": 1,
             "checkpoint_dir": str(tmp_path / "ckpt"), **changes.pop("train", {})}
    return train_model(workdir / "store", tmp_path / out, "glfusion", changes.pop("kwargs", GLF), train,
                       changes.pop("describe", POINT), track=False, **changes)


def _weights(path):
    state = torch_load(path, "model file")["state_dict"]
    return {k: v for k, v in state.items() if "running_" not in k and "num_batches" not in k}


def test_a_warm_start_begins_at_the_other_qps_weights_and_runs_its_own_steps(train_workdir, tmp_path):
    source = tmp_path / "qp37.pt"
    _train(train_workdir, tmp_path, "qp37.pt", describe={**POINT, "qp": 37}, train={"residual_scale": 0.5})
    frozen = {"lr": 0.0, "warm_start": {"qp": 37, "steps": 2}, "residual_scale": "distortion"}  # lr 0: the weights stay where they started
    report = _train(train_workdir, tmp_path, "warm.pt", train=frozen, init_from=source)
    assert report["result"]["steps"] == 2  # warm_start.steps, not train.steps (3)
    warm, src = _weights(tmp_path / "warm.pt"), _weights(source)
    assert all(torch.equal(warm[k], src[k]) for k in src if k != "residual_scale")
    # the output scale is this run's (the distortion's spread), not the source's 0.5
    cold_report = _train(train_workdir, tmp_path, "cold.pt", train={"lr": 0.0, "residual_scale": "distortion"})
    assert float(src["residual_scale"]) == 0.5
    assert float(warm["residual_scale"]) == cold_report["residual_scale"] != 0.5
    # without the warm start the same run starts from the initialisation instead
    cold = _weights(tmp_path / "cold.pt")
    assert not all(torch.equal(cold[k], src[k]) for k in src if k != "residual_scale")


def test_a_warm_start_from_another_network_is_refused_with_the_file_named(train_workdir, tmp_path):
    source = tmp_path / "qp37.pt"
    _train(train_workdir, tmp_path, "qp37.pt", describe={**POINT, "qp": 37})
    with pytest.raises(InloopError, match=f"{source}: a warm start needs the same network and settings"):
        _train(train_workdir, tmp_path, "warm.pt", kwargs={**GLF, "channels": 8}, init_from=source,
               train={"warm_start": {"qp": 37, "steps": 2}})
    assert not (tmp_path / "warm.pt").exists()
    with pytest.raises(InloopError, match="needs train.warm_start.steps"):
        _train(train_workdir, tmp_path, "warm.pt", init_from=source)


def test_the_pipeline_trains_the_source_qp_first_and_starts_the_others_from_it(tmp_path):
    out, trains = dry_run_trains(tmp_path, "models: {glfusion: {channels: 4, train: {warm_start: {qp: 37, steps: 5}}}}")
    assert out.returncode == 0, out.stderr
    assert len(trains) == 4
    for qp, line in trains:
        started = "--init-from results/models/glfusion/x265/ai/qp37/model.pt" in line
        assert started == (qp != "37"), line
    out, _ = dry_run_trains(tmp_path, "models: {glfusion: {channels: 4, train: {warm_start: {qp: 30, steps: 5}}}}")
    assert out.returncode != 0
    assert "models.glfusion.train.warm_start.qp: 30 is not one of the model's QPs" in out.stdout + out.stderr


def test_a_warm_start_from_other_weights_trains_afresh_and_from_the_same_weights_resumes(train_workdir, tmp_path):
    """A warm-started job killed midway, then run again from another source model (its QP 37 model trained again
    after a change upstream): its checkpoint had started from the old weights but was keyed without them, so the
    job found it and stopped ("checkpoint ... was made for ..., delete it to start again"). The starting weights
    are part of the checkpoint's identity now: another source trains afresh, the same one resumes."""
    import json
    import os
    import signal
    import subprocess
    import time

    from conftest import INLOOP

    for name, seed in (("a.pt", 1), ("b.pt", 2)):  # two QP 37 models of the same network and settings
        _train(train_workdir, tmp_path, name, train={"seed": seed}, describe={**POINT, "qp": 37})
    params = yaml.safe_load((train_workdir / "params.yaml").read_text())
    params["train"].update(checkpoint_dir=str(tmp_path / "warm-ckpt"), checkpoint_every=1, log_every=1)
    params["models"]["glfusion"]["train"] = {"warm_start": {"qp": 37, "steps": 60}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "warm.pt"
    cmd = [INLOOP, "train", "--model", "glfusion", "--store", str(train_workdir / "store"), "--out", str(out),
           "--codec", "x265", "--config", "ai", "--qp", "22", "--threads", "1", "--no-mlflow",
           "--params", str(tmp_path / "params.yaml")]

    def killed_midway(source):
        before = set((tmp_path / "warm-ckpt").rglob("qp*.ckpt"))
        proc = subprocess.Popen(cmd + ["--init-from", str(source)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline and not set((tmp_path / "warm-ckpt").rglob("qp*.ckpt")) - before:
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        (ckpt,) = set((tmp_path / "warm-ckpt").rglob("qp*.ckpt")) - before
        step = torch_load(ckpt, "checkpoint")["step"]
        assert 0 < step < 60 and not out.exists()
        return step

    step = killed_midway(tmp_path / "a.pt")
    fresh = subprocess.run(cmd + ["--init-from", str(tmp_path / "b.pt")], capture_output=True, text=True)
    assert fresh.returncode == 0, fresh.stdout[-1500:] + fresh.stderr[-1500:]
    result = json.loads(out.with_suffix(".json").read_text())["result"]
    assert result["resumed_from"] == 0 and result["steps_this_run"] == 60
    out.unlink()
    again = subprocess.run(cmd + ["--init-from", str(tmp_path / "a.pt")], capture_output=True, text=True)
    assert again.returncode == 0, again.stdout[-1500:] + again.stderr[-1500:]
    result = json.loads(out.with_suffix(".json").read_text())["result"]  # the killed one's source: it resumes
    assert result["resumed_from"] >= step and result["steps"] == 60 and result["steps_this_run"] < 60
