"""The evaluate stage: one (model, codec, configuration, sequence, QP) point.

Inputs are the two encodes of the same source at the same QP (the anchor with
the codec's in-loop filters ON, and the decode the network filters: with them
OFF, or -- ``pipeline.network_input: on``, NL-ConvLSTM on Yang et al.'s data, HM's
default LDP -- the anchor's own decode, post-processed) and optionally a trained
network. The network's output costs no bits,
so the enhanced point has the rate of the filters-off bitstream; the paper's
comparison (GL-Fusion IV: BD-rate against the HM anchor with filters on) is
enhanced vs anchor. In AI the filter output equals in-loop filtering; in LDP
and RA it is post-processing of each decoded frame (GL-Fusion IV.A).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from ..bitstream import read_stats
from ..errors import InloopError
from ..fsutil import write_json
from ..yuv import YuvFormat
from .metrics import evaluate_sequence, select_frames
from .switching import SWITCHED_MODES

MODES = {
    "ai": "in-loop (AI: every frame intra, equals in-loop filtering)",
    "ldp": "post-processing (LDP/RA, as GL-Fusion IV.A)",
    "ra": "post-processing (LDP/RA, as GL-Fusion IV.A)",
}


def _summary(ev: dict, stats: dict) -> dict:
    m = ev["mean"]
    return {
        "kbps": stats["kbps"], "bpp": stats["bpp"],
        "psnr": {p: m[f"psnr_{p}"] for p in ("y", "u", "v", "yuv")},
        "ssim_y": m.get("ssim_y"), "ms_ssim_y": m.get("ms_ssim_y"),
        **{k: m[k] for k in ("psnr_rgb", "ms_ssim_rgb") if k in m},
        "psnr_y_frames": [f["psnr_y"] for f in ev["per_frame"]],
    }


def _minus(a, b):
    """``a - b`` of two measurements, None where either is missing or not finite (a plane coded losslessly has
    infinite PSNR, written to JSON as null: :func:`inloop.fsutil.finite`)."""
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return None
    return a - b


def _delta(curve: dict, decoded: dict) -> dict:
    """A reconstruction's gain over the filters-off decode: Y- and YUV-PSNR, and SSIM-Y where measured."""
    return {"psnr_y": _minus(curve["psnr"]["y"], decoded["psnr"]["y"]),
            "psnr_yuv": _minus(curve["psnr"]["yuv"], decoded["psnr"]["yuv"]),
            "ssim_y": _minus(curve["ssim_y"], decoded["ssim_y"])}


ORIGINAL_PSNR_TOLERANCE_DB = 0.01


def check_original(original, stats: dict, stats_path, psnr_y: float) -> None:
    """``--original`` must be the clip the encode coded: the same file name as the stats' ``source``, and the
    anchor decode's PSNR-Y against it equal to the encode's own (another clip of the same size used to be
    scored as this one)."""
    source = stats.get("source")
    if source and Path(source).name != Path(original).name:
        raise InloopError(f"{original}: not the clip {stats_path} coded ({Path(source).name})")
    want = ((stats.get("psnr") or {}).get("y"))
    if want is not None and math.isfinite(psnr_y) and abs(psnr_y - want) > ORIGINAL_PSNR_TOLERANCE_DB:
        raise InloopError(f"{original}: the decode of {stats_path} has PSNR-Y {psnr_y:.3f} dB against it, the encode "
                          f"measured {want:.3f} dB against its source: not the clip that was coded (or it changed)")


def check_model_file(path, payload: dict, point: dict, expect: dict | None = None) -> None:
    """A model file is used only for the job it was trained for: its record (codec, configuration, QP, the
    train.models entry, the network settings) against the point's stats and ``expect``; a copied or stale file
    (the QP-37 model at the QP-32 path, a SPiLF model at a GL-Fusion path) is one line naming the file and the
    mismatch."""
    rec = payload.get("describe") or {}
    want = {"codec": point["codec"], "config": point["config"], "qp": int(point["qp"])}
    if expect:
        want.update({k: expect[k] for k in ("model", "kwargs") if expect.get(k) is not None})
    have = {"codec": rec.get("codec"), "config": rec.get("config"),
            "qp": int(rec["qp"]) if str(rec.get("qp", "")).lstrip("-").isdigit() else rec.get("qp"),
            "model": payload.get("instance", rec.get("model")), "kwargs": payload.get("kwargs")}
    bad = [f"{k} {have[k]!r}, the job's {v!r}" for k, v in want.items() if have[k] != v]
    if bad:
        raise InloopError(f"{path}: this model file does not belong to this job: " + "; ".join(bad)
                          + ". Delete it and let the train stage make the right one")


