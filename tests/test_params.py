"""params.yaml loading: the CLI reads the workflow's merged configuration."""

import os

import pytest
import yaml

from inloop.params import cli_params, write_resolved


def test_cli_reads_the_merged_config_from_env(tmp_path, monkeypatch):
    merged = {"train": {"steps": 20}, "models": {"glfusion": {"channels": 4}}}
    path = write_resolved(merged, tmp_path / "inloop")
    assert yaml.safe_load(path.read_text()) == merged
    monkeypatch.chdir(tmp_path)  # no ./params.yaml here
    monkeypatch.delenv("INLOOP_PARAMS", raising=False)
    assert cli_params() == {}
    monkeypatch.setenv("INLOOP_PARAMS", str(path))
    assert cli_params()["train"]["steps"] == 20
    other = tmp_path / "other.yaml"
    other.write_text("train: {steps: 5}\n")
    assert cli_params(other)["train"]["steps"] == 5  # --params wins


def test_each_configuration_gets_its_own_file_written_once(tmp_path):
    a = write_resolved({"a": 1}, tmp_path)
    os.utime(a, ns=(1, 1))
    assert write_resolved({"a": 1}, tmp_path) == a and a.stat().st_mtime_ns == 1
    b = write_resolved({"a": 2}, tmp_path)  # another run's --configfile: another file, the first untouched
    assert b != a and yaml.safe_load(a.read_text()) == {"a": 1} and yaml.safe_load(b.read_text()) == {"a": 2}


def test_model_spec_merges_train_overrides_and_names_bad_keys():
    import pytest

    from inloop.errors import ParamsError
    from inloop.params import model_spec, store_key

    p = {"encode": {"qps": [22, 27, 32, 37]},
         "train": {"configs": ["ai"], "lr": 2e-3, "patch_size": 48, "spilf": {"stage1_steps": 10}},
         "models": {"glfusion": {"channels": 8},
                    "spilf-p": {"arch": "spilf", "qps": [37, 42], "channels": 16,
                                "train": {"lr": 1e-4, "spilf": {"variant": "arabica-perceptual"}}},
                    "nl": {"arch": "nlconvlstm", "configs": ["ldp"], "frames": 7}}}
    g = model_spec(p, "glfusion")
    assert (g["arch"], g["kwargs"], g["configs"], g["qps"], g["frames"]) == ("glfusion", {"channels": 8}, ["ai"],
                                                                             [22, 27, 32, 37], 1)
    s = model_spec(p, "spilf-p")
    assert s["arch"] == "spilf" and s["kwargs"] == {"channels": 16} and s["qps"] == [37, 42]
    assert s["train"]["lr"] == 1e-4 and s["train"]["patch_size"] == 48
    assert s["train"]["spilf"] == {"stage1_steps": 10, "variant": "arabica-perceptual"}  # deep merge
    n = model_spec(p, "nl")
    assert n["frames"] == 7 and n["configs"] == ["ldp"]
    assert store_key(g) == store_key(s) != store_key(n)  # same store settings share one store
    assert store_key(n).startswith("p48-t7-")
    for bad, key in (({"frames": 4}, "models.x.frames"), ({"qps": []}, "models.x.qps"),
                     ({"train": [1]}, "models.x.train")):
        with pytest.raises(ParamsError, match=key):
            model_spec({**p, "models": {"x": bad}}, "x")


def test_every_config_file_merges_into_models_that_build():
    """params.yaml alone and merged with each config/*.yaml (as `--configfile` does): every trained model's
    spec resolves and its network builds with those keywords (a typo in a config file fails here, not in a job)."""
    from pathlib import Path

    from inloop.models import build_model
    from inloop.params import _deep_merge, model_spec

    root = Path(__file__).resolve().parents[1]
    base = yaml.safe_load((root / "params.yaml").read_text())
    configs = sorted((root / "config").glob("*.yaml"))
    assert configs
    for cfg in [None, *configs]:
        merged = _deep_merge(base, yaml.safe_load(cfg.read_text())) if cfg else base
        for name in merged["train"]["models"]:
            spec = model_spec(merged, name)
            net = build_model(spec["arch"], **spec["kwargs"])
            assert net.training, (cfg, name)
    ablation = _deep_merge(base, yaml.safe_load((root / "config" / "nlconvlstm-ablation.yaml").read_text()))
    modes = {n: build_model(model_spec(ablation, n)["arch"], **model_spec(ablation, n)["kwargs"]).mode
             for n in ablation["train"]["models"] if model_spec(ablation, n)["arch"] == "nlconvlstm"}
    assert modes == {"nlconvlstm": "nlconvlstm", "nlconvlstm-encdec": "single", "nlconvlstm-convlstm": "convlstm",
                     "nlconvlstm-me": "meconvlstm"}
    assert model_spec(ablation, "nlconvlstm-convlstm")["qps"] == [37]
    assert set(ablation["train"]["models"]) >= set(base["train"]["models"])  # the demo's models stay


def test_an_ablation_variant_keeps_its_bases_sizes_whichever_config_set_them():
    from pathlib import Path

    from inloop.errors import ParamsError
    from inloop.params import _deep_merge, model_spec

    root = Path(__file__).resolve().parents[1]
    base = yaml.safe_load((root / "params.yaml").read_text())
    ablation = yaml.safe_load((root / "config" / "glfusion-ablation.yaml").read_text())
    paper = yaml.safe_load((root / "config" / "paper-glfusion.yaml").read_text())
    demo = model_spec(_deep_merge(base, ablation), "glfusion-hgf")
    full = model_spec(_deep_merge(_deep_merge(base, paper), ablation), "glfusion-hgf")
    assert demo["arch"] == full["arch"] == "glfusion"
    assert (demo["kwargs"]["channels"], full["kwargs"]["channels"]) == (8, 64)  # the demo's and the paper's width
    assert demo["kwargs"]["branches"] == ["hgf"] and full["configs"] == ["ai"]
    assert full["train"]["batch_size"] == 32  # the paper config's training, inherited
    with pytest.raises(ParamsError, match="is a cycle"):
        model_spec({"models": {"a": {"base": "b"}, "b": {"base": "a"}}}, "a")
    with pytest.raises(ParamsError, match="'nope' is not an entry of models"):
        model_spec({"models": {"a": {"base": "nope"}}}, "a")
