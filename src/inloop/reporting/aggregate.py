"""Evaluation JSONs -> one DataFrame -> Bjontegaard deltas -> class and overall averages.

Input: one JSON per (model, codec, config, dataset, sequence, QP) written by the
evaluate stage (:mod:`inloop.evaluation.evaluate`), at
``results/eval/{model}/{codec}/{config}/{dataset}/{sequence}/qp{qp}.json``.

Three comparisons per (model, codec, config, dataset, sequence), each on luma
(``y``) and on YUV PSNR (``yuv``, (6Y+U+V)/8):

``model_vs_anchor``
    the enhanced curve against the codec with its in-loop filters ON. This is the
    papers' number (GL-Fusion IV.D: "compared with the HEVC baseline with
    De-blocking and SAO on").
``model_vs_off``
    the enhanced curve against the filters-OFF decode it was computed from.
``off_vs_anchor``
    the filters-off decode against the anchor: what switching the codec's filters
    off costs. Stored once per sequence under ``model = "none"``.
``switched_vs_anchor``, ``switched_vs_off``
    the CTU-switched reconstruction (:mod:`inloop.evaluation.switching`: the network
    where it pays in D + lambda R, its flags' bits in the rate) against the anchor and
    against the filters-off decode.

The enhanced curve has the rate of the filters-off bitstream (the filter costs
no bits). BD-rate and BD-PSNR come from :func:`inloop.evaluation.bdrate.bd_metrics`
with the method named (params ``bdrate.method``; cubic = VCEG-M33 by default).
A curve with fewer than four QPs, or one that fails the Bjontegaard checks,
gives NaN and the :class:`~inloop.evaluation.bdrate.BDRateError` message in
``note``; nothing is dropped.

Averages follow GL-Fusion's tables: a class row is the mean over the class's
sequences, the "Average" row the mean over all sequences (with several training seeds,
``train.seeds``, a sequence's value is the mean over its seeds) (GL-Fusion Table II,
Fusion column: the mean of its 18 sequences is -13.56, printed -13.55; the mean
of its five class rows would be -13.96). Demo clips have no CTC class, so they
only get the "Average" row.

Every "Average" BD-rate, BD-PSNR and mean delta-PSNR carries an interval (``*_ci_low``, ``*_ci_high``,
``ci_method``; :func:`mean_interval`, params ``report.interval.level``): a Student-t interval of the mean over
the held-out clips, and with several training seeds (crossed with the clips: every seed's model runs on every
clip) the two-way random-effects variance of the grand mean with Satterthwaite's degrees of freedom. It replaced
a percentile bootstrap that, over three clips, was the range of the clips (simulated coverage about 74 % for
its "95 %"; seeds were resampled as if nested in clips: issue #29). Simulated coverage of this one:
``tests/test_intervals.py::test_the_interval_covers_what_its_level_says``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import InloopError
from ..evaluation.bdrate import MIN_POINTS, BDRateError, bd_metrics
from ..lazy import lazy_import
from ..names import CONFIGS
from ..params import split_seed

pd = lazy_import("pandas")  # every inloop command builds the report's parser: a codec job must not import pandas

KEYS = ["model", "codec", "config", "dataset", "sequence", "seed"]
CURVES = ("anchor", "decoded", "enhanced", "switched")
COMPARISONS = ("model_vs_anchor", "model_vs_off", "off_vs_anchor", "switched_vs_anchor", "switched_vs_off")
INTERVAL = {"level": 0.95}
CONFIG_ORDER = {c: i for i, c in enumerate(CONFIGS)}
CLASSES = ("A", "B", "C", "D", "E")


class ReportError(InloopError, ValueError):
    """Evaluation or training files the report cannot use (missing, malformed)."""


# --------------------------------------------------------------------------- loading


def find_eval_files(source: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """``qp*.json`` under a directory (recursively), or the given list of files."""
    if isinstance(source, (str, os.PathLike)):
        root = Path(source)
        if root.is_file():
            return [root]
        if not root.is_dir():
            raise ReportError(f"evaluation folder {root} not found; run the evaluate stage first")
        return sorted(p for p in root.rglob("qp*.json") if not p.name.startswith("."))
    return [Path(p) for p in source]


def _flatten_curve(prefix: str, c: dict | None) -> dict:
    out: dict = {}
    c = c or {}
    out[f"{prefix}_kbps"] = c.get("kbps")
    out[f"{prefix}_bpp"] = c.get("bpp")
    for p in ("y", "u", "v", "yuv"):
        out[f"{prefix}_psnr_{p}"] = (c.get("psnr") or {}).get(p)
    out[f"{prefix}_ssim_y"] = c.get("ssim_y")
    out[f"{prefix}_ms_ssim_y"] = c.get("ms_ssim_y")
    out[f"{prefix}_psnr_rgb"] = c.get("psnr_rgb")  # metrics.rgb: SPiLF Table 2's colour space
    out[f"{prefix}_ms_ssim_rgb"] = c.get("ms_ssim_rgb")
    out[f"{prefix}_psnr_y_frames"] = c.get("psnr_y_frames")
    return out


def flatten(d: dict, path: str = "") -> dict:
    """One evaluation JSON -> one flat row (``anchor_kbps``, ``enhanced_psnr_y``, ``delta_psnr_y`` ...)."""
    missing = [k for k in ("model", "codec", "config", "sequence", "qp", "anchor", "decoded") if k not in d]
    if missing:
        raise ReportError(f"{path or 'evaluation record'}: missing field(s) {', '.join(missing)}")
    row = {k: d.get(k) for k in ("model", "codec", "config", "dataset", "sequence", "seq_class", "qp", "frames",
                                 "width", "height", "fps", "mode", "seconds_per_frame",
                                 "warps_reused")}
    row["dataset"] = row["dataset"] or ""
    row["seq_class"] = (row["seq_class"] or "").strip().upper()
    for name in CURVES:
        row.update(_flatten_curve(name, d.get(name)))
    delta, dsw = d.get("delta") or {}, d.get("delta_switched") or {}
    for k in ("psnr_y", "psnr_yuv", "ssim_y"):
        row[f"delta_{k}"] = delta.get(k)
        row[f"delta_switched_{k}"] = dsw.get(k)
    sw = (d.get("switched") or {}).get("switching") or {}
    row["ctus_on_share"] = sw.get("ctus_on_share")
    row["flag_share_of_rate"] = sw.get("flag_share_of_rate")
    row["flag_bits"] = sw.get("flag_bits")
    row["model"], row["seed"] = split_seed(row["model"])
    fl = d.get("fluctuation") or {}
    for name in ("decoded", "enhanced"):
        f = fl.get(name) or {}
        row[f"fluct_{name}_std"] = f.get("std")
        row[f"fluct_{name}_pvd"] = f.get("pvd")
    lp = d.get("lpips")
    row["lpips"] = json.dumps(lp) if isinstance(lp, dict) else lp
    for name in ("anchor", "decoded", "enhanced"):  # LPIPS of each curve, when the weights were there
        row[f"{name}_lpips"] = lp.get(name) if isinstance(lp, dict) else None
    row["switched_lpips"] = (d.get("switched") or {}).get("lpips")
    row["path"] = path
    return row


def load_eval(source) -> pd.DataFrame:
    """Load evaluation JSONs (a folder or a list of files) into one DataFrame, one row per file."""
    rows = []
    for p in find_eval_files(source):
        try:
            d = json.loads(Path(p).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ReportError(f"{p}: cannot read evaluation JSON: {exc}") from None
        rows.append(flatten(d, str(p)))
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["qp"] = df["qp"].astype(int)
    dup = df.duplicated(KEYS + ["qp"], keep=False)
    if dup.any():
        raise ReportError("two evaluation files for the same point: "
                          + ", ".join(sorted(df.loc[dup, "path"].astype(str))[:4]))
    return sort_frame(df)


def sort_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Stable order: codec, config (AI, LDP, RA), dataset, class, sequence, model, QP."""
    if df.empty:
        return df
    order = df["config"].map(lambda c: CONFIG_ORDER.get(str(c).lower(), 9))
    cols = [c for c in ("codec", "dataset", "seq_class", "sequence", "model", "qp") if c in df.columns]
    return (df.assign(_cfg=order).sort_values(["codec", "_cfg"] + cols[1:], kind="stable")
            .drop(columns="_cfg").reset_index(drop=True))


