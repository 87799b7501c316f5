"""Each paper config's DAG at the paper's shape (issue #15): `snakemake -n all` over a synthetic data root
with the papers' dataset names, sizes and (scaled) counts, and the job counts per rule that the paper's
setup implies. Full-scale counts: docs/paper-shapes.md. Plus: no demo-only setting in a paper config that
the config does not declare as a deviation."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from inloop.datasets.shapes import write_shape

REPO = Path(__file__).resolve().parents[1]


def _counts(root: Path, dataset: str, splits: tuple[str, ...]) -> int:
    clips = json.loads((root / "results" / "data" / dataset / "manifest.json").read_text())["clips"]
    return sum(c["split"] in splits for c in clips)


def expected_jobs(config: str, n: dict) -> dict:
    """Jobs per rule the paper's setup implies, from the item counts ``n`` of the data root."""
    if config == "paper-glfusion":   # IV.A: images for AI, sequences for LDP/RA, CTC A-E tested in AI/LDP/RA
        qps, cfgs = 4, 3
        return {"encode": n["images"] * qps + n["videos"] * 2 * qps + n["test"] * cfgs * 2 * qps,
                "patches": cfgs * qps, "train": cfgs * qps,
                "evaluate_codec": n["test"] * cfgs * qps, "evaluate_model": n["test"] * cfgs * qps}
    if config == "paper-spilf":      # 3.1: 8 QPs, AI; two variants share each QP's patch store
        qps, models = 8, 2
        return {"encode": n["images"] * qps + n["test"] * 2 * qps, "patches": qps, "train": models * qps,
                "evaluate_codec": n["test"] * qps, "evaluate_model": n["test"] * qps * models}
    if config == "paper-nlconvlstm-vimeo":   # 4.1: x265 LDP at QP 32 and 37
        qps = 2
        return {"encode": n["videos"] * qps + n["test"] * 2 * qps, "patches": qps, "train": qps,
                "evaluate_codec": n["test"] * qps, "evaluate_model": n["test"] * qps}
    if config == "paper-nlconvlstm-yang":    # 4.1: HM LDP at QP 37 and 42, the standard decode (filters on)
        qps = 2
        return {"encode": (n["videos"] + n["test"]) * qps, "patches": qps, "train": qps,
                "evaluate_codec": n["test"] * qps, "evaluate_model": n["test"] * qps}
    raise KeyError(config)


SHAPES = {  # config: (datasets and their scale in the test, how to count the items)
    "paper-glfusion": (("div2k", "flickr2k", "xiph-derf", "jctvc-ctc"), 0.01),
    "paper-spilf": (("div2k", "clic2022-valid"), 0.05),
    "paper-nlconvlstm-vimeo": (("vimeo90k-septuplet",), 0.002),
    "paper-nlconvlstm-yang": (("mfqe-yang",), 0.1),
}


def _items(config: str, root: Path) -> dict:
    c = lambda ds, *splits: _counts(root, ds, splits)  # noqa: E731
    if config == "paper-glfusion":
        return {"images": c("div2k", "train", "validation") + c("flickr2k", "train"), "videos": c("xiph-derf", "train"),
                "test": c("jctvc-ctc", "test")}
    if config == "paper-spilf":
        return {"images": c("div2k", "train", "validation"), "test": c("clic2022-valid", "test")}
    ds = SHAPES[config][0][0]
    return {"videos": c(ds, "train"), "test": c(ds, "test")}


def job_stats(out: str) -> dict:
    table = out[out.index("Job stats:"):]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.mark.parametrize("config", sorted(SHAPES))