def evaluate_point(original: str | os.PathLike, anchor_stats: str | os.PathLike, off_stats: str | os.PathLike,
                   out: str | os.PathLike, model_path: str | os.PathLike | None = None,
                   enhanced_out: str | os.PathLike | None = None, dataset: str = "", seq_class: str = "",
                   device: str = "cpu", tile: int | None = None, overlap: int | str = "auto",
                   metric_options: dict | None = None, baseline: str | os.PathLike | None = None,
                   lpips=None, eval_frames: list[int] | None = None, switching: dict | None = None,
                   compute: dict | None = None, expect: dict | None = None,
                   allow_code: set[str] | frozenset[str] = frozenset()) -> dict:
    """Measure anchor, filters-off decode and (with a model) the enhanced decode; write ``out``.

    ``allow_code``: the code references (``package.module:Class``) the run's params name as networks; a model
    file naming any other is refused (:func:`~inloop.models.io.load_trained`).

    ``baseline``: the model-"none" evaluation of the same point; its anchor and
    filters-off measurements are reused instead of being computed again.
    ``lpips``: an LPIPS metric (:func:`inloop.models.lpips.load_lpips`), or
    the reason it is unavailable (a string: recorded as such, never a number),
    or None (not asked for). ``eval_frames``: the frame indices measured (params
    ``evaluate.frames``; None = all), e.g. ``[3]`` for Vimeo-90K's 4th frame.
    ``switching``: params ``evaluate.switching`` (``enabled``, ``ctu``): with a model, also the CTU-switched
    reconstruction (:mod:`.switching`), its rate being the filters-off rate plus the flags' bits.
    ``compute``: params ``evaluate.amp_bf16`` / ``evaluate.channels_last`` for the network's inference
    (:func:`.enhance.enhance_file`; default fp32); the path taken is recorded as ``compute``.
    ``expect``: what the job's model must be (``model``: the train.models entry, ``kwargs``: its network
    settings); the model file's own record (:func:`check_model_file`) is checked against it and the point.
    """

    on, off = read_stats(anchor_stats), read_stats(off_stats)
    for key in ("codec", "config", "qp", "frames", "width", "height"):
        if on[key] != off[key]:
            raise InloopError(f"{anchor_stats} and {off_stats} differ in {key}: {on[key]} vs {off[key]}")
    if on["filters"] != "on":
        raise InloopError(f"expected an anchor with filters on ({anchor_stats}), got filters={on['filters']}")
    if off["filters"] == "on" and Path(off["bitstream"]) != Path(on["bitstream"]):
        raise InloopError(f"{off_stats}: a network input with filters on must be the anchor's own decode "
                          f"({anchor_stats})")
    fmt = YuvFormat(off["width"], off["height"], off["bitdepth"], off["fps"])
    n = off["frames"]
    opts = {"ssim_y": True, "ms_ssim_y": True, **(metric_options or {})}
    if lpips is not None and not isinstance(lpips, str):
        opts["lpips"] = lpips  # LPIPS on RGB, per frame, in the same pass as the other metrics
    result = {
        "model": "none", "codec": off["codec"], "config": off["config"], "dataset": dataset,
        "sequence": Path(off["decoded"]).parent.name, "seq_class": seq_class, "qp": off["qp"], "frames": n,
        "width": fmt.width, "height": fmt.height, "fps": fmt.fps, "mode": MODES[off["config"]],
        "anchor": None, "decoded": None, "enhanced": None, "delta": None,
        "fluctuation": {"decoded": None, "enhanced": None}, "seconds_per_frame": None, "lpips": None, "notes": {},
        "network_input": f"filters {off['filters']}", "frames_evaluated": eval_frames,
    }
    if baseline is not None:
        base = json.loads(Path(baseline).read_text())
        for key in ("codec", "config", "qp", "frames", "sequence"):
            if base.get(key) != result[key]:
                raise InloopError(f"baseline {baseline} is for {key}={base.get(key)!r}, not {result[key]!r}")
        result.update({k: base[k] for k in ("anchor", "decoded", "notes")})
        if isinstance(base.get("lpips"), dict) and "anchor" in base["lpips"]:
            result["lpips"] = {k: base["lpips"][k] for k in ("anchor", "decoded")}
        result["fluctuation"]["decoded"] = base["fluctuation"]["decoded"]
    else:
        whole_on = evaluate_sequence(original, on["decoded"], fmt, frames=n, **opts)
        check_original(original, on, anchor_stats, whole_on["mean"]["psnr_y"])
        ev_on = select_frames(whole_on, eval_frames)
        ev_off = (ev_on if off["decoded"] == on["decoded"] else
                  select_frames(evaluate_sequence(original, off["decoded"], fmt, frames=n, **opts), eval_frames))
        result.update({"anchor": _summary(ev_on, on), "decoded": _summary(ev_off, off), "notes": ev_off["notes"]})
        if "lpips" in opts:
            result["lpips"] = {"anchor": ev_on["mean"]["lpips"], "decoded": ev_off["mean"]["lpips"]}
        result["fluctuation"]["decoded"] = ev_off["fluctuation"].get("psnr_y")
    if isinstance(lpips, str):
        result["lpips"] = {"unavailable": lpips}
    if model_path is not None:
        import torch

        from ..models.io import load_trained
        from .enhance import enhance_file

        if enhanced_out is None:
            raise InloopError("an enhanced output path is needed with a model")
        model, payload = load_trained(model_path, device, allow=allow_code)
        check_model_file(model_path, payload, off, expect)
        timing = enhance_file(model, off["decoded"], enhanced_out, fmt, tuple(payload["planes"]), device, tile,
                              overlap, multiple=getattr(model, "pad_multiple", 16), only=eval_frames,
                              **(compute or {}))
        ev_enh = select_frames(evaluate_sequence(original, enhanced_out, fmt, frames=n, **opts), eval_frames)
        enh = _summary(ev_enh, off)  # no extra bits: the rate of the filters-off bitstream
        result.update({
            "model": payload.get("instance", payload["name"]), "enhanced": enh, "seconds_per_frame": timing["seconds_per_frame"],
            "frames_enhanced": timing["frames"],
            "delta": _delta(enh, result["decoded"]),
        })
        result["fluctuation"]["enhanced"] = ev_enh["fluctuation"].get("psnr_y")
        result["model_file"] = str(model_path)
        result["torch_threads"] = torch.get_num_threads()  # what seconds_per_frame was measured with
        result["compute"] = timing["compute"]
        result["tiling"] = timing["tiling"]
        result["warps_reused"] = timing["warps_reused"]
        if "lpips" in opts:
            result["lpips"] = {**(result["lpips"] or {}), "enhanced": ev_enh["mean"]["lpips"]}
        sw = {"enabled": True, "ctu": None, **(switching or {})}
        if sw["enabled"]:
            result.update(_switched(original, off, enhanced_out, fmt, n, opts, eval_frames, result, sw))
    write_json(out, result)
    return result


