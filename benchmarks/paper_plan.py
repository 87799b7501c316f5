"""Job counts and a cost plan per paper config: writes docs/paper-shapes.md (issue #15).

For each ``config/paper-*.yaml``:

1. a synthetic data root at the paper's dataset shapes (:mod:`inloop.datasets.shapes`: real names, sizes
   and counts, empty files) in a copy of the workflow, and ``snakemake -n -p all --configfile ...`` over
   it: the job count per rule, and every encode command (codec, configuration, frame size, frames);
2. training compute: each trained model's MACs per output pixel (:func:`inloop.bench.model_costs`, at
   its training patch) x 3 (forward and backward) x 2 (FLOPs per MAC) x patch pixels x batch x steps;
   inference compute for every evaluate_model job (frames x pixels x MACs at that frame size x 2);
3. GPU-hours at an assumed dense bf16 peak and model FLOP utilisation (``--peak-tflops``, ``--mfu``:
   stated in the output, not measured unless a GPU benchmark says so);
4. encode CPU-hours (one thread per encode, as the encode rule runs them) from measured encoder speed
   (``inloop bench --codec --codec-name NAME`` result files: seconds per megapixel-frame per
   configuration, the mean over the QPs measured).

    python benchmarks/paper_plan.py --speeds docs/benchmarks/encode-*.json --out docs/paper-shapes.md

Slow: the Vimeo-90K config has ~160k encode jobs, and Snakemake builds that DAG in minutes.
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
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from inloop.bench import frame_macs, model_costs  # noqa: E402
from inloop.datasets.shapes import write_shape  # noqa: E402
from inloop.models import build_model  # noqa: E402
from inloop.params import _deep_merge, model_spec  # noqa: E402

PAPER_DATASETS = {
    "paper-glfusion": ("div2k", "flickr2k", "xiph-derf", "jctvc-ctc"),
    "paper-spilf": ("div2k", "clic2022-valid"),
    "paper-nlconvlstm-vimeo": ("vimeo90k-septuplet",),
    "paper-nlconvlstm-yang": ("mfqe-yang",),
}
ENCODE_RE = re.compile(r"inloop encode --codec '?(\w+)'? --in '?([^' ]+)'? .*?--config '?(\w+)'? --filters '?(\w+)'?"
                       r" --frames '?(\d+)'?")
EVAL_RE = re.compile(r"inloop evaluate --original '?([^' ]+)'? --anchor-stats '?results/encoded/\w+/(\w+)/.*?"
                     r"--model '?results/models/([^/]+)/")


def dry_run(config: str, workdir: Path, scale: float = 1.0) -> tuple[dict, str, float]:
    for item in ("Snakefile", "params.yaml", "config", "workflow", "envs"):
        src = REPO / item
        shutil.copytree(src, workdir / item) if src.is_dir() else shutil.copy2(src, workdir / item)
    for ds in PAPER_DATASETS[config]:
        write_shape(ds, workdir / "results" / "data", scale=scale)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "all", "--configfile",
                           f"config/{config}.yaml", "--cores", "8"], cwd=workdir, capture_output=True, text=True)
    secs = time.monotonic() - t0
    if proc.returncode:
        raise SystemExit(f"{config}: snakemake -n failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
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


def plan(config: str, stdout: str, params: dict, speed: dict, peak: float, mfu: float, frames: dict,
         factor: dict) -> dict:
    """Encode volume and CPU-hours, training and inference FLOPs and GPU-hours of one dry run.
    ``frames``: each original YUV file's frame count (the manifests); encode.frames caps what is coded.
    ``factor``: per original file, what one item of a scaled-down root stands for (1 at full shape)."""
    enc_mpf: dict = defaultdict(float)
    for codec, path, cfg, _filters, n in ENCODE_RE.findall(stdout):
        w, h = _size(path)
        enc_mpf[(codec, cfg)] += w * h * int(n) / 1e6 * factor.get(Path(path).name, 1.0)
    cpu_h = {k: v * speed[k] / 3600 if k in speed else None for k, v in enc_mpf.items()}
    train_flops, rows = 0.0, []
    for m in params["train"]["models"]:
        spec = model_spec(params, m)
        t = spec["train"]
        patch, batch, steps = int(t["patch_size"]), int(t["batch_size"]), int(t["steps"])
        cost = model_costs(spec["arch"], spec["kwargs"], sizes=[f"{patch}x{patch}"])
        mpp = cost["per_size"][0]["macs_per_pixel"]
        models = len(spec["qps"]) * len(spec["configs"])
        f = 6.0 * mpp * patch * patch * batch * steps * models
        train_flops += f
        rows.append({"model": m, "arch": spec["arch"], "params": cost["params"], "macs_per_pixel": mpp,
                     "networks": models, "steps": steps, "batch": batch, "patch": patch, "train_pflop": f / 1e15})
    infer_flops = 0.0
    nets: dict = {}
    cap = params["encode"]["frames"]
    for orig, cfg, m in EVAL_RE.findall(stdout):
        spec = model_spec(params, m)
        w, h = _size(orig)
        key = (m, w, h)
        if key not in nets:
            nets[key] = frame_macs(build_model(spec["arch"], **spec["kwargs"]), (h, w))
        planes = {"y": 1.0, "u": 0.25, "v": 0.25}
        share = sum(planes[p] for p in spec["train"].get("planes", ["y"]))
        infer_flops += (2.0 * nets[key] * share * min(frames.get(Path(orig).name, 1), int(cap[cfg]))
                        * factor.get(Path(orig).name, 1.0))
    gpu_h = (train_flops + infer_flops) / (peak * 1e12 * mfu) / 3600
    return {"encode_mpixel_frames": dict(enc_mpf), "encode_cpu_h": cpu_h, "train_flops": train_flops,
            "infer_flops": infer_flops, "gpu_h": gpu_h, "models": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=sorted(PAPER_DATASETS))
    ap.add_argument("--speeds", nargs="+", required=True, help="`inloop bench --codec` result JSONs")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the assumed GPU (H200)")
    ap.add_argument("--mfu", type=float, default=0.3, help="assumed model FLOP utilisation")
    ap.add_argument("--scale", nargs="*", default=[], metavar="CONFIG=S",
                    help="dry-run CONFIG on a root scaled to S and extrapolate its per-item jobs and volumes per "
                         "split (for Vimeo-90K's 72,436 clips, whose full DAG takes Snakemake hours)")
    ap.add_argument("--out", default="docs/paper-shapes.md")
    args = ap.parse_args()
    sp = speeds(args.speeds)
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    results = {}
    for config in args.configs:
        params = _deep_merge(base, yaml.safe_load((REPO / "config" / f"{config}.yaml").read_text()))
        scale = dict(x.split("=") for x in args.scale).get(config)
        scale = float(scale) if scale else 1.0
        with tempfile.TemporaryDirectory(prefix=f"plan-{config}-") as tmp:
            jobs, stdout, secs = dry_run(config, Path(tmp), scale)
            frames, factor = {}, {}
            for ds in PAPER_DATASETS[config]:
                clips = json.loads((Path(tmp) / "results" / "data" / ds / "manifest.json").read_text())["clips"]
                frames.update({c["path"]: int(c["frames"]) for c in clips})
                if scale < 1:  # each split's items stand for full / scaled of them
                    from inloop.datasets.registry import REGISTRY

                    full = REGISTRY[ds].counts
                    have = {sp_: sum(c["split"] == sp_ for c in clips) for sp_ in full}
                    factor.update({c["path"]: full[c["split"]] / have[c["split"]] for c in clips})
            if scale < 1:
                jobs = extrapolate(jobs, stdout, factor)
            res = plan(config, stdout, params, sp, args.peak_tflops, args.mfu, frames, factor)
            res.update(jobs=jobs, dry_run_s=secs, scale=scale)
            results[config] = res
            print(f"{config}: {sum(v for k, v in jobs.items() if k != 'total')} jobs, dry run {secs:.0f} s", flush=True)
    Path(args.out).write_text(markdown(results, sp, args))
    print(f"wrote {args.out}")
    return 0


def markdown(results: dict, sp: dict, args) -> str:
    lines = ["# The paper configs at full shape: DAG job counts and a cost plan", "",
             "Written by `benchmarks/paper_plan.py` (" + " ".join(Path(s).name for s in args.speeds) + "). Each "
             "config's DAG is `snakemake -n -p all` over a synthetic data root with the paper's dataset names, "
             "sizes and counts (`inloop.datasets.shapes`); `tests/test_paper_configs.py` checks the same counts on "
             "scaled-down roots in every test run.", "",
             f"GPU-hours assume a dense bf16 peak of {args.peak_tflops:g} TFLOP/s (an H200) at {args.mfu:.0%} model "
             "FLOP utilisation: an assumption, not a measurement (no GPU was lent to the session that wrote this; "
             "`inloop bench --device cuda --train` measures the MFU). Training compute is the trained networks' "
             "forward MACs x 3 (forward and backward) x 2, SPiLF's generator only (its discriminator and the LPIPS "
             "network in stage 2 add to it). Encode CPU-hours are single-thread encodes at the speeds measured on "
             "the development machine's 2-core AMD EPYC (seconds per megapixel-frame, mean over QP 22-37):", ""]
    lines += ["| codec | configuration | s per megapixel-frame |", "|---|---|---:|"]
    lines += [f"| {c} | {cfg.upper()} | {v:.2f} |" for (c, cfg), v in sorted(sp.items())]
    lines += [""]
    for config, r in results.items():
        how = (f"Dry run: {r['dry_run_s']:.0f} s on the 2-core machine." if r["scale"] == 1 else
               f"Dry run on a root scaled to {r['scale']:g} of every split ({r['dry_run_s']:.0f} s); the per-item "
               "rules (encode, evaluate) and the volumes below are that run's, each item counted for the items "
               "of its split it stands for (the full DAG takes Snakemake hours to build).")
        lines += [f"## `config/{config}.yaml`", "", how, "",
                  "| rule | jobs |", "|---|---:|"]
        lines += [f"| {k} | {v:,} |" for k, v in r["jobs"].items()]
        lines += ["", "| what | amount |", "|---|---:|"]
        for (codec, cfg), mpf in sorted(r["encode_mpixel_frames"].items()):
            h = r["encode_cpu_h"].get((codec, cfg))
            lines.append(f"| {codec} {cfg.upper()} encodes | {mpf:,.0f} megapixel-frames, "
                         + (f"{h:,.0f} CPU-hours" if h is not None else "no speed measured") + " |")
        lines += [f"| training | {r['train_flops'] / 1e18:,.2f} EFLOP |",
                  f"| inference (evaluation) | {r['infer_flops'] / 1e15:,.1f} PFLOP |",
                  f"| GPU-hours (training + inference) | {r['gpu_h']:,.0f} |", "",
                  "| model | parameters | MACs/pixel (training patch) | networks | steps x batch x patch² | training PFLOP |",
                  "|---|---:|---:|---:|---|---:|"]
        lines += [f"| {m['model']} ({m['arch']}) | {m['params']:,} | {m['macs_per_pixel']:,.0f} | {m['networks']} | "
                  f"{m['steps']:,} x {m['batch']} x {m['patch']}² | {m['train_pflop']:,.0f} |" for m in r["models"]]
        lines += [""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