def test_paper_config_dag_at_the_paper_shape(config, tmp_path):
    for item in ("Snakefile", "params.yaml", "config", "workflow"):
        src = REPO / item
        shutil.copytree(src, tmp_path / item) if src.is_dir() else shutil.copy2(src, tmp_path / item)
    datasets, scale = SHAPES[config]
    for ds in datasets:
        write_shape(ds, tmp_path / "results" / "data", scale=scale)
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "all", "--configfile", f"config/{config}.yaml",
                           "--cores", "8", "--quiet", "rules"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    got = job_stats(proc.stdout)
    want = expected_jobs(config, _items(config, tmp_path))
    assert {k: got.get(k, 0) for k in want} == want
    # once each: the split check before training, the LPIPS weights, the report
    assert got["check_splits"] == got["lpips_weights"] == got["report"] == 1


DEMO_ONLY = {  # demo settings (params.yaml) a paper config must override or declare
    "train.residual_scale": "distortion", "train.augment": None, "train.val_fraction": 0.2,
    "train.steps": 1200, "train.batch_size": 4, "models.glfusion.channels": 8,
    "models.spilf-arabica.channels": 16, "models.nlconvlstm.channels": 16, "models.nlconvlstm.pool": 4,
}


def _get(d: dict, dotted: str):
    for k in dotted.split("."):
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


