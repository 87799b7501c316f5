"""Run time in the report (issue #8): ``inloop bench`` results next to the papers' figures.

The params key ``report.benchmarks`` lists result JSONs of ``inloop bench --out``
(paths relative to the repository root, where the workflow and ``inloop report``
run; default :data:`DEFAULT_FILES`). For each file that exists the report shows
the machine and the exact command, and writes two tables:

* :func:`inference_table` -- ms per frame per model and frame size, whole frame
  and tiled, with NL-ConvLSTM (ICCV 2019) Table 5's ms per frame beside ours
  where that table has the network at that size: the approximate NL-ConvLSTM at
  180x180 .. 1920x1080 (102.13 .. 6738 ms) and its AR-CNN / DnCNN baselines.
  Rows are the (model, size) cases the file holds, so a paper figure appears
  only next to a size the benchmark ran (a case it skipped keeps its row, with
  the reason); the whole of Table 5 is quoted in the notes.
* :func:`training_table` -- training step time, samples/s, model TFLOP/s and,
  where a peak was known (GPUs), MFU.

GL-Fusion Table VII (coding time +15.65 % AI, +9.77 % LDP, +6.20 % RA over
HM-16.9 with the network inside HM, on a V100) is a share of coding time, not ms
per frame: it is quoted as a note (:func:`paper_notes`). The papers' figures are
read from the file's own ``paper`` block, which ``inloop bench`` writes from
``inloop.bench.PAPER_FIGURES`` (the report does not import the benchmark harness
or torch).

Only the standard library loads at import: the workflow imports this module to
list the files as the report rule's inputs (:func:`existing_files`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from ..lazy import lazy_import

pd = lazy_import("pandas")

DEFAULT_FILES = ("docs/benchmarks/cpu.json",)
BENCH_COMMAND = ("inloop bench --device cpu --sizes 416x240 832x480 --train --codec "
                 "--out docs/benchmarks/cpu.json --markdown docs/benchmarks.md")
NAN = math.nan


def listed_files(params: dict | None) -> list[str]:
    """``report.benchmarks`` of params (default :data:`DEFAULT_FILES`), as written there."""
    files = ((params or {}).get("report") or {}).get("benchmarks", list(DEFAULT_FILES))
    if isinstance(files, str):
        files = [files]
    return [str(f) for f in files or []]


def existing_files(params: dict | None, root: str | os.PathLike = ".") -> list[str]:
    """The listed files that exist (relative paths against ``root``): the report rule's inputs."""
    return [f for f in listed_files(params) if (Path(root) / f).is_file()]


def load_bench(path: str | os.PathLike) -> dict:
    """Read one ``inloop bench`` result; a file that is not one raises ``ReportError`` naming it."""
    from .aggregate import ReportError

    def bad(why: str):
        return ReportError(f"{path}: not an `inloop bench` result JSON ({why}); rerun `{BENCH_COMMAND}` "
                           "or remove it from params report.benchmarks")

    try:
        d = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad(str(exc)) from None
    if not isinstance(d, dict):
        raise bad(f"top level is {type(d).__name__}, expected an object")
    for key, typ in (("command", str), ("machine", dict), ("paper", dict)):
        if not isinstance(d.get(key), typ):
            raise bad(f"'{key}' missing or not a{'n object' if typ is dict else ' string'}")
    for section, keys in (("inference", ("model", "size", "mode", "status")),
                          ("training", ("model", "batch", "patch", "status"))):
        rows = d.get(section, [])
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise bad(f"'{section}' is not a list of rows")
        for i, r in enumerate(rows):
            missing = [k for k in keys if k not in r]
            if missing:
                raise bad(f"{section} row {i} lacks {', '.join(missing)}")
    return d


def paper_ms(paper: dict, arch: str, size: str) -> tuple[float, str]:
    """NL-ConvLSTM Table 5's ms per frame of ``arch`` at ``size`` and which column it is; (NaN, "") if none."""
    if arch == "nlconvlstm":
        v, source = (paper.get("nlconvlstm_table5_ms") or {}).get(size), "NL-ConvLSTM Table 5"
    else:
        v = ((paper.get("nlconvlstm_table5_baselines_ms") or {}).get(arch) or {}).get(size)
        source = f"NL-ConvLSTM Table 5, {arch} baseline"
    return (float(v), source) if v is not None else (NAN, "")


def _num(v) -> float:
    return float(v) if v is not None else NAN


def _pixels(size: str) -> int:
    w, _, h = size.partition("x")
    return int(w) * int(h) if w.isdigit() and h.isdigit() else 0


