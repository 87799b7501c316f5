"""Benchmark harness (issue #8): speed, memory and cost of every network and of the codec stage.

What is measured, each by one function returning plain dicts (JSON rows):

* :func:`bench_inference` -- ms per filtered frame of a model at given frame sizes, whole frame or
  in overlapping tiles through :func:`inloop.evaluation.enhance.apply_model` (the evaluate stage's
  own path), with the peak extra memory of the forward. A multi-frame network (NL-ConvLSTM,
  ``model.frames`` = T) gets a T-frame clip per output frame.
* :func:`bench_training` -- training step time and samples/s at a batch and patch size through
  the project's own task (:func:`inloop.training.run.make_task`: SPiLF's GAN task, else
  :class:`~inloop.training.trainer.RestorationTask`), model TFLOP/s and MFU against a given peak,
  optionally a ``torch.profiler`` trace (and, on CUDA, the fraction of the step the GPU is busy).
* :func:`model_costs` -- parameters, MACs and FLOPs (= 2 x MACs) per pixel and per frame.
* :func:`bench_codec` -- x265 encodes per minute (one encode at a time, one thread each) on a real clip.
* :func:`bench_encode_stage` -- wall time of ``snakemake --cores N encodes`` in a clone of the
  repository for N = 1, 2, 4, 8 and the parallel efficiency T1 / (N x TN).

Timing: warm-up calls first (not timed), then ``repeats`` calls; on CUDA the device is
synchronised only before and after the timed region (no host-device sync inside it).

Memory ("peak_mem_mb", always the *extra* memory over what was allocated before the case:
model weights and input are not counted; ``mem_method`` says how it was measured):

* CUDA: ``torch.cuda.max_memory_allocated`` minus ``torch.cuda.memory_allocated`` at the start
  (``cuda.max_memory_allocated``): exact for tensors, the caching allocator's slack excluded;
* CPU: the resident set size (``/proc/self/statm``) sampled every 2 ms in a thread during the case,
  and ``getrusage`` ``ru_maxrss`` when the process high-water mark rises during it, minus the RSS
  at the start (``rss_delta``; glibc's ``malloc_trim`` first hands freed heap pages back, so the
  case's allocations fault in again and are seen). Warm-up calls are inside the measured block. A
  lower bound where the allocator still holds pages from earlier cases or a peak is shorter than the
  sampling interval (small frames); close for large frames, where it matters.

Cases that would not fit (memory estimate above the free memory) or would take longer than
``max_seconds`` (estimated from the measured MAC rate of the model on a small probe, refined by
every measured case) are skipped with the reason recorded; repeats are cut to fit the budget.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import math
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from .lazy import lazy_import

# torch loads on first use: `inloop <any command>` builds this sub-command's parser too.
torch = lazy_import("torch")

from .errors import InloopError

REPO = Path(__file__).resolve().parents[2]

# The issue's frame sizes (W x H): CTC class D/C/E, 1080p (class B), 2560x1600 (class A).
SIZES = ("416x240", "832x480", "1280x720", "1920x1080", "2560x1600")
QUICK_SIZES = ("64x48", "96x64")
MODELS_DEFAULT = ("glfusion", "spilf", "nlconvlstm", "arcnn", "dncnn", "vrcnn")

# Training batch and patch size of each network's paper (batch, patch). NL-ConvLSTM 4.2: batch 32;
# its patch size is lost in the stored text ("a patch size of  for NL-ConvLSTM"): 80 is chosen
# here (8 x 8 blocks of p = 10). The baselines are timed at GL-Fusion's setting (they are its
# comparison methods); their own papers train on smaller crops (AR-CNN 32x32, DnCNN 40x40, batch 128).
PAPER_TRAIN = {
    "glfusion": (32, 128),     # GL-Fusion IV.B: batch 32, 128x128 patches
    "spilf": (32, 256),        # SPiLF 3.2.3: batch 32, 256x256 crops
    "nlconvlstm": (32, 80),    # NL-ConvLSTM 4.2: batch 32; patch size lost (80 chosen)
    "arcnn": (32, 128),
    "dncnn": (32, 128),
    "vrcnn": (32, 128),
}

# Dense bf16 tensor-core peak (TFLOP/s, no sparsity) by device name; --peak-tflops overrides.
GPU_PEAKS = (  # (substrings that must all occur, TFLOP/s)
    (("H100", "PCIE"), 756.0),
    (("H100", "NVL"), 835.0),
    (("H100",), 989.4),        # SXM5
    (("H200",), 989.4),
    (("GH200",), 989.4),
    (("A100",), 312.0),
    (("L40S",), 362.0),
    (("V100",), 125.0),        # fp16 tensor cores (V100 has no bf16)
)

# The issue's targets on an H100 (measured, reported; never asserted in tests).
TARGETS = {
    "inference_ms": {("nlconvlstm", "1920x1080"): 100.0, ("glfusion", "1920x1080"): 20.0},
    "train_mfu": 0.30,
    "train_gpu_busy": 0.90,
}

# The papers' figures the report quotes next to ours.
PAPER_FIGURES = {
    "nlconvlstm_table5_ms": {"180x180": 102.13, "416x240": 304.11, "640x360": 621.94, "1280x720": 2607.60,
                             "1920x1080": 6738.00},
    "nlconvlstm_table5_note": "NL-ConvLSTM (ICCV 2019) Table 5: run time (ms per frame) of the approximate "
                              "NL-ConvLSTM; original (exact) NL 4391.75 ms at 180x180; AR-CNN 80.70 ms, DnCNN "
                              "315.83 ms at 1920x1080",
    "nlconvlstm_table5_baselines_ms": {"arcnn": {"416x240": 4.58, "1280x720": 36.06, "1920x1080": 80.70},
                                       "dncnn": {"416x240": 15.84, "1280x720": 139.77, "1920x1080": 315.83}},
    "glfusion_table7_percent": {"ai": 15.65, "ldp": 9.77, "ra": 6.20},
    "glfusion_table7_note": "GL-Fusion Table VII: coding time increase over HM-16.9 (DBF+SAO on) with the "
                            "network in HM, on an NVIDIA Tesla V100: +15.65 % AI, +9.77 % LDP, +6.20 % RA",
}


# ------------------------------------------------------------------------------------ helpers


def parse_size(text: str) -> tuple[int, int]:
    """``"1920x1080"`` (W x H) -> ``(H, W)``."""
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise InloopError(f"frame size {text!r}: expected WxH, e.g. 1920x1080") from None
    if w < 1 or h < 1:
        raise InloopError(f"frame size {text!r}: width and height must be positive")
    return h, w


def size_name(hw: tuple[int, int]) -> str:
    return f"{hw[1]}x{hw[0]}"


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InloopError(f"--device {name}: CUDA is not available in this torch build / on this machine")
    return dev


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gpu_peak_tflops(device: torch.device) -> tuple[float | None, str]:
    """Dense bf16 peak of the GPU by its name (``None`` for CPU or an unknown GPU)."""
    if device.type != "cuda":
        return None, "cpu: no peak assumed (give --peak-tflops)"
    name = torch.cuda.get_device_name(device).upper()
    for keys, peak in GPU_PEAKS:
        if all(k in name for k in keys):
            return peak, f"{torch.cuda.get_device_name(device)}: dense bf16 peak {peak:g} TFLOP/s (by name)"
    return None, f"{torch.cuda.get_device_name(device)}: unknown peak (give --peak-tflops)"


def autocast_factory(device: torch.device, amp: str) -> Callable[[], Any]:
    if amp in (None, "none", "fp32"):
        return contextlib.nullcontext
    if amp != "bf16":
        raise InloopError(f"amp {amp!r}: expected none or bf16")
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB


def _malloc_trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak extra memory of a block: CUDA allocator statistics, or sampled RSS on CPU."""

    def __init__(self, device: torch.device, interval: float = 0.002):
        self.device = device
        self.interval = interval
        self.method = "cuda.max_memory_allocated" if device.type == "cuda" else "rss_delta"
        self.peak_bytes = 0

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        _malloc_trim()  # hand freed heap pages back, so this block's allocations show in the RSS again
        self._base = _rss_bytes()
        self._maxrss0 = _maxrss_bytes()
        self._peak = self._base
        self._stop = threading.Event()

        def sample():
            while not self._stop.is_set():
                self._peak = max(self._peak, _rss_bytes())
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            sync(self.device)
            self.peak_bytes = max(0, torch.cuda.max_memory_allocated(self.device) - self._base)
            return
        self._stop.set()
        self._thread.join()
        peak = max(self._peak, _rss_bytes())
        maxrss = _maxrss_bytes()
        if maxrss > self._maxrss0:  # the process high-water mark rose during the block: exact
            peak = max(peak, maxrss)
        self.peak_bytes = max(0, peak - self._base)

    @property
    def mb(self) -> float:
        return self.peak_bytes / 2**20


