"""The papers' claimed numbers and the claimed-vs-reproduced comparison.

The registry is one YAML per paper in ``reporting/claims/`` (``glfusion.yaml``:
GL-Fusion Tables I-VII; ``spilf.yaml``: SPiLF Tables 1-2; ``nlconvlstm.yaml``:
NL-ConvLSTM Tables 1-5), transcribed from papers 000-002 (docs/papers.md): captions, the
setup (codec and version, configurations, QPs, training and test data) and every
number as printed, with row / column labels verbatim and a normalised ``key``
per row. Numbers lost in the text extraction are ``null`` with a note.

:func:`compare` sets reproduced aggregates next to the claims that can be
matched -- BD-rate against the anchor per configuration and row (Average, class,
CTC sequence) for GL-Fusion Tables II-VI, SPiLF Table 2's rate-allocated points,
NL-ConvLSTM's delta PSNR / SSIM per QP (the ablation, Table 2, section 4.2, and
Yang et al.'s dataset, Table 4) and PSNR / SSIM per QP (Vimeo-90K, Table 3) --
with the difference and a sentence on what differs in the setup (codec version,
data, training length).

Each matched table names the codec and test dataset it was measured with
(``codec``: ``hm`` / ``x265`` / ``ecm``, ``dataset``: the datasets registry's
name, as the evaluation results record them; :func:`table_setup`). A claim is
only ever set next to results of its own codec, dataset, configuration (and QP):
a Vimeo-90K result is never read against Yang et al.'s numbers, nor an x265 run
against HM's, and results of several codecs or datasets in one tree are never
pooled. Where the run has the claim's model but not in the claim's setup, the
comparison says so in a row of its own and names the setups the run has.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from importlib import resources
from typing import Iterable

import pandas as pd
import yaml

from ..names import CODECS
from .aggregate import ReportError

PAPERS = ("glfusion", "spilf", "nlconvlstm")
CONFIG_ALIASES = {"ai": "ai", "ld": "ldp", "ldp": "ldp", "lp": "ldp", "ra": "ra"}


@lru_cache(maxsize=None)
def load_claims(paper: str) -> dict:
    """The claims registry of one paper (``glfusion``, ``spilf``, ``nlconvlstm``)."""
    if paper not in PAPERS:
        raise ReportError(f"no claims registry for {paper!r}; known: {', '.join(PAPERS)}")
    try:
        text = resources.files(__package__).joinpath("claims", f"{paper}.yaml").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"claims file reporting/claims/{paper}.yaml is missing from the installed package "
                          "(package data not installed?)") from None
    return yaml.safe_load(text)


def table_setup(paper: str, table: str) -> dict:
    """The setup one claimed table was measured in, as the project's results name it: ``codec`` (``hm``,
    ``x265``, ``ecm``: :data:`inloop.names.CODECS`) and ``dataset`` (the datasets registry's name, e.g.
    ``jctvc-ctc``, ``clic2022-valid``, ``vimeo90k-septuplet``, ``mfqe-yang``). A matched table without them
    is an error in the registry (it could only be matched across codecs and datasets)."""
    t = load_claims(paper)["tables"][str(table)]
    missing = [k for k in ("codec", "dataset") if not t.get(k)]
    if missing:
        raise ReportError(f"claims {paper}.yaml table {table}: no {' or '.join(missing)}; a matched table names "
                          "the codec and test dataset it was measured with")
    if t["codec"] not in CODECS:
        raise ReportError(f"claims {paper}.yaml table {table}: codec {t['codec']!r} is not one of {', '.join(CODECS)}")
    return {"codec": str(t["codec"]), "dataset": str(t["dataset"])}


def all_claims() -> dict:
    return {p: load_claims(p) for p in PAPERS}


def claim_table(paper: str, table: str) -> pd.DataFrame:
    """One claimed table as a DataFrame (row label, key, then the columns as printed; pairs as 'a / b')."""
    t = load_claims(paper)["tables"][str(table)]
    cols = [c if isinstance(c, str) else (c.get("label") if isinstance(c, dict) and "label" in c else
                                         (f"{c['method']} {c['config']}" if isinstance(c, dict) else f"col{i + 1}"))
            for i, c in enumerate(t["columns"])]
    cols = [c if c is not None else f"(header lost {i + 1})" for i, c in enumerate(cols)]
    rows = []
    for r in t["rows"]:
        row = {"Row": r["label"], "key": r.get("key", "")}
        if "qp" in r:
            row["QP"] = r["qp"]
        for c, v in zip(cols, r["values"]):
            row[c] = (" / ".join("n/a" if x is None else f"{x:g}" for x in v) if isinstance(v, list) else v)
        rows.append(row)
    return pd.DataFrame(rows)


def normalize_sequence(name: str) -> str:
    """Project sequence name -> claims key: ``Traffic_2560x1600_30_crop`` -> ``traffic``; class C RaceHorses handled by caller."""
    base = re.split(r"_\d+x\d+", str(name))[0]
    return re.sub(r"[^a-z0-9]", "", base.lower())


def _seq_key(sequence: str, seq_class: str) -> str:
    k = normalize_sequence(sequence)
    if k in ("racehorses", "racehorsesc"):
        return "racehorses_c" if (seq_class == "C" or k == "racehorsesc") else "racehorses_d"
    return k


def _row_key(level: str, row: str, sequence: str, seq_class: str) -> str:
    if level == "average":
        return "average"
    if level == "class":
        return f"class_{seq_class.lower()}"
    return _seq_key(sequence, seq_class)


# --------------------------------------------------------------------------- setup differences


def setup_differences(paper: str, repro: dict) -> str:
    """One sentence: what differs between the paper's setup and this run (codec, data, training length).

    ``repro`` may hold ``codec``, ``codec_version``, ``dataset``, ``classes``
    (CTC classes present), ``sequences``, ``frames``, ``training`` (per paper: what its models ran, from
    their model files' records; else ``train_steps`` and ``device``) and ``deviations`` (params ``report.deviations``: per paper, the
    deviations a paper config declares, listed after the measured differences).
    """
    c = load_claims(paper)["setup"]
    parts = []
    codec = repro.get("codec") or "?"
    version = f" ({repro['codec_version']})" if repro.get("codec_version") else ""
    paper_codec = c["codec"] if isinstance(c["codec"], str) else "; ".join(f"{k}: {v}" for k, v in c["codec"].items())
    parts.append(f"codec {codec}{version} vs paper: {paper_codec}")
    data = repro.get("dataset") or "?"
    classes = repro.get("classes") or []
    parts.append(f"test data '{data}' ({repro.get('sequences', '?')} sequence(s), "
                 f"{'classes ' + ''.join(classes) if classes else 'no CTC class'}, "
                 f"{repro.get('frames', '?')} frame(s) each) vs paper: {c['test_data']}")
    trained = (repro.get("training") or {}).get(paper)
    steps = repro.get("train_steps")
    if trained:  # what this paper's own models ran (their model.json files)
        parts.append(f"training {trained} vs paper: {c['training']}")
    elif steps is not None:
        parts.append(f"training {steps} steps on {repro.get('device', 'cpu')} vs paper: {c['training']}")
    elif repro.get("models") == []:
        parts.append("no network trained or evaluated in this run (anchor vs filters off only)")
    declared = (repro.get("deviations") or {}).get(paper) or []
    if declared:
        parts.append("declared by the config: " + "; ".join(str(x) for x in declared))
    return "; ".join(parts)


# --------------------------------------------------------------------------- comparison


def claim_key(model: str) -> str:
    """The registries' name for a project model: ``-`` -> ``_`` (``nlconvlstm-convlstm`` is ``nlconvlstm_convlstm``;
    Snakemake's model wildcard allows no ``_``)."""
    return str(model).replace("-", "_")


