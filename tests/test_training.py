"""Patch stores, the shared trainer (resume, determinism, NaN stop) and MLflow tracking."""

import math
import os
import multiprocessing as mp
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from inloop.errors import InloopError
from inloop.training.data import PatchSampler, dihedral
from inloop.training.patches import build_patch_store, open_patch_store, sources_from_paths, split_by_source
from inloop.training.tracking import Tracker
from inloop.training.trainer import RestorationTask, TrainConfig, Trainer, TrainingError, lr_factor, seed_everything


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


@pytest.fixture(scope="module")
def store(tmp_path_factory, two_sources):
    """A patch store from real x265 decodes (filters off, QP 37) of two real sources."""
    d = tmp_path_factory.mktemp("store")
    originals, decodeds = two_sources
    meta = build_patch_store(sources_from_paths(originals, decodeds), d / "patches", patch_size=32,
                             patches_per_frame=8, planes=("y", "u"), val_sources=["cityB"], seed=1)
    return d / "patches", meta


def test_patch_store_layout_and_split_by_source(store):
    path, meta = store
    meta2, train, val = open_patch_store(path)
    assert meta2 == meta and isinstance(train, np.memmap)
    assert train.shape == (5 * 8 * 2, 2, 1, 32, 32) and train.dtype == np.uint8
    assert val.shape == train.shape
    assert [s["name"] for s in meta["sources"]["train"]] == ["cityA"]
    assert [s["name"] for s in meta["sources"]["val"]] == ["cityB"]
    # Input and target patches come from the same place: their PSNR is the codec's (~30 dB at
    # QP 37), far above what misaligned windows of this footage would give.
    mse = np.mean((train[:, 0].astype(float) - train[:, 1].astype(float)) ** 2)
    assert 25 < 10 * math.log10(255**2 / mse) < 45
    assert not np.array_equal(train[:, 0], train[:, 1])


def test_a_failed_rebuild_leaves_the_previous_store_whole(tmp_path, two_sources):
    """`inloop patches` over an existing store that fails (here: no training patch) used to empty
    train.npy and val.npy under the old meta.json, a store that looked complete and crashed training."""
    originals, decodeds = two_sources
    good = tmp_path / "store"
    meta = build_patch_store(sources_from_paths(originals, decodeds), good, patch_size=32, patches_per_frame=2,
                             val_fraction=0, seed=1)
    before = {p.name: p.read_bytes() for p in good.iterdir()}
    with pytest.raises(InloopError, match="no training patches"):
        build_patch_store(sources_from_paths(originals, decodeds), good, patch_size=512, val_fraction=0)
    assert {p.name: p.read_bytes() for p in good.iterdir()} == before
    assert open_patch_store(good)[0] == meta and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    # a store whose arrays do not match its meta.json is refused with what to do
    np.save(good / "train.npy", np.zeros((3, 2, 1, 32, 32), np.uint8))
    with pytest.raises(InloopError, match="inconsistent; run `inloop patches` again"):
        open_patch_store(good)
    # an empty (truncated) array file, and a float store (which could hold NaN and train without a word)
    (good / "train.npy").write_bytes(b"")
    with pytest.raises(InloopError, match="unreadable patch store .*run `inloop patches` again"):
        open_patch_store(good)
    np.save(good / "train.npy", np.full((meta["counts"]["train"], 2, 1, 32, 32), np.nan, np.float32))
    with pytest.raises(InloopError, match="train.npy holds float32 samples, a 8-bit store holds uint8"):
        open_patch_store(good)


