"""Job counts and a cost plan per paper config and ablation: writes docs/paper-shapes.md (issues #15, #26).

For each plan (``config/paper-*.yaml``, and each ablation config merged over its paper config):

1. a synthetic data root at the paper's dataset shapes (:mod:`inloop.datasets.shapes`: real names, sizes
   and counts, empty files) in a copy of the workflow, and ``snakemake -n -p all --configfile ...`` over
   it: the job count per rule, and every encode and evaluate command (codec, configuration, frame size, frames);
2. per network, GPU time on a stated basis (:func:`network_basis`), never one utilisation for every network:

   * **measured**: a GPU row of an ``inloop bench`` result (``--bench``, default ``docs/benchmarks/*.json``) for
     the same network (architecture and parameter count): inference ms per whole frame at the sizes it timed,
     a training step at its batch and patch;
   * **NL-ConvLSTM without a GPU row**: the paper's own Table 5 (ms per frame by frame size, 002 section 4.5, on
     the authors' GPU, which the text does not name), interpolated in pixels; training = 3 x the forward time of
     a batch of training patches (forward and backward) at Table 5's per-pixel rate. Its top-k gather and
     non-local matching are memory-bound, so a FLOP utilisation says nothing about them. An ablation variant
     (another ``mode``) is scaled by its MACs over the full method's at the same frame size;
   * **other networks without a GPU row**: FLOPs at an assumed dense bf16 peak and model FLOP utilisation
     (``--peak-tflops``, ``--mfu``), said to be an assumption in the output;

   the FLOP figure at the assumed utilisation is given next to every network for comparison;
3. inference only on the frames the paper scores (params ``evaluate.frames``: NL-ConvLSTM 4.1 scores the 4th
   frame of each Vimeo-90K clip, ``[3]``; the other papers every coded frame), with the cost of filtering every
   coded frame beside it;
4. encode CPU-hours (one thread per encode, as the encode rule runs them) from measured encoder speed
   (``inloop bench --codec --codec-name NAME`` result files: seconds per megapixel-frame per
   configuration, the mean over the QPs measured).

    python benchmarks/paper_plan.py --speeds docs/benchmarks/encode-*.json --scale paper-nlconvlstm-vimeo=0.01 \\
        --out docs/paper-shapes.md

The file is rewritten up to a line ``<!-- rehearsals -->``; that line and everything after it (the rehearsals'
measurements, written by hand or by the rehearsal) are kept as they are.

Slow: the Vimeo-90K config has ~160k encode jobs (dry-run it scaled, ``--scale``), and the GL-Fusion DAG
with its ablation takes Snakemake minutes.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from inloop.bench import frame_macs, model_costs  # noqa: E402
from inloop.datasets.shapes import write_shape  # noqa: E402
from inloop.models import build_model  # noqa: E402
from inloop.params import merge_configs, model_spec  # noqa: E402

GLFUSION_DATA = ("div2k", "flickr2k", "xiph-derf", "jctvc-ctc")
# plan name -> (config files merged over params.yaml in order, datasets whose shapes the DAG needs, base plan)
PLANS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str | None]] = {
    "paper-glfusion": (("paper-glfusion",), GLFUSION_DATA, None),
    "paper-glfusion+glfusion-ablation": (("paper-glfusion", "glfusion-ablation"), GLFUSION_DATA, "paper-glfusion"),
    "paper-spilf": (("paper-spilf",), ("div2k", "clic2022-valid"), None),
    "paper-nlconvlstm-vimeo": (("paper-nlconvlstm-vimeo",), ("vimeo90k-septuplet",), None),
    "paper-nlconvlstm-yang": (("paper-nlconvlstm-yang",), ("mfqe-yang",), None),
    "paper-nlconvlstm-yang+nlconvlstm-ablation": (("paper-nlconvlstm-yang", "nlconvlstm-ablation"), ("mfqe-yang",),
                                                  "paper-nlconvlstm-yang"),
}
PAPER_DATASETS = {name: data for name, (_, data, _) in PLANS.items()}  # the datasets of each plan
MARKER = "<!-- rehearsals -->"
ENCODE_RE = re.compile(r"inloop encode --codec '?(\w+)'? --in '?([^' ]+)'? .*?--config '?(\w+)'? --filters '?(\w+)'?"
                       r" --frames '?(\d+)'?")
EVAL_RE = re.compile(r"inloop evaluate --original '?([^' ]+)'? --anchor-stats '?results/encoded/\w+/(\w+)/.*?"
                     r"--model '?results/models/([^/]+)/")
PLANES = {"y": 1.0, "u": 0.25, "v": 0.25}


# --------------------------------------------------------------------------- the dry run


def merged_params(configs: tuple[str, ...] | list[str]) -> dict:
    """params.yaml with each ``config/<name>.yaml`` merged over it in order (as ``--configfile a b`` does)."""
    return merge_configs([REPO / "config" / f"{c}.yaml" for c in configs], REPO / "params.yaml")


def dry_run(plan_name: str, workdir: Path, scale: float = 1.0) -> tuple[dict, str, float]:
    configs, datasets, _ = PLANS[plan_name]
    for item in ("Snakefile", "params.yaml", "config", "workflow", "envs"):
        src = REPO / item
        shutil.copytree(src, workdir / item) if src.is_dir() else shutil.copy2(src, workdir / item)
    for ds in datasets:
        write_shape(ds, workdir / "results" / "data", scale=scale)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "all", "--configfile",
                           *(f"config/{c}.yaml" for c in configs), "--cores", "8"],
                          cwd=workdir, capture_output=True, text=True)
    secs = time.monotonic() - t0
    if proc.returncode:
        raise SystemExit(f"{plan_name}: snakemake -n failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    table = proc.stdout[proc.stdout.rindex("Job stats:"):]
    jobs = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}
    return jobs, proc.stdout, secs


def _size(path: str) -> tuple[int, int]:
    w, h = re.search(r"_(\d+)x(\d+)_", path).groups()
    return int(w), int(h)


def extrapolate(jobs: dict, stdout: str, factor: dict) -> dict:
    """Per-item rules (encode, evaluate_*) scaled by what each item stands for; the others as counted."""
    per: dict = defaultdict(float)
    for _codec, path, *_ in ENCODE_RE.findall(stdout):
        per["encode"] += factor.get(Path(path).name, 1.0)
    for orig in re.findall(r"inloop evaluate --original '?([^' ]+)'? (?!.*--model)", stdout):
        per["evaluate_codec"] += factor.get(Path(orig).name, 1.0)
    for orig, *_ in EVAL_RE.findall(stdout):
        per["evaluate_model"] += factor.get(Path(orig).name, 1.0)
    out = {k: (round(per[k]) if k in per else v) for k, v in jobs.items() if k != "total"}
    out["total"] = sum(out.values())
    return out


def speeds(files: list[str]) -> dict:
    """(codec, config) -> encoder seconds per megapixel-frame, mean over the QPs and filter settings measured."""
    out: dict = defaultdict(list)
    for f in files:
        c = json.loads(Path(f).read_text())["codec"]
        for r in c["rows"]:
            out[(c["codec"], r["config"])].append(r["encode_s"] / (c["width"] * c["height"] * r["frames"] / 1e6))
    return {k: sum(v) / len(v) for k, v in out.items()}


# --------------------------------------------------------------------------- what one network costs


def scored_frames(params: dict, coded: int) -> int:
    """Frames of a clip of ``coded`` frames that the evaluate stage scores, and so the frames the plan has the
    network enhance: params ``evaluate.frames`` (0-based indices, negative from the end; null = every frame).
    NL-ConvLSTM 4.1 on Vimeo-90K: "only evaluate the 4th frame of each clip" (``[3]``): 1 of 7."""
    indices = (params.get("evaluate") or {}).get("frames")
    if not indices:
        return coded
    bad = [i for i in indices if not -coded <= int(i) < coded]
    if bad:
        raise SystemExit(f"evaluate.frames {list(indices)}: index {bad[0]} is outside a clip of {coded} frame(s)")
    return len({int(i) % coded for i in indices})


def interp_ms(points: list[tuple[float, float]], pixels: float) -> float:
    """ms per frame at ``pixels`` from measured (pixels, ms) points: piecewise linear between them, proportional
    to the pixels below the smallest, the last segment's slope above the largest (one point: proportional)."""
    pts = sorted(points)
    if len(pts) == 1 or pixels <= pts[0][0]:
        p, ms = pts[0] if pixels <= pts[0][0] else pts[-1]
        return ms * pixels / p
    for (p0, m0), (p1, m1) in zip(pts, pts[1:]):
        if pixels <= p1:
            return m0 + (m1 - m0) * (pixels - p0) / (p1 - p0)
    (p0, m0), (p1, m1) = pts[-2], pts[-1]
    return m1 + (m1 - m0) * (pixels - p1) / (p1 - p0)


