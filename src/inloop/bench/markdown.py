"""A benchmark result as text: the Markdown report (docs/benchmarks.md; its tables written by
``pandas.DataFrame.to_markdown``) and the summary ``inloop bench`` prints."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

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


def _table(header: Sequence[str], align: str, rows: list[list[Any]]) -> list[str]:
    """A Markdown (pipe) table of already formatted cells, as lines; ``align``: one l or r per column."""
    import pandas as pd
    import tabulate  # noqa: F401 - DataFrame.to_markdown's optional dependency: fail here, by name

    frame = pd.DataFrame([[str(v) for v in row] for row in rows], columns=list(header))
    text = frame.to_markdown(index=False, colalign=tuple({"l": "left", "r": "right"}[a] for a in align),
                             disable_numparse=True)
    return text.splitlines() + [""]


def paper_ms(arch: str, size: str) -> float | None:
    """NL-ConvLSTM Table 5's ms per frame for this network and frame size, if it has one."""
    if arch == "nlconvlstm":
        return PAPER_FIGURES["nlconvlstm_table5_ms"].get(size)
    return PAPER_FIGURES["nlconvlstm_table5_baselines_ms"].get(arch, {}).get(size)


def _status(r: dict) -> str:
    return "ok" if r["status"] == "ok" else f"skipped: {r.get('reason')}"