def free_memory_bytes(device: torch.device) -> int | None:
    """Memory a case may still take: CUDA free + what this process caches; CPU MemAvailable."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def machine_info(device: torch.device | None = None) -> dict:
    """CPU model, cores, memory, load, versions, GPU name: the header of every result."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as fh:
            mem = round(int(fh.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    info = {
        "cpu": cpu, "cpu_count": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)) if hasattr(
            os, "sched_getaffinity") else None, "memory_gb": mem, "torch_threads": torch.get_num_threads(),
        "load_avg": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "device": "cpu", "device_name": f"cpu ({cpu})", "git_commit": _git_commit(),
    }
    if device is not None and device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(device=str(device), device_name=props.name, device_memory_gb=round(props.total_memory / 2**30, 1),
                    device_capability=f"{props.major}.{props.minor}")
    return info


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


# ------------------------------------------------------------------------------------ models


def model_entries(names: Iterable[str], preset: str = "paper", params: dict | None = None) -> list[dict]:
    """``[{name, arch, kwargs, train}]`` for each requested model.

    ``preset="paper"``: the registered network's constructor defaults (the papers' full sizes;
    SPiLF's network sizes are not in its paper, the defaults are the full-size network), trained at
    :data:`PAPER_TRAIN`. ``preset="demo"``: the ``models.<name>`` block of params.yaml and the
    merged ``train`` settings (batch_size, patch_size) of that entry. A name is a registered network
    (``spilf``) or a params entry (``spilf-arabica``, whose ``arch`` is used).
    """
    from .models import MODELS

    if preset not in ("paper", "demo"):
        raise InloopError(f"--preset {preset!r}: expected paper or demo")
    params = params or {}
    out = []
    for name in names:
        block = (params.get("models") or {}).get(name)
        arch = (block or {}).get("arch", name) if isinstance(block, dict) else name
        if arch not in MODELS:
            raise InloopError(f"--models {name}: not a registered network or a models: entry with arch; known "
                              f"networks: {', '.join(sorted(MODELS))}")
        if preset == "paper":
            batch, patch = PAPER_TRAIN.get(arch, (32, 128))
            out.append({"name": name, "arch": arch, "kwargs": {}, "batch": batch, "patch": patch, "train": {}})
            continue
        from .params import model_spec

        entry = name if block is not None else next(
            (k for k, v in (params.get("models") or {}).items() if isinstance(v, dict) and v.get("arch", k) == arch),
            name)
        spec = model_spec(params, entry)
        out.append({"name": entry, "arch": spec["arch"], "kwargs": spec["kwargs"],
                    "batch": int(spec["train"].get("batch_size", 16)), "patch": int(spec["train"].get("patch_size", 48)),
                    "train": spec["train"]})
    return out


def _build(arch: str, kwargs: dict) -> torch.nn.Module:
    from .models import build_model

    return build_model(arch, **kwargs)


def _frames(model: torch.nn.Module) -> int:
    return int(getattr(_unwrap(model), "frames", 1))


def _in_channels(model: torch.nn.Module) -> int:
    return int(getattr(_unwrap(model), "in_channels", 1))


def _unwrap(m: torch.nn.Module) -> torch.nn.Module:
    m = getattr(m, "_orig_mod", m)
    return getattr(m, "module", m)


