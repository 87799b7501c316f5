"""Rehearsals of the paper configs (issue #26): the run a researcher will spend GPU-days on, with only the
counts capped, run end to end on a CPU before anyone does.

``inloop rehearse config/paper-X.yaml [config/ablation.yaml] --dir D`` copies the workflow into ``D``, writes
a data root with each of the config's datasets at the paper's names, splits and frame sizes and real pixels
(:func:`inloop.datasets.shapes.write_rehearsal`: photographs converted by the pipeline's own FFmpeg step), an
overlay config of caps (:func:`overlay`), and runs ``snakemake all`` over the paper config(s) and the overlay:
the same rules, the networks at the papers' widths, the papers' tiling decisions, evaluation, claims matching
and report. What the overlay changes, besides counts:

* the codec: the papers' HM / ECM when their binaries are configured (``--codec config``), else x265 stands
  in (``--codec x265``, the default), with the QPs x265 cannot code (above 51) left out;
* the device: the CPU (``device: cpu``, ``gpus: 0``, bf16 only where the CPU has it natively, no
  ``torch.compile``);

and each of these is written into the report's deviations for the paper, next to its claims. Every rule's
peak memory and time come from Snakemake's ``benchmark:`` files (``inloop.paths.JOB_BENCH``), summarised by
:func:`job_resources`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from . import paths
from .errors import InloopError
from .fsutil import write_json
from .params import merge_configs, model_spec

# The caps: a few items per split, a few frames per clip, a few training steps of small batches.
CAPS = {"per_split": 1, "frames": 2, "steps": 2, "batch_size": 2, "patches_per_frame": 1,
        "max_frames_per_source": 1, "qps": 4, "max_pixels": None}
X265_MAX_QP = 51
WORKFLOW_ITEMS = ("Snakefile", "params.yaml", "config", "workflow", "envs")
PAPERS = {"glfusion": "glfusion", "spilf": "spilf", "nlconvlstm": "nlconvlstm"}


def merged_config(configs: list[str | os.PathLike], params_path: str | os.PathLike) -> dict:
    """params.yaml with the configs merged over it, as Snakemake's ``--configfile`` merges them."""
    return merge_configs(configs, params_path)


def _spread(values: list[int], n: int) -> list[int]:
    """``n`` of ``values`` spread from the first to the last (all of them when there are no more)."""
    if len(values) <= n:
        return list(values)
    return [values[round(i * (len(values) - 1) / (n - 1))] for i in range(n)] if n > 1 else [values[-1]]


def paper_of(merged: dict) -> str:
    """The paper a config reproduces, from its networks (the key of ``report.deviations``)."""
    archs = {model_spec(merged, m)["arch"] for m in merged["train"]["models"]}
    for arch in ("glfusion", "spilf", "nlconvlstm"):
        if arch in archs:
            return arch
    raise InloopError(f"no paper network among train.models {merged['train']['models']}")