def _bd_targets(paper: str) -> list[dict]:
    """Claimed BD-rate cells that name a project model: table, row key, config, model, value, labels, and the
    table's codec and dataset (:func:`table_setup`)."""
    d = load_claims(paper)
    out = []
    for m in d.get("match") or []:
        if m.get("metric") != "bd_rate_y_vs_anchor":
            continue
        t = d["tables"][m["table"]]
        setup = table_setup(paper, m["table"])
        for i, col in enumerate(t["columns"]):
            if isinstance(col, dict):
                model, config, col_label = col.get("model"), col.get("config"), f"{col['method']} {col['config']}"
            else:
                model = (t.get("column_models") or [None] * len(t["columns"]))[i]
                config, col_label = t.get("config"), col
            if not model or not config:
                continue
            for r in t["rows"]:
                out.append({"paper": paper, "table": m["table"], "row_key": r["key"], "row": r["label"],
                            "column": col_label, "model": model, "config": CONFIG_ALIASES[str(config).lower()],
                            **setup, "claimed": r["values"][i], "unit": "BD-rate Y (%) vs anchor"})
    return out


DELTAS = (("delta_psnr_y", "ΔPSNR-Y (dB)"), ("delta_ssim_y", "ΔSSIM-Y (×10^-2)"))
METRIC_ROWS = {"delta_psnr": 0, "delta_ssim_x100": 1}  # rows that are one metric over all sequences (the ablation)