def _padded(hw: tuple[int, int], multiple: int) -> tuple[int, int]:
    return -(-hw[0] // multiple) * multiple, -(-hw[1] // multiple) * multiple


def frame_macs(model: torch.nn.Module, hw: tuple[int, int], macs_pp_probe: float | None = None) -> float:
    """MACs of one output frame of ``hw`` = (H, W): clip networks by their own count (grows with
    the frame: NL-ConvLSTM's non-local matching), others MACs/pixel of a probe x the padded area."""
    net = _unwrap(model)
    if hasattr(net, "macs_per_pixel") and callable(getattr(net, "macs_per_pixel")):
        return float(net.macs_per_pixel(hw)) * hw[0] * hw[1]
    if macs_pp_probe is None:
        from .models import macs_per_pixel

        macs_pp_probe = macs_per_pixel(net, _in_channels(net))
    ph, pw = _padded(hw, int(getattr(net, "pad_multiple", 1)))
    return macs_pp_probe * ph * pw


def model_costs(arch: str, kwargs: dict | None = None, sizes: Iterable[str] = SIZES,
                probe: tuple[int, int] = (64, 64), name: str | None = None) -> dict:
    """Parameters and MACs / FLOPs per pixel (FLOPs = 2 x MACs; conv and linear layers,
    and NL-ConvLSTM's non-local matmuls) of a network, overall and at each frame size.

    ``macs_per_pixel`` is :func:`inloop.models.macs_per_pixel` on a ``probe`` frame (H, W) for
    single-frame networks, ``model.macs_per_pixel(size)`` of the largest size for clip networks;
    ``per_size`` gives each size (per output pixel of the unpadded frame, and per frame).
    """
    from .models import count_parameters, macs_per_pixel

    kwargs = dict(kwargs or {})
    model = _build(arch, kwargs)
    clip = _frames(model) > 1 or hasattr(model, "macs_per_pixel")
    rows = []
    probe_mpp = None if clip else macs_per_pixel(model, _in_channels(model), probe)
    for s in sizes:
        hw = parse_size(s)
        macs = frame_macs(model, hw, probe_mpp)
        rows.append({"size": size_name(hw), "macs_per_pixel": macs / (hw[0] * hw[1]),
                     "flops_per_pixel": 2 * macs / (hw[0] * hw[1]), "gmacs_per_frame": macs / 1e9,
                     "gflops_per_frame": 2 * macs / 1e9})
    if clip:
        big = max(rows, key=lambda r: parse_size(r["size"])[0] * parse_size(r["size"])[1]) if rows else None
        mpp = big["macs_per_pixel"] if big else float(model.macs_per_pixel(probe))
        where = f"{big['size']} (grows with the frame)" if big else size_name(probe)
    else:
        mpp, where = probe_mpp, f"{size_name(probe)} probe"
    return {"model": name or arch, "arch": arch, "kwargs": kwargs, "params": count_parameters(model),
            "frames": _frames(model), "macs_per_pixel": mpp, "flops_per_pixel": 2 * mpp, "measured_on": where,
            "per_size": rows}


def memory_estimate(model: torch.nn.Module, hw: tuple[int, int]) -> int | None:
    """Planning estimate (bytes, float32, batch 1, no grad) where one exists: NL-ConvLSTM's."""
    net = _unwrap(model)
    if getattr(net, "registry_name", "") != "nlconvlstm" or getattr(net, "mode", "") != "nlconvlstm":
        return None
    from .models import nlconvlstm as nl

    if net.exact:
        maps = (net.frames + 13) * net.channels * hw[0] * hw[1] * 4
        return maps + nl.exact_warp_peak_bytes(hw[0], hw[1], 2 * net.channels)
    return nl.inference_peak_bytes(hw[0], hw[1], net.channels, net.pool, net.topk, net.frames)


# ------------------------------------------------------------------------------------ profiling


def profile_calls(fn: Callable[[], Any], device: torch.device, trace: str | os.PathLike | None, calls: int = 3,
                  top: int = 15) -> dict:
    """Run ``fn`` ``calls`` times under ``torch.profiler``; write a Chrome trace (open it in
    chrome://tracing or https://ui.perfetto.dev) and return the top operators by self time, and on
    CUDA the fraction of the wall time at least one kernel runs (``gpu_busy``)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sync(device)
    with profile(activities=acts) as prof:
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        sync(device)
        wall = time.perf_counter() - t0
    out: dict[str, Any] = {"calls": calls, "wall_ms_per_call": 1e3 * wall / calls}
    if trace:
        Path(trace).parent.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(trace))
        out["trace"] = str(trace)
    rows = []
    dev_key = "self_device_time_total" if device.type == "cuda" else None
    for ev in prof.key_averages():
        dev_us = float(getattr(ev, dev_key, 0.0) or getattr(ev, "self_cuda_time_total", 0.0)) if dev_key else 0.0
        rows.append({"op": ev.key, "calls": int(ev.count), "self_cpu_ms": ev.self_cpu_time_total / 1e3 / calls,
                     "self_device_ms": dev_us / 1e3 / calls})
    key = "self_device_ms" if device.type == "cuda" else "self_cpu_ms"
    rows.sort(key=lambda r: r[key], reverse=True)
    out["top_ops"] = rows[:top]
    if device.type == "cuda":
        out["gpu_busy"] = _gpu_busy(prof, wall)
    return out


def _gpu_busy(prof, wall_s: float) -> float | None:
    """Union of the device kernels' intervals / wall time of the profiled region."""
    try:
        from torch.autograd import DeviceType

        spans = sorted((ev.time_range.start, ev.time_range.end) for ev in prof.events()
                       if getattr(ev, "device_type", None) == DeviceType.CUDA)
    except Exception:  # noqa: BLE001 - profiler internals differ between versions
        return None
    busy, cur_s, cur_e = 0.0, None, None
    for s, e in spans:
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                busy += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        busy += cur_e - cur_s
    return min(1.0, busy / 1e6 / wall_s) if wall_s > 0 else None


# ------------------------------------------------------------------------------------ inference


def _prepare(model: torch.nn.Module, device: torch.device, channels_last: bool, compile: bool,
             compile_mode: str | None) -> torch.nn.Module:
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile:
        model = torch.compile(model, mode=compile_mode or None)
    return model


def _frame_input(model: torch.nn.Module, hw: tuple[int, int], device: torch.device, channels_last: bool,
                 batch: int = 1) -> torch.Tensor:
    t, c = _frames(model), _in_channels(model)
    g = torch.Generator().manual_seed(0)
    if t > 1:
        return torch.rand(batch, t, c, *hw, generator=g).to(device)
    x = torch.rand(batch, c, *hw, generator=g).to(device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _defaults(device, arch: str, amp: str | None, channels_last: bool | None, warmup: int, compile: bool):
    """The shared defaults of a case: device, arch, bf16 on CUDA, channels_last on CUDA, 3 warm-ups when compiled."""
    device = resolve_device(str(device)) if not isinstance(device, torch.device) else device
    amp = amp or ("bf16" if device.type == "cuda" else "none")
    channels_last = device.type == "cuda" if channels_last is None else channels_last
    return device, arch, amp, channels_last, (max(warmup, 3) if compile else warmup)


def bench_inference(model_name: str, kwargs: dict | None = None, sizes: Iterable[str] = SIZES,
                    device: str | torch.device = "cpu", tiled: int | None = None, overlap: int = 64,
                    amp: str | None = None, channels_last: bool | None = None, compile: bool = False,
                    compile_mode: str | None = None, repeats: int = 5, warmup: int = 1,
                    max_seconds: float | None = 60.0, arch: str | None = None, profile_dir: str | None = None,
                    profile: bool = False, progress: Callable[[str], None] | None = None,
                    peak_tflops: float | None = None) -> list[dict]:
    """ms per output frame of ``model_name`` (a registered network; ``arch`` overrides for params
    entries) at each size (``"WxH"``), whole frame (``tiled`` None/0) or in ``tiled`` x ``tiled``
    tiles with ``overlap`` pixels of context (the evaluate stage's ``apply_model``; the tile is
    rounded up to the network's padding multiple). One row per size; skipped sizes say why.

    ``amp``: ``"bf16"`` (autocast) or ``"none"``; default bf16 on CUDA, none on CPU.
    ``channels_last``: default on CUDA. ``compile``: ``torch.compile(mode=compile_mode)``
    (``"reduce-overhead"`` uses CUDA graphs); warm-up is then at least 3 calls.
    Profiles (trace + top operators) are taken with ``profile=True``, and on CUDA for any case
    that misses its :data:`TARGETS` entry. ``peak_fraction`` = achieved model TFLOP/s / ``peak_tflops``
    (default: the GPU's dense bf16 peak by name; none on CPU).
    """
    from .evaluation.enhance import apply_model

    device, arch, amp, channels_last, warmup = _defaults(device, arch or model_name, amp, channels_last, warmup,
                                                         compile)
    kwargs = dict(kwargs or {})
    net = _build(arch, kwargs)
    multiple = int(getattr(net, "pad_multiple", 1))
    tile = (-(-int(tiled) // multiple) * multiple) if tiled else None
    model = _prepare(net, device, channels_last, compile, compile_mode)
    autocast = autocast_factory(device, amp)
    mode = f"tile{tile}" if tile else "whole"
    peak = peak_tflops if peak_tflops is not None else gpu_peak_tflops(device)[0]

    from .models import macs_per_pixel

    probe_mpp = None if _frames(net) > 1 or hasattr(net, "macs_per_pixel") else macs_per_pixel(
        net, _in_channels(net))
    # Seconds per MAC: first from a small probe, then from every measured case (the largest so far).
    probe_hw = (48, 64)
    with torch.no_grad(), autocast():
        xp = _frame_input(_unwrap(model), probe_hw, device, channels_last)
        _unwrap(model)(xp)  # first call allocates; not timed
        sync(device)
        t0 = time.perf_counter()
        _unwrap(model)(xp)
        sync(device)
        s_per_mac = (time.perf_counter() - t0) / max(1.0, frame_macs(net, probe_hw, probe_mpp))
    del xp

    rows = []
    base = {"model": model_name, "arch": arch, "kwargs": kwargs, "mode": mode, "tile": tile,
            "overlap": overlap if tile else None, "device": str(device), "amp": amp, "channels_last": channels_last,
            "compile": compile_mode or True if compile else False}
    for s in sizes:
        hw = parse_size(s)
        macs = frame_macs(net, hw, probe_mpp)
        tiles = 1
        work = macs
        if tile and (hw[0] > tile or hw[1] > tile):
            from .evaluation.enhance import _windows

            rows_w = _windows(hw[0], tile, overlap, multiple)
            cols_w = _windows(hw[1], tile, overlap, multiple)
            tiles = len(rows_w) * len(cols_w)
            area = sum((r[3] - r[2]) * (c[3] - c[2]) for r in rows_w for c in cols_w)
            work = frame_macs(net, hw, probe_mpp) * area / (hw[0] * hw[1])
        row = {**base, "size": size_name(hw), "tiles": tiles, "gflops_per_frame": 2 * macs / 1e9}
        if progress:
            progress(f"{model_name} {row['size']} {mode}")
        # memory
        window = (min(hw[0], tile + 2 * overlap), min(hw[1], tile + 2 * overlap)) if tiles > 1 else hw
        est = memory_estimate(net, window)
        free = free_memory_bytes(device)
        if est is not None:
            row["mem_estimate_mb"] = est / 2**20
            if free is not None and est > 0.8 * free:
                rows.append({**row, "status": "skipped", "reason": f"estimated {est / 2**30:.1f} GiB > 80 % of the "
                             f"{free / 2**30:.1f} GiB free on {device.type}"})
                continue
        # time budget
        per_call = s_per_mac * work
        n_rep, n_warm = repeats, warmup
        if max_seconds is not None:
            if per_call > max_seconds:
                rows.append({**row, "status": "skipped", "reason": f"estimated {per_call:.1f} s per frame > "
                             f"--max-seconds {max_seconds:g}"})
                continue
            while n_rep > 1 and per_call * (n_rep + n_warm) > max_seconds:
                n_rep -= 1
            if n_warm > 0 and per_call * (n_rep + n_warm) > max_seconds and not compile:
                n_warm = 0
        x = _frame_input(_unwrap(model), hw, device, channels_last)
        try:
            with torch.no_grad(), autocast(), PeakMemory(device) as mem:  # warm-up included: first-call memory
                for _ in range(n_warm):
                    apply_model(model, x, tile, overlap, multiple)
                times = []
                if device.type == "cuda":
                    sync(device)
                    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n_rep + 1)]
                    t0 = time.perf_counter()
                    starts[0].record()
                    for i in range(n_rep):
                        apply_model(model, x, tile, overlap, multiple)
                        starts[i + 1].record()
                    sync(device)
                    wall = time.perf_counter() - t0
                    times = [starts[i].elapsed_time(starts[i + 1]) / 1e3 for i in range(n_rep)]
                else:
                    t0 = time.perf_counter()
                    for _ in range(n_rep):
                        t1 = time.perf_counter()
                        apply_model(model, x, tile, overlap, multiple)
                        times.append(time.perf_counter() - t1)
                    wall = time.perf_counter() - t0
        except (torch.cuda.OutOfMemoryError, MemoryError, RuntimeError) as exc:
            if device.type == "cuda":
                torch.cuda.empty_cache()
            rows.append({**row, "status": "skipped", "reason": f"failed: {str(exc).splitlines()[0][:200]}"})
            continue
        ms = 1e3 * wall / n_rep
        s_per_mac = (wall / n_rep) / max(1.0, work)  # the rate of the largest case so far plans the next
        row.update(status="ok", warmup=n_warm, repeats=n_rep, ms_per_frame=ms,
                   ms_min=1e3 * min(times), ms_median=1e3 * statistics.median(times),
                   fps=1e3 / ms if ms > 0 else None, tflops=2 * macs / (wall / n_rep) / 1e12,
                   peak_mem_mb=mem.mb, mem_method=mem.method)
        if peak:
            row.update(peak_tflops=peak, peak_fraction=row["tflops"] / peak)
        target = TARGETS["inference_ms"].get((arch, row["size"]))
        if target is not None:
            row["target_ms_h100"] = target
            row["target_met"] = ms <= target
        if profile or (device.type == "cuda" and target is not None and ms > target):
            trace = Path(profile_dir or "results/bench/traces") / f"infer-{model_name}-{row['size']}-{mode}.json"
            with torch.no_grad(), autocast():
                row["profile"] = profile_calls(lambda: apply_model(model, x, tile, overlap, multiple), device,
                                               trace, calls=max(1, min(3, n_rep)))
        rows.append(row)
        x = None  # free the frame before the next size
    return rows


# ------------------------------------------------------------------------------------ training


def bench_training(model_name: str, kwargs: dict | None = None, batch: int = 32, patch: int = 128,
                   steps: int = 10, warmup: int = 2, device: str | torch.device = "cpu", amp: str | None = None,
                   channels_last: bool | None = None, compile: bool = False, compile_mode: str | None = None,
                   peak_tflops: float | None = None, train_params: dict | None = None, arch: str | None = None,
                   max_seconds: float | None = 120.0, profile_trace: str | os.PathLike | None = None,
                   profile_steps: int = 3, trace_dir: str | os.PathLike = "results/bench/traces",
                   params: dict | None = None) -> dict:
    """Training step time, samples/s, model TFLOP/s and MFU of ``model_name`` at ``batch`` x
    ``patch`` x ``patch`` (clip networks: ``batch`` clips of ``frames`` patches).

    The step is the project's task (:func:`inloop.training.run.make_task`): SPiLF's generator (and
    discriminator when its variant has an adversarial weight) with its losses, else one network with
    MSE and Adam. Data are a fixed synthetic batch already on the device (the step, not the loader,
    is timed). No host-device sync inside the timed loop. Model FLOPs per step = 3 x forward FLOPs
    (forward + backward) of the network being trained (SPiLF: the generator; the discriminator
    and LPIPS are not counted). MFU = model FLOP/s / ``peak_tflops`` (default: the GPU's dense bf16
    peak by name, none on CPU). ``profile_trace``: also profile ``profile_steps`` steps (Chrome
    trace, top operators); on CUDA ``profile_steps`` steps are always profiled (into ``trace_dir``
    unless ``profile_trace`` is given) for ``gpu_busy``, the fraction of the step time a kernel runs,
    and ``target_met`` (MFU >= 0.30 and GPU busy >= 0.90 on an H100).
    Before the first step, its time is estimated from a batch-1 forward (x 3 x batch); a step
    estimated above ``max_seconds`` is skipped, and the steps are cut to fit the budget.
    ``params``: the whole params (SPiLF's LPIPS weights, as in the train stage).
    """
    from .training.run import make_task
    from .training.trainer import TrainConfig

    device, arch, amp, channels_last, warmup = _defaults(device, arch or model_name, amp, channels_last, warmup,
                                                         compile)
    kwargs = dict(kwargs or {})
    train_params = dict(train_params or {})
    if arch == "spilf":
        # Time the full (stage 2) step; Arabica unless the entry says otherwise.
        train_params["spilf"] = {**{"variant": "arabica"}, **(train_params.get("spilf") or {}), "stage1_steps": 0}
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    net = _build(arch, kwargs)
    frames, cin = _frames(net), _in_channels(net)
    from .models import macs_per_pixel

    probe_mpp = None if frames > 1 or hasattr(net, "macs_per_pixel") else macs_per_pixel(net, cin)
    fwd_macs = frame_macs(net, (patch, patch), probe_mpp) * batch
    step_flops = 3 * 2 * fwd_macs
    peak = peak_tflops
    peak_note = "given" if peak is not None else None
    if peak is None:
        peak, peak_note = gpu_peak_tflops(device)
    row: dict[str, Any] = {"model": model_name, "arch": arch, "kwargs": kwargs, "batch": batch, "patch": patch,
                           "frames": frames, "device": str(device), "amp": amp, "channels_last": channels_last,
                           "compile": compile_mode or True if compile else False,
                           "model_tflop_per_step": step_flops / 1e12, "peak_tflops": peak, "peak_note": peak_note}

    net.to(device)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    model = torch.compile(net, mode=compile_mode or None) if compile else net
    cfg = TrainConfig(steps=steps, batch_size=batch, device=str(device), amp_bf16=amp == "bf16",
                      channels_last=channels_last, compile=compile, deterministic=False,
                      lr=float(train_params.get("lr", 2e-3)))
    task = make_task(arch, model, cfg, train_params, params)
    for m in task.modules().values():
        m.to(device)
        if channels_last and m is _unwrap(m):
            m.to(memory_format=torch.channels_last)
        m.train()
    autocast = autocast_factory(device, amp)
    g = torch.Generator().manual_seed(0)
    y = torch.rand(batch, cin, patch, patch, generator=g)
    noise = 0.02 * torch.randn(batch, frames, cin, patch, patch, generator=g)
    x = (y[:, None] + noise).clamp(0, 1) if frames > 1 else (y + noise[:, 0]).clamp(0, 1)
    x, y = x.to(device), y.to(device)
    if channels_last:
        y = y.contiguous(memory_format=torch.channels_last)
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
    batch_xy = (x, y)

    def step():
        return task.train_step(batch_xy, autocast)

    if max_seconds is not None:
        with torch.no_grad(), autocast():
            xp = x[:1]
            net.eval()
            net(xp)
            sync(device)
            t0 = time.perf_counter()
            net(xp)
            sync(device)
            est = 3 * batch * (time.perf_counter() - t0)
            net.train()
        row["step_estimate_s"] = est
        if est > max_seconds:
            return {**row, "status": "skipped", "reason": f"estimated {est:.1f} s per step > budget {max_seconds:g} s"}

    try:
        mem = PeakMemory(device).__enter__()  # from the first step on: optimizer state, autotune workspaces
        t0 = time.perf_counter()
        step()  # first step (allocation, cudnn autotune, compile): timed only to plan the budget
        sync(device)
        first = time.perf_counter() - t0
        row["first_step_s"] = first
        n_warm, n_steps = max(0, warmup - 1), steps
        if max_seconds is not None:
            while n_steps > 1 and first * (n_steps + n_warm) > max_seconds:
                n_steps -= 1
            if first * (n_steps + n_warm) > max_seconds:
                n_warm = 0
        for _ in range(n_warm):
            step()
        try:
            sync(device)
            t0 = time.perf_counter()
            for _ in range(n_steps):
                step()
            sync(device)
            wall = time.perf_counter() - t0
        finally:
            mem.__exit__(None, None, None)
    except (torch.cuda.OutOfMemoryError, MemoryError, RuntimeError) as exc:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return {**row, "status": "skipped", "reason": f"failed: {str(exc).splitlines()[0][:200]}"}
    st = wall / n_steps
    tflops = step_flops / st / 1e12
    row.update(status="ok", warmup=n_warm + 1, steps=n_steps, step_ms=1e3 * st, samples_per_s=batch / st,
               pixels_per_s=batch * patch * patch / st, tflops=tflops, mfu=(tflops / peak) if peak else None,
               peak_mem_mb=mem.mb, mem_method=mem.method)
    if device.type == "cuda" and peak:
        row["target_mfu"] = TARGETS["train_mfu"]
        row["target_met"] = tflops / peak >= TARGETS["train_mfu"]
    if profile_trace or device.type == "cuda":
        trace = profile_trace or Path(trace_dir) / f"train-{model_name}-b{batch}-p{patch}.json"
        row["profile"] = profile_calls(step, device, trace, calls=profile_steps)
        busy = row["profile"].get("gpu_busy")
        if busy is not None:
            row["gpu_busy"] = busy
            row["target_gpu_busy"] = TARGETS["train_gpu_busy"]
            row["target_met"] = bool(row.get("target_met", True)) and busy >= TARGETS["train_gpu_busy"]
    return row


# ------------------------------------------------------------------------------------ codec


def default_clip() -> Path | None:
    """A real clip for codec timing: the demo's city-a (352x192) if fetched, else the shared fixture."""
    demo = REPO / "results" / "data" / "demo"
    for cand in sorted(demo.glob("city-a_*_420.yuv")) + sorted(demo.glob("city*_420.yuv")):
        return cand
    shared = Path(os.environ.get("INLOOP_SHARED", REPO.parent / "shared")) / "fixtures" / "codecs"
    fx = shared / "city_128x96_5f.yuv"
    return fx if fx.is_file() else None


def bench_codec(clip: str | os.PathLike | None = None, frames: int | None = 8, qps: Iterable[int] = (22, 27, 32, 37),
                configs: Iterable[str] = ("ai", "ldp", "ra"), filters: Iterable[str] = ("off", "on"),
                codec: str = "x265", params: dict | None = None, workdir: str | os.PathLike | None = None) -> dict:
    """x265 (or ``codec``) encodes of a real clip, one at a time, as the encode rule runs them:
    per encode the encoder's own time, the wall time of the whole checked encode (encode, decode,
    checks, stats) and encodes per minute = 60 / wall; a summary over all encodes."""
    from .codecs import EncodeJob, get_codec
    from .yuv import YuvFormat, YuvReader, parse_yuv_name

    clip = Path(clip) if clip else default_clip()
    if clip is None or not clip.is_file():
        raise InloopError("no clip for the codec benchmark: give --codec-clip (a {name}_{W}x{H}_..._420.yuv), "
                          "run `inloop datasets fetch demo`, or set INLOOP_SHARED to the shared folder")
    try:
        _, fmt = parse_yuv_name(clip)
    except Exception:  # noqa: BLE001 - the shared fixture's name carries no geometry
        fmt = YuvFormat(128, 96, 8, 30.0)
    n = len(YuvReader(clip, fmt))
    frames = min(frames or n, n)
    enc = get_codec(codec, params)
    rows = []
    with tempfile.TemporaryDirectory(prefix="inloop-bench-codec-", dir=workdir) as tmp:
        src = Path(tmp) / f"clip_{fmt.width}x{fmt.height}_{fmt.fps:g}fps_{fmt.bitdepth}bit_420.yuv"
        shutil.copyfile(clip, src)
        for cfg in configs:
            for flt in filters:
                for qp in qps:
                    out = Path(tmp) / cfg / flt / f"qp{qp}.bin"
                    t0 = time.perf_counter()
                    stats = enc.encode(EncodeJob(src, fmt, frames, int(qp), cfg, flt), out)
                    wall = time.perf_counter() - t0
                    rows.append({"config": cfg, "filters": flt, "qp": int(qp), "frames": frames,
                                 "encode_s": stats.get("encode_time_s"), "decode_s": stats.get("decode_time_s"),
                                 "wall_s": wall, "encoder_fps": frames / stats["encode_time_s"]
                                 if stats.get("encode_time_s") else None, "encodes_per_min": 60.0 / wall,
                                 "kbps": stats.get("kbps")})
    total = sum(r["wall_s"] for r in rows)
    return {"codec": codec, "clip": str(clip), "width": fmt.width, "height": fmt.height, "frames": frames,
            "encodes": len(rows), "total_s": total, "encodes_per_min": 60.0 * len(rows) / total if total else None,
            "frames_per_s": frames * len(rows) / total if total else None, "threads_per_encode": 1, "rows": rows}


# ------------------------------------------------------------------------------------ encode stage


def bench_encode_stage(cores: Iterable[int] = (1, 2, 4, 8), configfile: str = "config/tiny.yaml",
                       repo: str | os.PathLike = REPO, workdir: str | os.PathLike | None = None,
                       keep: bool = False, timeout: float = 3600.0, log: Callable[[str], None] | None = None,
                       snakemake: str | None = None) -> dict:
    """Parallel efficiency of the Snakemake encode stage: in a ``git clone`` of the repository's
    HEAD (committed files only) the data stage runs once (``snakemake --cores 2 data``, timed
    apart), then for each N the encodes are deleted and ``snakemake --cores N encodes
    --configfile <configfile>`` is timed. Efficiency(N) = T1 / (N x TN); speed-up = T1 / TN.
    ``INLOOP_CACHE`` points to ``<repo>/results/cache`` when present (the pinned demo wheels).
    N above the machine's cores is run and marked ``oversubscribed``. ``snakemake``: the program
    to run (default: the one next to this Python, else on PATH)."""
    repo = Path(repo)
    exe = snakemake or shutil.which("snakemake", path=str(Path(sys.executable).parent)) or shutil.which("snakemake")
    if exe is None:
        raise InloopError("snakemake not found next to this Python or on PATH (install the project's .venv)")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    if "INLOOP_CACHE" not in env and (repo / "results" / "cache").is_dir():
        env["INLOOP_CACHE"] = str(repo / "results" / "cache")
    tmp = Path(tempfile.mkdtemp(prefix="inloop-bench-stage-", dir=workdir))
    clone = tmp / "inloop"
    say = log or (lambda s: None)

    def run(cmd: list[str]) -> float:
        say(" ".join(cmd))
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=clone, env=env, capture_output=True, text=True, timeout=timeout)
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            raise InloopError(f"{' '.join(cmd)} failed in {clone} (rc {r.returncode}):\n{(r.stdout + r.stderr)[-3000:]}")
        return dt

    try:
        subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(repo), str(clone)], check=True,
                       capture_output=True, text=True)
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()
        cfg = ["--configfile", configfile] if configfile else []
        data_s = run([exe, "--cores", "2", "data", *cfg])
        rows = []
        for n in cores:
            shutil.rmtree(clone / "results" / "encoded", ignore_errors=True)
            shutil.rmtree(clone / "results" / "logs" / "encode", ignore_errors=True)
            wall = run([exe, "--cores", str(int(n)), "encodes", *cfg])
            count = len(list((clone / "results" / "encoded").rglob("*.bin")))
            rows.append({"cores": int(n), "wall_s": wall, "encodes": count,
                         "encodes_per_min": 60.0 * count / wall if wall else None,
                         "oversubscribed": int(n) > (os.cpu_count() or 1)})
        t1 = next((r["wall_s"] for r in rows if r["cores"] == 1), None)
        for r in rows:
            r["speedup"] = t1 / r["wall_s"] if t1 else None
            r["efficiency"] = t1 / (r["cores"] * r["wall_s"]) if t1 else None
        return {"configfile": configfile, "commit": commit, "clone": str(clone) if keep else None,
                "data_stage_s": data_s, "cpu_count": os.cpu_count(),
                "command": f"snakemake --cores N encodes {' '.join(cfg)}".strip(), "rows": rows}
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------------ report