def markdown_report(result: dict) -> str:
    """docs/benchmarks.md: machine, versions, the exact command, then one table per benchmark
    and the papers' figures to compare with."""
    m = result.get("machine", {})
    lines = ["# Benchmarks", "", "Written by `inloop bench` (src/inloop/bench/; how to run and what each number",
             "means: benchmarks/README.md). Numbers depend on the machine and on its load at the time.", "",
             "## Machine", ""]
    machine = [[label, m[k]] for k, label in (
        ("cpu", "CPU"), ("cpu_capability", "CPU vector ISA (torch)"), ("cpu_bf16", "bf16 on the CPU"),
        ("cpu_count", "logical cores"), ("affinity", "cores usable"), ("torch_threads", "torch threads"),
        ("memory_gb", "memory (GB)"), ("device_name", "device"), ("device_memory_gb", "device memory (GB)"),
        ("torch", "torch"), ("cuda", "CUDA"), ("cudnn", "cuDNN"), ("python", "Python"), ("platform", "OS"),
        ("git_commit", "commit")) if m.get(k) is not None]
    machine.append(["load average (1/5/15 min) at start", m.get("load_avg")])
    if result.get("load_avg_end") is not None:
        machine.append(["load average at end", result["load_avg_end"]])
    machine.append(["date", result.get("started")])
    lines += _table(["", ""], "ll", machine)
    lines += ["Command:", "", "```", result.get("command", ""), "```", ""]
    if result.get("notes"):
        lines += ["Notes:", "", *[f"- {n}" for n in result["notes"]], ""]
    lines += ceiling_lines(result)

    if result.get("costs"):
        lines += ["## Parameters and complexity", "",
                  "MACs of conv/linear layers (and NL-ConvLSTM's non-local matmuls) per output pixel; FLOPs = 2 x MACs.",
                  ""]
        lines += _table(["model", "kwargs", "params", "kMAC/pixel", "GFLOP/frame at each size"], "llrrl", [
            [c["model"], f"`{c['kwargs'] or 'paper defaults'}`", f"{c['params']:,}",
             f"{c['macs_per_pixel'] / 1e3:.1f} ({c['measured_on']})",
             ", ".join(f"{r['size']}: {r['gflops_per_frame']:.1f}" for r in c["per_size"])] for c in result["costs"]])
    if result.get("inference"):
        lines += ["## Inference", "", "ms per output frame (batch 1; clip networks: one T-frame clip per frame); "
                  "peak memory = extra memory of the forward over weights and input (`mem` says how).", "",
                  f"Preset: {(result.get('settings') or {}).get('preset', 'paper')} (paper: the papers' full-size "
                  "networks; demo: params.yaml's widths). Paper ms: NL-ConvLSTM Table 5 (on the authors' GPU), "
                  "comparable with the paper preset only.", ""]
        rows = []
        for r in result["inference"]:
            st = _status(r)
            if r.get("target_ms_h100") is not None and r["status"] == "ok":
                st += f" (H100 target {r['target_ms_h100']:g} ms: {'met' if r.get('target_met') else 'missed'})"
            rows.append([r["model"], r["size"], r["mode"], _fmt(r.get("ms_per_frame")),
                         _fmt(paper_ms(r.get("arch", r["model"]), r["size"]), 2), _fmt(r.get("fps")),
                         _fmt(r.get("tflops"), 3), _fmt(r.get("peak_fraction"), 3), _fmt(r.get("of_conv_ceiling"), 3),
                         _fmt(r.get("peak_mem_mb")), r.get("mem_method", "–"), _fmt(r.get("repeats")), st])
        lines += _table(["model", "size", "mode", "ms/frame", "paper ms", "fps", "TFLOP/s", "of peak", "of ceiling",
                         "peak MB", "mem", "repeats", "status"], "lllrrrrrrrlrl", rows)
    if result.get("onnx"):
        lines += ["## onnxruntime and PyTorch", "", "ms per output frame of the network's ONNX export (`inloop export`, "
                  "the file a codec loads) in onnxruntime and of the network in PyTorch: same input, device, threads, "
                  "float32, whole frames; speed-up = PyTorch ms / onnxruntime ms; max diff = largest |difference| of "
                  "the outputs (samples in [0, 1]).", ""]
        lines += _table(["model", "size", "device", "threads", "PyTorch ms", "onnxruntime ms", "speed-up", "max diff",
                         "export s", "status"], "lllrrrrrrl", [
            [r["model"], r["size"], f"{r['device']} ({r['provider']})", r["threads"], _fmt(r.get("torch_ms_per_frame")),
             _fmt(r.get("onnxruntime_ms_per_frame")), _fmt(r.get("speedup"), 2), _fmt(r.get("max_abs_diff"), 3),
             _fmt(r.get("export_s")), _status(r)] for r in result["onnx"]])
    if result.get("training"):
        lines += ["## Training step", "", "Synthetic batch on the device; model FLOPs = 3 x forward; of ceiling: "
                  "against the forward convolution ceiling of the step's precision.", ""]
        lines += _table(["model", "batch x patch", "step ms", "samples/s", "TFLOP/s", "MFU", "of ceiling", "GPU busy",
                         "peak MB", "status"], "llrrrrrrrl", [
            [r["model"], f"{r['batch']} x {r['patch']}²", _fmt(r.get("step_ms")), _fmt(r.get("samples_per_s"), 2),
             _fmt(r.get("tflops"), 3), _fmt(r.get("mfu"), 3), _fmt(r.get("of_conv_ceiling"), 3),
             _fmt(r.get("gpu_busy"), 2), _fmt(r.get("peak_mem_mb")), _status(r)] for r in result["training"]])
    lines += paths_lines(result)
    c = result.get("codec")
    if c:
        lines += ["## Codec", "", f"{c['codec']} on `{Path(c['clip']).name}` ({c['width']}x{c['height']}, "
                  f"{c['frames']} frames), one encode at a time, one thread each: **{_fmt(c['encodes_per_min'])} "
                  f"encodes/min** over {c['encodes']} encodes ({_fmt(c['frames_per_s'])} frames/s incl. decode and "
                  "checks).", ""]
        lines += _table(["config", "filters", "QP", "encoder s", "wall s", "encodes/min"], "llrrrr", [
            [r["config"], r["filters"], r["qp"], _fmt(r["encode_s"], 3), _fmt(r["wall_s"], 3),
             _fmt(r["encodes_per_min"])] for r in c["rows"]])
    e = result.get("encode_stage")
    if e:
        lines += ["## Encode stage (Snakemake)", "", f"`{e['command']}` in a clone of {e['commit'][:10]}; the data "
                  f"stage ran once before ({_fmt(e['data_stage_s'])} s). Efficiency = T1 / (N x TN); this machine has "
                  f"{e['cpu_count']} logical cores.", ""]
        lines += _table(["cores", "wall s", "encodes", "encodes/min", "speed-up", "efficiency", "oversubscribed"],
                        "rrrrrrl", [[r["cores"], _fmt(r["wall_s"]), r["encodes"], _fmt(r["encodes_per_min"]),
                                     _fmt(r["speedup"], 2), _fmt(r["efficiency"], 2), _fmt(r["oversubscribed"])]
                                    for r in e["rows"]])
    p = PAPER_FIGURES
    lines += ["## The papers' figures", "", f"- {p['nlconvlstm_table5_note']}: " + ", ".join(
        f"{k} {v:g} ms" for k, v in p["nlconvlstm_table5_ms"].items()) + ".",
        f"- {p['glfusion_table7_note']}.", "- Targets on an H100 (issue #8): NL-ConvLSTM < 100 ms and GL-Fusion "
        "< 20 ms per 1920x1080 frame; training >= 30 % of the dense bf16 peak in model FLOPs, GPU busy > 90 % "
        "of each step.", ""]
    return "\n".join(lines)


