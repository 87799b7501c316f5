"""The cost plan of benchmarks/paper_plan.py (issue #26): only the frames a paper scores are enhanced, and each
network is priced on a stated basis -- a GPU row of a bench file where one exists for it, NL-ConvLSTM on its
paper's Table 5 otherwise, never one assumed utilisation for a memory-bound top-k gather.

The evaluate commands are the lines `snakemake -n -p` prints for the paper configs (paths as the workflow
writes them); the params are the real config files merged over params.yaml."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pp():
    spec = importlib.util.spec_from_file_location("paper_plan", REPO / "benchmarks" / "paper_plan.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["paper_plan"] = mod  # its dataclass resolves annotations through the module
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop("paper_plan", None)


def _eval_line(orig: str, codec: str, cfg: str, dataset: str, model: str, qp: int) -> str:
    stem = Path(orig).stem
    enc = f"results/encoded/{codec}/{cfg}/off/{dataset}/{stem}/qp{qp}.json"
    return (f"Shell command: inloop evaluate --original {orig} --anchor-stats {enc.replace('/off/', '/on/')} "
            f"--off-stats {enc} --out results/eval/models/{model}/{codec}/{cfg}/{dataset}/{stem}/qp{qp}.json "
            f"--dataset {dataset} --model results/models/{model}/{codec}/{cfg}/qp{qp}/model.pt --enhanced "
            f"results/enhanced/{model}/{codec}/{cfg}/{dataset}/{stem}/qp{qp}.yuv --threads 1 > log 2>&1")


# Table 5 of paper 002 (ms per frame of the approximate NL-ConvLSTM), as printed.
T5 = {(180, 180): 102.13, (416, 240): 304.11, (640, 360): 621.94, (1280, 720): 2607.60, (1920, 1080): 6738.00}


def test_vimeo_prices_the_one_scored_frame_per_clip_at_table5(pp):
    params = pp.merged_params(["paper-nlconvlstm-vimeo"])
    assert params["evaluate"]["frames"] == [3]  # 4.1: only the 4th frame of each clip
    assert pp.scored_frames(params, 7) == 1
    assert pp.scored_frames(pp.merged_params(["paper-glfusion"]), 600) == 600  # GL-Fusion scores every frame
    with pytest.raises(SystemExit, match="outside a clip of 2 frame"):
        pp.scored_frames(params, 2)
    clip = "results/data/vimeo90k-septuplet/test-00001-0001_448x256_30fps_8bit_420.yuv"
    stdout = "\n".join(_eval_line(clip, "x265", "ldp", "vimeo90k-septuplet", "nlconvlstm", qp) for qp in (32, 37))
    res = pp.plan("paper-nlconvlstm-vimeo", stdout, params, {}, 989.0, 0.3, {Path(clip).name: 7}, {})
    # 448x256 lies between Table 5's 416x240 and 640x360: linear in pixels.
    px = 448 * 256
    ms = T5[(416, 240)] + (px - 416 * 240) * (T5[(640, 360)] - T5[(416, 240)]) / (640 * 360 - 416 * 240)
    assert 330 < ms < 350
    infer_h = 2 * 1 * ms / 1e3 / 3600  # two evaluate jobs (QP 32, 37), one scored frame each
    t = params["models"]["nlconvlstm"]["train"]
    step_s = 3 * t["batch_size"] * T5[(180, 180)] * (t["patch_size"] ** 2 / (180 * 180)) / 1e3
    train_h = step_s * t["steps"] * 2 / 3600  # one network per QP
    assert res["gpu_h"] == pytest.approx(train_h + infer_h, rel=1e-6)
    assert res["infer_frames"] == 2 and res["infer_frames_coded"] == 14
    assert res["infer_gpu_h"] == pytest.approx(infer_h, rel=1e-6)
    assert res["infer_gpu_h_all_coded"] == pytest.approx(7 * infer_h, rel=1e-6)
    [row] = res["models"]
    assert "Table 5" in row["infer_basis"] and "Table 5" in row["train_basis"]
    assert row["train_gpu_h_flops"] < row["train_gpu_h"] / 10  # the assumed 30 % MFU would price it far lower


def test_a_gpu_row_of_the_same_network_is_used_and_others_are_an_assumption(pp):
    params = pp.merged_params(["paper-glfusion"])
    spec = pp.model_spec(params, "glfusion")
    row = {"arch": "glfusion", "kwargs": spec["kwargs"], "device": "cuda", "amp": "bf16", "mode": "whole"}
    bench = {"h100.json": {"machine": {"device": "cuda", "device_name": "NVIDIA H100"},
                           "inference": [{**row, "size": "416x240", "ms_per_frame": 4.0},
                                         {**row, "size": "1920x1080", "ms_per_frame": 80.0}],
                           "training": [{**row, "batch": 16, "patch": 128, "step_ms": 250.0}]}}
    b = pp.network_basis("glfusion", spec["kwargs"], bench, 989.0, 0.3)
    assert "measured: h100.json (NVIDIA H100" in b.infer_text and "measured" in b.train_text
    w = 832 * 480
    assert b.infer_seconds(832, 480, 1e30) == pytest.approx(
        (4.0 + (w - 416 * 240) * (80.0 - 4.0) / (1920 * 1080 - 416 * 240)) / 1e3)
    assert b.step_seconds(32, 128, 1e30) == pytest.approx(0.5)  # 250 ms for 16 patches of 128²: 32 take twice
    # A GPU row of another width (the demo's GL-Fusion) is not this network's: FLOPs at the stated assumption.
    other = {"x.json": {"machine": {"device": "cuda"},
                        "inference": [{**row, "kwargs": {"channels": 16}, "size": "416x240", "ms_per_frame": 1.0}]}}
    a = pp.network_basis("glfusion", spec["kwargs"], other, 989.0, 0.3)
    assert a.infer_text.startswith("assumed: 30% of a 989 TFLOP/s") and a.infer_seconds(416, 240, 2.967e12) == \
        pytest.approx(2.967e12 / (989e12 * 0.3))
    # CPU rows are never GPU figures.
    cpu = {"cpu.json": {"machine": {"device": "cpu"}, "inference": [{**row, "device": "cpu", "size": "416x240",
                                                                      "ms_per_frame": 3000.0}]}}
    assert pp.network_basis("glfusion", spec["kwargs"], cpu, 989.0, 0.3).infer_text.startswith("assumed")


def test_an_nlconvlstm_ablation_mode_is_table5_scaled_by_its_macs(pp):
    params = pp.merged_params(["paper-nlconvlstm-yang", "nlconvlstm-ablation"])
    full = pp.network_basis("nlconvlstm", pp.model_spec(params, "nlconvlstm")["kwargs"], {}, 989.0, 0.3)
    single = pp.network_basis("nlconvlstm", pp.model_spec(params, "nlconvlstm-encdec")["kwargs"], {}, 989.0, 0.3)
    assert full.ratio == 1.0 and full.infer_seconds(416, 240, 0) == pytest.approx(T5[(416, 240)] / 1e3)
    assert 0 < single.ratio < 0.5 and "this mode's MACs" in single.infer_text
    assert single.infer_seconds(416, 240, 0) == pytest.approx(single.ratio * T5[(416, 240)] / 1e3)


def test_the_rehearsals_section_is_kept(pp, tmp_path):
    out = tmp_path / "paper-shapes.md"
    out.write_text("# old plan\n\nold numbers\n\n<!-- rehearsals -->\n## Rehearsals\n\n| rule | peak |\n|---|---|\n")
    pp.write_keeping_rehearsals(out, "# The paper configs at full shape\n\nnew numbers\n")
    text = out.read_text()
    assert text.startswith("# The paper configs at full shape\n\nnew numbers\n\n<!-- rehearsals -->\n## Rehearsals\n")
    assert "old numbers" not in text and text.endswith("| rule | peak |\n|---|---|\n")
    fresh = tmp_path / "new.md"
    pp.write_keeping_rehearsals(fresh, "# plan\n")
    assert fresh.read_text() == "# plan\n"
