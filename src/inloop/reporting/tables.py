"""Paper-shaped tables, written as CSV and Markdown (atomically).

Each builder returns a :class:`pandas.DataFrame` whose first column is the row
label and whose other columns are the paper's; :func:`write_table` writes it.
The builders take the aggregated rows (:mod:`inloop.reporting.aggregate`) or,
for the shapes whose stages come later (SPiLF, NL-ConvLSTM), plain row dicts,
so those stages only supply rows.

* :func:`glfusion_table` -- GL-Fusion Table VI (state of the art): sequences by
  class, class averages, Average; BD-rate (%) against the anchor per
  configuration and method, plus delta-PSNR.
* :func:`ablation_table` -- GL-Fusion Tables II-V: one configuration, one column
  per model / variant present.
* :func:`spilf_table` -- SPiLF Table 2: PSNR, MS-SSIM, LPIPS at 0.075 / 0.15 /
  0.3 bpp per method; "n/a (reason)" where a value cannot exist.
* :func:`delta_table` -- NL-ConvLSTM Table 4 (and Table 2's metrics): delta PSNR /
  delta SSIM per sequence and QP, "Ave." per QP.
* :func:`nlconvlstm_ablation_table` -- NL-ConvLSTM's ablation table (section 4.2,
  "Tab. ablation"): mean delta PSNR / delta SSIM per Table-2 mode (Encoder-Decoder
  on 1 frame, ConvLSTM and NL-ConvLSTM on 7) and QP.
* :func:`fluctuation_table` -- NL-ConvLSTM section 4.3: STD and PVD of the
  per-frame PSNR curve.
* :func:`runtime_table` -- NL-ConvLSTM Table 5: run time per frame by resolution.
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ..evaluation.metrics import fluctuation
from ..fsutil import atomic_write
from .aggregate import CLASSES, CONFIG_ORDER

SPILF_BPP = (0.075, 0.15, 0.3)
NA = "n/a"


def cfg_label(config: str) -> str:
    return str(config).upper()


def model_label(model: str) -> str:
    return "filters off" if model == "none" else str(model)


# --------------------------------------------------------------------------- writing


def _cell(x, digits: int) -> str:
    if x is None:
        return NA
    if isinstance(x, (float, np.floating)):
        return NA if not math.isfinite(float(x)) else f"{float(x):.{digits}f}"
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return str(int(x))
    s = str(x)
    return s if s.strip() else ""


def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def _holds_nothing(x) -> bool:
    """No value: None, NaN, an empty string or a bare "n/a" ("n/a (reason)" says why, so it counts as a value)."""
    if x is None or (_is_number(x) and not math.isfinite(float(x))):
        return True
    return isinstance(x, str) and x.strip() in ("", NA)


def table_view(df: pd.DataFrame, digits: int = 2) -> dict:
    """What a rendered table (Markdown and HTML alike) shows of ``df``: the columns and rows that hold data.

    A column none of whose cells holds a value (NaN, None, "" or "n/a") is left out; so is a row none of
    whose value cells holds one, the value cells being those from the first float column on (the columns
    before it label the row: sequence, QP, model ...). Column order is kept; the CSV keeps everything.
    Returns ``{"columns": [names], "rows": [[{"text", "num"}]], "left_out": "the note saying what was
    left out" or ""}`` with each cell formatted as in the CSV's Markdown twin (``digits`` decimals, NaN as
    "n/a"); ``num`` marks numbers (right-aligned).
    """
    if df.shape[1] == 0:
        return {"columns": [], "rows": [], "left_out": ""}
    cells = df.to_numpy(dtype=object)
    empty = np.array([[_holds_nothing(v) for v in row] for row in cells], dtype=bool).reshape(cells.shape)
    first_value = next((i for i in range(df.shape[1]) if pd.api.types.is_float_dtype(df.iloc[:, i])), df.shape[1])
    keep_cols = [i for i in range(df.shape[1]) if len(df) == 0 or not empty[:, i].all()]
    keep_rows, dropped = [], []
    for r, row in enumerate(cells):
        if first_value < df.shape[1] and empty[r, first_value:].all():
            dropped.append(" ".join(_cell(v, digits) for v in row[:first_value] if not _holds_nothing(v))
                           or f"row {r + 1}")
        else:
            keep_rows.append(r)
    left_out = []
    if dropped:
        left_out.append(f"rows with no value left out: {', '.join(dropped)}")
    gone = [str(c) for i, c in enumerate(df.columns) if i not in keep_cols]
    if gone:  # named when few, else counted
        left_out.append(f"columns with no value left out: {', '.join(gone)}" if len(gone) <= 4 else
                        f"{len(gone)} columns with no value left out")
    rows = [[{"text": _cell(cells[r, i], digits), "num": _is_number(cells[r, i])} for i in keep_cols]
            for r in keep_rows]
    return {"columns": [str(df.columns[i]) for i in keep_cols], "rows": rows,
            "left_out": "; ".join(left_out) + " (the CSV has them)" if left_out else ""}


def markdown_table(view: dict) -> str:
    """A :func:`table_view` as a Markdown pipe table (``DataFrame.to_markdown``).

    The first column (the row label) and the columns without a number are left-aligned, the others right-aligned.
    """
    import tabulate  # noqa: F401 - DataFrame.to_markdown's engine, imported here so that envs/ declare it

    esc = lambda s: s.replace("|", "\\|").replace("\n", " ")  # noqa: E731
    cols = [esc(c) for c in view["columns"]]
    if not cols:
        return ""
    body = pd.DataFrame([[esc(c["text"]) for c in row] for row in view["rows"]], columns=range(len(cols)))
    body.columns = cols
    align = ["left"] + ["right" if any(row[i]["num"] for row in view["rows"]) else "left" for i in range(1, len(cols))]
    return body.to_markdown(index=False, tablefmt="pipe", colalign=align if len(body) else None,
                            disable_numparse=True) + "\n"


def to_markdown(df: pd.DataFrame, digits: int = 2) -> str:
    """``df`` as a Markdown table: the columns and rows that hold data (:func:`table_view`), NaN as "n/a"."""
    return markdown_table(table_view(df, digits))


def write_table(df: pd.DataFrame, out_dir: str | os.PathLike, name: str, title: str = "",
                notes: Sequence[str] = (), digits: int = 2) -> dict:
    """Write ``{name}.csv`` (every row and column, full precision) and ``{name}.md`` (title, table, notes).

    Both atomically. The Markdown table is :func:`table_view`'s (what holds data, ``digits`` decimals), the
    returned dict carries that view (``view``) for the HTML page.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / f"{name}.csv", out_dir / f"{name}.md"
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    with atomic_write(csv_path, "w") as fh:
        fh.write(buf.getvalue())
    view = table_view(df, digits)
    md = (f"## {title}\n\n" if title else "") + markdown_table(view)
    lines = [n for n in notes if n] + ([view["left_out"]] if view["left_out"] else [])
    if lines:
        md += "\n" + "\n".join(f"- {n}" for n in lines) + "\n"
    with atomic_write(md_path, "w") as fh:
        fh.write(md)
    return {"name": name, "title": title, "csv": csv_path, "md": md_path, "notes": list(notes), "frame": df,
            "digits": digits, "view": view}


