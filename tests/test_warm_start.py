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
