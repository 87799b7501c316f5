"""Rehearsals of the paper configs (issue #26): each paper config, and each ablation merged over its paper's,
run end to end by ``inloop rehearse`` -- the same rules, the networks at the papers' widths, the papers' frame
sizes (the smallest of each split), whole-frame evaluation, claims matching and report -- with the counts capped
(one item per split, two frames per test clip, one training step of one patch, two QPs; an ablation's columns at
one QP) so that all of them fit the suite's time budget on 2 cores; held-out frames over 0.25 Mpixel are scaled
down here (SPiLF's 2048x1360 CLIC images: 18 GB and 200 s per evaluation at the paper's width on this CPU, said in
the report's deviations), and rehearsed at full size by hand (docs/paper-shapes.md). x265 stands in for HM/ECM here; with HM-16.9 / ECM-1.0 configured
(INLOOP_HM_* / INLOOP_ECM_*) the same rehearsals run on them too. Wall times and per-rule peak memory of the
full-count rehearsals: docs/paper-shapes.md."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from inloop import rehearsal

REPO = Path(__file__).resolve().parents[1]
CI_CAPS = {"per_split": 1, "frames": 2, "steps": 1, "batch_size": 1, "qps": 2, "max_pixels": 250_000}
PAPER = {"paper-glfusion": "glfusion", "paper-spilf": "spilf", "paper-nlconvlstm-vimeo": "nlconvlstm",
         "paper-nlconvlstm-yang": "nlconvlstm"}
ABLATION = {"glfusion-ablation": "paper-glfusion", "nlconvlstm-ablation": "paper-nlconvlstm-yang"}
CODEC_OF = {"paper-glfusion": "hm", "paper-spilf": "ecm", "paper-nlconvlstm-vimeo": "x265",
            "paper-nlconvlstm-yang": "hm"}
_RUNS: dict = {}


def _live(codec: str) -> bool:
    env = {"hm": ("INLOOP_HM_ENCODER", "INLOOP_HM_CFG_DIR"),
           "ecm": ("INLOOP_ECM_ENCODER", "INLOOP_ECM_DECODER", "INLOOP_ECM_CFG_DIR")}.get(codec, ())
    return bool(env) and all(os.environ.get(v) for v in env)


def _rehearse(configs: tuple[str, ...], codec: str, tmp_path_factory) -> tuple[dict, Path]:
    """One rehearsal per (configs, codec) in this session; an ablation runs in its paper's folder after it."""
    key = (configs, codec)
    if key not in _RUNS:
        base = (configs[0],)
        folder = _RUNS[(base, codec)][1] if len(configs) > 1 and (base, codec) in _RUNS else \
            tmp_path_factory.mktemp(f"rehearsal-{configs[0]}-{codec}")
        if len(configs) > 1 and (base, codec) not in _RUNS:
            _RUNS[(base, codec)] = (rehearsal.run([f"config/{base[0]}.yaml"], folder, 2, codec, caps=CI_CAPS,
                                                  repo=REPO), folder)
        caps = CI_CAPS if len(configs) == 1 else {**CI_CAPS, "qps": 1}  # an ablation: its columns at one QP
        r = rehearsal.run([f"config/{c}.yaml" for c in configs], folder, 2, codec, caps=caps, repo=REPO)
        _RUNS[key] = (r, folder)
    return _RUNS[key]


def _log_tail(folder: Path) -> str:
    return (folder / "rehearsal.log").read_text(errors="replace")[-4000:]