def _fmt(v: Any, nd: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 10 ** -nd):
            return f"{v:.3g}"
        return f"{v:.{nd}f}"
    return str(v)


def markdown_report(result: dict) -> str:
    """docs/benchmarks.md: machine, versions, the exact command, then one table per benchmark
    and the papers' figures to compare with."""
    m = result.get("machine", {})
    lines = ["# Benchmarks", "", "Written by `inloop bench` (src/inloop/bench.py; how to run and what each number",
             "means: benchmarks/README.md). Numbers depend on the machine and on its load at the time.", "",
             "## Machine", "", "| | |", "|---|---|"]
    for k, label in (("cpu", "CPU"), ("cpu_count", "logical cores"), ("affinity", "cores usable"),
                     ("torch_threads", "torch threads"), ("memory_gb", "memory (GB)"), ("device_name", "device"),
                     ("device_memory_gb", "device memory (GB)"), ("torch", "torch"), ("cuda", "CUDA"),
                     ("cudnn", "cuDNN"), ("python", "Python"), ("platform", "OS"), ("git_commit", "commit")):
        if m.get(k) is not None:
            lines.append(f"| {label} | {m[k]} |")
    lines.append(f"| load average (1/5/15 min) at start | {m.get('load_avg')} |")
    if result.get("load_avg_end") is not None:
        lines.append(f"| load average at end | {result['load_avg_end']} |")
    lines.append(f"| date | {result.get('started')} |")
    lines += ["", "Command:", "", "```", result.get("command", ""), "```", ""]

    if result.get("costs"):
        lines += ["## Parameters and complexity", "",
                  "MACs of conv/linear layers (and NL-ConvLSTM's non-local matmuls) per output pixel; FLOPs = 2 x MACs.",
                  "", "| model | kwargs | params | kMAC/pixel | GFLOP/frame at each size |", "|---|---|---:|---:|---|"]
        for c in result["costs"]:
            per = ", ".join(f"{r['size']}: {r['gflops_per_frame']:.1f}" for r in c["per_size"])
            lines.append(f"| {c['model']} | `{c['kwargs'] or 'paper defaults'}` | {c['params']:,} | "
                         f"{c['macs_per_pixel'] / 1e3:.1f} ({c['measured_on']}) | {per} |")
        lines.append("")
    if result.get("inference"):
        lines += ["## Inference", "", "ms per output frame (batch 1; clip networks: one T-frame clip per frame); "
                  "peak memory = extra memory of the forward over weights and input (`mem` says how).", "",
                  f"Preset: {(result.get('settings') or {}).get('preset', 'paper')} (paper: the papers' full-size "
                  "networks; demo: params.yaml's widths). Paper ms: NL-ConvLSTM Table 5 (on the authors' GPU), "
                  "comparable with the paper preset only.", "",
                  "| model | size | mode | ms/frame | paper ms | fps | TFLOP/s | of peak | peak MB | mem | repeats | status |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---|"]
        for r in result["inference"]:
            st = "ok" if r["status"] == "ok" else f"skipped: {r.get('reason')}"
            if r.get("target_ms_h100") is not None and r["status"] == "ok":
                st += f" (H100 target {r['target_ms_h100']:g} ms: {'met' if r.get('target_met') else 'missed'})"
            lines.append(f"| {r['model']} | {r['size']} | {r['mode']} | {_fmt(r.get('ms_per_frame'))} | "
                         f"{_fmt(paper_ms(r.get('arch', r['model']), r['size']), 2)} | {_fmt(r.get('fps'))} | {_fmt(r.get('tflops'), 3)} | {_fmt(r.get('peak_fraction'), 3)} | "
                         f"{_fmt(r.get('peak_mem_mb'))} | "
                         f"{r.get('mem_method', '–')} | {_fmt(r.get('repeats'))} | {st} |")
        lines.append("")
    if result.get("training"):
        lines += ["## Training step", "", "Synthetic batch on the device; model FLOPs = 3 x forward.", "",
                  "| model | batch x patch | step ms | samples/s | TFLOP/s | MFU | GPU busy | peak MB | status |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---|"]
        for r in result["training"]:
            st = "ok" if r["status"] == "ok" else f"skipped: {r.get('reason')}"
            lines.append(f"| {r['model']} | {r['batch']} x {r['patch']}² | {_fmt(r.get('step_ms'))} | "
                         f"{_fmt(r.get('samples_per_s'), 2)} | {_fmt(r.get('tflops'), 3)} | {_fmt(r.get('mfu'), 3)} | "
                         f"{_fmt(r.get('gpu_busy'), 2)} | {_fmt(r.get('peak_mem_mb'))} | {st} |")
        lines.append("")
    c = result.get("codec")
    if c:
        lines += ["## Codec", "", f"{c['codec']} on `{Path(c['clip']).name}` ({c['width']}x{c['height']}, "
                  f"{c['frames']} frames), one encode at a time, one thread each: **{_fmt(c['encodes_per_min'])} "
                  f"encodes/min** over {c['encodes']} encodes ({_fmt(c['frames_per_s'])} frames/s incl. decode and "
                  "checks).", "", "| config | filters | QP | encoder s | wall s | encodes/min |",
                  "|---|---|---:|---:|---:|---:|"]
        for r in c["rows"]:
            lines.append(f"| {r['config']} | {r['filters']} | {r['qp']} | {_fmt(r['encode_s'], 3)} | "
                         f"{_fmt(r['wall_s'], 3)} | {_fmt(r['encodes_per_min'])} |")
        lines.append("")
    e = result.get("encode_stage")
    if e:
        lines += ["## Encode stage (Snakemake)", "", f"`{e['command']}` in a clone of {e['commit'][:10]}; the data "
                  f"stage ran once before ({_fmt(e['data_stage_s'])} s). Efficiency = T1 / (N x TN); this machine has "
                  f"{e['cpu_count']} logical cores.", "", "| cores | wall s | encodes | encodes/min | speed-up | "
                  "efficiency | oversubscribed |", "|---:|---:|---:|---:|---:|---:|---|"]
        for r in e["rows"]:
            lines.append(f"| {r['cores']} | {_fmt(r['wall_s'])} | {r['encodes']} | {_fmt(r['encodes_per_min'])} | "
                         f"{_fmt(r['speedup'], 2)} | {_fmt(r['efficiency'], 2)} | {_fmt(r['oversubscribed'])} |")
        lines.append("")
    p = PAPER_FIGURES
    lines += ["## The papers' figures", "", f"- {p['nlconvlstm_table5_note']}: " + ", ".join(
        f"{k} {v:g} ms" for k, v in p["nlconvlstm_table5_ms"].items()) + ".",
        f"- {p['glfusion_table7_note']}.", "- Targets on an H100 (issue #8): NL-ConvLSTM < 100 ms and GL-Fusion "
        "< 20 ms per 1920x1080 frame; training >= 30 % of the dense bf16 peak in model FLOPs, GPU busy > 90 % "
        "of each step.", ""]
    return "\n".join(lines)