def _delta_targets(paper: str) -> list[dict]:
    """Claimed delta cells that name a project model. Two row layouts: one row per sequence with a
    [ΔPSNR, ΔSSIM] pair per column (Table 4), or one row per metric, averaged over sequences (the ablation,
    Table 2). Each carries its table's codec and dataset."""
    d = load_claims(paper)
    out = []
    for m in d.get("match") or []:
        if m.get("metric") != "delta_psnr_ssim":
            continue
        t = d["tables"][m["table"]]
        setup = table_setup(paper, m["table"])
        for i, model in enumerate(t.get("column_models") or []):
            for r in t["rows"]:
                v = r["values"][i]
                if r["key"] in METRIC_ROWS:
                    cells = [(DELTAS[METRIC_ROWS[r["key"]]], v, "average")]
                else:
                    cells = [(wu, v[j] if v else None, r["key"]) for j, wu in enumerate(DELTAS)]
                for (what, unit), claimed, row_key in cells:
                    out.append({"paper": paper, "table": m["table"], "row_key": row_key, "row": r["label"],
                                "column": t["columns"][i], "model": model, "config": str(t["config"]).lower(),
                                **setup, "qp": int(r.get("qp", t.get("qp"))), "what": what, "claimed": claimed,
                                "unit": unit})
    return out


ABSOLUTE = (("psnr_y", "PSNR-Y (dB)"), ("ssim_y", "SSIM-Y"))


def _absolute_targets(paper: str) -> list[dict]:
    """Claimed PSNR / SSIM of the output frames (NL-ConvLSTM Table 3, Vimeo-90K, section 4.3): a [PSNR, SSIM] pair
    per row and column, of the rows that name a project model (``none``: the compressed frames themselves, the
    'HEVC' row). The columns' QPs are the registry's ``column_qps``, or ``column_qps_inferred`` where the
    headers were lost (the column label says so)."""
    d = load_claims(paper)
    out = []
    for m in d.get("match") or []:
        if m.get("metric") != "psnr_ssim":
            continue
        t = d["tables"][m["table"]]
        setup = table_setup(paper, m["table"])
        qps = t.get("column_qps") or t.get("column_qps_inferred") or []
        if not qps:
            raise ReportError(f"claims {paper}.yaml table {m['table']}: no column_qps (the QP of each column)")
        lost = "column_qps" not in t
        for r in t["rows"]:
            if not r.get("model"):
                continue
            for i, qp in enumerate(qps):
                for j, (what, unit) in enumerate(ABSOLUTE):
                    out.append({"paper": paper, "table": m["table"], "row_key": "average", "row": r["label"],
                                "column": f"QP {qp}" + (" (header lost, QP inferred)" if lost else ""),
                                "model": r["model"], "config": str(t["config"]).lower(), **setup, "qp": int(qp),
                                "what": what, "claimed": r["values"][i][j] if r["values"][i] else None,
                                "unit": unit})
    return out