# --------------------------------------------------------------------------- GL-Fusion shapes


def _row_order(summary: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(level, row label, class) in paper order: sequences by class (A..E, then unclassified), classes, Average."""
    seq = summary[summary["level"] == "sequence"][["row", "seq_class"]].drop_duplicates("row")
    seq = seq.assign(_c=seq["seq_class"].map(lambda c: CLASSES.index(c) if c in CLASSES else 9))
    seq = seq.sort_values(["_c", "row"], kind="stable")
    out = [("sequence", r, c) for r, c in zip(seq["row"], seq["seq_class"])]
    classes = sorted(set(summary.loc[summary["level"] == "class", "seq_class"]))
    out += [("class", f"Class {c}", c) for c in classes]
    out.append(("average", "Average", ""))
    out.append(("ci", ci_row_label(summary), ""))
    return out


def models_without_bd(rows: pd.DataFrame) -> list[str]:
    """The networks of ``rows`` (BD-rate summary rows) with no BD-rate in any of them: a Bjontegaard curve needs four
    QPs, and these are trained at fewer (the demo's SPiLF and NL-ConvLSTM). The headline chart names them under its
    axis and the headline table in one note (issue #30)."""
    return sorted(set(rows["model"]) - set(rows.dropna(subset=["bd_rate_pct"])["model"]) - {"none"})


def level_pct(summary: pd.DataFrame | None = None) -> str:
    """The level of the summary's intervals as a label (params report.interval.level), e.g. ``95%``."""
    from .aggregate import INTERVAL

    levels = summary["ci_level"].dropna().unique() if summary is not None and "ci_level" in summary else []
    return f"{100 * float(levels[0] if len(levels) else INTERVAL['level']):g}%"


def ci_row_label(summary: pd.DataFrame | None = None) -> str:
    """The label of a table's interval row: its level and method (each cell adds its n)."""
    return f"Average: {level_pct(summary)} t interval over the clips"


def ci_text(r, col: str = "bd_rate_pct", digits: int = 2) -> str | float:
    """``[low, high] (n = clips[ x seeds])`` of an "Average" summary row's interval (aggregate.mean_interval), or
    NaN where it has none."""
    if r is None:
        return math.nan
    lo, hi = getattr(r, f"{col}_ci_low", math.nan), getattr(r, f"{col}_ci_high", math.nan)
    if pd.isna(lo) or pd.isna(hi):
        return math.nan
    n = int(getattr(r, "n_sequences", 0) or 0)
    seeds = int(getattr(r, "n_seeds", 1) or 1)
    return f"[{lo:.{digits}f}, {hi:.{digits}f}] (n = {n}{f' x {seeds} seeds' if seeds > 1 else ''})"


def _cell_value(look: dict, key: tuple, col: str):
    """A table cell from the summary: the value of ``key``'s row, or the interval of its Average row (CI_ROW)."""
    if key[3] == "ci":
        r = look.get((*key[:3], "average", "Average"))
        return ci_text(r, col) if r is not None else math.nan
    r = look.get(key)
    return getattr(r, col) if r is not None else math.nan


def _lookup(summary: pd.DataFrame) -> dict:
    return {(r.model, r.config, r.comparison, r.level, r.row): r for r in summary.itertuples(index=False)}


def glfusion_table(summary: pd.DataFrame, metric: str = "y") -> pd.DataFrame:
    """GL-Fusion Table VI shape (and Table II's row layout): BD-rate (%) against the anchor with filters on.

    Rows: the sequences (grouped by class A-E), ``Class A`` .. ``Class E`` (means
    over the class's sequences), ``Average`` (mean over all sequences). Columns:
    for "filters off" (the codec with its in-loop filters switched off, against
    the anchor) and for each model (enhanced against the anchor) one BD-rate
    column per configuration (AI / LDP / RA), then for each model the mean
    delta PSNR-Y over QPs (enhanced - filters-off decode, dB) per configuration.
    ``summary`` holds one (codec, dataset) only.
    """
    s = summary[summary["metric"] == metric]
    if s.empty:
        return pd.DataFrame()
    configs = sorted(s["config"].unique(), key=lambda c: CONFIG_ORDER.get(c, 9))
    models = sorted(m for m in s["model"].unique() if m != "none")
    look = _lookup(s)
    rows = []
    for level, label, cls in _row_order(s):
        row = {"Sequence": label, "Class": cls if level == "sequence" else ""}
        for m in (["none"] if "none" in set(s["model"]) else []) + models:
            comp = "off_vs_anchor" if m == "none" else "model_vs_anchor"
            for c in configs:
                row[f"{model_label(m)} {cfg_label(c)} BD-rate (%)"] = _cell_value(look, (m, c, comp, level, label),
                                                                                  "bd_rate_pct")
        for m in models:
            for c in configs:
                row[f"{m} {cfg_label(c)} ΔPSNR-Y (dB)"] = _cell_value(look, (m, c, "model_vs_anchor", level, label),
                                                                      "delta_psnr_y_mean")
        rows.append(row)
    out = pd.DataFrame(rows)
    if not (out["Class"] != "").any():
        out = out.drop(columns="Class")  # no CTC class in these data (demo clips)
    return out


def ablation_table(summary: pd.DataFrame, config: str, comparison: str = "model_vs_anchor",
                   metric: str = "y", models: Iterable[str] | None = None) -> pd.DataFrame:
    """GL-Fusion Tables II-V shape: one configuration, one BD-rate column per model / variant present.

    Rows as :func:`glfusion_table`; columns are ``models`` (default: every model
    in ``summary`` other than "none", sorted).
    """
    s = summary[(summary["metric"] == metric) & (summary["config"] == config) & (summary["comparison"] == comparison)]
    if s.empty:
        return pd.DataFrame()
    models = list(models) if models is not None else sorted(m for m in s["model"].unique() if m != "none")
    look = _lookup(s)
    rows = []
    for level, label, cls in _row_order(s):
        row = {"Sequences": label}
        for m in models:
            row[m] = _cell_value(look, (m, config, comparison, level, label), "bd_rate_pct")
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- switched filtering (issue #19)


def switching_bd_table(summary: pd.DataFrame, metric: str = "y") -> pd.DataFrame:
    """Per model and configuration: BD-rate (with its interval) against the anchor and against the
    filters-off decode, the network applied everywhere and CTU-switched, with the share of CTUs switched on
    and the flags' share of the rate (means over clips and QPs)."""
    s = summary[(summary["metric"] == metric) & (summary["level"] == "average")]
    if s.empty or not (s["comparison"] == "switched_vs_anchor").any():
        return pd.DataFrame()
    look = {(r.model, r.config, r.comparison): r for r in s.itertuples(index=False)}
    rows = []
    for m, c in sorted({(r.model, r.config) for r in s.itertuples() if r.comparison == "switched_vs_anchor"},
                       key=lambda mc: (mc[0], CONFIG_ORDER.get(mc[1], 9))):
        row = {"Model": m, "Config": cfg_label(c)}
        for comp, label in (("model_vs_anchor", "everywhere vs anchor"), ("switched_vs_anchor", "switched vs anchor"),
                            ("model_vs_off", "everywhere vs filters off"), ("switched_vs_off", "switched vs filters off")):
            r = look.get((m, c, comp))
            row[f"BD-rate {label} (%)"] = r.bd_rate_pct if r is not None else math.nan
            row[f"BD-rate {label} {level_pct(summary)} CI"] = ci_text(r) if r is not None else math.nan
        r = look.get((m, c, "switched_vs_off"))
        row["CTUs on (%)"] = 100 * r.ctus_on_share if r is not None else math.nan
        row["flag bits (% of rate)"] = 100 * r.flag_share_of_rate if r is not None else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def switching_qp_table(points: pd.DataFrame) -> pd.DataFrame:
    """Per model, configuration and QP, over the held-out clips (and seeds): mean delta-PSNR-Y against the
    filters-off decode with the network everywhere and CTU-switched, how many clips lose quality with each,
    the share of CTUs switched on and the flags' share of the rate."""
    if points.empty or "switched_kbps" not in points:
        return pd.DataFrame()
    p = points[(points["model"] != "none") & points["switched_kbps"].notna()]
    rows = []
    for (m, c, qp), g in p.groupby(["model", "config", "qp"], sort=False):
        d_all = pd.to_numeric(g["delta_psnr_y"], errors="coerce")
        d_sw = pd.to_numeric(g["delta_switched_psnr_y"], errors="coerce")
        rows.append({"Model": m, "Config": cfg_label(c), "QP": int(qp),
                     "ΔPSNR-Y everywhere (dB)": d_all.mean(), "ΔPSNR-Y switched (dB)": d_sw.mean(),
                     "clips below 0 everywhere": f"{int((d_all < 0).sum())} of {len(g)}",
                     "clips below 0 switched": f"{int((d_sw < 0).sum())} of {len(g)}",
                     "CTUs on (%)": 100 * pd.to_numeric(g["ctus_on_share"], errors="coerce").mean(),
                     "flag bits (% of rate)": 100 * pd.to_numeric(g["flag_share_of_rate"], errors="coerce").mean()})
    if not rows:
        return pd.DataFrame()
    out = pd.DataFrame(rows)
    return out.assign(_c=out["Config"].str.lower().map(CONFIG_ORDER)).sort_values(
        ["Model", "_c", "QP"], kind="stable").drop(columns="_c").reset_index(drop=True)


# --------------------------------------------------------------------------- SPiLF Table 2


def interpolate_at(rate: Sequence[float], values: Sequence[float], target: float) -> tuple[float, str]:
    """Value at ``target`` bpp, linear in log(bpp) between the two nearest points; NaN + reason outside the range."""
    pts = sorted((float(r), float(v)) for r, v in zip(rate, values) if r is not None and v is not None
                 and math.isfinite(float(r)) and math.isfinite(float(v)) and float(r) > 0)
    if len(pts) < 2:
        return math.nan, f"{len(pts)} measured point(s)"
    r = np.array([p[0] for p in pts])
    v = np.array([p[1] for p in pts])
    if not r.min() <= target <= r.max():
        return math.nan, f"{target} bpp outside the measured range [{r.min():.3g}, {r.max():.3g}] bpp"
    return float(np.interp(math.log(target), np.log(r), v)), ""


def spilf_rows_from_points(points: pd.DataFrame, curve: str, label: str, model: str | None = None,
                           config: str = "ai", targets: Sequence[float] = SPILF_BPP,
                           qps: Sequence[int] | None = None) -> list[dict]:
    """SPiLF Table 2 rows: each image's QP chosen by integer linear programming (SPiLF 2.3).

    One row per (codec, dataset). Each test sequence is an "image" (all its AI
    frames; pixels = W x H x frames). ``curve`` is ``anchor`` (the codec with
    its filters on: its own bits), ``decoded`` (filters off) or ``enhanced``
    (``model`` applied to the filters-off decode, at the filters-off bits). For
    every target bpp, :func:`inloop.evaluation.allocation.allocate_rates` picks
    one QP per image minimising the total squared error under the bit budget;
    the row holds the pooled PSNR-Y, the pixel-weighted MS-SSIM-Y and the
    achieved bpp of that choice. ``qps`` restricts the candidate QPs (default:
    every QP the curve was measured at). A target below the cheapest choice
    gives "n/a" with the minimum bpp.
    """
    from ..evaluation.allocation import AllocationError, allocate_rates

    p = points[points["config"] == config]
    if model is not None:
        p = p[p["model"] == model]
    # anchor and filters-off measurements are in every evaluation of their point (any model's)
    if qps is not None:
        p = p[p["qp"].isin(list(qps))]
    rows = []
    rate_col = "decoded_bpp" if curve == "enhanced" else f"{curve}_bpp"
    for (codec, dataset), g in p.groupby(["codec", "dataset"], sort=False):
        g = g.drop_duplicates(["sequence", "qp"])
        pixels = (g["width"] * g["height"] * g["frames"]).astype(float)
        # The paper's colour space (CLIC: RGB) where the evaluate stage measured it (metrics.rgb), else luma.
        rgb = f"{curve}_psnr_rgb" in g and pd.to_numeric(g[f"{curve}_psnr_rgb"], errors="coerce").notna().all()
        space = "rgb" if rgb else "y"
        meas = pd.DataFrame({"image": g["sequence"], "qp": g["qp"].astype(int), "pixels": pixels,
                             "bits": (g[rate_col].astype(float) * pixels).round(),
                             "psnr": g[f"{curve}_psnr_{space}"].astype(float)})
        if f"{curve}_ms_ssim_{space}" in g:
            meas["ms_ssim"] = pd.to_numeric(g[f"{curve}_ms_ssim_{space}"], errors="coerce").astype(float)
        lp = pd.to_numeric(g[f"{curve}_lpips"], errors="coerce") if f"{curve}_lpips" in g else None
        if lp is not None and lp.notna().all():
            meas["lpips"] = lp.astype(float)
        row: dict = {"label": label, "codec": codec, "dataset": dataset, "space": space.upper(), "model": model,
                     "curve": curve,
                     "qps": " ".join(map(str, sorted(meas["qp"].unique())))}
        for bpp in targets:
            try:
                r = allocate_rates(meas, [bpp])[0]
            except AllocationError as exc:
                why = str(exc).split(":", 1)[-1].strip()
                for metric in ("psnr", "ms_ssim", "bpp"):
                    row[(bpp, metric)] = f"{NA} ({why})"
            else:
                row[(bpp, "psnr")] = r["psnr"]
                row[(bpp, "ms_ssim")] = r.get("ms_ssim", f"{NA} (not measured)")
                row[(bpp, "bpp")] = r["bpp"]
                row[(bpp, "qp")] = " ".join(f"{k}:{v}" for k, v in r["qp"].items())
                row[(bpp, "lpips")] = r["lpips"] if "lpips" in meas else f"{NA} (see the LPIPS note)"
        rows.append(row)
    return rows


def lpips_note(points: pd.DataFrame) -> str:
    """Why a group of points has no LPIPS: the evaluate stage's recorded reason, if any."""
    for v in points.get("lpips", pd.Series([], dtype=object)).dropna():
        try:
            why = json.loads(v).get("unavailable") if isinstance(v, str) else None
        except ValueError:
            why = None
        if why:
            return why
    return "LPIPS not measured by the evaluate stage"


def spilf_table(rows: Iterable[dict], targets: Sequence[float] = SPILF_BPP) -> pd.DataFrame:
    """SPiLF Table 2 shape: rows = methods (anchor, Arabica, ArabicaPerceptual ...), columns = PSNR / MS-SSIM / LPIPS at 0.075 / 0.15 / 0.3 bpp.

    Each row dict has ``label`` and values keyed ``(bpp, metric)`` with metric in
    ``psnr``, ``ms_ssim``, ``lpips``: a number, or a string such as
    ``"n/a (LPIPS unavailable)"``. Missing keys become ``"n/a (not measured)"``.
    The paper measures PSNR, MS-SSIM and LPIPS on RGB (CLIC); rows carry the
    colour space they were measured in (``space``: RGB with ``metrics.rgb``, else
    Y), which the column names say.
    """
    out = []
    rows = list(rows)
    space = next((r.get("space") for r in rows if r.get("space")), "Y")
    sfx = "-Y" if space == "Y" else " (RGB)"
    for r in rows:
        row = {"Method": r["label"]}
        for k in ("codec", "dataset", "qps"):
            if k in r:
                row[k] = r[k]
        for bpp in targets:
            for metric, name in (("bpp", "bpp used"), ("psnr", f"PSNR{sfx} ↑"), ("ms_ssim", f"MS-SSIM{sfx} ↑"),
                                 ("lpips", "LPIPS ↓")):
                if metric == "bpp" and (bpp, metric) not in r:
                    continue
                row[f"{bpp} bpp {name}"] = r.get((bpp, metric), f"{NA} (not measured)")
        out.append(row)
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- NL-ConvLSTM shapes


def models_by_qps(points: pd.DataFrame, config: str) -> list[tuple[tuple[int, ...], list[str]]]:
    """The models evaluated in ``config`` grouped by their set of QPs, ``[(qps, [models])]``, the group with the
    lowest QPs first: one Table 4-shaped table per group has no block of n/a cells."""
    p = points[(points["config"] == config) & (points["model"] != "none")]
    groups: dict[tuple[int, ...], list[str]] = {}
    for m, g in p.groupby("model", sort=True):
        groups.setdefault(tuple(sorted(int(q) for q in g["qp"].unique())), []).append(str(m))
    return sorted(groups.items())


def infinite_chroma_sequences(points: pd.DataFrame) -> list[str]:
    """Sequences whose YUV-PSNR is missing at some point because a chroma plane is reproduced exactly
    (infinite U/V PSNR, JSON null: grey footage with constant chroma)."""
    out = []
    for seq, g in points.groupby("sequence", sort=True):
        cols = [c for c in ("anchor_psnr_u", "decoded_psnr_u", "anchor_psnr_v", "decoded_psnr_v") if c in g]
        y = [c for c in ("anchor_psnr_y", "decoded_psnr_y") if c in g]
        if cols and y and g[y].notna().all(axis=None) and g[cols].isna().any(axis=None):
            out.append(str(seq))
    return out


def delta_table(points: pd.DataFrame, config: str, models: list[str] | None = None) -> pd.DataFrame:
    """NL-ConvLSTM Table 4 shape: delta PSNR (dB) / delta SSIM (x 10^-2) per sequence and QP, "Ave." per QP.

    Rows: (QP, sequence) then (QP, "Ave."); columns per model: ``{model} ΔPSNR
    (dB)`` and ``{model} ΔSSIM (×10^-2)``, enhanced minus the filters-off decode
    it was computed from (the evaluate stage's ``delta``). ``models``: these only (default all), and only
    the QPs they were evaluated at.
    """
    p = points[(points["config"] == config) & (points["model"] != "none")]
    if models is not None:
        p = p[p["model"].isin(models)]
    if p.empty:
        return pd.DataFrame()
    models = sorted(p["model"].unique())
    rows = []
    for qp, gq in p.groupby("qp", sort=True):
        seqs = list(dict.fromkeys(gq["sequence"]))
        for label in seqs + ["Ave."]:
            row = {"QP": int(qp), "Seq.": label}
            for m in models:
                g = gq[gq["model"] == m]
                if label != "Ave.":
                    g = g[g["sequence"] == label]
                dp = pd.to_numeric(g["delta_psnr_y"], errors="coerce")
                ds = pd.to_numeric(g["delta_ssim_y"], errors="coerce") * 100.0
                row[f"{m} ΔPSNR (dB)"] = float(dp.mean()) if dp.notna().any() else math.nan
                row[f"{m} ΔSSIM (×10^-2)"] = float(ds.mean()) if ds.notna().any() else math.nan
            rows.append(row)
    return pd.DataFrame(rows)


ABLATION_MODES = (("single", "Encoder-Decoder"), ("convlstm", "ConvLSTM"), ("meconvlstm", "ME-ConvLSTM"),
                  ("nlconvlstm", "NL-ConvLSTM"))


def nlconvlstm_ablation_table(points: pd.DataFrame, config: str, modes: dict[str, tuple[str, int]]) -> pd.DataFrame:
    """NL-ConvLSTM ablation shape (section 4.2): rows (QP, ΔPSNR (dB) | ΔSSIM (×10^-2)), one column per model.

    ``modes`` maps each NL-ConvLSTM model name to its ``(mode, frames)``
    (params ``models.<name>.mode`` / ``frames``); columns follow the paper's
    order (Encoder-Decoder with 1 frame, ConvLSTM with 7 frames, ME-ConvLSTM
    with 7 frames, NL-ConvLSTM with 7 frames), headed "<method> with <n>
    frame(s) (<model>)". Values are means over the held-out sequences of the
    evaluate stage's deltas (enhanced minus the decode it was computed from).
    """
    p = points[(points["config"] == config) & points["model"].isin(list(modes))]
    if p.empty:
        return pd.DataFrame()
    rank = {m: i for i, (m, _) in enumerate(ABLATION_MODES)}
    names = dict(ABLATION_MODES)
    present = sorted(set(p["model"]), key=lambda m: (rank.get(modes[m][0], len(rank)), m))
    rows = []
    for qp, gq in p.groupby("qp", sort=True):
        for what, label, scale in (("delta_psnr_y", "ΔPSNR (dB)", 1.0), ("delta_ssim_y", "ΔSSIM (×10^-2)", 100.0)):
            row = {"QP": int(qp), "": label}
            for m in present:
                mode, frames = modes[m]
                n = 1 if mode == "single" else frames
                v = pd.to_numeric(gq.loc[gq["model"] == m, what], errors="coerce") * scale
                row[f"{names.get(mode, mode)} with {n} frame{'s' if n > 1 else ''} ({m})"] = \
                    float(v.mean()) if v.notna().any() else math.nan
            rows.append(row)
    return pd.DataFrame(rows)


def _fluct(frames) -> tuple[float, float]:
    if frames is None or (isinstance(frames, float) and math.isnan(frames)) or len(frames) == 0:
        return math.nan, math.nan
    try:
        f = fluctuation(frames)
    except Exception:  # non-finite per-frame values: no finite fluctuation
        return math.nan, math.nan
    return f["std"], f["pvd"]


def fluctuation_table(points: pd.DataFrame, config: str) -> pd.DataFrame:
    """NL-ConvLSTM section 4.3 shape: STD and PVD (dB) of per-frame Y-PSNR, mean over sequences, per QP.

    Rows per QP: the anchor (codec with filters on), the filters-off decode
    (the paper's "HEVC baseline" is the codec's output) and each model's
    enhanced output. STD / PVD from :func:`inloop.evaluation.metrics.fluctuation`
    (PVD: mean peak-to-nearest-valley difference; NaN where a curve has no
    peak-valley pair, e.g. fewer than three frames).
    """
    p = points[points["config"] == config]
    if p.empty:
        return pd.DataFrame()
    rows = []
    base = p.drop_duplicates(["codec", "dataset", "sequence", "qp"])
    for qp, g in base.groupby("qp", sort=True):
        for curve, label in (("anchor", "anchor (filters on)"), ("decoded", "filters off (decoded)")):
            st = [_fluct(f) for f in g[f"{curve}_psnr_y_frames"]]
            rows.append({"QP": int(qp), "Method": label, "STD (dB)": _nanmean([s[0] for s in st]),
                         "PVD (dB)": _nanmean([s[1] for s in st]), "sequences": len(st)})
    for (qp, m), g in p[p["model"] != "none"].groupby(["qp", "model"], sort=True):
        st = [_fluct(f) for f in g["enhanced_psnr_y_frames"]]
        rows.append({"QP": int(qp), "Method": m, "STD (dB)": _nanmean([s[0] for s in st]),
                     "PVD (dB)": _nanmean([s[1] for s in st]), "sequences": len(st)})
    return pd.DataFrame(rows).sort_values(["QP"], kind="stable").reset_index(drop=True)


def _nanmean(v) -> float:
    a = np.asarray(v, dtype=float)
    return float(np.nanmean(a)) if np.isfinite(a).any() else math.nan


def runtime_table(points: pd.DataFrame) -> pd.DataFrame:
    """NL-ConvLSTM Table 5 shape: run time per frame (ms) by resolution, one row per model.

    Means over every (config, sequence, QP) point of that resolution; the
    evaluate stage's ``seconds_per_frame`` (device and tiling as in params
    ``evaluate``).
    """
    if "seconds_per_frame" not in points:
        return pd.DataFrame()
    p = points[(points["model"] != "none") & points["seconds_per_frame"].notna()]
    if p.empty:
        return pd.DataFrame()
    p = p.assign(resolution=p["width"].astype(int).astype(str) + "x" + p["height"].astype(int).astype(str),
                 pixels=p["width"].astype(int) * p["height"].astype(int),
                 ms=p["seconds_per_frame"].astype(float) * 1000.0)
    order = p.drop_duplicates("resolution").sort_values("pixels")["resolution"].tolist()
    t = p.pivot_table(index="model", columns="resolution", values="ms", aggfunc="mean")
    return t[order].reset_index().rename(columns={"model": "Method"})


__all__ = [
    "ABLATION_MODES", "SPILF_BPP", "ablation_table", "delta_table", "fluctuation_table", "glfusion_table",
    "infinite_chroma_sequences", "models_by_qps",
    "interpolate_at", "markdown_table", "nlconvlstm_ablation_table", "runtime_table", "spilf_rows_from_points",
    "spilf_table", "table_view", "to_markdown", "write_table",
]