def _switched(original, off: dict, enhanced: str | os.PathLike, fmt: YuvFormat, n: int, opts: dict,
              eval_frames, result: dict, sw: dict, force: str | None = None) -> dict:
    """The CTU-switched reconstruction measured like the others; rate = filters-off rate + flag bits."""
    from .switching import switch_sequence

    tmp = Path(enhanced).with_name(f".{Path(enhanced).name}.switched-{os.getpid()}")
    try:
        info = switch_sequence(original, off["decoded"], enhanced, tmp, fmt, off["config"], off["qp"], off["codec"],
                               off.get("frames_reported"), sw.get("ctu"), force)
        ev = select_frames(evaluate_sequence(original, tmp, fmt, frames=n, **opts), eval_frames)
    finally:
        tmp.unlink(missing_ok=True)
    extra_kbps = info["flag_bits"] * fmt.fps / n / 1000.0
    stats = {"kbps": off["kbps"] + extra_kbps, "bpp": off["bpp"] + info["flag_bits"] / (fmt.width * fmt.height * n)}
    s = _summary(ev, stats)
    s["switching"] = {
        "ctu": info["ctu"], "flag_bits": info["flag_bits"], "flag_kbps": extra_kbps,
        "flag_share_of_rate": extra_kbps / stats["kbps"] if stats["kbps"] else None,
        "ctus_on_share": info["ctus_on"] / info["ctus"] if info["ctus"] else None,
        "frames_on": info["frames_on"], "frames": n, "mode": SWITCHED_MODES[off["config"]],
        "lambda": "HM-16.9 slice lambda (TEncSlice::initEncSlice) for each picture's QP and GOP position",
        # the CTU maps as signalled: a decoder rebuilds the scored reconstruction from them (switching.replay)
        "per_frame": [{k: f[k] for k in ("mode", "bits", "ctus_on", "lambda", "flags")} for f in info["per_frame"]],
    }
    if "lpips" in opts:
        s["lpips"] = ev["mean"]["lpips"]
    return {"switched": s, "delta_switched": _delta(s, result["decoded"])}