@lru_cache(maxsize=None)
def table5_points() -> tuple[tuple[float, float], ...]:
    """NL-ConvLSTM Table 5 (002 section 4.5): the approximate method's run time per frame, (pixels, ms), from the
    claims registry (the unit is not printed; ms, as the values grow with the frame)."""
    from inloop.reporting.claims import load_claims

    t = load_claims("nlconvlstm")["tables"]["5"]
    ours = next(r for r in t["rows"] if r.get("model") == "nlconvlstm")
    return tuple((float(w) * float(h), float(ms)) for (w, h), ms in
                 ((c.split("x"), v) for c, v in zip(t["columns"], ours["values"])))


@dataclass
class Basis:
    """How one network's GPU time is priced, per phase: ``infer`` (seconds per luma output frame) and ``train``
    (seconds per step), each with a sentence saying where the number comes from."""

    infer_points: list | None  # (pixels, ms per frame) measured or Table 5; None = FLOPs at the assumed MFU
    infer_text: str
    train_step: tuple | None  # (seconds, batch, patch) measured; None: per-pixel (Table 5) or FLOPs
    train_per_pixel: bool  # training from the inference per-pixel rate (x 3 for forward + backward)
    train_text: str
    peak_tflops: float
    mfu: float
    ratio: float = 1.0  # an ablation variant's MACs over the measured network's (Table 5: the full method)

    def infer_seconds(self, w: int, h: int, frame_flops: float) -> float:
        if self.infer_points:
            return self.ratio * interp_ms(self.infer_points, w * h) / 1e3
        return frame_flops / (self.peak_tflops * 1e12 * self.mfu)

    def step_seconds(self, batch: int, patch: int, step_flops: float) -> float:
        if self.train_step:
            s, b, p = self.train_step
            return s * (batch * patch * patch) / (b * p * p)
        if self.train_per_pixel and self.infer_points:
            return 3.0 * batch * self.ratio * interp_ms(self.infer_points, patch * patch) / 1e3
        return step_flops / (self.peak_tflops * 1e12 * self.mfu)


