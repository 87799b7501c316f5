"""SPiLF's stage 1 from another training (``models.<name>.train.spilf.stage1_from``): the source's job keeps its
state at the end of the consumer's stage 1 in its model file, the consumer's job continues from it and writes the
model a run from step 0 writes (docs/results.md, "ArabicaPerceptual's stage 1 from Arabica's training")."""

from __future__ import annotations

import pytest
import torch
import yaml

from conftest import dry_run_trains
from inloop.errors import InloopError, ParamsError
from inloop.models.io import torch_load
from inloop.params import check_stage1_sources, stage1_handoffs, stage1_source
from inloop.training.run import train_model

TINY = {"channels": 8, "grad_blocks": 1, "pixel_units": 1, "dru_layers": 2, "growth": 4, "reduction": 2}
POINT = {"codec": "x265", "config": "ai", "qp": 37}
SPILF = {"plateau_window": 1, "plateau_patience": 0, "disc_channels": 8, "disc_layers": 2}


def _params(workdir, tmp_path, perceptual: dict | None = None) -> dict:
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["train"].update(steps=5, checkpoint_every=5, val_every=5, log_every=1, batch_size=2,
                           checkpoint_dir=str(tmp_path / "ckpt"), models=["arabica", "perceptual"])
    params["models"] = {
        "arabica": {"arch": "spilf", **TINY, "train": {"spilf": {**SPILF, "variant": "arabica", "stage1_steps": 3}}},
        # the same network settings written in another order (the files compare them as settings, not text)
        "perceptual": {"arch": "spilf", **dict(reversed(TINY.items())), "train": {"spilf": {
            **SPILF, "variant": "arabica", "weights": {"adv": 0.05}, "stage1_steps": 3, "stage1_from": "arabica",
            **(perceptual or {})}}},
    }
    return params


def _train(workdir, tmp_path, params, name, out, **kw):
    from inloop.params import model_spec

    spec = model_spec(params, name)
    return train_model(workdir / "store", tmp_path / out, spec["arch"], spec["kwargs"], spec["train"], POINT,
                       track=False, name=name, params=params, **kw)


def _state(path):
    return torch_load(path, "model file")["state_dict"]


def test_the_consumer_continues_the_kept_state_and_writes_the_model_of_a_run_from_step_0(train_workdir, tmp_path):
    params = _params(train_workdir, tmp_path)
    assert stage1_source(params, "perceptual") == "arabica" and stage1_handoffs(params, "arabica") == [3]
    _train(train_workdir, tmp_path, params, "arabica", "arabica.pt", keep_states=(3,))
    source = torch_load(tmp_path / "arabica.pt", "model file")
    assert sorted(source["kept_states"]) == [3] and source["describe"]["keeps_states_at"] == [3]
    report = _train(train_workdir, tmp_path, params, "perceptual", "cont.pt", stage1_from=tmp_path / "arabica.pt")
    assert report["result"]["steps"] == 5 and report["result"]["resumed_from"] == 3
    assert len(report["stage1_from_sha256"]) == 64
    # the same training from step 0 (the source not used): the same weights, bit for bit
    alone = {**params, "train": {**params["train"], "models": ["perceptual"]}}
    assert stage1_source(alone, "perceptual") is None  # a source not trained here: the job runs stage 1 itself
    _train(train_workdir, tmp_path, alone, "perceptual", "straight.pt")
    cont, straight = _state(tmp_path / "cont.pt"), _state(tmp_path / "straight.pt")
    assert cont.keys() == straight.keys() and all(torch.equal(cont[k], straight[k]) for k in cont)


def test_a_source_that_is_not_the_consumers_stage1_is_refused_naming_the_file_and_key(train_workdir, tmp_path):
    params = _params(train_workdir, tmp_path)
    _train(train_workdir, tmp_path, params, "arabica", "arabica.pt")  # kept nothing
    with pytest.raises(InloopError, match=r"arabica.pt: arabica's model file keeps no state at step 3"):
        _train(train_workdir, tmp_path, params, "perceptual", "cont.pt", stage1_from=tmp_path / "arabica.pt")
    _train(train_workdir, tmp_path, params, "arabica", "arabica.pt", keep_states=(3,))
    other_lr = {**params, "models": {**params["models"], "perceptual": {
        **params["models"]["perceptual"], "train": {**params["models"]["perceptual"]["train"], "lr": 5e-4}}}}
    with pytest.raises(InloopError, match=r"arabica's first 3 steps are not this training's stage 1 \(train.lr: "):
        _train(train_workdir, tmp_path, other_lr, "perceptual", "cont.pt", stage1_from=tmp_path / "arabica.pt")
    with pytest.raises(InloopError, match="was trained with qp 37, this model with 22"):
        from inloop.params import model_spec

        spec = model_spec(params, "perceptual")
        train_model(train_workdir / "store", tmp_path / "cont.pt", "spilf", spec["kwargs"], spec["train"],
                    {**POINT, "qp": 22}, track=False, name="perceptual", params=params,
                    stage1_from=tmp_path / "arabica.pt")
    assert not (tmp_path / "cont.pt").exists()


def test_bad_stage1_from_params_name_the_key(train_workdir, tmp_path):
    params = _params(train_workdir, tmp_path)
    check_stage1_sources(params)
    for source, message in (("nope", "stage1_from: nope is not an entry of models:"),
                            ("perceptual", "stage1_from: perceptual is the model itself"),
                            ("glfusion", "stage1_from: SPiLF.s stage 1 continues only another SPiLF training")):
        bad = _params(train_workdir, tmp_path, {"stage1_from": source})
        bad["models"]["glfusion"] = {"channels": 4}
        with pytest.raises(ParamsError, match=f"models.perceptual.train.spilf.{message}"):
            check_stage1_sources(bad)
    unset = _params(train_workdir, tmp_path)
    del unset["models"]["perceptual"]["train"]["spilf"]["stage1_steps"]
    with pytest.raises(ParamsError, match="models.perceptual.train.spilf.stage1_steps: needed with stage1_from"):
        check_stage1_sources(unset)


def test_the_pipeline_gives_each_perceptual_training_its_arabica_model(tmp_path):
    """The demo's params: each ArabicaPerceptual job starts from Arabica's model file at its QP (--stage1-from);
    a bad source stops the run before any job."""
    out, trains = dry_run_trains(tmp_path, "train: {models: [spilf-arabica, spilf-perceptual]}")
    assert out.returncode == 0, out.stderr
    assert len(trains) == 6
    for qp, line in trains:
        continued = f"--stage1-from results/models/spilf-arabica/x265/ai/qp{qp}/model.pt" in line
        assert continued == ("--model spilf-perceptual" in line) and "--init-from" not in line, line
    out, _ = dry_run_trains(tmp_path, "train: {models: [spilf-arabica, spilf-perceptual]}\n"
                                      "models: {spilf-perceptual: {train: {spilf: {stage1_from: spilf-arabca}}}}")
    assert out.returncode != 0
    assert "models.spilf-perceptual.train.spilf.stage1_from: spilf-arabca is not an entry of models:" in \
        out.stdout + out.stderr