SPILF_UNITS = {"psnr": "PSNR (dB)", "ms_ssim": "MS-SSIM", "lpips": "LPIPS"}


def _spilf_targets(paper: str) -> list[dict]:
    """Claimed rate-allocated points (SPiLF Table 2) of rows that name a project model (or ``none``, the anchor),
    with the table's codec and dataset."""
    d = load_claims(paper)
    out = []
    for m in d.get("match") or []:
        if m.get("metric") != "spilf_point":
            continue
        t = d["tables"][m["table"]]
        setup = table_setup(paper, m["table"])
        for r in t["rows"]:
            if not r.get("model"):
                continue
            for i, col in enumerate(t["columns"]):
                out.append({"paper": paper, "table": m["table"], "row_key": r["key"], "row": r["label"],
                            "column": col["label"], "model": r["model"], "config": str(t.get("config", "ai")).lower(),
                            **setup, "bpp": float(col["bpp"]), "metric": col["metric"], "claimed": r["values"][i],
                            "unit": f"{SPILF_UNITS[col['metric']]} at {col['bpp']:g} bpp"})
    return out


def _setup_text(codec, dataset, config, qp=None) -> str:
    return (f"{codec or '(no codec)'} / {dataset or '(no dataset)'} / {str(config).upper()}"
            + (f" / QP {int(qp)}" if qp is not None else ""))


NOTHING_TO_COMPARE = "nothing to compare: no result of the claim's codec, dataset and configuration (see note)"


def unmatched_claims(comparison: pd.DataFrame) -> pd.Series:
    """Which rows of :func:`compare`'s table have no result of their claim's codec, dataset and configuration."""
    return comparison["what differs in the setup"] == NOTHING_TO_COMPARE


def _unmatched(t: dict, have: Iterable[tuple]) -> dict:
    """A claim with no result of its own codec, dataset and configuration (and QP) in the run: reproduced NaN, and
    the note names the setups the run does have for the claim's model (or that it has none)."""
    need = _setup_text(t["codec"], t["dataset"], t["config"], t.get("qp"))
    found = sorted({_setup_text(*h) for h in have})
    note = (f"no result of the claim's codec / dataset / configuration ({need}) in this run; "
            f"model '{t['model']}' has results only for: {', '.join(found)}" if found else
            f"model '{t['model']}' not evaluated in this run (the claim's codec / dataset / configuration: {need})")
    return {**t, "reproduced": math.nan, "difference": math.nan, "CI low": math.nan, "CI high": math.nan, "interval": "",
            "claim inside": "n/a", "note": note, "_unmatched": True}


