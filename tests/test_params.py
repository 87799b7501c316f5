"""params.yaml loading: the CLI reads the workflow's merged configuration."""

import os
import re

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


def test_a_job_trusts_the_checked_file_the_workflow_wrote_and_checks_any_other(tmp_path, monkeypatch):
    from inloop.errors import ParamsError

    # write_resolved's caller (the Snakefile) checks the config first; this one it would have refused
    refused = {"train": {"stepz": 20}}
    resolved = write_resolved(refused, tmp_path / "inloop")
    assert cli_params(resolved) == refused  # read as written: no second check in each of ~280 jobs
    copy = tmp_path / "mine.yaml"  # the same text under a name of one's own: checked, as any --params file
    copy.write_text(resolved.read_text())
    with pytest.raises(ParamsError, match=r"mine.yaml: train.stepz: unknown key"):
        cli_params(copy)
    resolved.write_text(resolved.read_text().replace("20", "21"))  # edited since: no longer what was checked
    with pytest.raises(ParamsError, match=r"params-[0-9a-f]{12}.yaml: train.stepz: unknown key"):
        cli_params(resolved)


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
    assert set(ablation["train"]["models"]) == set(modes)  # only NL-ConvLSTM and its ablation columns (#26 item 4)


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


# ---------------------------------------------------------------- schema checks (issue #18, item 11)

def _repo_params():
    from inloop.params import load_params

    return load_params(os.path.join(os.path.dirname(__file__), "..", "params.yaml"))


@pytest.mark.parametrize("path, value, message", [
    ("train.stepz", 5, "train.stepz: unknown key; known: models, configs"),
    ("stepz", 5, "stepz: unknown key; known: codecs, encode"),
    ("codecs.x265.foo", 1, "codecs.x265.foo: unknown key"),
    ("codecs.hvm", {}, "codecs.hvm: unknown key; known: x265, hm, vtm, ecm"),
    ("metrics.lpips.backbone", "a.pth", "metrics.lpips.backbone: unknown key; known: cache_dir"),
    ("datasets.outt", "x", "datasets.outt: unknown key"),
    ("evaluate.tiles", 64, "evaluate.tiles: unknown key"),
    ("evaluate.jobs", "per-clips", "evaluate.jobs: 'per-clips' is not one of ['per-clip', 'per-qp']"),
    ("train.steps", -5, "train.steps: -5 is less than the minimum of 1"),
    ("train.lr", "fast", "train.lr: 'fast' is not of type 'number'"),
    ("encode.filters", ["of"], "encode.filters.0: 'of' is not one of"),
])
def test_bad_keys_and_values_are_named(path, value, message):
    import copy

    from inloop.errors import ParamsError
    from inloop.params import check_params

    p = copy.deepcopy(_repo_params())
    check_params(p, "params.yaml")  # the repository's own params pass
    *parents, last = path.split(".")
    d = p
    for k in parents:
        d = d[k]
    d[last] = value
    with pytest.raises(ParamsError) as exc:
        check_params(p, "my.yaml")
    assert str(exc.value).startswith(f"my.yaml: {message}"), str(exc.value)


@pytest.mark.parametrize("block, message", [
    ({"chanels": 8}, "models.glfusion.chanels: not a parameter of glfusion; accepted: "),
    ({"train": {"stepz": 3}}, "models.glfusion.train (merged over train): stepz: unknown key"),
    ({"train": {"steps": 0}}, "models.glfusion.train (merged over train): steps: 0 is less than the minimum"),
    ({"arch": "glfuzion"}, "models.glfusion.arch: unknown network 'glfuzion'"),
    ({"train": {"spilf": {"varient": "x"}}}, "models.glfusion.train (merged over train): spilf.varient: unknown key"),
    ({"train": {"spilf": {"lr": 1e-3}}}, "models.glfusion.train (merged over train): spilf.lr: unknown key"),
    ({"train": {"spilf": {"gan_form": "wgan"}}}, "models.glfusion.train (merged over train): spilf.gan_form: 'wgan' is not one of"),
])
def test_model_blocks_are_checked_before_any_job(block, message):
    import copy

    from inloop.errors import ParamsError
    from inloop.params import check_models

    p = copy.deepcopy(_repo_params())
    check_models(p, "params.yaml")
    p["models"]["glfusion"] = {**p["models"]["glfusion"], **block}
    with pytest.raises(ParamsError) as exc:
        check_models(p, "my.yaml")
    assert str(exc.value).startswith(f"my.yaml: {message}"), str(exc.value)