def load_histories(models_dir: str | os.PathLike | None) -> pd.DataFrame:
    """Training histories ``{model}/{codec}/{config}/qp{qp}/model.json`` -> long DataFrame (one row per step)."""
    rows: list[dict] = []
    if models_dir is None or not Path(models_dir).is_dir():
        return pd.DataFrame(rows)
    for p in sorted(Path(models_dir).rglob("model.json")):
        try:
            d = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ReportError(f"{p}: cannot read training record: {exc}") from None
        rel = p.relative_to(models_dir).parts
        guess = dict(zip(("model", "codec", "config", "qpdir"), rel))
        qp = d.get("qp", str(guess.get("qpdir", "")).removeprefix("qp") or None)
        r, c = d.get("result") or {}, d.get("compute") or {}
        # what the run was: its network, length, global batch (processes x batch per process), device, precision
        run = {"arch": d.get("arch"), "source": d.get("network_source"), "trained_steps": r.get("steps"),
               "batch": (r.get("processes") or 1) * r["batch_per_process"] if r.get("batch_per_process") else None,
               "device": c.get("device"), "precision": c.get("precision")}
        for h in d.get("history") or []:
            row = {"model": d.get("model", guess.get("model")), "codec": d.get("codec", guess.get("codec")),
                   "config": d.get("config", guess.get("config")), "qp": int(qp) if qp is not None else None,
                   "path": str(p), **run}
            row.update({k: v for k, v in h.items() if isinstance(v, (int, float)) or v is None})
            rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- BD per sequence


