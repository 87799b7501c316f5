"""One trainer for the three papers.

The loop (steps, validation, checkpoints, resume, NaN stop, logging, devices)
is here once; what a step does is a *task*:

* :class:`RestorationTask`: one network, one loss, one optimizer — GL-Fusion
  (IV.B: Adam, lr 2e-3, batch 32, MSE) and the baselines.
* Other papers plug in their own task object with the same three methods
  (``modules``, ``optimizers``, ``train_step``) and may keep several networks
  and optimizers (SPiLF's generator and discriminator) or take clips instead
  of patches (NL-ConvLSTM): the trainer only sees dicts of modules and
  optimizers and a batch source with ``next()``.

Checkpoints (every ``checkpoint_every`` steps, atomically) hold every module,
optimizer and scheduler state, the batch sampler's and torch's RNG states and
the MLflow run id, so a killed job resumes where it stopped and draws the
same batches as an uninterrupted run (bit-exact on CPU). A non-finite loss
stops training with a clear message; the last good checkpoint is kept.

Devices: CPU (tests, demo) or CUDA; bf16 autocast and channels_last where the
device runs them natively (``train.amp_bf16`` / ``train.channels_last``: ``auto``
= CUDA and CPUs with AVX-512 BF16 or AMX, fp32 elsewhere; :func:`train_path`,
:mod:`inloop.models.cpu_path`), optional ``torch.compile``; several GPUs with DDP
when started by torchrun (``WORLD_SIZE`` > 1): every rank samples its own
batches, rank 0 validates, checkpoints and logs.
"""

from __future__ import annotations

import copy
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..errors import InloopError
from ..models.cpu_path import ComputePath
from ..models.cpu_path import resolve as resolve_path
from ..models.io import torch_load, torch_save
from .data import iterate_pairs


class TrainingError(InloopError, RuntimeError):
    """Training cannot go on (non-finite loss, incompatible checkpoint...)."""


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 32
    lr: float = 2e-3
    checkpoint_every: int = 100
    val_every: int = 100
    log_every: int = 10
    val_batch_size: int = 64
    seed: int = 0
    device: str = "auto"          # auto | cpu | cuda | cuda:N
    amp_bf16: bool | str = "auto"       # auto: CUDA and native-bf16 CPUs; true: everywhere; false: fp32
    channels_last: bool | str = "auto"  # auto: CUDA, and a CPU whenever bf16 is on
    compile: bool = False         # torch.compile the model(s)
    deterministic: bool = True    # bit-exact on CPU
    extra: dict = field(default_factory=dict)


class Task(Protocol):
    def modules(self) -> dict[str, nn.Module]: ...
    def optimizers(self) -> dict[str, torch.optim.Optimizer]: ...
    def train_step(self, batch, autocast: Callable) -> dict[str, torch.Tensor]: ...


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def train_path(cfg: TrainConfig, device: torch.device) -> ComputePath:
    """The precision and layout training runs in on ``device`` (:func:`inloop.models.cpu_path.resolve`)."""
    return resolve_path(device, cfg.amp_bf16, cfg.channels_last, keys=("train.amp_bf16", "train.channels_last"))