def _check(configs: tuple[str, ...], codec: str, r: dict, folder: Path) -> None:
    assert r["rc"] == 0, _log_tail(folder)
    merged = rehearsal.merged_config([folder / f"config/{c}.yaml" for c in configs] + [folder / "rehearsal.yaml"],
                                     folder / "params.yaml")
    from inloop.params import model_spec

    # the jobs the (capped) paper setup implies: one network per model, configuration and QP
    points = [(m, cfg, qp) for m in merged["train"]["models"] for spec in [model_spec(merged, m)]
              for cfg in spec["configs"] for qp in spec["qps"]]
    tests = [c for ds in merged["pipeline"]["test_datasets"]
             for c in json.loads((folder / "results/data" / ds / "manifest.json").read_text())["clips"]
             if c["split"] == "test"]
    codec_name = merged["encode"]["codec"]
    models = {(m, cfg, qp) for m, cfg, qp in points}
    have = {(p.parts[-5], p.parts[-3], int(p.parts[-2][2:])) for p in folder.glob("results/models/*/*/*/qp*/model.pt")
            if p.parts[-4] == codec_name}
    assert models <= have and (len(configs) > 1 or models == have)  # an ablation adds to its paper run's models
    evals = [p for p in folder.glob("results/eval/models/**/*.json")
             if (p.parts[-6], p.parts[-4], int(p.stem[2:])) in models and p.parts[-5] == codec_name]
    assert len(evals) == len(points) * len(tests)
    for f in evals:  # whole frames, as the papers evaluate; the compute path recorded
        ev = json.loads(f.read_text())
        assert ev["tiling"] is None and ev["compute"]["device"] == "cpu" and ev["codec"] == merged["encode"]["codec"]
        assert ev["width"] * ev["height"] == min(c["width"] * c["height"] for c in tests)
        if ev["dataset"] == "jctvc-ctc":  # the CTC class reaches the report's class rows (GL-Fusion Tables II-VI)
            assert ev["seq_class"] == tests[0]["class"] == "D"
    # every rule's peak memory and time measured
    res = r["resources"]
    assert {"encode", "patches", "train", "evaluate_codec", "evaluate_model"} <= set(res)
    # Snakemake's benchmark samples memory while a job runs: a job of well under a second (a capped patch store:
    # 0.3 s) can end before its first sample and read 0 MB (seen in CI, patches 0.0 MB at 0.3 s), a longer one cannot
    assert all(v["max_rss_mb"] > 0 or v["max_s"] < 1.0 for v in res.values()), res
    assert all(v["max_rss_mb"] > 0 for k, v in res.items() if k in ("train", "evaluate_model")), res
    # the report: this paper's claims rows, read only against results of the claim's own codec and data
    paper = PAPER[configs[0]]
    comp = (folder / "results/report/claims/comparison.csv").read_text()
    import pandas as pd

    rows = pd.read_csv(folder / "results/report/claims/comparison.csv")
    mine = rows[rows["paper"] == paper]
    assert not mine.empty, comp[:2000]
    for _, row in mine.iterrows():
        if row["codec"] != merged["encode"]["codec"]:
            assert pd.isna(row.get("reproduced")), row.to_dict()
    html = (folder / "results/report/index.html").read_text()
    assert "rehearsal: counts capped" in html  # the caps and the substitution, next to the paper's claims
    if codec == "x265" and CODEC_OF[configs[0]] != "x265":
        assert f"x265 stands in for the paper&#39;s {CODEC_OF[configs[0]]}" in html or \
            f"x265 stands in for the paper's {CODEC_OF[configs[0]]}" in html


CODECS = [pytest.param("x265", id="x265"),
          pytest.param("config", id="live", marks=pytest.mark.skipif(
              not (_live("hm") and _live("ecm")), reason="HM-16.9 / ECM-1.0 not configured: set INLOOP_HM_ENCODER, "
              "INLOOP_HM_CFG_DIR, INLOOP_ECM_ENCODER, INLOOP_ECM_DECODER, INLOOP_ECM_CFG_DIR to rehearse on them"))]


def check_paper(config: str, codec: str, tmp_path_factory) -> None:
    r, folder = _rehearse((config,), codec, tmp_path_factory)
    _check((config,), codec, r, folder)


def check_ablation(ablation: str, codec: str, tmp_path_factory) -> None:
    """The ablation merged over its paper config, in the paper run's folder: only the ablation's networks are
    new jobs (everything the base run made is reused)."""
    base = ABLATION[ablation]
    r, folder = _rehearse((base, ablation), codec, tmp_path_factory)
    _check((base, ablation), codec, r, folder)
    assert set(r["jobs"]) - {"encode", "patches"} <= {"train", "evaluate_model", "evaluate_codec", "report", "all",
                                                      "total", "lpips_weights", "check_splits"}
    assert "encode" not in r["jobs"]  # the base run's encodes serve the ablation


def configs_of(paper: str) -> list[str]:
    return sorted(c for c, p in PAPER.items() if p == paper)


def ablations_of(paper: str) -> list[str]:
    return sorted(a for a, base in ABLATION.items() if PAPER[base] == paper)