def _points(g: pd.DataFrame, rate_col: str, psnr_col: str) -> list[tuple[float, float]]:
    sub = g[[rate_col, psnr_col]].astype(float)
    return [(float(r), float(q)) for r, q in sub.itertuples(index=False)]


def _bd(anchor_pts, test_pts, method: str) -> tuple[float, float, str]:
    try:
        m = bd_metrics(anchor_pts, test_pts, method)
        return m["bd_rate_pct"], m["bd_psnr_db"], ""
    except BDRateError as exc:
        return math.nan, math.nan, str(exc)


def _curve_columns(comparison: str, metric: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """(anchor rate, anchor psnr), (test rate, test psnr) columns of one comparison."""
    psnr = f"psnr_{metric}"
    if comparison == "model_vs_anchor":
        return ("anchor_kbps", f"anchor_{psnr}"), ("decoded_kbps", f"enhanced_{psnr}")
    if comparison == "model_vs_off":
        return ("decoded_kbps", f"decoded_{psnr}"), ("decoded_kbps", f"enhanced_{psnr}")
    if comparison == "off_vs_anchor":
        return ("anchor_kbps", f"anchor_{psnr}"), ("decoded_kbps", f"decoded_{psnr}")
    if comparison == "switched_vs_anchor":
        return ("anchor_kbps", f"anchor_{psnr}"), ("switched_kbps", f"switched_{psnr}")
    if comparison == "switched_vs_off":
        return ("decoded_kbps", f"decoded_{psnr}"), ("switched_kbps", f"switched_{psnr}")
    raise ValueError(comparison)


def bd_per_sequence(df: pd.DataFrame, method: str = "cubic", metrics: tuple[str, ...] = ("y", "yuv")) -> pd.DataFrame:
    """BD-rate / BD-PSNR per (model, codec, config, dataset, sequence), comparison and PSNR metric.

    Columns: the keys, ``seq_class``, ``comparison``, ``metric`` (``y``/``yuv``),
    ``method``, ``n_points``, ``qps``, ``bd_rate_pct``, ``bd_psnr_db``,
    ``delta_psnr_y_mean`` (mean over QPs of enhanced - decoded, or switched - decoded for the
    switched comparisons; models only), ``ctus_on_share`` and ``flag_share_of_rate`` (switched
    comparisons: means over QPs) and ``note`` (the BDRateError message when the value is NaN).
    """
    out: list[dict] = []
    if df.empty:
        return pd.DataFrame(out)
    # filters off vs anchor: one curve per (codec, config, dataset, sequence), preferring model "none" rows
    base = df.assign(_pref=(df["model"] != "none").astype(int)).sort_values("_pref", kind="stable")
    base = base.drop_duplicates(["codec", "config", "dataset", "sequence", "qp"]).drop(columns="_pref")
    jobs = [("off_vs_anchor", base.assign(model="none", seed=0))]
    models = df[df["model"] != "none"]
    if not models.empty:
        jobs += [("model_vs_anchor", models), ("model_vs_off", models)]
        switched = models[models["switched_kbps"].notna()] if "switched_kbps" in models else models.iloc[:0]
        if not switched.empty:
            jobs += [("switched_vs_anchor", switched), ("switched_vs_off", switched)]
    for comparison, frame in jobs:
        for key, g in frame.groupby(KEYS, sort=False):
            g = g.sort_values("qp")
            rec = dict(zip(KEYS, key))
            rec["seq_class"] = g["seq_class"].iloc[0]
            qps = g["qp"].tolist()
            dps, extra, missing = None, {}, ""
            if comparison != "off_vs_anchor":
                sw = comparison.startswith("switched")
                vals = pd.to_numeric(g["delta_switched_psnr_y" if sw else "delta_psnr_y"], errors="coerce")
                # a QP without a value makes the mean over QPs missing, named: never a mean of the others
                gaps = [int(q) for q, v in zip(qps, vals) if not math.isfinite(v)]
                dps = float(vals.mean()) if not gaps else math.nan
                missing = f"ΔPSNR-Y missing at QP {' '.join(map(str, gaps))}, so no mean over QPs" if gaps else ""
                if sw:
                    extra = {k: float(pd.to_numeric(g[k], errors="coerce").mean())
                             for k in ("ctus_on_share", "flag_share_of_rate")}
            for metric in metrics:
                (ar, ap), (tr, tp) = _curve_columns(comparison, metric)
                if g[[ar, ap, tr, tp]].isna().any().any():
                    r, p, note = math.nan, math.nan, f"missing {metric.upper()} PSNR or rate at some QP (fields {ap}, {tp})"
                elif len(g) < MIN_POINTS:
                    r, p, note = (math.nan, math.nan,
                                  f"{len(g)} QP(s) {qps}; Bjontegaard needs at least {MIN_POINTS}")
                else:
                    r, p, note = _bd(_points(g, ar, ap), _points(g, tr, tp), method)
                out.append({**rec, "comparison": comparison, "metric": metric, "method": method,
                            "n_points": len(g), "qps": " ".join(map(str, qps)), "bd_rate_pct": r,
                            "bd_psnr_db": p, "delta_psnr_y_mean": dps, **extra,
                            "note": "; ".join(x for x in (note, missing) if x)})
    res = pd.DataFrame(out)
    return sort_frame(res).reset_index(drop=True)


# --------------------------------------------------------------------------- averages


def mean_interval(values, level: float = 0.95) -> tuple[float, float, str]:
    """``(low, high, method)``: an interval at ``level`` for the mean of ``values``, a 1-D array (one value per
    clip) or a 2-D array clips x seeds (NaN where a seed has no value; the estimator is the mean over clips of
    each clip's mean over its seeds).

    Clips alone (one seed): Student's t over the clips, n - 1 degrees of freedom, exact for normal clip values.
    Clips x seeds (crossed, value = mu + clip effect + seed effect + residual): the variance of the grand mean
    is estimated by (MS_clips + MS_seeds) / (clips x seeds) -- both effects' spread, the residual counted in
    both (slightly conservative) -- with Satterthwaite's degrees of freedom. Seeds missing on some clips are
    left out (the complete seeds; none complete: each clip's mean over its seeds, by t over clips). Fewer than
    two clips and two seeds: no interval (NaN). ``method`` says which, with n and the level."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    v = v.reshape(len(v), -1) if v.size else v.reshape(0, 1)
    v = v[~np.isnan(v).all(axis=1)]
    note = ""
    if v.size and np.isnan(v).any():
        complete = ~np.isnan(v).any(axis=0)
        if complete.any():
            v, note = v[:, complete], f"; the {int(complete.sum())} seed(s) complete on every clip"
        else:
            v, note = np.nanmean(v, axis=1, keepdims=True), "; each clip's mean over its seeds"
    clips, seeds = v.shape if v.size else (0, 0)
    pct = f"{100 * level:g}%"
    if clips * seeds < 2 or (clips < 2 and seeds < 2):
        return math.nan, math.nan, f"no {pct} interval: {clips} clip(s) x {seeds} seed(s)"
    mean = float(v.mean())
    terms = []  # (variance share, degrees of freedom)
    if clips > 1:
        terms.append((seeds * v.mean(axis=1).var(ddof=1) / (clips * seeds), clips - 1))
    if seeds > 1:
        terms.append((clips * v.mean(axis=0).var(ddof=1) / (clips * seeds), seeds - 1))
    var = sum(t for t, _ in terms)
    if seeds == 1:
        method = f"{pct} t interval, {clips} clips"
    else:
        method = f"{pct} t interval, {clips} clips x {seeds} seeds (two-way, Satterthwaite)"
    if var <= 0:
        return mean, mean, method + note
    df = var ** 2 / sum(t ** 2 / d for t, d in terms if t > 0)
    half = float(stats.t.ppf(0.5 + level / 2, df)) * math.sqrt(var)
    return mean - half, mean + half, method + (f", df {df:.1f}" if seeds > 1 else "") + note


def _mean_row(g: pd.DataFrame, cols: list[str], interval: dict | None = None) -> dict:
    """Means over the sequences of ``g`` (one row per sequence and seed): each sequence's value is the mean over
    its seeds; with ``interval``, each column's interval (``<col>_ci_low``/``_ci_high``; ``ci_method``) too."""
    row: dict = {}
    present = [c for c in cols if c in g]
    per_seq = {}
    if "seed" in g and present:  # one groupby for every column (one per column took 7.5 s of the demo's report)
        first = g[present].apply(pd.to_numeric, errors="coerce").groupby([g["sequence"], g["seed"]], sort=False).first()
        per_seq = {c: first[c].unstack("seed") for c in present}
    valid = g["bd_rate_pct"].notna().groupby(g["sequence"], sort=False).any()
    for c in cols:
        if c not in g:
            continue
        m = per_seq.get(c)
        seq_means = m.mean(axis=1) if m is not None else pd.to_numeric(g[c], errors="coerce")
        row[c] = float(seq_means.mean()) if seq_means.notna().any() else math.nan
        if interval and c in ("bd_rate_pct", "bd_psnr_db", "delta_psnr_y_mean"):
            vals = m.to_numpy(dtype=float) if m is not None else seq_means.to_numpy(dtype=float)
            row[f"{c}_ci_low"], row[f"{c}_ci_high"], method = mean_interval(vals, **interval)
            if c == "bd_rate_pct" or "ci_method" not in row:
                row["ci_method"] = method
            row["ci_level"] = interval["level"]
    row["n_sequences"] = int(g["sequence"].nunique())
    row["n_seeds"] = int(g["seed"].nunique()) if "seed" in g else 1
    row["n_valid"] = int(valid.sum())
    missing = valid[~valid].index.tolist()
    row["note"] = (f"mean over {int(valid.sum())} of {len(valid)} sequences; no BD value for: {', '.join(missing)}"
                   if missing else "")
    return row


def summarize(bd: pd.DataFrame, interval: dict | None = None) -> pd.DataFrame:
    """Per-sequence rows plus class (A-E) and overall averages, per (model, codec, config, dataset, comparison, metric).

    ``level`` is ``sequence``, ``class`` or ``average``; ``row`` is the table's
    row label (the sequence, ``Class A`` .. ``Class E``, ``Average``). Means skip
    NaN sequences and say so in ``note`` (``n_valid`` of ``n_sequences``). A sequence trained with several
    seeds gets one row: the mean over its seeds (``n_seeds``). The "Average" rows carry intervals
    (:func:`mean_interval`, ``interval``: its level; default :data:`INTERVAL`).
    """
    if bd.empty:
        return bd
    interval = {**INTERVAL, **(interval or {})}
    vals = [c for c in ("bd_rate_pct", "bd_psnr_db", "delta_psnr_y_mean", "ctus_on_share", "flag_share_of_rate")
            if c in bd]
    if "seed" not in bd:
        bd = bd.assign(seed=0)
    group = ["model", "codec", "config", "dataset", "comparison", "metric", "method"]
    rows: list[dict] = []
    for key, g in bd.groupby(group, sort=False):
        base = dict(zip(group, key))
        for seq, s in g.groupby("sequence", sort=False):
            notes = "; ".join(n for n in s["note"].astype(str) if n)
            rows.append({**base, "level": "sequence", "row": seq, "seq_class": s["seq_class"].iloc[0],
                         "sequence": seq, **_mean_row(s, vals), "note": notes})
        for cls in CLASSES:
            gc = g[g["seq_class"] == cls]
            if len(gc):
                rows.append({**base, "level": "class", "row": f"Class {cls}", "seq_class": cls, "sequence": "",
                             **_mean_row(gc, vals)})
        rows.append({**base, "level": "average", "row": "Average", "seq_class": "", "sequence": "",
                     **_mean_row(g, vals, interval)})
    return pd.DataFrame(rows)


def config_averages(summary: pd.DataFrame, comparison: str = "model_vs_anchor", metric: str = "y") -> pd.DataFrame:
    """The "Average" rows as a small table: one row per (model, codec, dataset), one column per config."""
    s = summary[(summary["level"] == "average") & (summary["comparison"] == comparison) & (summary["metric"] == metric)]
    if s.empty:
        return pd.DataFrame()
    t = s.pivot_table(index=["model", "codec", "dataset"], columns="config", values="bd_rate_pct", aggfunc="first")
    return t[[c for c in CONFIGS if c in t.columns]].reset_index()


def aggregate(source, method: str = "cubic", interval: dict | None = None) -> dict:
    """Load, compute and summarise: ``{"points", "bd", "summary"}`` DataFrames."""
    points = load_eval(source)
    bd = bd_per_sequence(points, method)
    return {"points": points, "bd": bd, "summary": summarize(bd, interval)}


def points_for_csv(points: pd.DataFrame) -> pd.DataFrame:
    """The points table without per-frame lists (those go to the per-frame plots), for CSV."""
    return points.drop(columns=[c for c in points.columns if c.endswith("_frames")], errors="ignore")


__all__ = [
    "COMPARISONS", "KEYS", "ReportError", "aggregate", "bd_per_sequence", "mean_interval", "config_averages",
    "find_eval_files",
    "flatten", "load_eval", "load_histories", "points_for_csv", "sort_frame", "summarize",
]

