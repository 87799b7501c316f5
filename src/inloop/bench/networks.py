"""The networks at work: inference speed and memory (:func:`bench_inference`) and training step time,
throughput and MFU (:func:`bench_training`), with ``torch.profiler`` traces where asked.

Timing: warm-up calls first (not timed), then ``repeats`` calls; on CUDA the device is
synchronised only before and after the timed region (no host-device sync inside it). Memory:
:class:`~inloop.bench.machine.PeakMemory`.

Cases that would not fit (memory estimate above the free memory) or would take longer than
``max_seconds`` (estimated from the measured MAC rate of the model on a small probe, refined by
every measured case) are skipped with the reason recorded; repeats are cut to fit the budget.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from .. import paths
from ..errors import InloopError
from ..lazy import lazy_import
from .costs import (SIZES, _build, _frames, _in_channels, _unwrap, frame_macs, is_clip, memory_estimate, parse_size,
                    probe_macs_per_pixel, size_name)
from .machine import PeakMemory, autocast_factory, free_memory_bytes, gpu_peak_tflops, resolve_device, sync

torch = lazy_import("torch")

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


# The issue's targets on an H100 (measured, reported; never asserted in tests).
TARGETS = {
    "inference_ms": {("nlconvlstm", "1920x1080"): 100.0, ("glfusion", "1920x1080"): 20.0},
    "train_mfu": 0.30,
    "train_gpu_busy": 0.90,
}


def model_entries(names: Iterable[str], preset: str = "paper", params: dict | None = None) -> list[dict]:
    """``[{name, arch, kwargs, train}]`` for each requested model.

    ``preset="paper"``: the registered network's constructor defaults (the papers' full sizes;
    SPiLF's network sizes are not in its paper, the defaults are the full-size network), trained at
    :data:`PAPER_TRAIN`. ``preset="demo"``: the ``models.<name>`` block of params.yaml and the
    merged ``train`` settings (batch_size, patch_size) of that entry. A name is a registered network
    (``spilf``) or a params entry (``spilf-arabica``, whose ``arch`` is used).
    """
    from ..errors import ParamsError
    from ..models.registry import known_networks, network_class

    if preset not in ("paper", "demo"):
        raise InloopError(f"--preset {preset!r}: expected paper or demo")
    params = params or {}
    out = []
    for name in names:
        block = (params.get("models") or {}).get(name)
        arch = (block or {}).get("arch", name) if isinstance(block, dict) else name
        try:
            network_class(arch)  # this package's, an entry point, or your own by reference (README, "Your own filter")
        except ParamsError as exc:
            raise InloopError(f"--models {name}: not a network or a models: entry with arch ({exc}); known "
                              f"networks: {', '.join(known_networks())}") from None
        if preset == "paper":
            batch, patch = PAPER_TRAIN.get(arch, (32, 128))
            out.append({"name": name, "arch": arch, "kwargs": {}, "batch": batch, "patch": patch, "train": {}})
            continue
        from ..params import model_spec

        entry = name if block is not None else next(
            (k for k, v in (params.get("models") or {}).items() if isinstance(v, dict) and v.get("arch", k) == arch),
            name)
        spec = model_spec(params, entry)
        out.append({"name": entry, "arch": spec["arch"], "kwargs": spec["kwargs"],
                    "batch": int(spec["train"].get("batch_size", 16)), "patch": int(spec["train"].get("patch_size", 48)),
                    "train": spec["train"]})
    return out


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


def _defaults(device, arch: str, amp: str | None, channels_last: bool | None, warmup: int, compile: bool,
              inference: bool = False):
    """The shared defaults of a case: device, arch, the device's compute path for inference or a
    training step (:func:`inloop.models.cpu_path.resolve` with ``auto``), 3 warm-ups when compiled."""
    from ..models.cpu_path import resolve

    device = resolve_device(str(device)) if not isinstance(device, torch.device) else device
    # channels_last `auto` follows the precision the row runs (a forced --amp included), as train/evaluate do
    path = (resolve(device, "auto" if amp is None else amp == "bf16", "auto", inference=inference)
            if amp is None or channels_last is None else None)
    amp = amp or ("bf16" if path.bf16 else "none")
    channels_last = path.channels_last if channels_last is None else channels_last
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

    ``amp``: ``"bf16"`` (autocast) or ``"none"``; ``channels_last``: default the device's compute
    path for inference (bf16 on CUDA and on CPUs with native bf16, channels_last everywhere).
    ``compile``: ``torch.compile(mode=compile_mode)`` (``"reduce-overhead"`` uses CUDA graphs);
    warm-up is then at least 3 calls, their time kept as ``warmup_s`` (compilation included).
    Profiles (trace + top operators) are taken with ``profile=True``, and on CUDA for any case
    that misses its :data:`TARGETS` entry. ``peak_fraction`` = achieved model TFLOP/s / ``peak_tflops``
    (default: the GPU's dense bf16 peak by name; none on CPU).
    """
    from ..evaluation.enhance import apply_model

    device, arch, amp, channels_last, warmup = _defaults(device, arch or model_name, amp, channels_last, warmup,
                                                         compile, inference=True)
    kwargs = dict(kwargs or {})
    net = _build(arch, kwargs)
    multiple = int(getattr(net, "pad_multiple", 1))
    tile = (-(-int(tiled) // multiple) * multiple) if tiled else None
    model = _prepare(net, device, channels_last, compile, compile_mode)
    autocast = autocast_factory(device, amp)
    mode = f"tile{tile}" if tile else "whole"
    peak = peak_tflops if peak_tflops is not None else gpu_peak_tflops(device)[0]

    probe_mpp = None if is_clip(net) else probe_macs_per_pixel(net)
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
            from ..evaluation.enhance import _windows

            rows_w = _windows(hw[0], tile, overlap, multiple)
            cols_w = _windows(hw[1], tile, overlap, multiple)
            tiles = len(rows_w) * len(cols_w)
            area = sum((r[3] - r[2]) * (c[3] - c[2]) for r in rows_w for c in cols_w)
            work = macs * area / (hw[0] * hw[1])
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
                t_warm = time.perf_counter()
                for _ in range(n_warm):
                    apply_model(model, x, tile, overlap, multiple)
                sync(device)
                warmup_s = time.perf_counter() - t_warm
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
        row.update(status="ok", warmup=n_warm, warmup_s=warmup_s, repeats=n_rep, ms_per_frame=ms,
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
            trace = Path(profile_dir or f"{paths.BENCH}/traces") / f"infer-{model_name}-{row['size']}-{mode}.json"
            with torch.no_grad(), autocast():
                row["profile"] = profile_calls(lambda: apply_model(model, x, tile, overlap, multiple), device,
                                               trace, calls=max(1, min(3, n_rep)))
        rows.append(row)
        x = None  # free the frame before the next size
    return rows


def bench_training(model_name: str, kwargs: dict | None = None, batch: int = 32, patch: int = 128,
                   steps: int = 10, warmup: int = 2, device: str | torch.device = "cpu", amp: str | None = None,
                   channels_last: bool | None = None, compile: bool = False, compile_mode: str | None = None,
                   peak_tflops: float | None = None, train_params: dict | None = None, arch: str | None = None,
                   max_seconds: float | None = 120.0, profile_trace: str | os.PathLike | None = None,
                   profile_steps: int = 3, trace_dir: str | os.PathLike = f"{paths.BENCH}/traces",
                   params: dict | None = None) -> dict:
    """Training step time, samples/s, model TFLOP/s and MFU of ``model_name`` at ``batch`` x
    ``patch`` x ``patch`` (clip networks: ``batch`` clips of ``frames`` patches).

    The step is the project's task (:func:`inloop.training.run.make_task`): SPiLF's generator (and
    discriminator when its variant has an adversarial weight) with its losses, else one network with
    MSE and Adam. Each step draws its batch as training does (:class:`inloop.training.data.PatchSampler`
    over an 8-bit patch store in host memory: the read, the host-to-device copy and the flips on the device
    are timed with the step; a fixed batch already on the device overstated the step's MFU, issue #28 item
    9), with cuDNN autotuning as the paper configs train (``deterministic: false``). No host-device sync
    inside the timed loop. Model FLOPs per step = 3 x forward FLOPs
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
    from ..training.run import make_task
    from ..training.trainer import TrainConfig

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
    probe_mpp = None if is_clip(net) else probe_macs_per_pixel(net)
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
    from ..training.data import PatchSampler

    g = torch.Generator().manual_seed(0)
    rows = 4 * batch  # a store of 8-bit rows (decoded frames, then the original), as `inloop patches` writes
    y8 = torch.randint(16, 240, (rows, 1, cin, patch, patch), generator=g)
    x8 = (y8 + torch.randint(-3, 4, (rows, frames, cin, patch, patch), generator=g)).clamp(0, 255)
    store = torch.cat([x8, y8], dim=1).to(torch.uint8).numpy()
    sampler = PatchSampler(store, batch, 8, device, seed=0)
    row["data"] = "PatchSampler over an 8-bit store in host memory, as training (read, copy, flips timed)"

    def step():
        return task.train_step(sampler.next(), autocast)

    if max_seconds is not None:
        with torch.no_grad(), autocast():
            xp = sampler.next()[0][:1]
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
