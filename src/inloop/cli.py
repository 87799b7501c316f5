"""The ``inloop`` command: one thin sub-command per pipeline rule.

Each sub-command parses its arguments and calls the library; errors the user
can fix (:class:`~inloop.errors.InloopError`) are printed as one line naming
the file or params key, with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import __version__
from .errors import InloopError


def _params(args: argparse.Namespace) -> dict:
    from .params import cli_params

    return cli_params(args.params)


def _source_format(args: argparse.Namespace):
    from .yuv import YuvFormat, parse_yuv_name

    src = Path(args.input)
    if src.suffix.lower() == ".y4m":
        raise InloopError(f"{src}: encode takes raw .yuv input; convert y4m first")
    if args.width or args.height:
        if not (args.width and args.height):
            raise InloopError("give both --width and --height, or neither (then the file name is parsed)")
        return YuvFormat(args.width, args.height, args.bitdepth or 8, args.fps or 30.0)
    _, fmt = parse_yuv_name(src)
    return fmt


def cmd_encode(args: argparse.Namespace) -> int:
    from .codecs import EncodeJob, get_codec
    from .yuv import YuvReader

    params = _params(args)
    fmt = _source_format(args)
    if args.frames is not None and args.frames < 1:  # 0 used to mean "all" while -3 was refused
        raise InloopError(f"--frames {args.frames}: give a positive number of frames, or leave it out for all")
    frames = args.frames or len(YuvReader(args.input, fmt))
    codec = get_codec(args.codec, params)
    job = EncodeJob(Path(args.input), fmt, frames, args.qp, args.config, args.filters)
    stats = codec.encode(job, args.out, decoded=args.decoded, stats=args.stats)
    p = stats["psnr"]
    print(f"{args.codec} {args.config} filters={args.filters} QP {args.qp}: {stats['frames']} frames, "
          f"{stats['bits']} bits (file {stats['file_bytes']} bytes), {stats['kbps']:.2f} kbps, {stats['bpp']:.4f} bpp, "
          f"PSNR Y {p['y']:.3f} U {p['u']:.3f} V {p['v']:.3f} YUV {p['yuv']:.3f} dB "
          f"(encode {stats['encode_time_s']:.2f} s) -> {args.out}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Report which codecs can run here, and why not."""
    from .codecs import CODECS, get_codec
    from .codecs.ffmpeg import find_ffmpeg, require_ffmpeg
    params = _params(args)
    status = {}
    try:
        ff = find_ffmpeg(((params.get("codecs") or {}).get("x265") or {}).get("ffmpeg"))
        caps = require_ffmpeg(ff)
        status["ffmpeg"] = {"ok": True, "path": ff, "version": caps["version"]}
    except InloopError as exc:
        status["ffmpeg"] = {"ok": False, "error": str(exc)}
    for name in CODECS:
        try:
            get_codec(name, params).check()
            status[name] = {"ok": True}
        except InloopError as exc:
            status[name] = {"ok": False, "error": str(exc)}
    print(json.dumps(status, indent=2))
    return 0 if status["ffmpeg"]["ok"] and status["x265"]["ok"] else 1


def cmd_patches(args: argparse.Namespace) -> int:
    from .params import model_spec, store_settings
    from .training.patches import build_patch_store, sources_from_paths

    s = store_settings(model_spec(_params(args), args.model))
    if args.stats is not None:
        from .bitstream import read_stats

        if len(args.stats) != len(args.decoded):
            raise InloopError(f"{len(args.decoded)} decoded files but {len(args.stats)} stats: one each, same order")
        for stats, decoded in zip(args.stats, args.decoded):
            read_stats(stats, decoded)  # a decode cut short or changed after its encode: named, nothing cut
    meta = build_patch_store(
        sources_from_paths(args.original, args.decoded), args.out, patch_size=int(s["patch_size"]),
        patches_per_frame=int(s["patches_per_frame"]), planes=tuple(s["planes"]),
        val_fraction=float(s["val_fraction"] if s["val_fraction"] is not None else 0.2),
        val_sources=s["val_sources"], seed=int(s["seed"] or 0), max_frames=s["max_frames_per_source"],
        frames=s["frames"])
    print(f"patch store {args.out}: {meta['counts']['train']} training and {meta['counts']['val']} validation "
          f"samples of {meta['frames']} frame(s) of {meta['patch_size']}x{meta['patch_size']} "
          f"from {len(args.original)} sources")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .params import check_models, check_stage1_sources, model_spec, stage1_handoffs
    from .training.run import train_model

    params = _params(args)
    check_models(params, args.params or "params", [args.model])
    check_stage1_sources(params)
    spec = model_spec(params, args.model)
    report = train_model(
        args.store, args.out, spec["arch"], spec["kwargs"], spec["train"],
        describe={"codec": args.codec, "config": args.config, "qp": args.qp}, checkpoint=args.checkpoint,
        manifest=args.manifest, track=not args.no_mlflow, threads=args.threads, name=args.model, params=params,
        init_from=args.init_from, stage1_from=args.stage1_from, keep_states=tuple(stage1_handoffs(params, args.model)))
    r = report["result"]
    if report.get("rank", 0) != 0:
        return 0  # DDP: rank 0 reports
    print(f"{args.model} {args.codec} {args.config} QP {args.qp}: {r['steps']} steps "
          f"({r['steps_this_run']} this run, {r['samples_per_s']:.1f} samples/s), "
          f"validation delta-PSNR {r.get('val_delta_psnr', float('nan')):+.3f} dB -> {args.out}")
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    from .params import apply_configs

    changed = apply_configs(args.configs, args.params)
    print(f"{args.params}: {len(changed)} value(s) changed: {', '.join(changed) or 'none'}")
    print("`dvc repro` reruns the stages that read them; `git checkout params.yaml` undoes this")
    return 0


