"""The machine's own ceiling (issue #20), measured in the same run as the networks: dense GEMM and
convolution throughput in fp32 and bf16, and every network's figure as a fraction of it.

* GEMM: ``A @ B`` of two n x n matrices (n = 2048; 512 with ``--quick``) in the dtype itself
  (fp32, bf16); FLOPs = 2 n^3.
* Convolution: the issue's stack, four 64-channel 3x3 convolutions (stride 1, padding 1) on a
  4 x 64 x 128 x 128 batch (1 x 64 x 32 x 32 with ``--quick``), no grad, in NCHW and in
  channels_last; bf16 through autocast, as the networks run it. FLOPs = 2 x the MACs
  :func:`inloop.models.costs.count_macs` counts.

Each case: one untimed call, then ``repeats`` timed calls; the ceiling is the fastest call (the
attainable rate; the median is kept too). bf16 is measured on every CPU; ``native`` says whether
the CPU runs it natively (:func:`inloop.models.cpu_path.cpu_bf16`). Where a case would take longer
than ``max_seconds`` (bf16 without native support runs in slow generic code, about 1/100 of fp32)
it is measured on a smaller shape, recorded as ``shape``: shapes are tried from the smallest up,
each estimated from the rate of the one before.

A network row's ``of_conv_ceiling`` is its model TFLOP/s over the convolution ceiling of its own
precision (the faster layout), ``of_gemm_ceiling`` over the GEMM ceiling; training steps (3 x the
forward's FLOPs) are set against the same forward ceilings.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

from ..lazy import lazy_import
from .machine import sync

torch = lazy_import("torch")

GEMM_N = 2048
CONV = {"batch": 4, "channels": 64, "size": 128, "layers": 4}
QUICK_GEMM_N = 512
QUICK_CONV = {"batch": 1, "channels": 64, "size": 32, "layers": 4}


def _time(fn: Callable[[], object], device, repeats: int) -> list[float]:
    fn()  # first call: allocation, kernel choice
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def _gemm(n: int, dtype, device) -> tuple[Callable[[], object], float]:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    return (lambda: a @ b), 2.0 * n ** 3


def conv_stack(channels: int = 64, layers: int = 4) -> "torch.nn.Module":
    """The issue's stack: ``layers`` ``channels``-channel 3x3 convolutions (padding 1)."""
    torch.manual_seed(0)
    return torch.nn.Sequential(*[torch.nn.Conv2d(channels, channels, 3, padding=1) for _ in range(layers)]).eval()


def _conv(shape: dict, dtype, channels_last: bool, device) -> tuple[Callable[[], object], float]:
    net = conv_stack(shape["channels"], shape["layers"]).to(device)
    x = torch.rand(shape["batch"], shape["channels"], shape["size"], shape["size"],
                   generator=torch.Generator().manual_seed(0)).to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    bf16 = dtype == torch.bfloat16

    def call():
        with torch.no_grad(), torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            return net(x)

    return call, case_flops("conv", shape)