def _spilf_rows(spilf_rows: Iterable[dict], paper: str) -> list[dict]:
    """Claimed SPiLF points next to the measured ones: same codec and dataset as Table 2's, same model (or the
    anchor), same target bpp. A model measured only elsewhere gets one row per target bpp saying so."""
    rows = []
    measured = list(spilf_rows or [])
    have: dict = {}
    for r in measured:
        if r.get("curve") != "anchor":
            have.setdefault(claim_key(r.get("model")), set()).add((r.get("codec"), r.get("dataset"),
                                                                  r.get("config", "ai")))
    for t in _spilf_targets(paper):
        matched = False
        for r in measured:
            is_anchor = r.get("curve") == "anchor"
            if (t["model"] == "none") != is_anchor or (not is_anchor and claim_key(r.get("model")) != t["model"]):
                continue
            if (r.get("codec"), r.get("dataset"), r.get("config", "ai")) != (t["codec"], t["dataset"], t["config"]):
                continue
            matched = True
            value = r.get((t["bpp"], t["metric"]))
            space = r.get("space", "Y")
            if value is None:
                here = sorted({k[0] for k in r if isinstance(k, tuple)})
                rep, note = math.nan, f"{t['bpp']:g} bpp not measured in this run (report.spilf_bpp: {here})"
            elif isinstance(value, str):
                rep, note = math.nan, value
            else:
                rep = float(value)
                note = (f"QPs by integer linear programming among {r.get('qps')}; measured on "
                        + ("RGB, as the paper" if space == "RGB" or t["metric"] == "lpips"
                           else "luma (the paper: RGB; params metrics.rgb)"))
            rows.append({**t, "reproduced": rep,
                         "difference": rep - t["claimed"] if t["claimed"] is not None and not math.isnan(rep)
                         else math.nan, "note": note})
        if not matched and t["model"] in have and t["metric"] == "psnr":
            rows.append(_unmatched(t, have[t["model"]]))
    return rows


def _mean_and_interval(g: pd.DataFrame, vals: pd.Series, average: bool, interval: dict | None):
    """Mean of ``vals`` and, for an average over clips, its interval over clips x seeds (a clip's value: its mean
    over seeds; :func:`inloop.reporting.aggregate.mean_interval`) and the interval's method, n and level."""
    from .aggregate import INTERVAL, mean_interval

    lo = hi = math.nan
    method = "a single value: no interval"
    if average:
        seeds = g["seed"] if "seed" in g else pd.Series("", index=g.index)
        m = vals.groupby([g["sequence"], seeds]).mean().unstack()
        lo, hi, method = mean_interval(m.to_numpy(dtype=float), **{**INTERVAL, **(interval or {})})
    return float(vals.mean()), lo, hi, method


def _inside(claimed, lo, hi) -> str:
    if claimed is None or pd.isna(lo) or pd.isna(hi):
        return "n/a"
    return "yes" if lo <= claimed <= hi else "no"


def _setup_mask(p: pd.DataFrame, t: dict) -> pd.Series:
    return ((p["codec"] == t["codec"]) & (p["dataset"] == t["dataset"]) & (p["config"] == t["config"])
            & (p["qp"] == t["qp"]))


def _delta_rows(pts: pd.DataFrame, paper: str, have: dict, interval: dict | None) -> list[dict]:
    """Delta claims (NL-ConvLSTM Tables 2 and 4) next to the mean ``delta`` of the model's points of the claim's
    codec, dataset, configuration and QP (one sequence, or all of them for an average)."""
    rows = []
    for t in _delta_targets(paper):
        g = pts[(pts["_claim_model"] == t["model"]) & _setup_mask(pts, t)] if not pts.empty else pts
        if t["row_key"] != "average" and not g.empty:
            g = g[g["sequence"].map(normalize_sequence) == t["row_key"]]
        if g.empty:
            if t["row_key"] == "average" and t["model"] in have and t["what"] == DELTAS[0][0]:
                rows.append(_unmatched(t, have[t["model"]]))
            continue
        scale = 100.0 if t["what"] == "delta_ssim_y" else 1.0
        vals = pd.to_numeric(g[t["what"]], errors="coerce") * scale
        rep, lo, hi, method = _mean_and_interval(g, vals, t["row_key"] == "average", interval)
        rows.append({**t, "reproduced": rep, "difference": rep - t["claimed"] if t["claimed"] is not None else math.nan,
                     "CI low": lo, "CI high": hi, "interval": method, "claim inside": _inside(t["claimed"], lo, hi),
                     "note": f"QP {t['qp']}, mean over {g['sequence'].nunique()} sequence(s)"})
    return rows


