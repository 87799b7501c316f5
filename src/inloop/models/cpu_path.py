"""The compute path of a device (issue #20): bf16 autocast or fp32, channels_last or not.

One decision for training (``train.amp_bf16``, ``train.channels_last``), evaluation
(``evaluate.amp_bf16``, ``evaluate.channels_last``) and ``inloop bench``: :func:`resolve`.

Each setting is ``false``, ``true`` or ``auto``:

* ``false``: fp32 (contiguous NCHW) on every device;
* ``true``: bf16 autocast (channels_last) on every device, a CPU without native bf16 included
  (there it runs in slow generic code: for comparisons and tests, not for speed);
* ``auto`` (params.yaml): bf16 (channels_last) on CUDA and on a CPU that runs bf16 natively,
  fp32 on any other CPU (channels_last for inference, NCHW for training: below). Before ``auto``
  the keys were booleans read on CUDA only; the configurations that set ``true``
  (config/paper-*.yaml) run on CUDA, where ``true`` and ``auto`` are the same.

A CPU runs bf16 natively when its flags say so, read from ``/proc/cpuinfo`` (never assumed from
the model name): ``avx512_bf16`` (AVX-512 BF16 dot products) or ``amx_bf16`` (AMX tiles). Without
them PyTorch runs bf16 in slow generic code (docs/benchmarks/cpu-ceiling.md, a 2-core AVX2 EPYC,
2 threads: matmul 1.0 GFLOP/s in bf16 against 177 in fp32; the issue's stack of 64-channel 3x3
convolutions 0.5 / 17 GFLOP/s in bf16 NCHW / channels_last against 128 / 192 in fp32). Where
``/proc/cpuinfo`` cannot be read (not Linux), PyTorch's own CPUID probes
(``torch.cpu._is_avx512_bf16_supported``, ``_is_amx_tile_supported``) answer instead; the record
says which source was used.

``auto`` channels_last on a CPU: on whenever bf16 is (issue #20, on an AMX CPU: a 4x64x128x128
batch through four 64-channel 3x3 convolutions at 296 GFLOP/s in bf16 and 648 with channels_last),
and for inference in fp32 too; a fp32 training step stays NCHW. Measured with ``inloop bench`` on
the EPYC above (docs/benchmarks/cpu-ceiling.md, demo widths): in fp32, channels_last made the
inference of all six networks at 416x240 1.02-2.06x faster (the convolution stack 1.49x) but a
training step 0.93-1.16x as fast (slower for four of the six). ``inloop bench`` measures every
combination on the machine it runs on (its "Compute paths" section).

The allocator (:func:`tune_allocator`, called by the torch sub-commands of the CLI): glibc's malloc
hands every block over its mmap threshold (128 KiB, rising to at most 32 MiB) to a fresh ``mmap``
and returns it to the system when freed, so a network whose activations are that large pays page
faults for them at every call. Measured on the 2-core EPYC (docs/timings.md, "The allocator"):
NL-ConvLSTM's evaluation of one 16-frame 352x192 clip took 46 s (24 s user, 22 s system) with the
defaults and 25 s (0.7 s system) with large blocks kept in the heap and the heap not trimmed.
``INLOOP_MALLOC=default`` keeps glibc's defaults; ``MALLOC_*`` / ``GLIBC_TUNABLES`` malloc settings
or a preloaded allocator are left as the user set them.

What is decided is recorded: :meth:`ComputePath.record` goes into each training run's MLflow
params (``compute.*``), the model's JSON report and every evaluation result.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

from ..errors import InloopError
from ..lazy import lazy_import

torch = lazy_import("torch")

CPUINFO = "/proc/cpuinfo"
# CPU flags (Linux /proc/cpuinfo names) of native bf16 arithmetic.
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


# glibc mallopt parameters (malloc.h) and the values tune_allocator sets.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MALLOC_SETTINGS = {"mmap_threshold": (M_MMAP_THRESHOLD, 1 << 30), "trim_threshold": (M_TRIM_THRESHOLD, 1 << 30),
                   "top_pad": (M_TOP_PAD, 64 << 20)}
_allocator = "glibc defaults (not tuned)"


def allocator() -> str:
    """What :func:`tune_allocator` did in this process (recorded with every compute path)."""
    return _allocator


def tune_allocator(environ: dict | None = None) -> str:
    """Keep large blocks in glibc's heap and the heap untrimmed (module docstring); returns :func:`allocator`."""
    global _allocator
    env = os.environ if environ is None else environ
    user = sorted(k for k in env if k.startswith("MALLOC_"))
    user += [k for k in ("GLIBC_TUNABLES", "LD_PRELOAD") if "malloc" in env.get(k, "")]
    if env.get("INLOOP_MALLOC") == "default":
        _allocator = "glibc defaults (INLOOP_MALLOC=default)"
    elif user:
        _allocator = f"as set by {', '.join(user)}"
    else:
        try:
            mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
        except (OSError, AttributeError):
            _allocator = "unchanged (no glibc mallopt)"
            return _allocator
        done = {name: value for name, (param, value) in MALLOC_SETTINGS.items() if mallopt(param, value) == 1}
        _allocator = "glibc mallopt " + (", ".join(f"{k}={v}" for k, v in done.items()) or "refused")
    return _allocator


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The flags of the first processor in a ``/proc/cpuinfo`` text (x86 ``flags``, Arm ``Features``)."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def native_bf16_flags(flags: Iterable[str]) -> list[str]:
    """The flags among ``flags`` that mean native bf16 arithmetic (:data:`NATIVE_BF16_FLAGS`)."""
    have = set(flags)
    return [f for f in NATIVE_BF16_FLAGS if f in have]


