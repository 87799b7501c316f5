"""The train stage: one network for one (codec, configuration, QP) patch store.

GL-Fusion IV.B: one model per QP, Adam with lr 2e-3, batch 32, 128x128
patches, MSE, LSUV-style initialisation with the last layer matched to the
spread of the ground-truth distortion. The demo's params scale the step count
and width down to a CPU budget; config/paper-glfusion.yaml holds the paper's.

Outputs: the model file (weights + everything needed to rebuild the network),
a JSON of the training result and its history; the checkpoint lives apart
(``checkpoint``) so an interrupted job resumes from it when re-run.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from .. import paths
from ..errors import InloopError
from ..fsutil import sha256_file, write_json
from ..models.registry import network_source
from ..params import JOB_KEYS, source_hash
from .data import PatchSampler
from .patches import open_patch_store
from .tracking import Tracker, git_commit
from ..models.io import load_trained, torch_load, torch_save  # noqa: F401 - load_trained: the CLI's and tests' entry
from .trainer import RestorationTask, TrainConfig, Trainer, pick_device, seed_everything, train_path

TRAIN_KEYS = ("steps", "batch_size", "lr", "checkpoint_every", "val_every", "log_every", "val_batch_size", "seed",
              "device", "amp_bf16", "channels_last", "compile", "deterministic")


def train_config(train_params: dict) -> TrainConfig:
    """TrainConfig from params.yaml's ``train`` section (unknown keys are left to the caller)."""
    return TrainConfig(**{k: train_params[k] for k in TRAIN_KEYS if k in train_params})


def _init_distributed(device: torch.device) -> tuple[torch.device, int]:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; one process per GPU."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world == 1:
        return device, 0
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", 0))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, dist.get_rank()