def overlay(merged: dict, codec: str = "x265", caps: dict | None = None, cores: int = 2) -> dict:
    """The caps over a merged paper config: the settings a rehearsal changes, nothing else. Memory asks are
    clamped to this machine (a capped training needs little: a share of it per core; an evaluation keeps its
    paper-size ask up to the whole machine, so the large ones run one at a time)."""
    caps = {**CAPS, **(caps or {})}
    steps = caps["steps"]
    enc = merged["encode"]
    codec = enc["codec"] if codec == "config" else codec
    qps = [q for q in enc["qps"] if codec != "x265" or q <= X265_MAX_QP]
    qps = _spread(sorted(qps), caps["qps"])
    frames = clip_frames(merged, caps)
    train_caps = {"steps": steps, "batch_size": caps["batch_size"], "patches_per_frame": caps["patches_per_frame"],
                  "max_frames_per_source": caps["max_frames_per_source"], "checkpoint_every": steps,
                  "val_every": steps, "log_every": 1}
    models = {}
    for m in merged["train"]["models"]:
        spec = model_spec(merged, m)
        block: dict = {"train": dict(train_caps)}
        window = int(spec["kwargs"].get("frames", 1))  # a clip network's targets need T frames of a source
        block["train"]["max_frames_per_source"] = max(caps["max_frames_per_source"], window)
        own = (merged["models"].get(m) or {}).get("qps")
        if own is not None:
            block["qps"] = [q for q in own if q in qps] or qps[-1:]
        if spec["arch"] == "spilf":  # both SPiLF stages, and the plateau watched every step
            block["train"]["spilf"] = {"stage1_steps": max(1, steps // 2), "plateau_window": 1}
        models[m] = block
    mem = machine_mb()  # a job that asks for more than this machine has runs alone (Snakemake's --resources)
    ev = merged.get("evaluate") or {}
    over = {
        "encode": {"codec": codec, "qps": qps, "frames": {c: frames for c in ("ai", "ldp", "ra")}},
        "train": {**train_caps, "device": "cpu", "gpus": 0, "threads": 1, "compile": False, "amp_bf16": "auto",
                  "channels_last": "auto", "mem_mb": min(int(merged["train"].get("mem_mb", 4000)), mem // cores)},
        "evaluate": {"device": "cpu", "gpus": 0, "amp_bf16": "auto", "channels_last": "auto",
                     "mem_mb": min(int(ev.get("mem_mb", 4000)), mem), "threads": 1},
        "resources": {rule: {**job, "threads": 1, "mem_mb": min(int(job["mem_mb"]), mem)}
                      for rule, job in (merged.get("resources") or {}).items()},
        "models": models,
    }
    paper = paper_of(merged)
    scaled = (f"; held-out frames scaled down to at most {caps['max_pixels']} pixels (a paper-size frame does not fit "
              "this machine's time or memory)" if caps.get("max_pixels") else "")
    note = (f"rehearsal: counts capped ({caps['per_split']} item(s) per split, the smallest frames of the paper's "
            f"sizes, photographs standing in for the footage; at most {frames} frame(s) per clip; {steps} training "
            f"steps of {caps['batch_size']}; QPs {qps}{scaled}), on the CPU"
            + (f"; {codec} stands in for the paper's {enc['codec']}" if codec != enc["codec"] else ""))
    declared = list(((merged.get("report") or {}).get("deviations") or {}).get(paper) or [])
    over["report"] = {"deviations": {paper: [note, *declared]}}
    return over


def machine_mb() -> int:
    """The memory a rehearsal's jobs may share: 90 % of what this machine has available now, in MB."""
    import psutil

    return int(0.9 * psutil.virtual_memory().available / 2**20)


def clip_frames(merged: dict, caps: dict | None = None, split: str = "train") -> int:
    """Frames per clip: the cap, or more where the config needs them: the frames the paper scores (Vimeo-90K's
    4th) and, for training clips, a clip network's window (NL-ConvLSTM's T = 7 frames around each target; a
    held-out clip shorter than T is filtered with its ends repeated, as every sequence's first frames are)."""
    caps = {**CAPS, **(caps or {})}
    scored = (merged.get("evaluate") or {}).get("frames") or []
    windows = [int(model_spec(merged, m)["kwargs"].get("frames", 1)) for m in merged["train"]["models"]]
    return max([caps["frames"], *(f + 1 for f in scored), *(windows if split == "train" else [])])


def datasets_of(merged: dict) -> list[str]:
    """The datasets a config trains and tests on, in a stable order."""
    pipe = merged.get("pipeline") or {}
    names = [d for cfg in merged["train"]["configs"] for d in (pipe.get("train_datasets") or {}).get(cfg, [])]
    return list(dict.fromkeys([*names, *(pipe.get("test_datasets") or [])]))


# scikit-image's colour photographs (grey ones would code their chroma losslessly; drawings are not footage)
PHOTOGRAPHS = ("astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "motorcycle_left.png",
               "motorcycle_right.png", "retina.jpg", "rocket.jpg", "ihc.png")


def default_images() -> list[Path]:
    """Photographs to rehearse with: scikit-image's data files (the test extra installs the package; its files
    are read, the package is never imported)."""
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise InloopError("a rehearsal needs photographs: pass --images, or install scikit-image "
                          "(pip install -e '.[test]')")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    found = [folder / n for n in PHOTOGRAPHS if (folder / n).is_file()]
    if len(found) < 5:
        raise InloopError(f"{folder}: fewer than 5 of scikit-image's photographs ({', '.join(PHOTOGRAPHS)}); "
                          "pass --images")
    return found


def prepare(configs: list[str | os.PathLike], folder: str | os.PathLike, codec: str = "x265",
            images: list[Path] | None = None, caps: dict | None = None, repo: str | os.PathLike | None = None,
            cores: int = 2) -> Path:
    """Copy the workflow into ``folder`` (unless there already), write the rehearsal data (datasets not there yet)
    and the overlay; returns the overlay's path (``rehearsal.yaml`` in ``folder``)."""
    from .datasets.shapes import write_rehearsal

    repo, folder = Path(repo or Path.cwd()), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for item in WORKFLOW_ITEMS:
        src, dst = repo / item, folder / item
        if src.exists() and not dst.exists():
            shutil.copytree(src, dst) if src.is_dir() else shutil.copy2(src, dst)
    merged = merged_config([folder / Path(c) if not Path(c).is_absolute() else c for c in configs],
                           folder / "params.yaml")
    caps = {**CAPS, **(caps or {})}
    data = folder / (merged.get("datasets") or {}).get("out", paths.DATA)
    images = list(images or default_images())
    used_file = data / ".rehearsal-images"
    k = int(used_file.read_text()) if used_file.exists() else 0
    for ds in datasets_of(merged):
        if not (data / ds / "manifest.json").exists():
            _, k = write_rehearsal(ds, data, images, caps["per_split"], clip_frames(merged, caps), k,
                                  test_frames=clip_frames(merged, caps, "test"), max_pixels=caps.get("max_pixels"))
    data.mkdir(parents=True, exist_ok=True)
    used_file.write_text(str(k))
    out = folder / "rehearsal.yaml"
    out.write_text("# Written by `inloop rehearse`: the caps over " + ", ".join(map(str, configs)) + "\n"
                   + yaml.safe_dump(overlay(merged, codec, caps, cores), sort_keys=False))
    return out


def job_resources(folder: str | os.PathLike) -> dict:
    """Per rule: jobs, peak resident memory (MB) and the longest job (s), from the benchmark files."""
    import pandas as pd

    out = {}
    root = Path(folder) / paths.JOB_BENCH_DIR
    for rule_dir in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        rows = [pd.read_csv(f, sep="\t") for f in rule_dir.rglob("*.tsv")]
        if rows:
            df = pd.concat(rows)
            out[rule_dir.name] = {"jobs": len(rows), "max_rss_mb": float(df["max_rss"].max()),
                                  "max_s": float(df["s"].max()), "total_s": float(df["s"].sum())}
    return out


def run(configs: list[str], folder: str | os.PathLike, cores: int = 2, codec: str = "x265",
        images: list[Path] | None = None, caps: dict | None = None, repo: str | os.PathLike | None = None) -> dict:
    """Prepare and run one rehearsal; returns rc, wall time, Snakemake's job counts and the per-rule resources."""
    folder = Path(folder)
    ov = prepare(configs, folder, codec, images, caps, repo, cores)
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), "all", "--resources", f"mem_mb={machine_mb()}",
           "--configfile", *map(str, configs), ov.name]
    t0 = time.perf_counter()
    with open(folder / "rehearsal.log", "w") as log:
        proc = subprocess.run(cmd, cwd=folder, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    text = (folder / "rehearsal.log").read_text(errors="replace")
    result = {"configs": list(map(str, configs)), "codec": codec, "rc": proc.returncode, "wall_s": wall,
              "jobs": _job_counts(text), "resources": job_resources(folder), "command": " ".join(cmd[1:])}
    write_json(folder / "rehearsal.json", result)
    return result


def _job_counts(log: str) -> dict:
    """The first 'Job stats' table of a Snakemake log: rule -> jobs."""
    import re

    if "Job stats:" not in log:
        return {}
    table = log[log.index("Job stats:"):].split("\n\n")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def cmd_rehearse(args: argparse.Namespace) -> int:
    images = [Path(p) for p in args.images] if args.images else None
    caps = {}
    for item in args.cap or []:
        key, _, value = item.partition("=")
        if key not in CAPS or not value.strip().isdigit():
            raise InloopError(f"--cap {item}: give KEY=N with KEY one of {', '.join(CAPS)}")
        caps[key] = int(value)
    r = run(args.configs, args.dir, args.cores, args.codec, images, caps=caps, repo=Path.cwd())
    print(f"rehearsal of {' + '.join(args.configs)} in {args.dir}: rc {r['rc']}, {r['wall_s']:.0f} s, "
          f"jobs {r['jobs']}")
    for rule, v in r["resources"].items():
        print(f"  {rule:16s} {v['jobs']:4d} jobs  peak {v['max_rss_mb']:8.0f} MB  longest {v['max_s']:7.1f} s")
    if r["rc"]:
        print(f"the run failed: see {Path(args.dir) / 'rehearsal.log'}", file=sys.stderr)
    return 0 if r["rc"] == 0 else 1


def register(sub) -> None:
    p = sub.add_parser("rehearse", help="run a paper config end to end with its counts capped (CPU, x265 standing "
                                         "in for HM/ECM unless --codec config)")
    p.add_argument("configs", nargs="+", help="config files, as for snakemake --configfile (paper config first)")
    p.add_argument("--dir", required=True, help="folder for the workflow copy, its data and results")
    p.add_argument("--codec", default="x265", choices=("x265", "config"),
                   help="x265 (default) stands in for HM/ECM; config: the config's own codec (binaries configured)")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--images", nargs="+", help="photographs for the data (default: scikit-image's)")
    p.add_argument("--cap", action="append", metavar="KEY=N",
                   help="change one cap (default " + ", ".join(f"{k}={v}" for k, v in CAPS.items()) + ")")
    p.set_defaults(func=cmd_rehearse)