def test_the_store_is_written_in_place_not_held_in_memory(tmp_path):
    """Issue #28 item 3: the store was built by concatenating every chunk in memory (peak twice the store: 2 x 3.7 GB
    for NL-ConvLSTM's at the paper's scale, SLURM kills the job). Now each split is written through a memory map;
    numpy's allocations (traced by tracemalloc) stay far below the store's size, and the store is the same."""
    import tracemalloc

    from inloop.yuv import YuvFormat

    rng = np.random.default_rng(0)
    fmt = YuvFormat(256, 256)
    orig, dec = tmp_path / "a_256x256_30fps_8bit_420.yuv", tmp_path / "d" / "a_256x256_30fps_8bit_420.yuv"
    dec.parent.mkdir()
    frames = rng.integers(0, 256, (40, fmt.frame_bytes), dtype=np.uint8)
    orig.write_bytes(frames.tobytes())
    dec.write_bytes(np.clip(frames.astype(int) + rng.integers(-3, 4, frames.shape), 0, 255).astype(np.uint8).tobytes())
    sources = sources_from_paths([str(orig)], [str(dec)])
    tracemalloc.start()
    try:
        meta = build_patch_store(sources, tmp_path / "s", patch_size=64, patches_per_frame=64, planes=("y", "u"),
                                 val_fraction=0, seed=5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    size = (tmp_path / "s" / "train.npy").stat().st_size
    assert meta["counts"] == {"train": 40 * 64 * 2, "val": 0} and size > 40e6
    assert peak < size / 8, f"peak {peak / 1e6:.1f} MB of numpy allocations for a {size / 1e6:.1f} MB store"
    _, train, _ = open_patch_store(tmp_path / "s")
    assert train[-1].any() and train[:, 1].std() > 50  # filled to the last row, not zeros


def test_clip_store_holds_windows_of_consecutive_decoded_frames(tmp_path, two_sources):
    """frames=3 (NL-ConvLSTM's layout with a shorter window): each sample is the decoded
    frames t-1, t, t+1 and the original of frame t, at one place, for every target t."""
    from inloop.training.data import split_sample
    from inloop.yuv import YuvFormat, YuvReader

    originals, decodeds = two_sources
    meta = build_patch_store(sources_from_paths(originals[:1], decodeds[:1]), tmp_path / "clips", patch_size=32,
                             patches_per_frame=4, val_fraction=0, seed=3, frames=3)
    _, train, _ = open_patch_store(tmp_path / "clips")
    assert meta["frames"] == 3 and train.shape == (3 * 4, 4, 1, 32, 32)  # 5 frames: targets 1, 2, 3
    fmt = YuvFormat(128, 96)
    with YuvReader(originals[0], fmt) as o, YuvReader(decodeds[0], fmt) as d:
        dec = np.stack([np.asarray(d[i][0]) for i in range(5)])
        org = np.stack([np.asarray(o[i][0]) for i in range(5)])
    for k, sample in enumerate(train):
        t = 1 + k // 4
        hits = [(r, c) for r in range(96 - 31) for c in range(128 - 31)
                if np.array_equal(org[t, r:r + 32, c:c + 32], sample[3, 0])]
        assert hits, f"sample {k}: target is not a window of original frame {t}"
        r, c = hits[0]
        assert np.array_equal(sample[:3, 0], dec[t - 1:t + 2, r:r + 32, c:c + 32])
    x, y = split_sample(torch.from_numpy(np.asarray(train[:2]).astype(np.float32)))
    assert x.shape == (2, 3, 1, 32, 32) and y.shape == (2, 1, 32, 32)
    with pytest.raises(InloopError, match="odd"):
        build_patch_store(sources_from_paths(originals[:1], decodeds[:1]), tmp_path / "bad", frames=2)
    with pytest.raises(InloopError, match="shorter than frames=7"):
        build_patch_store(sources_from_paths(originals[:1], decodeds[:1]), tmp_path / "bad", patch_size=32,
                          val_fraction=0, frames=7)


def test_split_by_source_is_stable_and_never_empty():
    names = [f"s{i}" for i in range(10)]
    val = split_by_source(names, 0.2)
    assert len(val) == 2 and val == split_by_source(list(reversed(names)), 0.2)
    assert split_by_source(["only"], 0.5) == set()
    assert len(split_by_source(["a", "b"], 0.9)) == 1
    with pytest.raises(InloopError, match="none of this store's sources"):
        split_by_source(names, 0.2, ["nope"])
    assert split_by_source(names, 0.2, ["s1", "an-image-of-another-store"]) == {"s1"}


def test_dihedral_gives_the_eight_symmetries():
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(8, 1, 1, 1)
    out = dihedral(x, torch.arange(8))
    assert len({tuple(o.flatten().tolist()) for o in out}) == 8
    assert torch.equal(out[0], x[0]) and torch.equal(out[1], x[0].flip(-1))


def make_trainer(store_path, ckpt, steps, lr=1e-3, task_cls=RestorationTask):
    meta, train, val = open_patch_store(store_path)
    seed_everything(0)
    model = Tiny()
    cfg = TrainConfig(steps=steps, batch_size=4, lr=lr, checkpoint_every=4, val_every=4, log_every=2, device="cpu")
    sampler = PatchSampler(train, cfg.batch_size, meta["bitdepth"], "cpu", seed=cfg.seed)
    return Trainer(task_cls(model, lr=lr), sampler, cfg, ckpt, val_array=val, bitdepth=meta["bitdepth"],
                   describe={"model": "tiny"}), model


def test_resume_is_bit_exact(store, tmp_path):
    path, _ = store
    straight, m1 = make_trainer(path, tmp_path / "a.pt", 12)
    r1 = straight.run()
    first, _ = make_trainer(path, tmp_path / "b.pt", 8)
    first.run()
    resumed, m2 = make_trainer(path, tmp_path / "b.pt", 12)
    assert resumed.load_checkpoint() and resumed.step == 8
    r2 = resumed.run()
    assert r2["resumed_from"] == 8 and r2["steps_this_run"] == 4 and r1["steps_this_run"] == 12
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    assert r1["val_delta_psnr"] == r2["val_delta_psnr"]


def test_a_checkpoint_from_a_node_with_more_gpus_resumes_on_one_with_fewer(store, tmp_path, monkeypatch):
    """Issue #28 item 4, with a fake device count: rank 0 saved `torch.cuda.get_rng_state_all()` for every visible
    device whenever CUDA was available, and `set_rng_state_all` raised IndexError on a node that sees fewer. Each
    rank now saves only its own device's generator (none for a CPU run), so the checkpoint of a node with 4 GPUs
    resumes on one with 2."""
    path, _ = store
    gpus = {"n": 4}

    def set_all(states):  # as torch.cuda.set_rng_state_all on a node with gpus["n"] devices
        for i, _ in enumerate(states):
            if i >= gpus["n"]:
                raise IndexError(f"device {i} of {gpus['n']}")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus["n"])
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [torch.zeros(8, dtype=torch.uint8)] * gpus["n"])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", set_all)
    first, _ = make_trainer(path, tmp_path / "m.pt", 8)
    first.run()
    gpus["n"] = 2
    resumed, _ = make_trainer(path, tmp_path / "m.pt", 12)
    assert resumed.load_checkpoint() and resumed.step == 8
    assert resumed.run()["steps"] == 12


