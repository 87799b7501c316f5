"""``inloop bench``: the sub-command's options, the run of the chosen benchmarks (results JSON,
written after every case so an interrupted run keeps what it measured) and the exact command line."""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Callable

from .. import paths
from ..lazy import lazy_import
from ..names import CODECS, CONFIGS
from .ceiling import attach_fractions, measure_ceiling
from .codec import bench_codec, bench_encode_stage
from .costs import SIZES, model_costs, parse_size
from .machine import machine_info, resolve_device
from .markdown import PAPER_FIGURES, summary_text, write_markdown
from .networks import TARGETS, bench_inference, bench_training, model_entries
from .onnx import bench_onnx
from .paths import compare_paths

torch = lazy_import("torch")

QUICK_SIZES = ("64x48", "96x64")
MODELS_DEFAULT = ("glfusion", "spilf", "nlconvlstm", "arcnn", "dncnn", "vrcnn")


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
    p.add_argument("--amp", choices=("auto", "none", "bf16"), default="auto",
                   help="auto: bf16 on CUDA and on CPUs with native bf16 (avx512_bf16 / amx_bf16), else none")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="default (auto): where bf16 is taken, and for inference on every device")
    p.add_argument("--ceiling", action=argparse.BooleanOptionalAction, default=None,
                   help="measure the machine's GEMM and convolution throughput (fp32, bf16) first and give every "
                        "network's TFLOP/s as a fraction of it (default: on, off with --quick)")
    p.add_argument("--paths", action=argparse.BooleanOptionalAction, default=None,
                   help="time every network in fp32 / bf16 x NCHW / channels_last (and the chosen path compiled) at "
                        "the first size, training too with --train: each change's speed-up (default: as --ceiling)")
    p.add_argument("--paths-compile", action=argparse.BooleanOptionalAction, default=True,
                   help="include the chosen path with torch.compile in --paths")
    p.add_argument("--compile", action="store_true", help="torch.compile the networks")
    p.add_argument("--compile-mode", help="torch.compile mode, e.g. max-autotune or reduce-overhead (CUDA graphs)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--no-infer", action="store_true", help="skip the inference benchmark")
    p.add_argument("--no-costs", action="store_true", help="skip parameter / FLOP counts")
    p.add_argument("--onnx", action="store_true",
                   help="also export each network to ONNX and time onnxruntime next to PyTorch (whole frames, float32)")
    p.add_argument("--train", action="store_true", help="time training steps")
    p.add_argument("--train-steps", type=int, help="timed steps (default 10; --quick 2)")
    p.add_argument("--train-batch", type=int, help="override every model's batch")
    p.add_argument("--train-patch", type=int, help="override every model's patch size")
    p.add_argument("--peak-tflops", type=float, help="peak for MFU (default: the GPU's dense bf16 peak by name)")
    p.add_argument("--profile", action="store_true",
                   help="profiler trace of every case (CUDA: always for cases missing their target)")
    p.add_argument("--codec", action="store_true", help="time encodes of a real clip (x265, or --codec-name)")
    p.add_argument("--codec-name", default="x265", choices=tuple(CODECS),
                   help="the codec --codec times (hm, vtm, ecm: binaries from params or INLOOP_<NAME>_*)")
    p.add_argument("--codec-clip", help="clip for --codec (default: results/data/demo/city-a, else the shared fixture)")
    p.add_argument("--codec-frames", type=int, default=8)
    p.add_argument("--codec-qps", type=int, nargs="+", default=[22, 27, 32, 37])
    p.add_argument("--codec-configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    p.add_argument("--encode-stage", action="store_true",
                   help="time `snakemake --cores N encodes` in a clone of HEAD for N in --cores")
    p.add_argument("--cores", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--stage-config", default="config/tiny.yaml", help="--configfile of the encode-stage runs")
    p.add_argument("--quick", action="store_true", help="tiny sizes and counts: a smoke test of the harness")
    p.add_argument("--out", help="results JSON (default results/bench/bench-<device>-<time>.json)")
    p.add_argument("--markdown", help="also write a Markdown report here (e.g. docs/benchmarks.md)")
    p.add_argument("--note", action="append", help="a note kept with the results (the machine's load, what ran "
                                                   "beside it...); repeatable")
    p.add_argument("--params")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    from tqdm import tqdm

    from ..fsutil import write_json
    from ..models import cpu_path
    from ..params import cli_params

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
    ev_overlap = ev.get("overlap", 64)  # `auto` (measured per trained network at evaluation): 64 for the timing
    overlap = args.overlap if args.overlap is not None else (8 if quick else (64 if ev_overlap == "auto"
                                                                             else int(ev_overlap)))
    repeats = args.repeats or (1 if quick else 5)
    warmup = args.warmup if args.warmup is not None else 1
    max_s = args.max_seconds or None
    amp = None if args.amp == "auto" else args.amp
    # the path the rows run: --amp / --channels-last where given, else what `auto` takes on this device
    amp_setting = "auto" if amp is None else amp == "bf16"
    cl_setting = "auto" if args.channels_last is None else args.channels_last
    path = cpu_path.resolve(device, amp_setting, cl_setting, inference=True)
    ceiling = args.ceiling if args.ceiling is not None else not quick
    paths = args.paths if args.paths is not None else not quick
    entries = model_entries(args.models or MODELS_DEFAULT, preset, params)
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    result: dict[str, Any] = {
        "command": command_line(args),
        "started": started, "machine": machine_info(device), **({"notes": list(args.note)} if args.note else {}),
        "settings": {"preset": preset, "sizes": sizes, "tile": tile or None, "overlap": overlap, "repeats": repeats,
                     "warmup": warmup, "max_seconds": max_s, "amp": amp or ("bf16" if path.bf16 else "none"),
                     "channels_last": "auto" if args.channels_last is None else args.channels_last,
                     "compile": args.compile_mode or args.compile, "quick": quick,
                     "compute_path": {"inference": path.record(),
                                      "training": cpu_path.resolve(device, amp_setting, cl_setting).record()}},
        "paper": PAPER_FIGURES, "targets_h100": {"inference_ms": {f"{k[0]}@{k[1]}": v for k, v in
                                                                  TARGETS["inference_ms"].items()},
                                                 "train_mfu": TARGETS["train_mfu"],
                                                 "train_gpu_busy": TARGETS["train_gpu_busy"]},
    }
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out or f"{paths.BENCH}/bench-{device.type}-{stamp}.json")
    trace_dir = str(out.with_suffix("")) + "-traces"

    cases: list[tuple[str, Callable[[], Any]]] = []
    if ceiling:
        cases.append(("ceiling", lambda: result.__setitem__("ceiling", measure_ceiling(
            device, quick, max_seconds=min(30.0, max_s) if max_s else None))))
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
        if args.onnx:
            cases.append((f"onnx {e['name']}", lambda e=e: result.setdefault("onnx", []).extend(bench_onnx(
                e["name"], e["kwargs"], sizes, device, repeats, warmup, max_s, arch=e["arch"], threads=args.threads))))
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
        if paths:
            train = None
            if args.train:
                train = {"batch": args.train_batch or (2 if quick else e["batch"]),
                         "patch": args.train_patch or (32 if quick else e["patch"]),
                         "steps": args.train_steps or (2 if quick else 10), "warmup": 1 if quick else 2,
                         "train_params": {k: v for k, v in (e["train"] or {}).items() if k in ("lr", "loss", "spilf")}}
            cases.append((f"paths {e['name']}", lambda e=e, train=train: result.setdefault("paths", []).append(
                compare_paths(e, sizes[0], device, repeats, warmup, max_s, train, args.paths_compile, params))))
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
        attach_fractions(result)
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