def paper_tests(paper: str) -> dict:
    """The rehearsal tests of one paper's configs and ablations, for its test file's namespace. One file per paper
    (GL-Fusion's here; tests/test_rehearsal_spilf.py, tests/test_rehearsal_nlconvlstm.py): `make test` hands whole
    files to its two workers (pytest-xdist, --dist loadfile), so the papers are rehearsed side by side while an
    ablation stays with the worker that ran its paper config, whose folder it reuses."""
    @pytest.mark.slow
    @pytest.mark.parametrize("codec", CODECS)
    @pytest.mark.parametrize("config", configs_of(paper))
    def test_a_paper_config_runs_end_to_end(config, codec, tmp_path_factory):
        check_paper(config, codec, tmp_path_factory)

    @pytest.mark.slow
    @pytest.mark.parametrize("codec", CODECS)
    @pytest.mark.parametrize("ablation", ablations_of(paper))
    def test_an_ablation_runs_over_its_paper_config(ablation, codec, tmp_path_factory):
        check_ablation(ablation, codec, tmp_path_factory)

    tests = [test_a_paper_config_runs_end_to_end] + ([test_an_ablation_runs_over_its_paper_config]
                                                     if ablations_of(paper) else [])
    return {t.__name__: t for t in tests}


globals().update(paper_tests("glfusion"))


def test_every_paper_config_and_ablation_is_rehearsed_in_one_of_the_files():
    files = {"glfusion": "test_rehearsal.py", "spilf": "test_rehearsal_spilf.py",
             "nlconvlstm": "test_rehearsal_nlconvlstm.py"}
    assert set(PAPER.values()) == set(files)
    for paper, name in files.items():
        text = (Path(__file__).parent / name).read_text()
        assert f'paper_tests("{paper}")' in text
    assert sorted(c for p in files for c in configs_of(p)) == sorted(PAPER)
    assert sorted(a for p in files for a in ablations_of(p)) == sorted(ABLATION)


def test_the_overlay_caps_counts_and_says_so():
    """What a rehearsal changes: counts, the device, and x265's QP range; all named in the paper's deviations."""
    merged = rehearsal.merged_config([REPO / "config/paper-spilf.yaml"], REPO / "params.yaml")
    over = rehearsal.overlay(merged, "x265", CI_CAPS)
    assert over["encode"]["qps"] == [22, 47]  # 52 and 57 are beyond x265's 51; two spread over the rest
    assert all(m["train"]["steps"] == 1 and m["train"]["batch_size"] == 1 for m in over["models"].values())
    assert all(m["train"]["spilf"]["stage1_steps"] == 1 for m in over["models"].values())
    assert over["train"]["device"] == "cpu" and over["evaluate"]["gpus"] == 0
    dev = over["report"]["deviations"]["spilf"]
    assert dev[0].startswith("rehearsal: counts capped") and "x265 stands in for the paper's ecm" in dev[0]
    assert dev[1:] == merged["report"]["deviations"]["spilf"]  # the config's own deviations kept
    assert set(over) == {"encode", "train", "evaluate", "resources", "models", "report"}
    mem = rehearsal.machine_mb()  # what each job asks is capped at this machine's memory, one thread each
    assert all(job["threads"] == 1 and job["mem_mb"] <= mem for job in over["resources"].values())
    assert set(over["resources"]) == set(merged["resources"])
    yang = rehearsal.merged_config([REPO / "config/paper-nlconvlstm-yang.yaml"], REPO / "params.yaml")
    assert rehearsal.clip_frames(yang, CI_CAPS) == 7 and rehearsal.clip_frames(yang, CI_CAPS, "test") == 2
    vimeo = rehearsal.merged_config([REPO / "config/paper-nlconvlstm-vimeo.yaml"], REPO / "params.yaml")
    assert rehearsal.clip_frames(vimeo, CI_CAPS, "test") == 4  # the paper scores the 4th frame


def test_rehearsal_data_have_the_papers_names_sizes_and_real_pixels(tmp_path):
    import numpy as np

    from inloop.datasets.shapes import write_rehearsal
    from inloop.yuv import YuvReader

    manifest, used = write_rehearsal("jctvc-ctc", tmp_path, rehearsal.default_images(), 1, 3)
    clips = json.loads(manifest.read_text())["clips"]
    assert [(c["name"], c["width"], c["height"], c["frames"], c["class"]) for c in clips] == \
        [("BasketballPass", 416, 240, 3, "D")]  # class D's smallest, the paper's name, size and class
    with YuvReader(manifest.parent / clips[0]["path"]) as r:
        y = [f.y.astype(int) for f in r]
    assert y[0].std() > 20  # a photograph, not an empty or flat file
    assert np.array_equal(y[0][:, 8:], y[1][:, :-8])  # a pan of 8 pixels per frame
    assert used == 1