def test_cosine_schedule_decays_to_the_final_rate():
    f = [lr_factor("cosine", s, 100, 0.01) for s in range(0, 101)]
    assert f[0] == 1.0 and f[100] == pytest.approx(0.01) and f[50] == pytest.approx(0.505)
    assert all(a > b for a, b in zip(f, f[1:]))
    assert lr_factor("cosine", 150, 100, 0.01) == pytest.approx(0.01)
    assert {lr_factor("constant", s, 100, 0.01) for s in (0, 50, 100)} == {1.0}
    with pytest.raises(InloopError, match="train.lr_schedule='step'"):
        RestorationTask(Tiny(), lr_schedule="step")


def test_residual_scale_setting():
    from inloop.training.run import residual_scale

    x = torch.rand(4, 1, 8, 8)
    y = x + 0.01 * torch.randn(4, 1, 8, 8)
    assert residual_scale("distortion", x, y) == pytest.approx(float((y - x).std()))
    clip = torch.stack([torch.rand(4, 1, 8, 8), x, torch.rand(4, 1, 8, 8)], dim=1)  # centre frame is x
    assert residual_scale("distortion", clip, y) == pytest.approx(float((y - x).std()))
    assert residual_scale(0.5, x, y) == 0.5
    with pytest.raises(InloopError, match="train.residual_scale='big'"):
        residual_scale("big", x, y)
    with pytest.raises(InloopError, match="train.residual_scale=distortion: the decoded patches equal"):
        residual_scale("distortion", x, x)


class CosineTask(RestorationTask):
    """The real task with a cosine schedule over 12 steps; ``stop_after`` interrupts it."""

    stop_after = None
    calls = 0

    def __init__(self, model, lr):
        super().__init__(model, lr=lr, lr_schedule="cosine", steps=12, lr_final=0.05)

    def train_step(self, batch, autocast):
        CosineTask.calls += 1
        if CosineTask.stop_after is not None and CosineTask.calls > CosineTask.stop_after:
            raise KeyboardInterrupt
        return super().train_step(batch, autocast)