def ceiling_lines(result: dict) -> list[str]:
    """The machine's ceiling (:mod:`.ceiling`): GEMM and convolution TFLOP/s in fp32 and bf16, and the
    ratio of each change on the convolution stack."""
    c = result.get("ceiling")
    if not c:
        return []
    lines = ["## Ceiling: this machine's own GEMM and convolution throughput", "",
             f"Measured in this run (src/inloop/bench/ceiling.py): the fastest of the timed calls. bf16 on this "
             f"CPU: {'native' if c['native_bf16'] else 'not native (measured anyway: generic code, no bf16 units)'}. "
             "A case that would not fit the time budget ran on a smaller shape (reduced). Every network's "
             "`of ceiling` below = its TFLOP/s / the convolution ceiling of its precision (the faster layout).", ""]
    lines += _table(["kind", "precision", "layout", "shape", "native", "ms", "TFLOP/s", "TFLOP/s (median)"],
                    "llllrrrr", [[r["kind"], r["dtype"], r["layout"] or "–",
                                  r["shape"] + (" (reduced)" if r["reduced"] else ""), _fmt(r["native"]),
                                  _fmt(r["ms_best"]), _fmt(r["tflops"], 4), _fmt(r["tflops_median"], 4)]
                                 for r in c["rows"]])
    if c.get("ratios"):
        lines += ["Each change on the convolution stack (ratio = TFLOP/s after / before):", ""]
        lines += _table(["change", "before TFLOP/s", "after TFLOP/s", "ratio", "note"], "lrrrl", [
            [r["change"], _fmt(r["before_tflops"], 4), _fmt(r["after_tflops"], 4), _fmt(r["ratio"], 2), r["note"]]
            for r in c["ratios"]])
    return lines


def paths_lines(result: dict) -> list[str]:
    """The compute paths side by side (:mod:`.paths`): each variant's time and each change's speed-up."""
    if not result.get("paths"):
        return []
    chosen = result["paths"][0]["chosen"]
    lines = ["## Compute paths", "", "Chosen here with `auto`: " + "; ".join(
        f"{kind} **{c['precision']}, {'channels_last' if c['channels_last'] else 'NCHW'}** ({c['reason']})"
        for kind, c in chosen.items()) + ". Inference: one whole frame, batch 1; training: the project's step on a "
             "synthetic batch. Speed-up of a change = time before / time after (> 1: faster); compile: warm-up time "
             "with compilation and the calls after which it has paid for itself.", ""]
    rows, changes = [], []
    for p in result["paths"]:
        for kind in ("inference", "training"):
            for r in p[kind]:
                what = p["size"] if kind == "inference" else f"{r['batch']} x {r['patch']}²"
                rows.append([p["model"], kind, what, r["variant"] + (" (chosen)" if r["chosen"] else ""),
                             _fmt(r.get("ms_per_frame", r.get("step_ms"))), _fmt(r.get("tflops"), 4),
                             _fmt(r.get("warmup_s")), _status(r)])
            for c in p[f"{kind}_changes"]:
                changes.append([p["model"], kind, c["change"], _fmt(c["before_ms"]), _fmt(c["after_ms"]),
                                _fmt(c["speedup"], 2), _fmt(c.get("break_even_calls"), 0)])
    lines += _table(["model", "", "size / batch", "path", "ms", "TFLOP/s", "warm-up s", "status"], "llllrrrl", rows)
    if changes:
        lines += _table(["model", "", "change", "before ms", "after ms", "speed-up", "compile pays after (calls)"],
                        "lllrrrr", changes)
    return lines