def train_model(store: str | os.PathLike, out: str | os.PathLike, model_name: str, model_kwargs: dict,
                train_params: dict, describe: dict, checkpoint: str | os.PathLike | None = None,
                manifest: list[str] | str | None = None, track: bool = True, experiment: str = "inloop",
                threads: int | None = None, name: str | None = None, params: dict | None = None,
                init_from: str | os.PathLike | None = None, stage1_from: str | os.PathLike | None = None,
                keep_states: tuple[int, ...] = ()) -> dict:
    """Train the network ``model_name`` on a patch store and write the model file ``out`` (+ ``.json``).

    ``init_from``: a model file of the same network and settings (another QP's) to start from instead of
    the initialisation, for ``train.warm_start.steps`` steps (:func:`warm_start_weights`).
    ``stage1_from``: the model file of the training that is this one's SPiLF stage 1
    (``train.spilf.stage1_from``): this job continues from the state it kept (:func:`stage1_state`).
    ``keep_states``: steps whose state this job keeps in its model file for the trainings that continue
    from it (:func:`inloop.params.stage1_handoffs`).

    ``name`` is the ``train.models`` entry (default: the network's name); runs,
    checkpoints and reports are named after it (params ``models.<name>.arch``).
    ``params`` (the whole params.yaml) is only read by tasks that need more than
    ``train_params`` (SPiLF's LPIPS loss: ``metrics.lpips``).
    """
    from ..models import ResidualFilter, build_model, lsuv_init

    out = Path(out)
    name = name or model_name
    describe = {**describe, "model": name}
    if threads:  # the job's CPUs, shared by its DDP processes (one per GPU)
        torch.set_num_threads(max(1, threads // world_size()))
    if init_from is not None and stage1_from is not None:
        raise InloopError("--init-from and --stage1-from: a training starts from one of them (train.warm_start or "
                          "train.spilf.stage1_from), not both")
    if init_from is not None:  # the starting weights are part of what this job computes
        train_params = {**train_params, "steps": warm_start_steps(train_params)}
        describe = {**describe, "init_from_sha256": sha256_file(init_from)}
    handoff = None
    if stage1_from is not None:
        handoff = stage1_state(stage1_from, train_params, params or {}, {**describe, "arch": model_name,
                                                                          "model_kwargs": model_kwargs,
                                                                          "store": str(store)})
        describe = {**describe, "stage1_from_sha256": sha256_file(stage1_from)}
    if keep_states:  # part of what the job writes: a checkpoint made without them is not resumed
        describe = {**describe, "keeps_states_at": sorted(int(k) for k in keep_states)}
    if checkpoint is None:  # the weights it starts from and the states it keeps are part of its identity
        start = {k: describe[k] for k in ("init_from_sha256", "stage1_from_sha256", "keeps_states_at")
                 if k in describe}
        checkpoint = default_checkpoint(store, model_name, model_kwargs, train_params, describe, start)
    checkpoint = Path(checkpoint)
    cfg = train_config(train_params)
    seed_everything(cfg.seed, cfg.deterministic, compiling=cfg.compile)
    meta, train, val = open_patch_store(store)
    device, rank = _init_distributed(pick_device(cfg.device))

    model = build_model(model_name, **model_kwargs)
    frames = int(getattr(model, "frames", 1))
    if int(meta.get("frames", 1)) != frames:
        raise InloopError(f"{store} holds {meta.get('frames', 1)}-frame samples but {name} ({model_name}) takes "
                          f"{frames} frame(s): models.{name}.frames and the store disagree; rebuild the store")
    world = world_size()
    if cfg.batch_size % world:  # train.batch_size is the global batch, whatever the GPU count (issue #28 item 6)
        raise InloopError(f"train.batch_size={cfg.batch_size} is the global batch (the papers' batch): it must divide "
                          f"evenly among the {world} processes of train.gpus={world}")
    sampler = PatchSampler(train, cfg.batch_size // world, meta["bitdepth"], device, seed=cfg.seed, rank=rank,
                           augment=bool(train_params.get("augment", True)))
    describe = {**describe, "arch": model_name, "model_kwargs": model_kwargs, "store": str(store)}
    resuming = checkpoint.is_file()
    if resuming and rank == 0 and _checkpoint_step(checkpoint) >= cfg.steps:
        # The same computation already ran to its end: this job was asked again (a forced rerun, a deleted
        # model file), so it trains again from scratch instead of reporting 0 steps and no validation.
        print(f"{checkpoint} already holds all {cfg.steps} steps of these settings: training again from scratch")
        checkpoint.unlink()
    if world_size() > 1:
        torch.distributed.barrier()
    resuming = checkpoint.is_file()
    scale = train_params.get("residual_scale", 1.0)
    model.to(device)
    if not resuming and rank == 0:
        # Rank 0 only, on the training device: DDP broadcasts rank 0's weights and buffers to the other ranks
        # when it wraps the model, so their own initialisation (LSUV on the CPU on every rank, up to 12 forward
        # passes of ~4 TFLOP each at the paper width) was thrown away (issue #28 item 13).
        # The batch comes from its own stream so the sampler's is untouched.
        init_sampler = PatchSampler(train, min(len(train), 2 * cfg.batch_size), meta["bitdepth"], device,
                                    seed=cfg.seed + 10_000)
        x, y = init_sampler.next()
        if init_from is not None:
            warm_start_weights(model, init_from, model_name, model_kwargs)
        if not isinstance(model, ResidualFilter):  # a researcher's plain module: its own init and output
            print(f"{name}: {type(model).__name__} is not a ResidualFilter: its own initialisation and output are "
                  "used (train.init and train.residual_scale apply to ResidualFilter networks only)")
        else:
            model.residual_scale.fill_(residual_scale(scale, x, y))
        if isinstance(model, ResidualFilter) and init_from is None and train_params.get("init", "lsuv") == "lsuv":
            # GL-Fusion IV.B. init_last: "distortion" (R's spread matched to the ground-truth
            # distortion) or "zero" (R = 0: the untrained filter is the identity).
            last = train_params.get("init_last", "distortion")
            lsuv_init(model, x, y if last == "distortion" else None, residual_std=0.0)
    compute = train_path(cfg, device)  # bf16 / channels_last where the device runs them natively
    compute.layout(model)
    if world_size() > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        model = torch.compile(model)
    task = make_task(model_name, model, cfg, train_params, params)

    run_id = None
    if resuming:
        run_id = torch_load(checkpoint, "checkpoint").get("run_id")
    tracker = None
    if track and rank == 0:
        run_name = "/".join(str(describe.get(k)) for k in ("model", "codec", "config", "qp"))
        # The checkpoint names the computation: a run of it left RUNNING by a job killed before its first
        # checkpoint is marked KILLED instead of staying RUNNING forever beside this one.
        key = hashlib.sha256(str(checkpoint.resolve()).encode()).hexdigest()[:16]
        tracker = Tracker(experiment, run_name, resume_run_id=run_id, key=key)
        if not resuming:
            tracker.log_params({"train": {k: v for k, v in train_params.items()}, "model": model_kwargs,
                                "patches": {k: meta[k] for k in ("patch_size", "bitdepth", "planes", "counts")},
                                "compute": compute.record()})
            tracker.set_tags({**{k: v for k, v in describe.items() if k != "model_kwargs"},
                              "git_commit": git_commit(),
                              "dataset_manifest_sha256": manifest_hash(manifest)})
        else:  # params are written once: a job resumed on another machine says what it computed in
            tracker.set_tags({"compute.resumed_as": f"{compute.precision}, channels_last={compute.channels_last}"})
    trainer = Trainer(task, sampler, cfg, checkpoint, tracker, val_array=val, bitdepth=meta["bitdepth"],
                      describe=describe, keep_states=tuple(keep_states))
    try:
        if trainer.load_checkpoint():
            if rank == 0:
                print(f"resuming {checkpoint} from step {trainer.step}")
        elif handoff is not None:
            trainer.continue_from(handoff)
            if rank == 0:
                print(f"stage 1 from {stage1_from}: continuing its state at step {trainer.step}")
        result = trainer.run()
    except BaseException:
        if tracker is not None:
            tracker.finish("FAILED" if checkpoint.exists() is False else "KILLED")
        raise
    if world_size() > 1:
        import torch.distributed as dist

        dist.barrier()
    if rank != 0:
        return {"result": result, "rank": rank}
    net = _unwrap(model)
    payload = {"name": model_name, "instance": name, "kwargs": model_kwargs, "state_dict": net.state_dict(),
               "source": network_source(model_name),
               "bitdepth": meta["bitdepth"], "planes": meta["planes"], "describe": describe, "result": result}
    if keep_states:  # the states other trainings continue from (train.spilf.stage1_from)
        payload["kept_states"] = trainer.kept_states()
    torch_save(payload, out, "model file")
    report = {**describe, "residual_scale": float(net.residual_scale) if hasattr(net, "residual_scale") else None,
              "network_source": network_source(model_name), "result": result, "compute": compute.record(),
              "history": trainer.history, "parameters": int(
        sum(p.numel() for p in net.parameters())), "mlflow_run_id": getattr(tracker, "run_id", None)}
    if hasattr(task, "summary"):
        report["task"] = task.summary()  # e.g. SPiLF: variant, loss weights, stages, whether LPIPS was available
    write_json(out.with_suffix(".json"), report)
    if tracker is not None:
        tracker.log_metrics({"samples_per_s": result["samples_per_s"]}, result["steps"])
        tracker.log_artifact(out)
        tracker.finish()
    return report


def stage1_state(path: str | os.PathLike, train_params: dict, params: dict, describe: dict) -> dict:
    """The state a SPiLF training continues from (``train.spilf.stage1_from``): the one kept at step
    ``train.spilf.stage1_steps`` in the model file ``path`` of the source, checked to be this training's
    stage 1 (the same network, patch store, codec, configuration and QP; settings by
    :func:`inloop.training.spilf.stage1_mismatch`). A mismatch is one error naming the file and the key."""
    from ..params import model_spec
    from .spilf import spilf_config, stage1_mismatch

    spilf = spilf_config(train_params.get("spilf"), lr=float(train_params.get("lr", 1e-4)))
    if spilf.stage1_from is None:
        raise InloopError(f"--stage1-from {path}: train.spilf.stage1_from is not set for this model")
    payload = torch_load(Path(path), "model file")
    source = str(payload.get("instance") or payload.get("name"))
    if params:
        from ..params import stage1_source

        wanted = stage1_source(params, str(describe.get("model")))
        if source != wanted:
            named = wanted or f"{spilf.stage1_from}, which this run does not train"
            raise InloopError(f"{path} is {source}'s model file; train.spilf.stage1_from names {named}")
    state = (payload.get("kept_states") or {}).get(spilf.stage1_steps)
    if state is None:
        raise InloopError(f"{path}: {source}'s model file keeps no state at step {spilf.stage1_steps} (it keeps "
                          f"{sorted(payload.get('kept_states') or {}) or 'none'}); train it again with these params")
    theirs = state.get("describe") or {}
    for k in ("codec", "config", "qp", "arch", "model_kwargs", "store"):
        if theirs.get(k) != describe.get(k) and str(theirs.get(k)) != str(describe.get(k)):  # a dict in any order
            raise InloopError(f"{path}: {source} was trained with {k} {theirs.get(k)!r}, this model with "
                              f"{describe.get(k)!r}: it is not this training's stage 1")
    why = stage1_mismatch(train_params, model_spec(params, source)["train"], JOB_KEYS) if params else None
    if why:
        raise InloopError(f"{path}: {source}'s first {spilf.stage1_steps} steps are not this training's stage 1 "
                          f"({why}); set train.spilf.stage1_from: null or align the settings")
    return state


def warm_start_steps(train_params: dict) -> int:
    """The steps of a warm-started training (``train.warm_start.steps``)."""
    warm = train_params.get("warm_start") or {}
    if not warm.get("steps"):
        raise InloopError("a warm start (--init-from) needs train.warm_start.steps")
    return int(warm["steps"])


def warm_start_weights(model: torch.nn.Module, path: str | os.PathLike, arch: str, kwargs: dict) -> None:
    """Load another QP's trained weights into ``model`` (``train.warm_start``; not GL-Fusion IV.B, which
    initialises every QP's model afresh; the demo does not use it: docs/results.md, "Warm start").

    The file must hold the same network with the same settings; its ``residual_scale`` is replaced by
    this QP's (:func:`residual_scale`), so R keeps the units of this QP's distortion.
    """
    payload = torch_load(path, "model file")
    if payload.get("name") != arch or payload.get("kwargs") != kwargs:
        raise InloopError(f"{path}: a warm start needs the same network and settings ({arch} {kwargs}), "
                          f"not {payload.get('name')} {payload.get('kwargs')}")
    model.load_state_dict(payload["state_dict"])


def residual_scale(setting: float | str, x: torch.Tensor, y: torch.Tensor) -> float:
    """The output scale s of ``Y = X + s * R`` (``train.residual_scale``): a number, or
    ``distortion``: the standard deviation of the ground-truth distortion Y - X on a batch.

    GL-Fusion IV.B wants R "distributed in the range of the groundtruth distortion" and
    gets there by scaling the last layer's initial weights. Under Adam that holds only at
    step 0: Adam moves every weight by about lr per step whatever its scale, so R moves by
    O(lr) per step while the distortion at QP 22 has a spread of O(1e-3) (on the demo the
    QP 22 loss rose in the first steps and training ended at the identity: docs/results.md, "the demo's settings").
    A fixed factor s = std(Y - X) keeps R in the distortion's units for the
    whole run, so the steps scale with the distortion at every QP.
    """
    if setting == "distortion":
        target = x[:, x.shape[1] // 2] if x.dim() == 5 else x  # a clip's target is its centre frame
        std = float((y.float() - target.float()).std())
        if not std > 0:
            raise InloopError("train.residual_scale=distortion: the decoded patches equal the originals "
                              "(zero distortion); give a number instead")
        return std
    try:
        value = float(setting)
    except (TypeError, ValueError):
        value = float("nan")
    if not value > 0:
        raise InloopError(f"train.residual_scale={setting!r}: give a positive number or 'distortion'")
    return value


def make_task(arch: str, model: torch.nn.Module, cfg: TrainConfig, train_params: dict, params: dict | None = None):
    """The training task of a network: SPiLF's GAN task (generator + discriminator, two
    optimisers, two stages; ``train.spilf``; LPIPS weights located by ``params``' metrics.lpips)
    for ``spilf``, else one network with one loss (GL-Fusion IV.B, the baselines,
    NL-ConvLSTM's MSE on the target frame)."""
    if arch == "spilf":
        from .spilf import SPiLFTask

        return SPiLFTask(model, train_params.get("spilf") or {}, lpips_params=params or {}, lr=cfg.lr)
    return RestorationTask(model, lr=cfg.lr, loss=train_params.get("loss", "mse"),
                           lr_schedule=train_params.get("lr_schedule", "constant"), steps=cfg.steps,
                           lr_final=float(train_params.get("lr_final", 0.01)))


def _checkpoint_step(path: Path) -> int:
    try:
        return int(torch_load(path, "checkpoint").get("step", 0))
    except InloopError:  # an unreadable checkpoint is reported when it is loaded to resume
        return -1


# The code a step runs: a change starts a new checkpoint instead of resuming one made by other code.
TRAINING_CODE = source_hash("training", "models")

# Settings that do not change what a step computes: a checkpoint made under other
# values of these is resumed (so raising ``steps`` continues a finished run).
_RESUMABLE_KEYS = {"steps", "checkpoint_every", "val_every", "log_every", "val_batch_size", "device"}


def default_checkpoint(store, model_name: str, model_kwargs: dict, train_params: dict, describe: dict,
                       start: dict | None = None) -> Path:
    """``results/checkpoints/{model}/{codec}/{config}/qp{qp}-{hash}.ckpt``, the hash over
    everything that changes the computation (model, training settings, patch store, and ``start``: the sha256 of
    the weights a warm start or a SPiLF stage-1 handoff begins from, the steps whose state the job keeps for
    others), so a changed setting starts afresh instead of resuming a checkpoint made for another. (Without
    ``start``, a warm-started job killed midway and run again after its source model was trained again found its
    old checkpoint and stopped: "was made for ..., delete it to start again".)"""
    resumable = _RESUMABLE_KEYS
    if train_params.get("lr_schedule", "constant") != "constant":
        resumable = resumable - {"steps"}  # the schedule spans ``steps``: another length is another run
    # The process count is part of the computation (each rank draws its own batches; issue #28 item 6): a job
    # on another GPU count starts afresh instead of resuming streams it cannot continue.
    key = {"model": model_name, "kwargs": model_kwargs, "store": store_fingerprint(store),
           "train": {k: v for k, v in train_params.items() if k not in resumable and k not in JOB_KEYS},
           "code": TRAINING_CODE, "processes": world_size()}
    if start:
        key["start"] = start
    source = network_source(model_name)
    if source is not None:  # a network from outside the package: its edited code starts afresh
        key["source"] = source
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    root = Path(train_params.get("checkpoint_dir", paths.CHECKPOINTS))
    return root / str(describe.get("model", model_name)) / str(describe.get("codec")) / str(describe.get("config")) / \
        f"qp{describe.get('qp')}-{digest}.ckpt"


def manifest_hash(manifest: list[str] | str | None) -> str:
    """sha256 of the dataset manifest (of their sha256s, in order, for several)."""
    if not manifest:
        return "none"
    paths = [manifest] if isinstance(manifest, (str, os.PathLike)) else list(manifest)
    if len(paths) == 1:
        return sha256_file(paths[0])
    return hashlib.sha256("".join(sha256_file(p) for p in paths).encode()).hexdigest()


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", 1))


def _unwrap(m):
    m = getattr(m, "_orig_mod", m)
    return getattr(m, "module", m)


def store_fingerprint(store: str | os.PathLike) -> str:
    """A short hash of a patch store's meta (what it was cut from)."""
    meta = json.loads((Path(store) / "meta.json").read_text())
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]