@pytest.mark.parametrize("config", sorted(SHAPES))
def test_no_demo_setting_left_undeclared_in_a_paper_config(config):
    """Each paper config sets the paper's values where params.yaml has demo ones, and lists its deviations."""
    merged = yaml.safe_load((REPO / "params.yaml").read_text())
    cfg = yaml.safe_load((REPO / "config" / f"{config}.yaml").read_text())
    text = (REPO / "config" / f"{config}.yaml").read_text()

    def merge(a: dict, b: dict) -> dict:
        for k, v in b.items():
            a[k] = merge(dict(a.get(k) or {}), v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
        return a

    merged = merge(merged, cfg)
    models = set(merged["train"]["models"])
    for key, demo in DEMO_ONLY.items():
        if key.startswith("models.") and key.split(".")[1] not in models:
            continue
        if key.startswith("train."):  # each model's own train block wins over the train section
            values = {m: _get(merged, f"models.{m}.{key}") for m in models}
            values = {m: _get(merged, key) if v is None else v for m, v in values.items()}
        else:
            values = {key: _get(merged, key)}
        for where, value in values.items():
            assert value != demo, f"{config}: {key} ({where}) is still the demo's {demo!r}"
    paper = {"paper-glfusion": "glfusion", "paper-spilf": "spilf"}.get(config, "nlconvlstm")
    declared = cfg["report"]["deviations"][paper]  # listed for the report's setup and claims comparison
    assert declared and all(isinstance(d, str) and len(d) > 20 for d in declared) and "deviation" in text


def _merged(*configs: str) -> dict:
    from inloop.params import merge_configs

    return merge_configs([REPO / "config" / f"{c}.yaml" for c in configs], REPO / "params.yaml")


@pytest.mark.parametrize("config", sorted(SHAPES))
def test_paper_configs_evaluate_whole_frames(config):
    """#26 items 1-2: the papers filter whole frames (GL-Fusion IV.A, NL-ConvLSTM 4.1); every paper network has
    global context (attention pooling, squeeze-excitation, non-local search), so a tile would change its output."""
    assert _merged(config)["evaluate"].get("tile") is None


def test_a_tile_that_does_not_fit_the_network_is_refused_before_any_job(tmp_path):
    """#26 item 1: the Yang config's evaluate.tile 512 with NL-ConvLSTM's pool 10 failed in every evaluation of a
    frame over 512 pixels; the params check now refuses it up front, naming the key and what would fit."""
    from inloop.errors import ParamsError
    from inloop.params import check_models

    merged = _merged("paper-nlconvlstm-yang")
    merged["evaluate"]["tile"] = 512
    with pytest.raises(ParamsError, match=r"evaluate.tile=512 is not a multiple of models.nlconvlstm's padding "
                                          r"multiple 10: use a multiple of 80"):
        check_models(merged)
    merged["evaluate"]["tile"] = 480
    check_models(merged)
    (tmp_path / "tile.yaml").write_text("evaluate: {tile: 512}\n")
    for item in ("Snakefile", "params.yaml", "config", "workflow"):
        src = REPO / item
        shutil.copytree(src, tmp_path / item) if src.is_dir() else shutil.copy2(src, tmp_path / item)
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "all", "--configfile",
                           "config/paper-nlconvlstm-yang.yaml", "tile.yaml", "--cores", "1", "--quiet"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0 and "evaluate.tile=512 is not a multiple" in proc.stdout + proc.stderr


@pytest.mark.parametrize("base,ablation,trained", [
    ("paper-nlconvlstm-yang", "nlconvlstm-ablation", {"nlconvlstm", "nlconvlstm-encdec", "nlconvlstm-convlstm",
                                                      "nlconvlstm-me"}),
    ("paper-glfusion", "glfusion-ablation", {"glfusion", "glfusion-hgf", "glfusion-hlf", "glfusion-hgf-llf",
                                             "glfusion-plain-resblock", "glfusion-fuse-add", "glfusion-fuse-concat",
                                             "glfusion-fuse-se", "glfusion-sigmoid"}),
])
def test_an_ablation_config_adds_only_its_ablation(base, ablation, trained):
    """#26 item 4: nlconvlstm-ablation.yaml listed glfusion and both SPiLF models too, so merged over the Yang
    config it scheduled 13 trainings (SPiLF at HM QP 44/51 on Yang's sequences) instead of 5."""
    assert set(_merged(base, ablation)["train"]["models"]) == trained


def test_the_nlconvlstm_ablation_over_the_yang_config_schedules_five_trainings(tmp_path):
    """The issue's acceptance: `snakemake -n` of the ablation merged over the Yang config trains 5 networks
    (NL-ConvLSTM at QP 37 and 42, the three ablation columns at 37) and encodes nothing for another paper."""
    for item in ("Snakefile", "params.yaml", "config", "workflow"):
        src = REPO / item
        shutil.copytree(src, tmp_path / item) if src.is_dir() else shutil.copy2(src, tmp_path / item)
    write_shape("mfqe-yang", tmp_path / "results" / "data", scale=0.1)
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "all", "--configfile",
                           "config/paper-nlconvlstm-yang.yaml", "config/nlconvlstm-ablation.yaml", "--cores", "8",
                           "--quiet", "rules"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    got = job_stats(proc.stdout)
    n = _items("paper-nlconvlstm-yang", tmp_path)
    assert got["train"] == 5
    assert got["encode"] == (n["videos"] + n["test"]) * 2  # the base run's encodes only: QP 37 and 42, LDP
    assert got["evaluate_model"] == n["test"] * 5


PAPER_OF = {"paper-glfusion": "glfusion", "paper-spilf": "spilf", "paper-nlconvlstm-vimeo": "nlconvlstm",
            "paper-nlconvlstm-yang": "nlconvlstm"}


@pytest.mark.parametrize("config", sorted(SHAPES))
def test_settings_the_paper_does_not_state_are_declared(config):
    """#26 item 5: settings of the merged config that no paper states are named in report.deviations (the
    report's setup line and claims comparison show them): bf16 / deterministic training, SPiLF's loss units,
    ECM's extra filters off, one generator per QP, the RGB reference, HM's lambda for ECM switching."""
    merged = _merged(config)
    declared = " ".join(merged["report"]["deviations"][PAPER_OF[config]])
    train = merged["train"]
    if train.get("amp_bf16") in (True, "auto"):
        assert "bf16" in declared
    if train.get("deterministic"):
        assert "deterministic" in declared
    if config == "paper-spilf":
        from inloop.training.spilf import DEFAULTS

        for m in train["models"]:
            scale = ((merged["models"][m].get("train") or {}).get("spilf") or {}).get("pixel_scale",
                                                                                       DEFAULTS["pixel_scale"])
            assert scale == 1 or "pixel_scale" in declared
        assert "CCSAO" in declared and "per QP" in declared and "4:2:0" in declared
        assert not merged["evaluate"]["switching"]["enabled"] or "lambda" in declared
