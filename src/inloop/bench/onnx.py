"""onnxruntime next to PyTorch (issue #20): ms per frame of a network's ONNX export
(:mod:`inloop.models.export`, the file a codec would load) and of the same network in PyTorch, on
the same input, device, precision (float32) and thread count, with the largest difference of
their outputs.

The network is exported once (dynamic height and width) and the one file is timed at every size.
Both run whole frames, batch 1, without autocast; the PyTorch side is the network's ``forward``
(what :func:`inloop.evaluation.enhance.apply_model` calls for a whole frame). Timing: ``warmup``
untimed calls each, then ``repeats`` calls each, alternating; the repeats are cut to fit
``max_seconds``. onnxruntime runs on CUDA where the requested device is CUDA and the installed
onnxruntime has its CUDA provider (the PyPI ``onnxruntime`` package is CPU only: then both run on
the CPU, and the row says so).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

from ..lazy import lazy_import
from .costs import SIZES, _build, memory_estimate, parse_size, size_name
from .machine import free_memory_bytes, resolve_device, sync
from .networks import _frame_input

torch = lazy_import("torch")


def export_memory_estimate(net, hw: tuple[int, int]) -> int | None:
    """Planning estimate (bytes) of the exported graph's forward where one exists: NL-ConvLSTM's
    approximate warp runs over all blocks at once there (:mod:`inloop.models.export`), not in chunks."""
    est = memory_estimate(net, hw)
    if est is None or net.exact:
        return est
    from ..models import nlconvlstm as nl

    args = (hw[0], hw[1], net.channels, 2 * net.channels, net.pool, net.topk)
    return est - nl.approx_warp_peak_bytes(*args) + nl.approx_warp_peak_bytes(*args, max_elements=sys.maxsize)


def _providers(device) -> tuple[list[str], Any]:
    """onnxruntime providers for ``device`` and the torch device both sides then run on."""
    import onnxruntime as ort

    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider"], device
    return ["CPUExecutionProvider"], torch.device("cpu")


def bench_onnx(model_name: str, kwargs: dict | None = None, sizes: Iterable[str] = SIZES,
               device: str = "cpu", repeats: int = 5, warmup: int = 1, max_seconds: float | None = 60.0,
               arch: str | None = None, threads: int | None = None) -> list[dict]:
    """One row per size: ``torch_ms_per_frame`` and ``onnxruntime_ms_per_frame`` of ``model_name``
    (a registered network; ``arch`` for params entries) with ``kwargs``, their ratio
    (``speedup`` = PyTorch ms / onnxruntime ms), ``max_abs_diff`` of the outputs, and the export time.
    ``threads``: intra-op threads of both (default: torch's current count)."""
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, RuntimeException

    from ..models.export import export_onnx, onnx_session

    failures = (MemoryError, RuntimeError, Fail, RuntimeException)  # onnxruntime's are not RuntimeErrors
    arch = arch or model_name
    kwargs = dict(kwargs or {})
    want = resolve_device(str(device))
    providers, dev = _providers(want)
    threads = int(threads or torch.get_num_threads())
    net = _build(arch, kwargs).eval()
    base = {"model": model_name, "arch": arch, "kwargs": kwargs, "mode": "whole", "device": str(dev),
            "requested_device": str(want), "provider": providers[0], "threads": threads, "precision": "float32"}
    with tempfile.TemporaryDirectory(prefix="inloop-bench-onnx-") as tmp:
        path = Path(tmp) / f"{model_name}.onnx"
        t0 = time.perf_counter()
        export_onnx(net, path)
        export_s = time.perf_counter() - t0
        sess = onnx_session(path, threads=threads, providers=providers)
        net.to(dev)
        rows = []
        for s in sizes:
            hw = parse_size(s)
            row: dict[str, Any] = {**base, "size": size_name(hw), "export_s": export_s}
            est = export_memory_estimate(net, hw)
            free = free_memory_bytes(dev)
            if est is not None and free is not None and est > 0.8 * free:
                rows.append({**row, "status": "skipped", "reason": f"estimated {est / 2**30:.1f} GiB > 80 % of the "
                             f"{free / 2**30:.1f} GiB free on {dev.type}"})
                continue
            x = _frame_input(net, hw, dev, False)
            x_np = x.cpu().numpy()
            try:
                with torch.no_grad():
                    first = []
                    for _ in range(max(1, warmup)):  # first calls allocate; not timed, but they plan the budget
                        t0 = time.perf_counter()
                        want_y = net(x)
                        sync(dev)
                        t1 = time.perf_counter()
                        got_y = sess.run(None, {"x": x_np})[0]
                        first.append(time.perf_counter() - t0)
                    per_pair = min(first)
                    n_rep = repeats
                    if max_seconds is not None:
                        if per_pair > max_seconds:
                            rows.append({**row, "status": "skipped", "reason": f"estimated {per_pair:.1f} s per "
                                         f"frame pair > --max-seconds {max_seconds:g}"})
                            continue
                        while n_rep > 1 and per_pair * n_rep > max_seconds:
                            n_rep -= 1
                    t_torch = t_ort = 0.0
                    for _ in range(n_rep):
                        t0 = time.perf_counter()
                        net(x)
                        sync(dev)
                        t1 = time.perf_counter()
                        sess.run(None, {"x": x_np})
                        t2 = time.perf_counter()
                        t_torch, t_ort = t_torch + t1 - t0, t_ort + t2 - t1
            except failures as exc:
                rows.append({**row, "status": "skipped", "reason": f"failed: {str(exc).splitlines()[0][:200]}"})
                continue
            torch_ms, ort_ms = 1e3 * t_torch / n_rep, 1e3 * t_ort / n_rep
            row.update(status="ok", warmup=max(1, warmup), repeats=n_rep, torch_ms_per_frame=torch_ms,
                       onnxruntime_ms_per_frame=ort_ms, speedup=torch_ms / ort_ms if ort_ms > 0 else None,
                       max_abs_diff=float(abs(want_y.cpu().numpy() - got_y).max()))
            rows.append(row)
    return rows