def cmd_lpips(args: argparse.Namespace) -> int:
    """Fetch and verify the LPIPS weights once (pipeline rule lpips_weights); record what happened."""
    from .fsutil import write_json
    from .models.lpips import fetch

    status = fetch(_params(args), download=False if args.no_download else None)  # None: params decide
    if args.out:
        write_json(args.out, status)
    print(f"LPIPS weights: {status['backbone']} and {status['linear']}" if status["available"] else status["reason"])
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Trained model files as ONNX (dynamic frame size), for a codec's network runtime."""
    from .models.export import export_files
    from .models.io import configured_references

    for r in export_files(args.models, args.format, args.out, allow=configured_references(_params(args))):
        print(f"{r['model_file']}: {r['network']} -> {r['out']} ({r['seconds']:.1f} s)")
    return 0


def _expected_model(p: dict, name: str | None) -> dict | None:
    """What ``--model-name`` (the rule's train.models entry) says the model file must hold: the entry and its
    network settings from the run's params."""
    if not name:
        return None
    from .params import model_spec, split_seed

    return {"model": name, "kwargs": model_spec(p, split_seed(name)[0])["kwargs"]}


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation.evaluate import evaluate_point
    from .models.io import configured_references
    from .params import get

    if args.threads:  # the cores Snakemake gave the job, not every core of the machine
        import torch

        torch.set_num_threads(args.threads)
    p = _params(args)
    ev = dict(get(p, "evaluate", {}) or {})
    if not args.model:  # the codec's own evaluation (rule evaluate_codec) has no network and asks no GPU: LPIPS
        ev["device"] = "cpu"  # and the metrics run on the CPU, whatever evaluate.device says (issue #28 item 1)
    metrics = get(p, "metrics", {}) or {}
    data = get(p, "datasets", {}) or {}
    if "rgb_matrix" in metrics:
        raise InloopError("params metrics.rgb_matrix is gone: RGB metrics use the matrix the data were converted "
                          "with (datasets.matrix, datasets.range)")
    metric_options = {k: v for k, v in metrics.items() if k in ("ms_ssim_small", "rgb")}
    metric_options.update(rgb_matrix=data.get("matrix", "bt601"), rgb_full_range=data.get("range", "tv") == "pc")
    lpips = None
    if not args.no_lpips and ((get(p, "metrics", {}) or {}).get("lpips") or {}).get("evaluate", True):
        from .models.lpips import REFERENCE_MEMORY_BYTES, LpipsUnavailable, load_lpips

        try:  # cached or local weights only: no download from inside a pipeline job
            lpips = load_lpips(p, download=False, device=ev.get("device", "cpu"))
            lpips.remember_references(REFERENCE_MEMORY_BYTES)  # each clip's original: once for all its decodes
        except LpipsUnavailable as exc:
            lpips = str(exc)
    points = _evaluation_points(args)
    expect = _expected_model(p, args.model_name)
    allow = configured_references(p)
    for pt in points:  # one process for every point given: Python and torch start once (evaluate.jobs: per-qp)
        r = evaluate_point(pt["original"], pt["anchor_stats"], pt["off_stats"], pt["out"], model_path=args.model,
                           enhanced_out=pt["enhanced"], dataset=args.dataset, seq_class=pt["seq_class"],
                           device=ev.get("device", "cpu"), tile=ev.get("tile"), overlap=ev.get("overlap", "auto"),
                           metric_options=metric_options, baseline=pt["baseline"], lpips=lpips,
                           eval_frames=ev.get("frames"), switching=ev.get("switching"),
                           compute={k: ev[k] for k in ("amp_bf16", "channels_last") if k in ev},
                           expect=expect, allow_code=allow)
        line = (f"{r['sequence']} {r['config']} QP {r['qp']}: anchor {r['anchor']['psnr']['y']:.3f} dB "
                f"@ {r['anchor']['kbps']:.1f} kbps, filters off {r['decoded']['psnr']['y']:.3f} dB "
                f"@ {r['decoded']['kbps']:.1f} kbps")
        if r["delta"]:
            line += f", {r['model']} {r['enhanced']['psnr']['y']:.3f} dB (delta-PSNR {r['delta']['psnr_y']:+.3f} dB)"
        print(line, flush=True)
    return 0