def seed_everything(seed: int, deterministic: bool = True, compiling: bool = False) -> None:
    """Seed every generator. ``deterministic``: deterministic kernels where they exist (bit-exact on the CPU; on
    CUDA cuBLAS is made deterministic too, through CUBLAS_WORKSPACE_CONFIG set before it starts, but bilinear
    upsampling's backward has no deterministic CUDA kernel, so a GPU run is close, not bit-exact); otherwise
    cuDNN picks its fastest kernels (``cudnn.benchmark``), as the paper configs do on GPUs (issue #28 item 9).
    ``compiling``: the model will be ``torch.compile``-d (``train.compile``), so TorchInductor's flag is set too."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    _deterministic_kernels(deterministic, compiling)
    torch.backends.cudnn.benchmark = not deterministic


def _deterministic_kernels(mode: bool, compiling: bool) -> None:
    """``torch.use_deterministic_algorithms(mode, warn_only=mode)``, without importing TorchInductor where nothing
    is compiled. The public call imports ``torch._inductor.config`` (and with it TorchDynamo) only to set Inductor's
    own ``deterministic`` flag, which nothing but ``torch.compile`` reads: 1.8-2.1 s of every training job's start
    on a 2-core AVX2 EPYC (2.07 s of a 20-step SPiLF job's 12.3 s in cProfile; docs/timings.md). The kernels' flag
    is the same ``torch._C`` call either way."""
    if compiling or "torch._inductor.config" in sys.modules or not hasattr(torch._C, "_set_deterministic_algorithms"):
        torch.use_deterministic_algorithms(mode, warn_only=mode)
    else:
        torch._C._set_deterministic_algorithms(mode, warn_only=mode)


LR_SCHEDULES = ("constant", "cosine")


def lr_factor(schedule: str, step: int, steps: int, final: float) -> float:
    """Multiplier of the initial learning rate after ``step`` of ``steps`` optimizer steps.

    ``constant``: 1. ``cosine``: half a cosine from 1 down to ``final`` at ``steps``
    (SGDR without restarts), then ``final``. GL-Fusion IV.B gives only the *initial* rate
    (2e-3). On the demo (1200 steps) cosine did not help: it ended below a constant rate at
    QP 32 and did not rescue QP 22 (the output scale of ``train.residual_scale`` did), so
    ``constant`` is the default (measured: docs/results.md, "the demo's settings").
    """
    if schedule == "constant" or steps <= 0:
        return 1.0
    t = min(step, steps) / steps
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * t))


class RestorationTask:
    """Y = f(X), one loss, one Adam optimizer (GL-Fusion IV.B), with an optional learning-rate
    schedule over the run's ``steps`` (:func:`lr_factor`)."""

    def __init__(self, model: nn.Module, lr: float = 2e-3, loss: str = "mse", lr_schedule: str = "constant",
                 steps: int = 0, lr_final: float = 0.01):
        if lr_schedule not in LR_SCHEDULES:
            raise InloopError(f"train.lr_schedule={lr_schedule!r}: choose one of {', '.join(LR_SCHEDULES)}")
        self.model = model
        self.loss_name = loss
        self.loss_fn = {"mse": nn.functional.mse_loss, "l1": nn.functional.l1_loss}[loss]
        self.opt = torch.optim.Adam(model.parameters(), lr=lr)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda step: lr_factor(lr_schedule, step, steps, lr_final))

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": self.opt}

    def schedulers(self) -> dict[str, Any]:
        return {"lr": self.sched}

    def train_step(self, batch, autocast: Callable) -> dict[str, torch.Tensor]:
        x, y = batch
        self.opt.zero_grad(set_to_none=True)
        with autocast():
            out = self.model(x)
        loss = self.loss_fn(out.float(), y)
        loss.backward()
        self.opt.step()
        self.sched.step()
        return {self.loss_name: loss.detach()}

    @torch.no_grad()
    def predict(self, x: torch.Tensor, autocast: Callable) -> torch.Tensor:
        # The bare network: under DDP only rank 0 validates, and the wrapper's forward
        # may start a collective (buffer broadcast) the other ranks never join.
        with autocast():
            return _unwrap(self.model)(x).float()


def psnr_of_mse(mse: float) -> float:
    return math.inf if mse <= 0 else -10.0 * math.log10(mse)