def test_cosine_schedule_resumes_bit_exact_after_an_interruption(store, tmp_path):
    path, _ = store
    straight, m1 = make_trainer(path, tmp_path / "a.pt", 12, task_cls=CosineTask)
    straight.run()
    lr_end = straight.task.opt.param_groups[0]["lr"]
    assert lr_end == pytest.approx(1e-3 * 0.05)
    CosineTask.stop_after, CosineTask.calls = 10, 0  # killed in step 11; the last checkpoint is step 8
    killed, _ = make_trainer(path, tmp_path / "b.pt", 12, task_cls=CosineTask)
    with pytest.raises(KeyboardInterrupt):
        killed.run()
    CosineTask.stop_after = None
    resumed, m2 = make_trainer(path, tmp_path / "b.pt", 12, task_cls=CosineTask)
    assert resumed.load_checkpoint() and resumed.step == 8
    assert resumed.task.opt.param_groups[0]["lr"] == pytest.approx(1e-3 * lr_factor("cosine", 8, 12, 0.05))
    resumed.run()
    assert resumed.task.opt.param_groups[0]["lr"] == lr_end
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)


class ExplodingTask(RestorationTask):
    """The real task, whose loss turns NaN after step 5 (as a diverging run's would)."""

    calls = 0

    def train_step(self, batch, autocast):
        out = super().train_step(batch, autocast)
        ExplodingTask.calls += 1
        if ExplodingTask.calls > 5:
            out = {k: v * float("nan") for k, v in out.items()}
        return out


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(store, tmp_path):
    path, _ = store
    ckpt = tmp_path / "c.pt"
    trainer, _ = make_trainer(path, ckpt, 20, task_cls=ExplodingTask)
    with pytest.raises(TrainingError, match=r"non-finite loss .* last good checkpoint is .*c\.pt"):
        trainer.run()
    assert torch.load(ckpt, weights_only=True)["step"] == 4


def test_checkpoint_of_another_model_is_refused(store, tmp_path):
    path, _ = store
    t, _ = make_trainer(path, tmp_path / "d.pt", 4)
    t.run()
    other, _ = make_trainer(path, tmp_path / "d.pt", 8)
    other.describe = {"model": "other"}
    with pytest.raises(TrainingError, match="delete it to start again"):
        other.load_checkpoint()


def _log_run(uri, i):
    tr = Tracker("concurrency", f"run{i}", uri=uri)
    tr.log_params({"i": i, "nested": {"a": 1}})
    for step in range(1, 21):
        tr.log_metrics({"loss": 1.0 / step}, step)
    tr.finish()
    return tr.run_id


def test_mlflow_sqlite_store_survives_jobs_that_start_together(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with mp.get_context("spawn").Pool(3) as pool:
        ids = pool.starmap(_log_run, [(uri, i) for i in range(3)])
    client = MlflowClient(uri)
    assert len(set(ids)) == 3
    for i, run_id in enumerate(ids):
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and run.data.params == {"i": str(i), "nested.a": "1"}
        hist = client.get_metric_history(run_id, "loss")
        assert sorted(m.step for m in hist) == list(range(1, 21))
    exp = client.get_experiment_by_name("concurrency")
    assert exp.artifact_location.startswith("file://") and "mlartifacts" in exp.artifact_location


def test_deterministic_mode_sets_up_cublas_and_the_fast_mode_lets_cudnn_tune(monkeypatch):
    """Issue #28 item 9: `deterministic: true` on CUDA left cuBLAS non-deterministic (no CUBLAS_WORKSPACE_CONFIG
    before it starts), so it was slower and still not bit-exact; `false` did not turn cuDNN's autotuning on."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        seed_everything(0, deterministic=False)
        assert torch.backends.cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
        seed_everything(0, deterministic=True)
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert not torch.backends.cudnn.benchmark and torch.are_deterministic_algorithms_enabled()
    finally:
        seed_everything(0, deterministic=True)


def test_deterministic_mode_starts_without_torchinductor_unless_the_model_is_compiled():
    """torch.use_deterministic_algorithms imports TorchInductor (2.1 s of each training job's start on a 2-core
    EPYC) for a flag only torch.compile reads: an eager job sets the kernels' flag alone, a compiling one both."""
    probe = (
        "import sys, torch\n"
        "from inloop.training.trainer import seed_everything\n"
        "seed_everything(0, deterministic=True, compiling=sys.argv[1] == 'compile')\n"
        "on = torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()\n"
        "inductor = 'torch._inductor.config' in sys.modules\n"
        "flag = inductor and sys.modules['torch._inductor.config'].deterministic\n"
        "print(on, inductor, flag)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                                         os.environ.get("PYTHONPATH", "")])}
    out = {mode: subprocess.run([sys.executable, "-c", probe, mode], capture_output=True, text=True, env=env,
                                check=True).stdout.split()
           for mode in ("eager", "compile")}
    assert out["eager"] == ["True", "False", "False"]
    assert out["compile"] == ["True", "True", "True"]
