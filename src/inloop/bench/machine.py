"""The machine a benchmark runs on: device resolution, the header of every result, memory probes.

Memory ("peak_mem_mb", always the *extra* memory over what was allocated before the case:
model weights and input are not counted; ``mem_method`` says how it was measured):

* CUDA: ``torch.cuda.max_memory_allocated`` minus ``torch.cuda.memory_allocated`` at the start
  (``cuda.max_memory_allocated``): exact for tensors, the caching allocator's slack excluded;
* CPU: the resident set size (``psutil.Process().memory_info().rss``) sampled every 2 ms in a
  thread during the case, and ``getrusage`` ``ru_maxrss`` when the process high-water mark rises
  during it, minus the RSS at the start (``rss_delta``; glibc's ``malloc_trim`` first hands freed
  heap pages back, so the case's allocations fault in again and are seen). Warm-up calls are inside
  the measured block. A lower bound where the allocator still holds pages from earlier cases or a
  peak is shorter than the sampling interval (small frames); close for large frames, where it matters.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable

import psutil

from ..errors import InloopError
from ..lazy import lazy_import

# torch loads on first use: `inloop <any command>` builds this sub-command's parser too.
torch = lazy_import("torch")

REPO = Path(__file__).resolve().parents[3]

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
    return psutil.Process().memory_info().rss


def _maxrss_bytes() -> int:
    # The peak source: psutil has no high-water mark (memory_info gives the current RSS only), so the
    # process's peak RSS comes from getrusage (Linux: ru_maxrss in kB).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _malloc_trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak extra memory of a block: CUDA allocator statistics, or sampled RSS on CPU (see the module docstring)."""

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

        def sample():  # psutil reads the current RSS only: a peak inside the block needs sampling
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
    """Memory a case may still take: CUDA free + what this process caches; CPU available memory
    (``psutil.virtual_memory().available``, Linux's MemAvailable)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return psutil.virtual_memory().available


def machine_info(device: torch.device | None = None) -> dict:
    """CPU model, cores, vector ISA and native bf16, memory, load, versions, GPU name: the header of every result."""
    cpu = platform.processor() or platform.machine()
    try:  # the CPU model's name: neither platform nor psutil gives it on Linux
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpu": cpu, "cpu_count": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)) if hasattr(
            os, "sched_getaffinity") else None, "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "torch_threads": torch.get_num_threads(),
        "load_avg": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "device": "cpu", "device_name": f"cpu ({cpu})", "git_commit": _git_commit(),
    }
    from ..models.cpu_path import cpu_bf16

    bf16 = cpu_bf16()  # read from the CPU's flags, never assumed
    info.update(cpu_capability=bf16["capability"], cpu_bf16=(
        f"native ({', '.join(bf16['flags'])})" if bf16["native"] else "not native") + f", from {bf16['source']}")
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