def inference_table(result: dict) -> pd.DataFrame:
    """One row per (model, frame size) the file measured: ms/frame whole and tiled, the paper's figure beside.

    Paper figures: NL-ConvLSTM Table 5 (ms per frame; approximate NL-ConvLSTM, and
    the AR-CNN and DnCNN baselines), from the file's ``paper`` block; NaN where
    the table has no figure for that network and size. Skipped cases keep their
    row, with NaN and the reason in ``note``.
    """
    rows = result.get("inference") or []
    if not rows:
        return pd.DataFrame()
    paper = result.get("paper") or {}
    out: dict[tuple[str, str], dict] = {}
    for r in rows:
        key = (r["model"], r["size"])
        arch = r.get("arch") or r["model"]
        if key not in out:
            ms, source = paper_ms(paper, arch, r["size"])
            out[key] = {"Model": r["model"], "Size": r["size"], "whole ms/frame": NAN, "tiled ms/frame": NAN,
                        "tiling": "", "whole peak MB": NAN, "tiled peak MB": NAN, "paper ms/frame": ms,
                        "paper": source, "note": ""}
        row = out[key]
        kind = "whole" if r["mode"] == "whole" else "tiled"
        if not math.isnan(row[f"{kind} ms/frame"]):
            continue  # one mode per kind (inloop bench times one tile size)
        if kind == "tiled":
            row["tiling"] = f"{r['mode']}, overlap {r.get('overlap')}, {r.get('tiles')} tiles"
        notes = []
        if r["status"] == "ok":
            row[f"{kind} ms/frame"] = _num(r.get("ms_per_frame"))
            row[f"{kind} peak MB"] = _num(r.get("peak_mem_mb"))
            if r.get("target_ms_h100") is not None:
                notes.append(f"{kind}: H100 target {r['target_ms_h100']:g} ms "
                             f"{'met' if r.get('target_met') else 'missed'}")
        else:
            notes.append(f"{kind}: {r['status']} ({r.get('reason', 'no reason recorded')})")
        row["note"] = "; ".join([n for n in [row["note"]] + notes if n])
    models = list(dict.fromkeys(k[0] for k in out))
    order = sorted(out, key=lambda k: (models.index(k[0]), _pixels(k[1])))
    return pd.DataFrame([out[k] for k in order])


def training_table(result: dict) -> pd.DataFrame:
    """Training throughput: model, batch x patch, ms/step, samples/s, model TFLOP/s; MFU and GPU busy where measured."""
    rows = result.get("training") or []
    if not rows:
        return pd.DataFrame()
    out = []
    for r in rows:
        ok = r["status"] == "ok"
        clip = f" x {r['frames']} frames" if (r.get("frames") or 1) > 1 else ""
        out.append({"Model": r["model"], "batch x patch": f"{r['batch']} x {r['patch']}²{clip}",
                    "ms/step": _num(r.get("step_ms")) if ok else NAN,
                    "samples/s": _num(r.get("samples_per_s")) if ok else NAN,
                    "TFLOP/s": _num(r.get("tflops")) if ok else NAN,
                    "MFU": _num(r.get("mfu")) if ok else NAN,
                    "GPU busy": _num(r.get("gpu_busy")) if ok else NAN,
                    "note": "" if ok else f"{r['status']} ({r.get('reason', 'no reason recorded')})"})
    df = pd.DataFrame(out)
    return df.drop(columns=[c for c in ("MFU", "GPU busy") if df[c].isna().all()])


def machine_line(result: dict) -> str:
    """Device, cores, torch, load average (start / end), commit and date of a result."""
    m = result.get("machine") or {}
    load = "/".join(str(v) for v in m.get("load_avg") or []) or "?"
    end = result.get("load_avg_end")
    if end:
        load += f" at start, {'/'.join(str(v) for v in end)} at end"
    commit = (m.get("git_commit") or "?")[:12]
    return (f"{m.get('device_name', '?')}, {m.get('cpu_count', '?')} logical cores, torch {m.get('torch', '?')}, "
            f"load average (1/5/15 min) {load}, commit {commit}, started {result.get('started', '?')}")


def paper_notes(result: dict) -> list[str]:
    """Notes under the inference table: the preset, NL-ConvLSTM Table 5 in full, GL-Fusion Table VII, x265 speed."""
    paper = result.get("paper") or {}
    preset = (result.get("settings") or {}).get("preset", "paper")
    notes = [f"preset {preset}: " + ("the papers' full-size networks, comparable with Table 5 in kind (the device "
                                     "differs: the authors' GPU)" if preset == "paper" else
                                     "the params.yaml widths, smaller than the papers' networks: the paper "
                                     "column is not like for like")]
    if paper.get("nlconvlstm_table5_note"):
        notes.append(paper["nlconvlstm_table5_note"])
    t5 = paper.get("nlconvlstm_table5_ms") or {}
    if t5:
        notes.append("Table 5 per size (ms): " + ", ".join(f"{s} {v:g}" for s, v in t5.items())
                     + "; the paper column holds a figure only at the sizes benchmarked here")
    if paper.get("glfusion_table7_note"):
        notes.append(paper["glfusion_table7_note"] + " — a share of the coding time with the network inside HM, "
                     "not ms per frame, so no column here (this pipeline filters outside the codec)")
    c = result.get("codec")
    if isinstance(c, dict) and c.get("encodes_per_min") is not None:
        notes.append(f"this file's {c.get('codec', 'codec')} speed: {c['encodes_per_min']:.1f} encodes/min "
                     f"({c.get('width')}x{c.get('height')}, {c.get('frames')} frames, one thread per encode)")
    return notes


__all__ = ["BENCH_COMMAND", "DEFAULT_FILES", "existing_files", "inference_table", "listed_files", "load_bench",
           "machine_line", "paper_ms", "paper_notes", "training_table"]