@lru_cache(maxsize=None)
def _param_count(arch: str, kwargs_json: str) -> int:
    import torch

    with torch.device("meta"):
        net = build_model(arch, **json.loads(kwargs_json))
    return sum(p.numel() for p in net.parameters())


def _count(arch: str, kwargs: dict) -> int:
    return _param_count(arch, json.dumps(kwargs, sort_keys=True))


def _gpu(row: dict, result: dict) -> bool:
    dev = str(row.get("device") or (result.get("machine") or {}).get("device") or "")
    return dev.startswith("cuda")


def network_basis(arch: str, kwargs: dict, bench: dict, peak_tflops: float, mfu: float) -> Basis:
    """The basis of one configured network's GPU time (module docstring, point 2). ``bench``: ``inloop bench``
    result files, {path: result}; a GPU row counts for this network when its architecture and parameter count
    are this network's (the bench's paper preset builds the constructors' defaults)."""
    n = _count(arch, kwargs)
    assumed = (f"assumed: {mfu:.0%} of a {peak_tflops:g} TFLOP/s dense bf16 peak (no GPU row for this network in "
               f"{', '.join(Path(p).name for p in bench) or 'any bench file'})")
    infer_pts, infer_text, train_step, train_text = None, assumed, None, assumed
    for path, res in bench.items():
        where = f"measured: {Path(path).name} ({(res.get('machine') or {}).get('device_name', 'GPU')}"
        rows = [r for r in res.get("inference") or [] if _gpu(r, res) and r.get("arch") == arch
                and r.get("mode") == "whole" and r.get("ms_per_frame") and _count(arch, r.get("kwargs") or {}) == n]
        if rows and infer_pts is None:
            infer_pts = [(float(w) * float(h), float(r["ms_per_frame"]))
                         for r in rows for w, h in [r["size"].split("x")]]
            infer_text = f"{where}, whole frames at {', '.join(r['size'] for r in rows)}, amp {rows[0].get('amp')})"
        steps = [r for r in res.get("training") or [] if _gpu(r, res) and r.get("arch") == arch and r.get("step_ms")
                 and _count(arch, r.get("kwargs") or {}) == n]
        if steps and train_step is None:
            r = steps[0]
            train_step = (float(r["step_ms"]) / 1e3, int(r["batch"]), int(r["patch"]))
            train_text = (f"{where}, {r['step_ms']:.0f} ms per step of {r['batch']} x {r['patch']}², scaled to the "
                          "configured batch and patch)")
    per_pixel, ratio = False, 1.0
    if arch == "nlconvlstm" and (infer_pts is None or train_step is None):
        table5 = ("NL-ConvLSTM Table 5 (002 section 4.5): the paper's own ms per frame on the authors' GPU (not "
                  "named in the text), interpolated in pixels between its sizes")
        full = {**kwargs, "mode": "nlconvlstm"}
        if kwargs.get("mode", "nlconvlstm") != "nlconvlstm":  # an ablation variant: scaled by its MACs
            ratio = (frame_macs(build_model(arch, **kwargs), (240, 416))
                     / frame_macs(build_model(arch, **full), (240, 416)))
            table5 += f", x {ratio:.2f} (this mode's MACs over the full method's at 416x240)"
        if infer_pts is None:
            infer_pts, infer_text = list(table5_points()), table5
        if train_step is None:
            per_pixel = True
            train_text = table5 + "; a step = 3 x the forward of the batch's patches at Table 5's per-pixel rate"
    return Basis(infer_pts, infer_text, train_step, per_pixel, train_text, peak_tflops, mfu, ratio)