POINT_ARGS = ("original", "anchor_stats", "off_stats", "out", "enhanced", "baseline", "seq_class")


def _evaluation_points(args: argparse.Namespace) -> list[dict]:
    """The points of one ``inloop evaluate``: the i-th value of each list option together. --original,
    --anchor-stats, --off-stats and --out give one value per point; --enhanced and --baseline one per point
    or none; --seq-class one per point, or one for all (default none)."""
    n = len(args.original)
    points = [{} for _ in range(n)]
    for key in POINT_ARGS:
        values = getattr(args, key)
        if values is None:
            values = [None] * n if key != "seq_class" else [""] * n
        elif key == "seq_class":
            values = ["" if v == "-" else v for v in (values * n if len(values) == 1 else values)]
        if len(values) != n:
            raise InloopError(f"--{key.replace('_', '-')} gives {len(values)} values for the {n} points of "
                              f"--original: give one per point, in the same order")
        for pt, v in zip(points, values):
            pt[key] = v
    if len({pt["out"] for pt in points}) != n:
        raise InloopError("--out names the same file twice: each point needs its own evaluation JSON")
    return points


def build_parser() -> argparse.ArgumentParser:
    from .codecs import CODECS, CONFIGS, FILTERS

    parser = argparse.ArgumentParser(prog="inloop", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"inloop {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("encode", help="encode a raw YUV file, decode it, check it, write stats")
    p.add_argument("--codec", choices=sorted(CODECS), default="x265")
    p.add_argument("--in", dest="input", required=True, help="raw 4:2:0 YUV, named {name}_{W}x{H}_{fps}fps_{bits}bit_420.yuv")
    p.add_argument("--out", required=True, help="bitstream path (.bin); stats go to the sibling .json")
    p.add_argument("--decoded", help="decoded YUV path (default: next to the bitstream, YUV naming convention)")
    p.add_argument("--stats", help="stats JSON path (default: bitstream with .json)")
    p.add_argument("--qp", type=int, required=True)
    p.add_argument("--config", choices=CONFIGS, required=True)
    p.add_argument("--filters", choices=FILTERS, required=True)
    p.add_argument("--frames", type=int, help="encode the first N frames (default: all)")
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--fps", type=float)
    p.add_argument("--bitdepth", type=int)
    p.add_argument("--params", help="params.yaml (default: ./params.yaml if present)")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("patches", help="cut (decoded, original) patch pairs into a patch store")
    p.add_argument("--original", nargs="+", required=True, help="original YUV files")
    p.add_argument("--decoded", nargs="+", required=True, help="their decodes with filters off, same order")
    p.add_argument("--stats", nargs="+",
                   help="each decode's encode stats JSON, same order: the decodes are checked against them")
    p.add_argument("--out", required=True, help="patch store directory")
    p.add_argument("--model", default="glfusion",
                   help="a train.models entry: its store settings (patch size, frames...) are used")
    p.add_argument("--params")
    p.set_defaults(func=cmd_patches)

    p = sub.add_parser("train", help="train one network on one patch store (one codec/config/QP)")
    p.add_argument("--model", required=True)
    p.add_argument("--store", required=True, help="patch store directory")
    p.add_argument("--out", required=True, help="model file (.pt); a .json report is written beside it")
    p.add_argument("--codec", required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--qp", type=int, required=True)
    p.add_argument("--checkpoint", help="checkpoint path (default: results/checkpoints/..., keyed by the settings)")
    p.add_argument("--manifest", nargs="+", help="dataset manifest(s), hashed into the MLflow run")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--no-mlflow", action="store_true", help="do not track the run")
    p.add_argument("--init-from", help="start from this model file (another QP's) for train.warm_start.steps steps")
    p.add_argument("--stage1-from", help="continue from the stage-1 state this model file (train.spilf.stage1_from's "
                   "model at this QP) kept")
    p.add_argument("--params")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("params", help="write config files into params.yaml as --configfile merges them (comments "
                       "kept), for `dvc repro` with another configuration")
    p.add_argument("action", choices=["apply"])
    p.add_argument("configs", nargs="+", help="e.g. config/tiny.yaml config/hm.yaml")
    p.add_argument("--params", default="params.yaml")
    p.set_defaults(func=cmd_params)

    p = sub.add_parser("lpips", help="fetch and verify the LPIPS-Alex weights into metrics.lpips.cache_dir "
                       "(default $INLOOP_CACHE/lpips; unavailability is recorded, not an error)")
    p.add_argument("--out", help="status JSON (available, files and hashes, or the reason)")
    p.add_argument("--no-download", action="store_true", help="only look at local files and the cache")
    p.add_argument("--params")
    p.set_defaults(func=cmd_lpips)

    p = sub.add_parser("evaluate", help="measure anchor, filters-off decode and (with --model) the enhanced decode")
    # One point (a clip at a QP), or several in one process (the i-th value of each list option together).
    p.add_argument("--original", required=True, nargs="+", help="the clip(s) the encodes coded")
    p.add_argument("--anchor-stats", required=True, nargs="+", help="stats JSON of the encode with filters on")
    p.add_argument("--off-stats", required=True, nargs="+", help="stats JSON of the encode with filters off")
    p.add_argument("--out", required=True, nargs="+", help="evaluation JSON, one per point")
    p.add_argument("--model", help="trained model file")
    p.add_argument("--model-name", help="the train.models entry the job evaluates: the model file must be its, "
                   "with the run's network settings")
    p.add_argument("--enhanced", nargs="+", help="where to write the enhanced YUV (with --model), one per point")
    p.add_argument("--dataset", default="")
    p.add_argument("--seq-class", nargs="+", help="the clips' CTC classes (one per point, or one for all; - for none)")
    p.add_argument("--baseline", nargs="+",
                   help="the model-'none' evaluation JSON of each point, reused for anchor and decode")
    p.add_argument("--threads", type=int, help="CPU threads for torch (the rule passes the job's threads)")
    p.add_argument("--no-lpips", action="store_true",
                   help="measure no LPIPS here (the rules pass it where params metrics.lpips.models leaves it out)")
    p.add_argument("--params")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="write trained model files as ONNX (dynamic height and width) for a codec")
    p.add_argument("models", nargs="+", help="model files (.pt), e.g. results/models/**/model.pt")
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("--out", help="folder for the exports, keeping the files' relative paths "
                   "(default: beside each model file, model.pt -> model.onnx)")
    p.add_argument("--params", help="params.yaml naming the networks (default: ./params.yaml if present); a model "
                   "file naming code (package.module:Class) loads only if these params name it too")
    p.set_defaults(func=cmd_export)

    from .datasets.cli import register as register_datasets
    from .reporting.report import register as register_report

    register_datasets(sub)
    register_report(sub)
    from .bench import register as register_bench

    register_bench(sub)
    from .rehearsal import register as register_rehearse

    register_rehearse(sub)

    p = sub.add_parser("check", help="say which codecs can run here (FFmpeg/libx265, HM, VTM, ECM)")
    p.add_argument("--params")
    p.set_defaults(func=cmd_check)
    return parser


# Sub-commands that run networks: the allocator is tuned for them (inloop.models.cpu_path.tune_allocator).
TORCH_COMMANDS = ("train", "evaluate", "bench", "export")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in TORCH_COMMANDS:
        from .models.cpu_path import tune_allocator

        tune_allocator()
    try:
        return args.func(args)
    except InloopError as exc:
        print(f"inloop {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"inloop {args.command}: error: out of memory (Python MemoryError); give the job more memory "
              "(train.mem_mb, evaluate.mem_mb) or, for whole frames, a GPU or evaluate.tile", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # torch's allocators: "could not create a primitive", "can't allocate memory"
        text = str(exc)
        if not any(m in text for m in ("could not create a primitive", "can't allocate memory", "out of memory")):
            raise
        print(f"inloop {args.command}: error: out of memory ({text.strip().splitlines()[0][:200]}); give the job more "
              "memory (train.mem_mb, evaluate.mem_mb) or, for whole frames, a GPU or evaluate.tile", file=sys.stderr)
        return 2
    except OSError as exc:  # an unwritable folder, a full disk: the message names the file
        if os.environ.get("INLOOP_DEBUG"):
            raise
        print(f"inloop {args.command}: error: {exc} (INLOOP_DEBUG=1 shows where)", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
