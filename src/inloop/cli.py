"""The ``inloop`` command: one thin sub-command per pipeline rule.

Each sub-command parses its arguments and calls the library; errors the user
can fix (:class:`~inloop.errors.InloopError`) are printed as one line naming
the file or params key, with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .errors import InloopError


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
    from .params import load_params
    from .yuv import YuvReader

    params = load_params(args.params) if args.params or Path("params.yaml").is_file() else {}
    fmt = _source_format(args)
    frames = args.frames or len(YuvReader(args.input, fmt))
    codec = get_codec(args.codec, params)
    job = EncodeJob(Path(args.input), fmt, frames, args.qp, args.config, args.filters)
    stats = codec.encode(job, args.out, decoded=args.decoded, stats=args.stats)
    p = stats["psnr"]
    print(f"{args.codec} {args.config} filters={args.filters} QP {args.qp}: {stats['frames']} frames, "
          f"{stats['bytes']} bytes, {stats['kbps']:.2f} kbps, {stats['bpp']:.4f} bpp, "
          f"PSNR Y {p['y']:.3f} U {p['u']:.3f} V {p['v']:.3f} YUV {p['yuv']:.3f} dB "
          f"(encode {stats['encode_time_s']:.2f} s) -> {args.out}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Report which codecs can run here, and why not."""
    from .codecs import CODECS, get_codec
    from .codecs.ffmpeg import find_ffmpeg, require_ffmpeg
    from .params import load_params

    params = load_params(args.params) if args.params or Path("params.yaml").is_file() else {}
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

    p = sub.add_parser("check", help="say which codecs can run here (FFmpeg/libx265, HM, VTM, ECM)")
    p.add_argument("--params")
    p.set_defaults(func=cmd_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InloopError as exc:
        print(f"inloop {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