@torch.no_grad()
def validate(task, val_array: np.ndarray, bitdepth: int, device: torch.device, batch_size: int,
             autocast: Callable) -> dict[str, float]:
    """PSNR of the decoded input and of the network output on every validation patch
    (one MSE over all patches, so patches weigh equally), and their difference."""
    if len(val_array) == 0:
        return {}
    for m in task.modules().values():
        m.eval()
    se_in = se_out = 0.0
    count = 0
    for x, y in iterate_pairs(val_array, batch_size, bitdepth, device):
        out = task.predict(x, autocast).clamp(0, 1)
        x = x[:, x.shape[1] // 2] if x.dim() == 5 else x  # a clip's input is its centre frame
        se_in += torch.sum((x - y) ** 2).item()
        se_out += torch.sum((out - y) ** 2).item()
        count += y.numel()
    for m in task.modules().values():
        m.train()
    p_in, p_out = psnr_of_mse(se_in / count), psnr_of_mse(se_out / count)
    return {"val_psnr_input": p_in, "val_psnr_output": p_out, "val_delta_psnr": p_out - p_in}


class Trainer:
    """The loop shared by every task; see the module docstring."""

    def __init__(self, task, sampler, cfg: TrainConfig, checkpoint: str | os.PathLike, tracker=None,
                 val_array: np.ndarray | None = None, bitdepth: int = 8, describe: dict | None = None,
                 keep_states: tuple[int, ...] = ()):
        self.task = task
        self.sampler = sampler
        self.cfg = cfg
        self.checkpoint = Path(checkpoint)
        self.tracker = tracker
        self.val_array = val_array if val_array is not None else np.empty((0,))
        self.bitdepth = bitdepth
        self.describe = describe or {}
        self.device = sampler.device
        self.rank = int(os.environ.get("RANK", 0))
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        self.step = 0
        self.history: list[dict] = []
        # Steps whose whole state (as a checkpoint holds it) is kept for other trainings that continue from it
        # (SPiLF's train.spilf.stage1_from); kept in the checkpoints too, so a resumed job still has them.
        self.keep_states = set(keep_states)
        self.kept: dict[int, dict] = {}
        self.compute = train_path(cfg, self.device)
        self.autocast = self.compute.autocast()
        for m in task.modules().values():
            m.to(self.device)
            if m is _unwrap(m):  # wrapped models: set before wrapping
                self.compute.layout(m)

    # ---------------------------------------------------------------- checkpoints
    def _streams(self) -> dict:
        """This rank's random streams: its batch sampler's, torch's CPU generator and its own GPU's generator."""
        return {"sampler": self.sampler.state(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None}

    def _all_streams(self) -> list[dict]:
        """Every rank's streams, in rank order (a collective: every rank calls it). Only rank 0's were saved and
        every rank loaded them, so after a resume all ranks drew the same batches; and the GPU states of every
        visible device were saved, which a job seeing fewer could not load (issue #28 items 4-5)."""
        mine = self._streams()
        if self.world == 1:
            return [mine]
        import torch.distributed as dist

        every: list = [None] * self.world
        dist.all_gather_object(every, mine)
        return every

    def state(self, streams: list[dict] | None = None) -> dict:
        return {
            "step": self.step,
            "modules": {k: _unwrap(m).state_dict() for k, m in self.task.modules().items()},
            "optimizers": {k: o.state_dict() for k, o in self.task.optimizers().items()},
            "schedulers": {k: s.state_dict() for k, s in getattr(self.task, "schedulers", dict)().items()},
            "ranks": streams if streams is not None else [self._streams()],
            "run_id": getattr(self.tracker, "run_id", None),
            "history": self.history,
            "describe": self.describe,
            "config": asdict(self.cfg),
            "kept": self.kept,
        }

    def save_checkpoint(self) -> None:
        streams = self._all_streams()  # every rank takes part; rank 0 writes
        if self.rank != 0:
            return
        for k, m in self.task.modules().items():
            if not all(torch.isfinite(p).all() for p in m.parameters()):
                raise TrainingError(f"non-finite weights in {k} at step {self.step}; "
                                    f"last good checkpoint kept at {self.checkpoint}")
        torch_save(self.state(streams), self.checkpoint, "checkpoint")

    def load_checkpoint(self) -> bool:
        if not self.checkpoint.is_file():
            return False
        # Read onto the CPU: load_state_dict moves weights and Adam's moments to their parameters' device but keeps
        # Adam's `step` counters where they were read, and on a GPU each one cost a host sync per parameter per
        # step after any resume (map_location=<device>, issue #28 item 7).
        ck = torch_load(self.checkpoint, "checkpoint", map_location="cpu")
        if ck.get("describe", {}) != self.describe:
            raise TrainingError(
                f"checkpoint {self.checkpoint} was made for {ck.get('describe')}, not {self.describe}; "
                "delete it to start again")
        for k, m in self.task.modules().items():
            _unwrap(m).load_state_dict(ck["modules"][k])
        for k, o in self.task.optimizers().items():
            o.load_state_dict(ck["optimizers"][k])
        for k, s in getattr(self.task, "schedulers", dict)().items():
            s.load_state_dict(ck["schedulers"][k])
        ranks = ck.get("ranks") or []
        if len(ranks) != self.world:
            raise TrainingError(f"checkpoint {self.checkpoint} holds the random streams of {len(ranks)} process(es), "
                                f"this job runs {self.world}: delete it to start again")
        mine = ranks[self.rank]
        self.sampler.load_state(mine["sampler"])
        torch.set_rng_state(mine["torch_rng"])
        if mine.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(mine["cuda_rng"], self.device)
        self.step = ck["step"]
        self.history = ck.get("history", [])
        self.kept = ck.get("kept") or {}
        self.resumed_run_id = ck.get("run_id")
        return True

    def continue_from(self, state: dict) -> None:
        """Start at another training's state (a Trainer state it kept: SPiLF's ``stage1_from``): its step,
        history and batch stream; the task takes the networks, optimisers and schedules it shares
        (``task.continue_from``). The torch generator stays this run's: no step draws from it."""
        ranks = state.get("ranks") or []
        if len(ranks) != self.world:
            raise TrainingError(f"the state to continue from holds the random streams of {len(ranks)} process(es), "
                                f"this job runs {self.world}")
        self.task.continue_from(state)
        self.sampler.load_state(ranks[self.rank]["sampler"])
        self.step = int(state["step"])
        self.history = [dict(h) for h in state.get("history", [])]

    def kept_states(self) -> dict[int, dict]:
        """The states kept at ``keep_states`` (every one the run reached: a missing one is an error)."""
        missing = sorted(k for k in self.keep_states if k <= self.step and k not in self.kept)
        if missing:
            raise TrainingError(f"the state at step {missing[0]} was not kept (the run resumed from {self.checkpoint}, "
                                "written before it was asked for): delete that checkpoint and run again")
        return self.kept

    # ---------------------------------------------------------------- loop
    def run(self) -> dict:
        cfg = self.cfg
        t_start = time.perf_counter()
        start_step = self.step
        sums: dict[str, torch.Tensor] = {}
        n_in_sum = 0
        last_val: dict = {}
        # A progress bar on a terminal; into a file (the rule's log) one line per log interval and per validation
        # instead, which a person and grep can read (a bar there was one line of thousands of carriage returns).
        lines = self.rank == 0 and not _is_terminal(sys.stderr)
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="step",
                   disable=self.rank != 0 or lines, mininterval=1.0)
        t_line, step_line = time.perf_counter(), self.step
        try:  # the bar closed before an error is printed, so the error is the last line
            for m in self.task.modules().values():
                m.train()
            while self.step < cfg.steps:
                batch = self.sampler.next()
                losses = self.task.train_step(batch, self.autocast)
                self.step += 1
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0) + v
                n_in_sum += 1
                bar.update(1)
                last = self.step == cfg.steps
                if self.step % cfg.log_every == 0 or last or self.step % cfg.checkpoint_every == 0:
                    means = {k: (v / n_in_sum).item() for k, v in sums.items()}  # one sync per log interval
                    bad = {k: v for k, v in means.items() if not math.isfinite(v)}
                    if bad:
                        raise TrainingError(
                            f"non-finite loss {bad} between steps {self.step - n_in_sum + 1} and {self.step}; "
                            f"stopped. The last good checkpoint is {self.checkpoint}"
                            f"{'' if self.checkpoint.exists() else ' (none written yet)'}; lower train.lr and re-run")
                    sums, n_in_sum = {}, 0
                    self.history.append({"step": self.step, **means})
                    bar.set_postfix({k: f"{v:.3g}" for k, v in means.items()})
                    if lines:
                        now = time.perf_counter()
                        rate = (self.step - step_line) / (now - t_line) if now > t_line else 0.0
                        print(f"step {self.step}/{cfg.steps} " + " ".join(f"{k}={v:.4g}" for k, v in means.items())
                              + f" {rate:.2f} step/s elapsed {now - t_start:.0f} s", file=sys.stderr, flush=True)
                        t_line, step_line = now, self.step
                    if self.tracker is not None and self.rank == 0:
                        self.tracker.log_metrics({f"train_{k}": v for k, v in means.items()}, self.step)
                if self.rank == 0 and (self.step % cfg.val_every == 0 or last):
                    last_val = validate(self.task, self.val_array, self.bitdepth, self.device, cfg.val_batch_size,
                                        self.autocast)
                    if last_val and lines:
                        print(f"validation step {self.step}: " + " ".join(f"{k}={v:.4f}" for k, v in last_val.items()),
                              file=sys.stderr, flush=True)
                    if last_val:
                        if self.history and self.history[-1]["step"] == self.step:
                            self.history[-1].update(last_val)
                        else:
                            self.history.append({"step": self.step, **last_val})
                        if self.tracker is not None:
                            self.tracker.log_metrics(last_val, self.step, flush=True)
                if self.step in self.keep_states:
                    streams = self._all_streams()  # every rank takes part; rank 0 keeps
                    if self.rank == 0:
                        self.kept[self.step] = copy.deepcopy({**self.state(streams), "kept": {}})
                if self.step % cfg.checkpoint_every == 0 or last:
                    if self.tracker is not None and self.rank == 0:
                        # MLflow first: once a checkpoint exists, everything it holds is in MLflow
                        # too (a job killed between the two re-logs a few steps, loses none).
                        self.tracker.flush()
                    self.save_checkpoint()
        finally:
            bar.close()
        elapsed = time.perf_counter() - t_start
        steps_run = self.step - start_step
        if steps_run == 0 and self.rank == 0:  # it started at its last step (stage 1 as long as the run)
            last_val = validate(self.task, self.val_array, self.bitdepth, self.device, cfg.val_batch_size,
                                self.autocast)
        return {
            "steps": self.step,
            "steps_this_run": steps_run,
            "resumed_from": start_step,
            "time_s": elapsed,
            "samples_per_s": steps_run * cfg.batch_size / elapsed if elapsed > 0 else 0.0,  # the global batch
            "processes": self.world,
            "batch_per_process": cfg.batch_size // self.world,
            **last_val,
        }


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _unwrap(m: nn.Module) -> nn.Module:
    m = getattr(m, "_orig_mod", m)  # torch.compile
    return getattr(m, "module", m)  # DDP