def write_markdown(path: str | os.PathLike, result: dict) -> None:
    from ..fsutil import atomic_write

    with atomic_write(path, "w") as fh:
        fh.write(markdown_report(result))


def summary_text(result: dict) -> str:
    """What ``inloop bench`` prints at the end: one line per case."""
    lines = [f"machine: {result['machine'].get('device_name')} ({result['machine'].get('cpu_count')} cores), "
             f"torch {result['machine'].get('torch')}, load {result['machine'].get('load_avg')}"]
    for r in (result.get("ceiling") or {}).get("rows", []):
        reduced = f" (reduced: {r['shape']})" if r["reduced"] else ""
        lines.append(f"  ceiling {r['kind']:<4} {r['dtype']} {r['layout'] or '':<13} {r['tflops'] * 1e3:9.2f} GFLOP/s"
                     f"{'' if r['native'] else ' (not native)'}{reduced}")
    for c in result.get("costs", []):
        lines.append(f"  {c['model']:<18} {c['params']:>10,} params  {c['macs_per_pixel'] / 1e3:9.1f} kMAC/pixel")
    for r in result.get("inference", []):
        if r["status"] == "ok":
            lines.append(f"  {r['model']:<18} {r['size']:>9} {r['mode']:<8} {r['ms_per_frame']:10.1f} ms/frame  "
                         f"peak {r['peak_mem_mb']:.0f} MB ({r['mem_method']})")
        else:
            lines.append(f"  {r['model']:<18} {r['size']:>9} {r['mode']:<8} skipped: {r['reason']}")
    for r in result.get("onnx", []):
        if r["status"] == "ok":
            lines.append(f"  onnx {r['model']:<13} {r['size']:>9} PyTorch {r['torch_ms_per_frame']:10.1f} ms/frame, "
                         f"onnxruntime {r['onnxruntime_ms_per_frame']:10.1f} ms/frame ({r['device']}, "
                         f"{r['threads']} threads, max diff {r['max_abs_diff']:.1e})")
        else:
            lines.append(f"  onnx {r['model']:<13} {r['size']:>9} skipped: {r['reason']}")
    for r in result.get("training", []):
        if r["status"] == "ok":
            mfu = f", MFU {r['mfu']:.3f}" if r.get("mfu") is not None else ""
            lines.append(f"  train {r['model']:<12} {r['batch']}x{r['patch']}^2 {r['step_ms']:10.1f} ms/step  "
                         f"{r['samples_per_s']:.2f} samples/s, {r['tflops']:.4f} TFLOP/s{mfu}")
        else:
            lines.append(f"  train {r['model']:<12} skipped: {r['reason']}")
    for p in result.get("paths", []):
        for kind in ("inference", "training"):
            for c in p[f"{kind}_changes"]:
                lines.append(f"  paths {p['model']:<12} {kind:<9} {c['change']:<28} speed-up {_fmt(c['speedup'], 2)}")
    if result.get("codec"):
        c = result["codec"]
        lines.append(f"  {c['codec']}: {c['encodes_per_min']:.1f} encodes/min ({c['encodes']} encodes of "
                     f"{c['frames']} frames {c['width']}x{c['height']})")
    for r in (result.get("encode_stage") or {}).get("rows", []):
        lines.append(f"  encode stage --cores {r['cores']}: {r['wall_s']:.1f} s, efficiency {_fmt(r['efficiency'], 2)}")
    return "\n".join(lines)