# --------------------------------------------------------------------------- the plan


def plan(config, stdout: str, params: dict, speed: dict, peak: float, mfu: float, frames: dict, factor: dict,
         bench: dict | None = None, models: list[str] | None = None) -> dict:
    """Encode volume and CPU-hours, and per network training and inference GPU-hours, of one dry run.

    ``frames``: each original YUV file's frame count (the manifests); encode.frames caps what is coded and
    evaluate.frames picks what is scored, and only the scored frames are priced as enhanced
    (``infer_gpu_h``; ``infer_gpu_h_all_coded``: every coded frame filtered). ``factor``: per original file,
    what one item of a scaled-down root stands for (1 at full shape). ``bench``: ``inloop bench`` results
    {path: result} (GPU rows are used where they exist, :func:`network_basis`). ``models``: the networks to
    price (default ``train.models``; an ablation plan prices the networks it adds)."""
    bench = bench or {}
    enc_mpf: dict = defaultdict(float)
    for codec, path, cfg, _filters, n in ENCODE_RE.findall(stdout):
        w, h = _size(path)
        enc_mpf[(codec, cfg)] += w * h * int(n) / 1e6 * factor.get(Path(path).name, 1.0)
    cpu_h = {k: v * speed[k] / 3600 if k in speed else None for k, v in enc_mpf.items()}
    models = list(params["train"]["models"] if models is None else models)
    cap = params["encode"]["frames"]
    rows = {}
    for m in models:
        spec = model_spec(params, m)
        t = spec["train"]
        patch, batch, steps = int(t["patch_size"]), int(t["batch_size"]), int(t["steps"])
        cost = model_costs(spec["arch"], spec["kwargs"], sizes=[f"{patch}x{patch}"])
        mpp = cost["per_size"][0]["macs_per_pixel"]
        networks = len(spec["qps"]) * len(spec["configs"])
        step_flops = 6.0 * mpp * patch * patch * batch
        basis = network_basis(spec["arch"], spec["kwargs"], bench, peak, mfu)
        share = sum(PLANES[p] for p in t.get("planes", ["y"]))
        rows[m] = {"model": m, "arch": spec["arch"], "params": cost["params"], "macs_per_pixel": mpp,
                   "networks": networks, "steps": steps, "batch": batch, "patch": patch,
                   "train_pflop": step_flops * steps * networks / 1e15,
                   "train_gpu_h": basis.step_seconds(batch, patch, step_flops) * steps * networks / 3600,
                   "train_gpu_h_flops": step_flops * steps * networks / (peak * 1e12 * mfu) / 3600,
                   "train_basis": basis.train_text, "infer_basis": basis.infer_text,
                   "eval_jobs": 0.0, "frames_coded": 0.0, "frames_enhanced": 0.0, "infer_flops": 0.0,
                   "infer_gpu_h": 0.0, "infer_gpu_h_all_coded": 0.0, "infer_gpu_h_flops": 0.0,
                   "_basis": basis, "_net": build_model(spec["arch"], **spec["kwargs"]), "_share": share, "_macs": {}}
    for orig, cfg, m in EVAL_RE.findall(stdout):
        if m not in rows:
            continue
        r = rows[m]
        w, h = _size(orig)
        if (w, h) not in r["_macs"]:
            r["_macs"][(w, h)] = frame_macs(r["_net"], (h, w))
        f = factor.get(Path(orig).name, 1.0)
        coded = min(frames.get(Path(orig).name, 1), int(cap[cfg]))
        scored = scored_frames(params, coded)
        flops = 2.0 * r["_macs"][(w, h)]  # one luma frame
        sec = r["_basis"].infer_seconds(w, h, flops) * r["_share"]
        r["eval_jobs"] += f
        r["frames_coded"] += coded * f
        r["frames_enhanced"] += scored * f
        r["infer_flops"] += flops * r["_share"] * scored * f
        r["infer_gpu_h"] += sec * scored * f / 3600
        r["infer_gpu_h_all_coded"] += sec * coded * f / 3600
        r["infer_gpu_h_flops"] += flops * r["_share"] * scored * f / (peak * 1e12 * mfu) / 3600
    out_rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows.values()]
    total = lambda k: sum(r[k] for r in out_rows)  # noqa: E731
    return {"encode_mpixel_frames": dict(enc_mpf), "encode_cpu_h": cpu_h,
            "train_flops": total("train_pflop") * 1e15, "infer_flops": total("infer_flops"),
            "train_gpu_h": total("train_gpu_h"), "infer_gpu_h": total("infer_gpu_h"),
            "infer_gpu_h_all_coded": total("infer_gpu_h_all_coded"),
            "gpu_h": total("train_gpu_h") + total("infer_gpu_h"),
            "gpu_h_flops": total("train_gpu_h_flops") + total("infer_gpu_h_flops"),
            "infer_frames": total("frames_enhanced"), "infer_frames_coded": total("frames_coded"), "models": out_rows}