def cpu_bf16(cpuinfo: str | None = None) -> dict:
    """Whether this CPU (or the CPU a ``/proc/cpuinfo`` text describes) runs bf16 natively.

    ``{"native": bool, "flags": [the native-bf16 flags present], "source": where it was read,
    "capability": torch's vector ISA (``torch.backends.cpu.get_cpu_capability()``)}``.
    """
    source = "given cpuinfo text"
    if cpuinfo is None:
        try:
            with open(CPUINFO) as fh:
                cpuinfo = fh.read()
            source = CPUINFO
        except OSError:
            cpuinfo = None
    capability = _capability()
    if cpuinfo is not None and parse_cpu_flags(cpuinfo):
        found = native_bf16_flags(parse_cpu_flags(cpuinfo))
    else:  # no flags line (not Linux, or a restricted /proc): PyTorch's CPUID probes
        probes = (("avx512_bf16", "_is_avx512_bf16_supported"), ("amx_bf16", "_is_amx_tile_supported"))
        found = [flag for flag, fn in probes if getattr(torch.cpu, fn, lambda: False)()]
        source = "torch.cpu CPUID probes"
    return {"native": bool(found), "flags": sorted(found), "source": source, "capability": capability}


def _capability() -> str | None:
    try:
        return torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        return None


def check_setting(key: str, value: Any) -> bool | str:
    """``value`` of params ``key`` (``train.amp_bf16`` ...) as ``True``, ``False`` or ``"auto"``."""
    if isinstance(value, bool) or value == "auto":
        return value
    raise InloopError(f"{key}={value!r}: expected true, false or auto")


@dataclass(frozen=True)
class ComputePath:
    """What runs on ``device``: ``precision`` ``"bf16"`` (autocast) or ``"fp32"``, and the layout."""

    device: str
    precision: str
    channels_last: bool
    reason: str
    cpu_bf16: str  # "native (amx_bf16, avx512_bf16)", "not native", or "n/a" on CUDA
    allocator: str = field(default_factory=allocator)  # :func:`tune_allocator`

    @property
    def bf16(self) -> bool:
        return self.precision == "bf16"

    def autocast(self) -> Callable[[], Any]:
        """A factory of the autocast context of this path (a null context in fp32)."""
        if not self.bf16:
            return contextlib.nullcontext
        kind = torch.device(self.device).type
        return lambda: torch.autocast(kind, dtype=torch.bfloat16)

    def record(self) -> dict:
        """The decision as flat strings and booleans: MLflow params ``compute.*``, JSON reports."""
        return asdict(self)

    def layout(self, module_or_tensor):
        """``module_or_tensor`` in this path's memory format (4-d tensors and modules; others as they are)."""
        if not self.channels_last:
            return module_or_tensor
        if isinstance(module_or_tensor, torch.Tensor):
            return module_or_tensor.contiguous(memory_format=torch.channels_last) \
                if module_or_tensor.dim() == 4 else module_or_tensor
        return module_or_tensor.to(memory_format=torch.channels_last)