def _absolute_rows(points: pd.DataFrame, pts: pd.DataFrame, paper: str, have: dict,
                   interval: dict | None) -> list[dict]:
    """PSNR / SSIM claims (NL-ConvLSTM Table 3) next to the mean over the clips of the claim's codec, dataset,
    configuration and QP: the model's enhanced frames, or for ``none`` the compressed frames the network takes
    (the filters-off decode; the codec-only evaluations where the run has them)."""
    rows = []
    for t in _absolute_targets(paper):
        if t["model"] == "none":
            sel = points[_setup_mask(points, t)] if not points.empty else points
            own = sel[sel["model"] == "none"] if not sel.empty else sel
            g = (own if not own.empty else sel).drop_duplicates(["sequence"]) if not sel.empty else sel
            col, what = f"decoded_{t['what']}", "the compressed frames (the filters-off decode the network enhances)"
        else:
            g = pts[(pts["_claim_model"] == t["model"]) & _setup_mask(pts, t)] if not pts.empty else pts
            col, what = f"enhanced_{t['what']}", "the enhanced frames"
        vals = pd.to_numeric(g[col], errors="coerce") if not g.empty and col in g else pd.Series(dtype=float)
        if vals.notna().sum() == 0:
            if t["model"] != "none" and t["model"] in have and t["what"] == ABSOLUTE[0][0]:
                rows.append(_unmatched(t, have[t["model"]]))
            continue
        g, vals = g[vals.notna()], vals[vals.notna()]
        rep, lo, hi, method = _mean_and_interval(g, vals, True, interval)
        rows.append({**t, "reproduced": rep, "difference": rep - t["claimed"] if t["claimed"] is not None else math.nan,
                     "CI low": lo, "CI high": hi, "interval": method, "claim inside": _inside(t["claimed"], lo, hi),
                     "note": f"QP {t['qp']}: {what}, the frames evaluate.frames scores, mean over "
                             f"{g['sequence'].nunique()} clip(s)"})
    return rows