def load_bench(files: list[str]) -> dict:
    """``inloop bench`` result files that time networks (inference or training rows): {path: result}."""
    out = {}
    for f in files:
        res = json.loads(Path(f).read_text())
        if res.get("inference") or res.get("training"):
            out[str(f)] = res
    return out


def write_keeping_rehearsals(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, keeping a line ``<!-- rehearsals -->`` of the file already there and
    everything after it as it is (the rehearsals' section is not this script's)."""
    kept = ""
    if path.is_file():
        old = path.read_text()
        at = re.search(rf"^{re.escape(MARKER)}[ \t]*$", old, re.M)
        if at:
            kept = old[at.start():]
    path.write_text(text.rstrip("\n") + "\n\n" + kept if kept else text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=list(PLANS), help=f"plans; known: {', '.join(PLANS)}")
    ap.add_argument("--speeds", nargs="+", required=True, help="`inloop bench --codec` result JSONs")
    ap.add_argument("--bench", nargs="*", default=sorted(str(p) for p in (REPO / "docs" / "benchmarks").glob("*.json")),
                    help="`inloop bench` result JSONs whose GPU rows price the networks they time")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the assumed GPU (H100/H200)")
    ap.add_argument("--mfu", type=float, default=0.3, help="assumed model FLOP utilisation (networks without a basis)")
    ap.add_argument("--scale", nargs="*", default=[], metavar="CONFIG=S",
                    help="dry-run CONFIG on a root scaled to S and extrapolate its per-item jobs and volumes per "
                         "split (for Vimeo-90K's 72,436 clips, whose full DAG takes Snakemake hours)")
    ap.add_argument("--out", default="docs/paper-shapes.md")
    args = ap.parse_args()
    unknown = [c for c in args.configs if c not in PLANS]
    if unknown:
        raise SystemExit(f"unknown plan {unknown[0]!r}; known: {', '.join(PLANS)}")
    sp = speeds(args.speeds)
    bench = load_bench(args.bench)
    results = {}
    scales = dict(x.split("=") for x in args.scale)
    for name in args.configs:
        configs, datasets, base = PLANS[name]
        params = merged_params(configs)
        scale = float(scales.get(name, 1.0))
        added = None
        if base:
            before = merged_params(PLANS[base][0])["train"]["models"]
            added = [m for m in params["train"]["models"] if m not in before]
        with tempfile.TemporaryDirectory(prefix=f"plan-{name}-") as tmp:
            jobs, stdout, secs = dry_run(name, Path(tmp), scale)
            frames, factor = {}, {}
            for ds in datasets:
                clips = json.loads((Path(tmp) / "results" / "data" / ds / "manifest.json").read_text())["clips"]
                frames.update({Path(c["path"]).name: int(c["frames"]) for c in clips})
                if scale < 1:  # each split's items stand for full / scaled of them
                    from inloop.datasets.registry import REGISTRY

                    full = REGISTRY[ds].counts
                    have = {sp_: sum(c["split"] == sp_ for c in clips) for sp_ in full}
                    factor.update({Path(c["path"]).name: full[c["split"]] / have[c["split"]] for c in clips})
            if scale < 1:
                jobs = extrapolate(jobs, stdout, factor)
            res = plan(name, stdout, params, sp, args.peak_tflops, args.mfu, frames, factor, bench, added)
            res.update(jobs=jobs, dry_run_s=secs, scale=scale, configs=configs, base=base, added=added)
            results[name] = res
            print(f"{name}: {sum(v for k, v in jobs.items() if k != 'total')} jobs, dry run {secs:.0f} s, "
                  f"{res['gpu_h']:,.1f} GPU-hours", flush=True)
    write_keeping_rehearsals(Path(args.out), markdown(results, sp, bench, args))
    print(f"wrote {args.out}")
    return 0


def _h(x: float) -> str:
    return f"{x:,.0f}" if x >= 10 else f"{x:,.2f}"


def markdown(results: dict, sp: dict, bench: dict, args) -> str:
    gpu_rows = any(_gpu(r, res) for res in bench.values() for r in (res.get("inference") or []) +
                   (res.get("training") or []))
    lines = ["# The paper configs at full shape: DAG job counts and a cost plan", "",
             "Written by `benchmarks/paper_plan.py` (" + " ".join(Path(s).name for s in args.speeds) + "; "
             "network timings from " + (" ".join(Path(b).name for b in bench) or "no bench file") + "). Each "
             "plan's DAG is `snakemake -n -p all` over a synthetic data root with the paper's dataset names, "
             "sizes and counts (`inloop.datasets.shapes`), the ablation configs merged over their paper config; "
             "`tests/test_paper_configs.py` checks the same counts on scaled-down roots in every test run.", "",
             "GPU-hours are priced per network on the basis named in its row: a GPU row of the bench files where "
             "one exists for that network; " + ("" if gpu_rows else "there is none (no GPU was lent to the session "
             "that wrote this), so ") + "NL-ConvLSTM stands on the paper's own Table 5 (ms per frame by frame size "
             "on the authors' GPU: its top-k gather and non-local matching are memory-bound, so no FLOP "
             f"utilisation prices them) and every other network on an assumed {args.mfu:.0%} of a "
             f"{args.peak_tflops:g} TFLOP/s dense bf16 peak: an assumption, not a measurement "
             "(`inloop bench --device cuda --train` measures it and this script then uses it). The FLOP figure at "
             "that assumed utilisation is shown next to every network for comparison. Only the frames each paper "
             "scores are priced as enhanced (`evaluate.frames`: NL-ConvLSTM 4.1 scores the 4th frame of each "
             "Vimeo-90K clip); the cost of filtering every coded frame is given beside it. Training compute is the "
             "trained networks' forward MACs x 3 (forward and backward) x 2, SPiLF's generator only (its "
             "discriminator and the LPIPS network in stage 2 add to it). Encode CPU-hours are single-thread encodes "
             "at the speeds measured on the development machine's 2-core AMD EPYC (seconds per megapixel-frame, "
             "mean over QP 22-37):", ""]
    lines += ["| codec | configuration | s per megapixel-frame |", "|---|---|---:|"]
    lines += [f"| {c} | {cfg.upper()} | {v:.2f} |" for (c, cfg), v in sorted(sp.items())]
    lines += [""]
    lines += ["| plan | GPU-hours (training + enhancing the scored frames) | of which training | encode CPU-hours |",
              "|---|---:|---:|---:|"]
    for name, r in results.items():
        cpu = sum(h for h in r["encode_cpu_h"].values() if h is not None)
        lines.append(f"| `{name}`{' (added to the base)' if r['base'] else ''} | {_h(r['gpu_h'])} | "
                     f"{_h(r['train_gpu_h'])} | " + ("reused from the base" if r["base"] else _h(cpu)) + " |")
    lines += [""]
    for name, r in results.items():
        how = (f"Dry run: {r['dry_run_s']:.0f} s on the 2-core machine." if r["scale"] == 1 else
               f"Dry run on a root scaled to {r['scale']:g} of every split ({r['dry_run_s']:.0f} s); the per-item "
               "rules (encode, evaluate) and the volumes below are that run's, each item counted for the items "
               "of its split it stands for (the full DAG takes Snakemake hours to build).")
        files = " ".join(f"--configfile config/{c}.yaml" for c in r["configs"])
        lines += [f"## `{name}`", "", f"`snakemake all {files}`. {how}", ""]
        if r["base"]:
            lines += [f"The ablation merged over `{r['base']}`: the jobs below are the merged DAG's; everything "
                      f"the base made is reused, and the cost is that of the networks the ablation adds "
                      f"({', '.join(r['added'])}).", ""]
            base_jobs = results.get(r["base"], {}).get("jobs", {})
            lines += ["| rule | jobs | more than the base |", "|---|---:|---:|"]
            lines += [f"| {k} | {v:,} | " + (f"{v - base_jobs[k]:+,}" if k in base_jobs else "") + " |"
                      for k, v in r["jobs"].items()]
        else:
            lines += ["| rule | jobs |", "|---|---:|"]
            lines += [f"| {k} | {v:,} |" for k, v in r["jobs"].items()]
        lines += ["", "| what | amount |", "|---|---:|"]
        if not r["base"]:
            for (codec, cfg), mpf in sorted(r["encode_mpixel_frames"].items()):
                h = r["encode_cpu_h"].get((codec, cfg))
                lines.append(f"| {codec} {cfg.upper()} encodes | {mpf:,.0f} megapixel-frames, "
                             + (f"{h:,.0f} CPU-hours" if h is not None else "no speed measured") + " |")
        lines += [f"| training | {r['train_flops'] / 1e18:,.2f} EFLOP, {_h(r['train_gpu_h'])} GPU-hours |",
                  f"| frames enhanced (scored) / coded | {r['infer_frames']:,.0f} / {r['infer_frames_coded']:,.0f} |",
                  f"| enhancing the scored frames | {r['infer_flops'] / 1e15:,.1f} PFLOP, "
                  f"{_h(r['infer_gpu_h'])} GPU-hours |",
                  f"| enhancing every coded frame instead | {_h(r['infer_gpu_h_all_coded'])} GPU-hours |",
                  f"| GPU-hours (training + scored frames) | {_h(r['gpu_h'])} |",
                  f"| the same at the assumed {args.mfu:.0%} FLOP utilisation for every network | "
                  f"{_h(r['gpu_h_flops'])} |", "",
                  "| model | parameters | MACs/pixel (training patch) | networks | steps x batch x patch² | training "
                  "PFLOP | training GPU-h | at assumed MFU | enhancing GPU-h (scored frames) | at assumed MFU |",
                  "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {m['model']} ({m['arch']}) | {m['params']:,} | {m['macs_per_pixel']:,.0f} | {m['networks']} | "
                  f"{m['steps']:,} x {m['batch']} x {m['patch']}² | {m['train_pflop']:,.0f} | {_h(m['train_gpu_h'])} | "
                  f"{_h(m['train_gpu_h_flops'])} | {_h(m['infer_gpu_h'])} | {_h(m['infer_gpu_h_flops'])} |"
                  for m in r["models"]]
        lines += [""] + basis_lines(r["models"]) + [""]
    return "\n".join(lines) + "\n"


def basis_lines(models: list[dict]) -> list[str]:
    """One line per distinct basis: the networks it prices, then where enhancing's and training's times come from."""
    groups: dict = {}
    for m in models:
        groups.setdefault((m["infer_basis"], m["train_basis"]), []).append(m["model"])
    out = []
    for (infer, train), names in groups.items():
        who = ", ".join(names)
        if train == infer:
            out.append(f"- {who}: training and enhancing: {infer}.")
        elif train.startswith(infer):
            out.append(f"- {who}: enhancing: {infer}; training: the same{train[len(infer):]}.")
        else:
            out.append(f"- {who}: training: {train}; enhancing: {infer}.")
    return out


if __name__ == "__main__":
    sys.exit(main())