NATIVE_BF16_CUDA = (8, 0)  # Ampere (A100) and later run bf16 in their tensor cores; V100 (7.0) and T4 (7.5) do not


def resolve(device, amp_bf16: bool | str = "auto", channels_last: bool | str = "auto", cpuinfo: str | None = None,
            keys: tuple[str, str] = ("amp_bf16", "channels_last"), inference: bool = False,
            cuda_capability: tuple[int, int] | None = None) -> ComputePath:
    """The compute path of ``device`` under the two settings (see the module docstring), for a
    training step or (``inference``) no-grad inference.

    ``cpuinfo``: a ``/proc/cpuinfo`` text to decide for (default: this machine's); ``cuda_capability``: a GPU's
    compute capability to decide for (default: the device's own); ``keys``: the params keys named in errors.
    """
    amp = check_setting(keys[0], amp_bf16)
    cl = check_setting(keys[1], channels_last)
    kind = torch.device(device).type
    if kind == "cuda":
        # bf16 only where the GPU runs it natively (issue #28 item 10: it was assumed on any CUDA device, and a
        # V100 or T4 node emulated it slowly or failed).
        if cuda_capability is None and not torch.cuda.is_available():
            where = keys[0].split(".")[0]
            raise InloopError(f"{device}: no CUDA device here (torch {torch.__version__}, CUDA build "
                              f"{torch.version.cuda}): set {where}.device to cpu or auto")
        cap = tuple(cuda_capability or torch.cuda.get_device_capability(torch.device(device)))
        native = cap >= NATIVE_BF16_CUDA
        what = f"{'native' if native else 'not native'} (compute capability {cap[0]}.{cap[1]})"
        if amp is True and not native:
            raise InloopError(f"{keys[0]}=true but {device} has no native bf16 (compute capability {cap[0]}.{cap[1]}; "
                              f"bf16 needs {NATIVE_BF16_CUDA[0]}.{NATIVE_BF16_CUDA[1]} or later): set {keys[0]} to "
                              "auto (fp32 on this GPU) or false")
        bf16 = amp is True or (amp == "auto" and native)
        return ComputePath(str(device), "bf16" if bf16 else "fp32", bool(cl),
                           f"CUDA, bf16 {what}: {keys[0]}={str(amp).lower()} -> {'bf16 autocast' if bf16 else 'fp32'}, "
                           f"{keys[1]}={str(cl).lower()}", what)
    if kind != "cpu":
        return ComputePath(str(device), "fp32", False, f"{kind}: fp32, contiguous", "n/a")
    info = cpu_bf16(cpuinfo)
    native = info["native"]
    what = f"native ({', '.join(info['flags'])})" if native else "not native"
    bf16 = amp is True or (amp == "auto" and native)
    layout = cl is True or (cl == "auto" and (bf16 or inference))
    if amp == "auto":
        reason = (f"CPU with native bf16 ({', '.join(info['flags'])} in {info['source']}): bf16 autocast" if native
                  else f"CPU without native bf16 (no {' / '.join(NATIVE_BF16_FLAGS)} in {info['source']}; "
                  f"{info['capability']}): fp32")
    else:
        reason = f"{keys[0]}={str(amp).lower()}: " + ("bf16 autocast" + ("" if native else " (not native)")
                                                      if amp else "fp32")
    reason += (", channels_last" if layout else ", contiguous (NCHW)") + (
        f" ({keys[1]}={str(cl).lower()})" if cl != "auto" else " (inference)" if layout and not bf16 else "")
    return ComputePath(str(device), "bf16" if bf16 else "fp32", layout, reason, what)