def test_cli_and_snakemake_refuse_an_unknown_key_in_one_line(tmp_path):
    """`train.stepz` used to pass everywhere; `train.steps: -5` wrote a model trained 0 steps."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {stepz: 5}\n")
    proc = subprocess.run([sys.executable, "-m", "inloop.cli", "train", "--params", str(bad), "--model", "glfusion",
                           "--store", str(tmp_path / "none"), "--out", str(tmp_path / "m.pt"), "--codec", "x265",
                           "--config", "ai", "--qp", "37"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"inloop train: error: {bad}: train.stepz: unknown key; known: " + proc.stderr.split("known: ", 1)[1].strip()]
    assert not (tmp_path / "m.pt").exists()
    neg = tmp_path / "neg.yaml"
    neg.write_text("train: {steps: -5}\n")
    import shutil

    wf = tmp_path / "wf"
    wf.mkdir()
    for item in ("Snakefile", "params.yaml", "config", "workflow", "envs"):
        (shutil.copytree if (repo / item).is_dir() else shutil.copy2)(repo / item, wf / item)
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "all", "--configfile", str(neg)],
                          capture_output=True, text=True, cwd=wf)
    assert proc.returncode != 0 and "train.steps: -5 is less than the minimum of 1" in proc.stdout + proc.stderr


def test_a_config_applied_to_params_yaml_is_what_snakemake_would_merge(tmp_path):
    """`dvc repro` reads params.yaml only (issue #18, item 9): `inloop params apply CONFIG` writes a config into
    it as --configfile merges it, keeping the file's comments; a bad config leaves it untouched."""
    import subprocess
    import sys
    from pathlib import Path

    from inloop.params import _deep_merge, load_params, normalize

    repo = Path(__file__).resolve().parents[1]
    params = tmp_path / "params.yaml"
    params.write_text((repo / "params.yaml").read_text())
    cmd = [sys.executable, "-m", "inloop.cli", "params", "apply", str(repo / "config" / "tiny.yaml"),
           str(repo / "config" / "hm.yaml"), "--params", str(params)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "train.steps" in proc.stdout and "encode.codec" in proc.stdout
    want = load_params(repo / "params.yaml")
    for c in ("tiny.yaml", "hm.yaml"):
        want = _deep_merge(want, yaml.safe_load((repo / "config" / c).read_text()))
    assert load_params(params) == normalize(want)
    before, after = (repo / "params.yaml").read_text(), params.read_text()
    comments = [line.split("#", 1)[1] for line in before.splitlines() if "#" in line]
    assert all(c in after for c in comments)  # every comment kept
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {stepz: 5}\n")
    proc = subprocess.run([*cmd[:5], str(bad), "--params", str(params)], capture_output=True, text=True)
    assert proc.returncode == 2 and "train.stepz: unknown key" in proc.stderr
    assert params.read_text() == after


def test_a_params_file_that_is_not_yaml_is_one_line_naming_it(tmp_path):
    from inloop.errors import ParamsError
    from inloop.params import load_params

    bad = tmp_path / "params.yaml"
    bad.write_text("train:\n  steps: [1, 2\n")
    with pytest.raises(ParamsError, match=rf"^{re.escape(str(bad))}: not valid YAML"):
        load_params(bad)


def test_lpips_is_measured_where_the_listed_networks_are_evaluated_and_nowhere_else():
    """metrics.lpips.models: the listed networks' evaluations (every seed) and the codec's at their configurations
    and QPs measure LPIPS; null: every evaluation; evaluate false: none; a name that is not a models: entry is
    refused naming the key."""
    import copy

    from inloop.errors import ParamsError
    from inloop.params import lpips_measured

    p = _repo_params()
    assert p["metrics"]["lpips"]["models"] == ["spilf-arabica", "spilf-perceptual"]
    assert lpips_measured(p, "spilf-arabica", "ai", 44) and lpips_measured(p, "spilf-perceptual-seed2", "ai", 51)
    assert not lpips_measured(p, "glfusion", "ai", 37) and not lpips_measured(p, "nlconvlstm", "ldp", 37)
    assert lpips_measured(p, None, "ai", 37)  # the codec at a SPiLF point: the anchor and filters-off curves
    assert not lpips_measured(p, None, "ai", 22) and not lpips_measured(p, None, "ldp", 37)
    every = copy.deepcopy(p)
    every["metrics"]["lpips"]["models"] = None
    assert lpips_measured(every, "glfusion", "ai", 22) and lpips_measured(every, None, "ldp", 22)
    every["metrics"]["lpips"]["evaluate"] = False
    assert not lpips_measured(every, "spilf-arabica", "ai", 44) and not lpips_measured(every, None, "ai", 37)
    p["metrics"]["lpips"]["models"] = ["spilf-arabika"]
    with pytest.raises(ParamsError, match="metrics.lpips.models: spilf-arabika is not an entry of models:"):
        lpips_measured(p, None, "ai", 37)