def _smaller(kind: str, shape):
    """The next smaller shape of a case, or None at the smallest."""
    if kind == "gemm":
        return shape // 2 if shape > 256 else None
    if shape["batch"] > 1:
        return {**shape, "batch": shape["batch"] // 2}
    return {**shape, "size": shape["size"] // 2} if shape["size"] > 16 else None


def _shape_text(kind: str, shape) -> str:
    if kind == "gemm":
        return f"{shape}x{shape} @ {shape}x{shape}"
    return f"{shape['layers']} x conv3x3 {shape['channels']}->{shape['channels']} on " \
           f"{shape['batch']}x{shape['channels']}x{shape['size']}x{shape['size']}"


def measure_case(kind: str, dtype_name: str, device, shape, repeats: int = 5, channels_last: bool = False,
                 max_seconds: float | None = 30.0) -> dict:
    """One ceiling case: ``kind`` ``"gemm"`` (shape n) or ``"conv"`` (shape dict) in ``dtype_name``;
    the shape is the largest up to ``shape`` whose ``repeats + 1`` calls fit ``max_seconds``
    (estimated from the rate of the next smaller shape)."""
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    build = (lambda s: _gemm(s, dtype, device)) if kind == "gemm" else (
        lambda s: _conv(s, dtype, channels_last, device))
    full = shape
    if max_seconds is not None:
        # Up from the smallest shape, each step's time estimated from the rate of the last one timed.
        ladder = [shape]
        while _smaller(kind, ladder[-1]) is not None:
            ladder.append(_smaller(kind, ladder[-1]))
        ladder.reverse()
        shape = ladder[0]
        for bigger in ladder[1:]:
            fn, flops = build(shape)
            rate = flops / max(1e-9, min(_time(fn, device, 1)))
            if case_flops(kind, bigger) / rate * (repeats + 1) > max_seconds:
                break
            shape = bigger
    fn, flops = build(shape)
    times = _time(fn, device, repeats)
    best = min(times)
    row = {"kind": kind, "dtype": dtype_name, "layout": ("channels_last" if channels_last else "nchw")
           if kind == "conv" else None, "shape": _shape_text(kind, shape), "reduced": shape != full,
           "gflop_per_call": flops / 1e9, "repeats": repeats, "ms_best": 1e3 * best,
           "ms_median": 1e3 * statistics.median(times), "tflops": flops / best / 1e12,
           "tflops_median": flops / statistics.median(times) / 1e12}
    return row


def case_flops(kind: str, shape) -> float:
    """FLOPs of one call of a case at ``shape``, from shapes only."""
    from ..models.costs import count_macs

    if kind == "gemm":
        return 2.0 * shape ** 3
    return 2.0 * count_macs(conv_stack(shape["channels"], shape["layers"]),
                            (shape["batch"], shape["channels"], shape["size"], shape["size"]))


def measure_ceiling(device, quick: bool = False, repeats: int | None = None, max_seconds: float | None = 30.0,
                    progress: Callable[[str], None] | None = None) -> dict:
    """The machine's GEMM and convolution ceilings in fp32 and bf16 (see the module docstring):
    ``{"native_bf16", "cpu_bf16", "rows": [...], "best": {"gemm": {dtype: TFLOP/s}, "conv": {...}}}``."""
    from ..models.cpu_path import cpu_bf16

    device = torch.device(device)
    if device.type == "cuda":
        native, bf16_info = True, {"native": True, "flags": [], "source": "CUDA", "capability": None}
    else:
        bf16_info = cpu_bf16()
        native = bf16_info["native"]
    repeats = repeats or (2 if quick else 5)
    n = QUICK_GEMM_N if quick else GEMM_N
    conv = QUICK_CONV if quick else CONV
    rows = []
    for dtype in ("fp32", "bf16"):
        cases = [("gemm", n, False), ("conv", conv, False), ("conv", conv, True)]
        for kind, shape, cl in cases:
            if progress:
                progress(f"ceiling {kind} {dtype}{' channels_last' if cl else ''}")
            row = measure_case(kind, dtype, device, shape, repeats, cl, max_seconds)
            row["native"] = True if dtype == "fp32" else native
            rows.append(row)
    best: dict[str, dict[str, float]] = {"gemm": {}, "conv": {}}
    for r in rows:
        best[r["kind"]][r["dtype"]] = max(best[r["kind"]].get(r["dtype"], 0.0), r["tflops"])
    return {"device": str(device), "native_bf16": native, "cpu_bf16": bf16_info, "rows": rows, "best": best,
            "ratios": change_ratios(rows)}


def change_ratios(rows: list[dict]) -> list[dict]:
    """The issue's before/after ratios on the convolution stack: bf16 autocast (NCHW), channels_last
    in bf16 and in fp32, and both together; ratio = TFLOP/s after / before (> 1: faster)."""
    conv = {(r["dtype"], r["layout"]): r for r in rows if r["kind"] == "conv"}
    out = []
    for change, before, after in (("bf16 autocast (NCHW)", ("fp32", "nchw"), ("bf16", "nchw")),
                                  ("channels_last in fp32", ("fp32", "nchw"), ("fp32", "channels_last")),
                                  ("channels_last in bf16", ("bf16", "nchw"), ("bf16", "channels_last")),
                                  ("bf16 + channels_last", ("fp32", "nchw"), ("bf16", "channels_last"))):
        b, a = conv.get(before), conv.get(after)
        if b and a:
            out.append({"change": change, "before_tflops": b["tflops"], "after_tflops": a["tflops"],
                        "ratio": a["tflops"] / b["tflops"] if b["tflops"] else None,
                        "note": "reduced shape" if (a["reduced"] or b["reduced"]) else ""})
    return out


def attach_fractions(result: dict) -> None:
    """Each inference and training row's TFLOP/s as a fraction of the ceiling of its precision
    (``of_conv_ceiling``, ``of_gemm_ceiling``), where the result has a ceiling."""
    best = (result.get("ceiling") or {}).get("best")
    if not best:
        return
    for section in ("inference", "training"):
        for r in result.get(section, []):
            dtype = "bf16" if r.get("amp") == "bf16" else "fp32"
            conv, gemm = best["conv"].get(dtype), best["gemm"].get(dtype)
            if r.get("status") != "ok" or r.get("tflops") is None:
                continue
            r["ceiling_dtype"] = dtype
            r["of_conv_ceiling"] = r["tflops"] / conv if conv else None
            r["of_gemm_ceiling"] = r["tflops"] / gemm if gemm else None