def compare(summary: pd.DataFrame, points: pd.DataFrame | None = None, repro: dict | None = None,
            papers: Iterable[str] = PAPERS, spilf_rows: Iterable[dict] | None = None,
            interval: dict | None = None) -> pd.DataFrame:
    """Claimed | reproduced | difference | what differs, for every claim that matches a reproduced row.

    Every claim is matched only with results of its table's codec and dataset (:func:`table_setup`) and its
    configuration: BD-rate claims (GL-Fusion Tables II-VI) the ``model_vs_anchor`` luma rows of ``summary``
    by model and row (Average, Class X, or a CTC sequence by normalised name); delta claims (NL-ConvLSTM
    Table 4, and the ablation, Table 2, at its QP) the mean ``delta`` of ``points`` by model, QP and sequence
    (or all sequences for "Ave." and the ablation); PSNR / SSIM claims (NL-ConvLSTM Table 3, Vimeo-90K) the
    mean enhanced (or, for the HEVC row, compressed) PSNR / SSIM by model and QP. SPiLF's Table 2 points match
    ``spilf_rows`` (the report's rate-allocated rows, :func:`inloop.reporting.tables.spilf_rows_from_points`)
    by model and target bpp. Results of other codecs or datasets are never set next to a claim nor pooled
    with its own: where the run has the claim's model only in other setups, the claim's average gets a row
    with reproduced NaN whose note names the setups the run has. Headline claims (each registry's
    ``headline``) are listed even when the model has no results, with reproduced NaN and the reason.
    ``difference`` is reproduced minus claimed, in the claim's unit. Averages carry their interval over the
    clips (and seeds) (``CI low``, ``CI high``; ``interval``: method, n and level, params
    ``report.interval.level``) and whether the claimed figure lies inside it (``claim inside``: yes / no, and
    n/a where there is no interval: one clip, one seed).
    """
    repro = dict(repro or {})
    rows: list[dict] = []
    s = summary if summary is not None and not summary.empty else pd.DataFrame(
        columns=["model", "config", "comparison", "metric", "level", "row", "sequence", "seq_class", "bd_rate_pct",
                 "codec", "dataset", "note"])
    s = s[(s["comparison"] == "model_vs_anchor") & (s["metric"] == "y")]
    index: dict = {}
    have_bd: dict = {}
    for r in s.itertuples(index=False):
        m = claim_key(r.model)
        index.setdefault((m, r.codec, r.dataset, r.config, _row_key(r.level, r.row, r.sequence, r.seq_class)),
                         []).append(r)
        have_bd.setdefault(m, set()).add((r.codec, r.dataset, r.config))
    points = points if points is not None else pd.DataFrame()
    pts = points[points["model"] != "none"] if not points.empty else points
    have_pts: dict = {}
    if not pts.empty:
        pts = pts.assign(_claim_model=pts["model"].map(claim_key))
        for m, g in pts.groupby("_claim_model"):
            have_pts[m] = set(zip(g["codec"], g["dataset"], g["config"], g["qp"]))
    for paper in papers:
        d = load_claims(paper)
        headline = {(h["table"], h["row"], h["model"]) for h in d.get("headline") or []}
        for t in _bd_targets(paper):
            hits = index.get((t["model"], t["codec"], t["dataset"], t["config"], t["row_key"]), [])
            for h in hits:
                rep = h.bd_rate_pct
                lo, hi = getattr(h, "bd_rate_pct_ci_low", math.nan), getattr(h, "bd_rate_pct_ci_high", math.nan)
                rows.append({**t, "reproduced": rep,
                             "difference": (rep - t["claimed"]) if t["claimed"] is not None and pd.notna(rep) else math.nan,
                             "CI low": lo, "CI high": hi, "interval": getattr(h, "ci_method", ""),
                             "claim inside": _inside(t["claimed"], lo, hi),
                             "note": h.note})
            if not hits and t["row_key"] == "average" and (
                    t["model"] in have_bd or (t["table"], t["row_key"], t["model"]) in headline):
                rows.append(_unmatched(t, have_bd.get(t["model"], ())))
        rows += _spilf_rows(spilf_rows, paper)
        rows += _delta_rows(pts, paper, have_pts, interval)
        rows += _absolute_rows(points, pts, paper, have_pts, interval)
    if not rows:
        return pd.DataFrame(columns=["paper", "table", "row", "column", "config", "model", "codec", "dataset", "unit",
                                     "claimed", "reproduced", "difference", "what differs in the setup", "note"])
    out = pd.DataFrame(rows)
    if "qp" in out:
        out["qp"] = [int(q) if pd.notna(q) else "" for q in out["qp"]]  # delta / PSNR claims; BD-rate: none
    unmatched = (out["_unmatched"].fillna(False).astype(bool) if "_unmatched" in out
                 else pd.Series(False, index=out.index))
    diffs = {}
    for (paper, codec, dataset), g in out[~unmatched].groupby(["paper", "codec", "dataset"], dropna=False):
        info = dict(repro.get((codec, dataset)) or repro.get("default") or {})
        info.setdefault("codec", codec or None)
        info.setdefault("dataset", dataset or None)
        diffs[(paper, codec, dataset)] = setup_differences(paper, info)
    out["what differs in the setup"] = [
        NOTHING_TO_COMPARE if u else diffs[(a, b, c)]
        for a, b, c, u in zip(out["paper"], out["codec"], out["dataset"], unmatched)]
    cols = ["paper", "table", "row", "column", "config", "qp", "model", "codec", "dataset", "unit", "claimed", "reproduced",
            "difference", "CI low", "CI high", "interval", "claim inside", "what differs in the setup", "note"]
    return out[[c for c in cols if c in out.columns]]


__all__ = ["PAPERS", "all_claims", "claim_key", "claim_table", "compare", "load_claims", "normalize_sequence",
           "setup_differences", "table_setup"]