def paper_ms(arch: str, size: str) -> float | None:
    """NL-ConvLSTM Table 5's ms per frame for this network and frame size, if it has one."""
    if arch == "nlconvlstm":
        return PAPER_FIGURES["nlconvlstm_table5_ms"].get(size)
    return PAPER_FIGURES["nlconvlstm_table5_baselines_ms"].get(arch, {}).get(size)


def write_markdown(path: str | os.PathLike, result: dict) -> None:
    from .fsutil import atomic_write

    with atomic_write(path, "w") as fh:
        fh.write(markdown_report(result))


# ------------------------------------------------------------------------------------ CLI


def register(sub) -> None:
    """Add ``inloop bench`` to the ``inloop`` command's sub-parsers."""
    p = sub.add_parser("bench", help="benchmark the networks (inference, training, costs) and the codec stage")
    p.add_argument("--models", nargs="+", help=f"networks or models: entries (default: {' '.join(MODELS_DEFAULT)})")
    p.add_argument("--preset", choices=("paper", "demo"),
                   help="paper: constructor defaults (full size) at the papers' batch/patch; demo: params.yaml "
                        "models: blocks and train settings (default paper; demo with --quick)")
    p.add_argument("--sizes", nargs="+", help=f"frame sizes WxH (default: {' '.join(SIZES)})")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--tile", type=int, help="also time tiled inference with this tile (0: whole frames only; "
                                            "default evaluate.tile, else 256)")
    p.add_argument("--overlap", type=int, help="tile overlap (default evaluate.overlap)")
    p.add_argument("--repeats", type=int, help="timed calls per case (default 5; --quick 1)")
    p.add_argument("--warmup", type=int, help="untimed calls first (default 1; 3 with --compile)")
    p.add_argument("--max-seconds", type=float, default=60.0,
                   help="time budget per case: longer cases are skipped or get fewer repeats (0: no limit)")
    p.add_argument("--amp", choices=("auto", "none", "bf16"), default="auto", help="auto: bf16 on CUDA, none on CPU")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None, help="default: on CUDA")
    p.add_argument("--compile", action="store_true", help="torch.compile the networks")
    p.add_argument("--compile-mode", help="torch.compile mode, e.g. max-autotune or reduce-overhead (CUDA graphs)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--no-infer", action="store_true", help="skip the inference benchmark")
    p.add_argument("--no-costs", action="store_true", help="skip parameter / FLOP counts")
    p.add_argument("--train", action="store_true", help="time training steps")
    p.add_argument("--train-steps", type=int, help="timed steps (default 10; --quick 2)")
    p.add_argument("--train-batch", type=int, help="override every model's batch")
    p.add_argument("--train-patch", type=int, help="override every model's patch size")
    p.add_argument("--peak-tflops", type=float, help="peak for MFU (default: the GPU's dense bf16 peak by name)")
    p.add_argument("--profile", action="store_true",
                   help="profiler trace of every case (CUDA: always for cases missing their target)")
    p.add_argument("--codec", action="store_true", help="time encodes of a real clip (x265, or --codec-name)")
    p.add_argument("--codec-name", default="x265", choices=("x265", "hm", "vtm", "ecm"),
                   help="the codec --codec times (hm, vtm, ecm: binaries from params or INLOOP_<NAME>_*)")
    p.add_argument("--codec-clip", help="clip for --codec (default: results/data/demo/city-a, else the shared fixture)")
    p.add_argument("--codec-frames", type=int, default=8)
    p.add_argument("--codec-qps", type=int, nargs="+", default=[22, 27, 32, 37])
    p.add_argument("--codec-configs", nargs="+", default=["ai", "ldp", "ra"])
    p.add_argument("--encode-stage", action="store_true",
                   help="time `snakemake --cores N encodes` in a clone of HEAD for N in --cores")
    p.add_argument("--cores", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--stage-config", default="config/tiny.yaml", help="--configfile of the encode-stage runs")
    p.add_argument("--quick", action="store_true", help="tiny sizes and counts: a smoke test of the harness")
    p.add_argument("--out", help="results JSON (default results/bench/bench-<device>-<time>.json)")
    p.add_argument("--markdown", help="also write a Markdown report here (e.g. docs/benchmarks.md)")
    p.add_argument("--params")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    from tqdm import tqdm

    from .fsutil import write_json
    from .params import cli_params

    params = cli_params(args.params)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    quick = args.quick
    preset = args.preset or ("demo" if quick else "paper")
    sizes = args.sizes or list(QUICK_SIZES if quick else SIZES)
    for s in sizes:
        parse_size(s)
    ev = params.get("evaluate") or {}
    tile = args.tile if args.tile is not None else (32 if quick else int(ev.get("tile") or 256))
    overlap = args.overlap if args.overlap is not None else (8 if quick else int(ev.get("overlap", 64)))
    repeats = args.repeats or (1 if quick else 5)
    warmup = args.warmup if args.warmup is not None else 1
    max_s = args.max_seconds or None
    amp = None if args.amp == "auto" else args.amp
    entries = model_entries(args.models or MODELS_DEFAULT, preset, params)
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    result: dict[str, Any] = {
        "command": command_line(args),
        "started": started, "machine": machine_info(device),
        "settings": {"preset": preset, "sizes": sizes, "tile": tile or None, "overlap": overlap, "repeats": repeats,
                     "warmup": warmup, "max_seconds": max_s, "amp": amp or ("bf16" if device.type == "cuda" else "none"),
                     "compile": args.compile_mode or args.compile, "quick": quick},
        "paper": PAPER_FIGURES, "targets_h100": {"inference_ms": {f"{k[0]}@{k[1]}": v for k, v in
                                                                  TARGETS["inference_ms"].items()},
                                                 "train_mfu": TARGETS["train_mfu"],
                                                 "train_gpu_busy": TARGETS["train_gpu_busy"]},
    }
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out or f"results/bench/bench-{device.type}-{stamp}.json")
    trace_dir = str(out.with_suffix("")) + "-traces"

    cases: list[tuple[str, Callable[[], Any]]] = []
    for e in entries:
        if not args.no_costs:
            cases.append((f"costs {e['name']}", lambda e=e: result.setdefault("costs", []).append(
                model_costs(e["arch"], e["kwargs"], sizes, name=e["name"]))))
        if not args.no_infer:
            for t in ([None] + ([tile] if tile else [])):
                cases.append((f"infer {e['name']} {'tile' + str(t) if t else 'whole'}",
                              lambda e=e, t=t: result.setdefault("inference", []).extend(bench_inference(
                                  e["name"], e["kwargs"], sizes, device, t, overlap, amp, args.channels_last,
                                  args.compile, args.compile_mode, repeats, warmup, max_s, arch=e["arch"],
                                  profile_dir=trace_dir, profile=args.profile, peak_tflops=args.peak_tflops))))
        if args.train:
            b = args.train_batch or (2 if quick else e["batch"])
            pt = args.train_patch or (32 if quick else e["patch"])
            steps = args.train_steps or (2 if quick else 10)
            tp = {k: v for k, v in (e["train"] or {}).items() if k in ("lr", "loss", "spilf")}
            cases.append((f"train {e['name']}", lambda e=e, b=b, pt=pt, steps=steps, tp=tp: result.setdefault(
                "training", []).append(bench_training(
                    e["name"], e["kwargs"], b, pt, steps, 1 if quick else 2, device, amp, args.channels_last,
                    args.compile, args.compile_mode, args.peak_tflops, tp, arch=e["arch"],
                    max_seconds=(max_s * 2 if max_s else None),
                    profile_trace=(f"{trace_dir}/train-{e['name']}.json" if args.profile else None),
                    trace_dir=trace_dir, params=params))))
    if args.codec:
        cases.append((f"codec {args.codec_name}", lambda: result.__setitem__("codec", bench_codec(
            args.codec_clip, 2 if quick else args.codec_frames, [37] if quick else args.codec_qps,
            ["ai"] if quick else args.codec_configs, ("off",) if quick else ("off", "on"), codec=args.codec_name,
            params=params))))
    if args.encode_stage:
        cases.append(("encode stage", lambda: result.__setitem__("encode_stage", bench_encode_stage(
            args.cores, args.stage_config))))

    bar = tqdm(cases, desc="bench", unit="case")
    for label, fn in bar:
        bar.set_postfix_str(label)
        fn()
        write_json(out, result)  # partial results survive an interrupted run
    bar.close()
    result["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    result["load_avg_end"] = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    write_json(out, result)
    if args.markdown:
        write_markdown(args.markdown, result)
    print(summary_text(result))
    print(f"results -> {out}" + (f", {args.markdown}" if args.markdown else ""))
    return 0


def command_line(args) -> str:
    """The exact command when run from the shell (``inloop bench ...``), else one equivalent to ``args``."""
    if Path(sys.argv[0]).name in ("inloop", "cli.py") and sys.argv[1:2] == ["bench"]:
        return "inloop " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    parts = ["inloop", "bench"]
    for k, v in sorted(vars(args).items()):
        if k in ("func", "command") or v in (None, False):
            continue
        flag = "--" + k.replace("_", "-")
        if v is True:
            parts.append(flag)
        elif isinstance(v, (list, tuple)):
            parts += [flag, *map(str, v)]
        else:
            parts += [flag, str(v)]
    return " ".join(shlex.quote(p) for p in parts)


def summary_text(result: dict) -> str:
    lines = [f"machine: {result['machine'].get('device_name')} ({result['machine'].get('cpu_count')} cores), "
             f"torch {result['machine'].get('torch')}, load {result['machine'].get('load_avg')}"]
    for c in result.get("costs", []):
        lines.append(f"  {c['model']:<18} {c['params']:>10,} params  {c['macs_per_pixel'] / 1e3:9.1f} kMAC/pixel")
    for r in result.get("inference", []):
        if r["status"] == "ok":
            lines.append(f"  {r['model']:<18} {r['size']:>9} {r['mode']:<8} {r['ms_per_frame']:10.1f} ms/frame  "
                         f"peak {r['peak_mem_mb']:.0f} MB ({r['mem_method']})")
        else:
            lines.append(f"  {r['model']:<18} {r['size']:>9} {r['mode']:<8} skipped: {r['reason']}")
    for r in result.get("training", []):
        if r["status"] == "ok":
            mfu = f", MFU {r['mfu']:.3f}" if r.get("mfu") is not None else ""
            lines.append(f"  train {r['model']:<12} {r['batch']}x{r['patch']}^2 {r['step_ms']:10.1f} ms/step  "
                         f"{r['samples_per_s']:.2f} samples/s, {r['tflops']:.4f} TFLOP/s{mfu}")
        else:
            lines.append(f"  train {r['model']:<12} skipped: {r['reason']}")
    if result.get("codec"):
        c = result["codec"]
        lines.append(f"  {c['codec']}: {c['encodes_per_min']:.1f} encodes/min ({c['encodes']} encodes of "
                     f"{c['frames']} frames {c['width']}x{c['height']})")
    for r in (result.get("encode_stage") or {}).get("rows", []):
        lines.append(f"  encode stage --cores {r['cores']}: {r['wall_s']:.1f} s, efficiency {_fmt(r['efficiency'], 2)}")
    return "\n".join(lines)
