"""Report figures (matplotlib, Agg backend), each written as PNG and SVG atomically.

* :func:`rd_plot` -- RD curves of one sequence and configuration: rate (kbps) vs
  Y-PSNR (dB) of the anchor (codec filters on), the filters-off decode, and each
  model's enhanced output (at the filters-off rate), BD-rate against the anchor
  in the legend. (GL-Fusion Fig. 6.)
* :func:`frames_plot` -- per-frame Y-PSNR at one QP: anchor, filters off, each
  model. (NL-ConvLSTM Fig. 5.)
* :func:`training_plot` -- training loss and validation delta-PSNR vs step, one
  line per QP.
* :func:`bd_bar_plot` -- average BD-rate per configuration and method.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..names import CONFIGS  # noqa: E402
from ..fsutil import atomic_path  # noqa: E402

FORMATS = ("png", "svg")
DPI = 130
ANCHOR_STYLE = {"color": "black", "marker": "o", "linestyle": "-", "linewidth": 1.8}
OFF_STYLE = {"color": "tab:red", "marker": "s", "linestyle": "--", "linewidth": 1.5}
MODEL_COLORS = ["tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:cyan", "tab:pink", "tab:olive"]


def safe_name(*parts) -> str:
    s = "_".join(str(p) for p in parts if p not in (None, ""))
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", s).strip("-")


def save(fig, out_dir: str | os.PathLike, stem: str) -> dict:
    """Save ``fig`` as ``{stem}.png`` and ``{stem}.svg`` atomically; close it; return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for fmt in FORMATS:
        path = out_dir / f"{stem}.{fmt}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=DPI, bbox_inches="tight", metadata={"Date": None} if fmt == "svg" else None)
        paths[fmt] = path
    plt.close(fig)
    return paths


def _style(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)
    ax.minorticks_on()


def _bd_text(bd: pd.DataFrame | None, model: str, config: str, sequence: str, comparison: str, codec, dataset) -> str:
    if bd is None or bd.empty:
        return ""
    r = bd[(bd["model"] == model) & (bd["config"] == config) & (bd["sequence"] == sequence)
           & (bd["comparison"] == comparison) & (bd["metric"] == "y") & (bd["codec"] == codec)
           & (bd["dataset"] == dataset)]
    if r.empty:
        return ""
    v, note = r["bd_rate_pct"].iloc[0], str(r["note"].iloc[0])
    if pd.notna(v):
        return f", BD-rate {v:+.2f}% vs anchor"
    m = re.match(r"(\d+) QP\(s\)", note)
    return f", BD-rate n/a ({m.group(1)} QPs, needs 4)" if m else ", BD-rate n/a (see bd_per_sequence)"


def _interp_anchor(rate, ra, qa, margin: float = 0.1) -> np.ndarray:
    """Anchor Y-PSNR at ``rate``, linear in log(rate); the end segments are extended by ``margin`` of the
    log-rate range (curves at the same QP often lie a fraction of a percent outside); NaN beyond."""
    order = np.argsort(ra)
    la, qa = np.log(np.asarray(ra, float)[order]), np.asarray(qa, float)[order]
    lr = np.log(np.asarray(rate, float))
    v = np.interp(lr, la, qa)
    span = la[-1] - la[0]
    lo, hi = lr < la[0], lr > la[-1]
    if len(la) >= 2:
        v[lo] = qa[0] + (lr[lo] - la[0]) * (qa[1] - qa[0]) / (la[1] - la[0])
        v[hi] = qa[-1] + (lr[hi] - la[-1]) * (qa[-1] - qa[-2]) / (la[-1] - la[-2])
    v[(lr < la[0] - margin * span) | (lr > la[-1] + margin * span)] = np.nan
    return v


def rd_plot(points: pd.DataFrame, bd: pd.DataFrame | None, codec: str, config: str, dataset: str, sequence: str,
            out_dir: str | os.PathLike) -> dict | None:
    """RD curves (kbps vs Y-PSNR) of one sequence and configuration: anchor, filters off, each model and,
    dashed, each model CTU-switched (its flags' bits in the rate).

    The lower panel zooms on the differences: each curve's Y-PSNR minus the
    anchor's at the same rate (anchor interpolated linearly in log rate, end
    segments extended by 10% of the range; points further out are left out).
    """
    g = points[(points["codec"] == codec) & (points["config"] == config) & (points["dataset"] == dataset)
               & (points["sequence"] == sequence)]
    if g.empty:
        return None
    base = g.sort_values("qp").drop_duplicates("qp")
    fig, (ax, dx) = plt.subplots(2, 1, figsize=(6.6, 6.4), sharex=True, gridspec_kw={"height_ratios": [3, 1.4]})
    ra, qa = base["anchor_kbps"].to_numpy(float), base["anchor_psnr_y"].to_numpy(float)
    curves = [(f"anchor: {codec} filters on", ra, qa, ANCHOR_STYLE),
              ("filters off" + _bd_text(bd, "none", config, sequence, "off_vs_anchor", codec, dataset),
               base["decoded_kbps"].to_numpy(float), base["decoded_psnr_y"].to_numpy(float), OFF_STYLE)]
    models = [m for m in sorted(g["model"].unique()) if m != "none"]
    for i, m in enumerate(models):
        gm = g[g["model"] == m]
        if "seed" in gm:  # the first seed's curve (train.seeds: the others are in the tables' intervals)
            gm = gm[gm["seed"] == sorted(gm["seed"].astype(str))[0]]
        gm = gm.sort_values("qp")
        color = MODEL_COLORS[i % len(MODEL_COLORS)]
        curves.append((f"{m} (filters off + CNN)" + _bd_text(bd, m, config, sequence, "model_vs_anchor", codec, dataset),
                       gm["decoded_kbps"].to_numpy(float), gm["enhanced_psnr_y"].to_numpy(float),
                       {"color": color, "marker": "^", "linewidth": 1.5}))
        if "switched_kbps" in gm and gm["switched_kbps"].notna().all():
            curves.append((f"{m} CTU-switched" + _bd_text(bd, m, config, sequence, "switched_vs_anchor", codec,
                                                          dataset),
                           gm["switched_kbps"].to_numpy(float), gm["switched_psnr_y"].to_numpy(float),
                           {"color": color, "marker": "v", "linewidth": 1.2, "linestyle": "--"}))
    for label, r, q, style in curves:
        ax.plot(r, q, label=label, **style)
        dx.plot(r, q - _interp_anchor(r, ra, qa), **style)
    for x, y, qp in zip(ra, qa, base["qp"]):
        ax.annotate(f"QP{qp}", (x, y), textcoords="offset points", xytext=(-5, 7), ha="right", fontsize=7,
                    color="0.3")
    ax.margins(y=0.08)
    short = re.split(r"_\d+x\d+", sequence)[0]
    _style(ax, f"RD: {short} — {config.upper()} ({codec}, {dataset or 'no dataset'})", "", "Y-PSNR (dB)")
    ax.legend(fontsize=8, loc="lower right")
    _style(dx, "", "rate (kbps)", "Δ vs anchor (dB)")
    dx.set_title("Y-PSNR minus anchor at the same rate", fontsize=8, loc="left")
    fig.tight_layout()
    return save(fig, out_dir, safe_name("rd", codec, config, dataset, short))


def frames_plot(points: pd.DataFrame, codec: str, config: str, dataset: str, sequence: str, qp: int,
                out_dir: str | os.PathLike) -> dict | None:
    """Per-frame Y-PSNR at one QP: anchor (filters on), filters off, each model's enhanced output."""
    g = points[(points["codec"] == codec) & (points["config"] == config) & (points["dataset"] == dataset)
               & (points["sequence"] == sequence) & (points["qp"] == qp)]
    if g.empty:
        return None
    first = g.iloc[0]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    curves = [("anchor (filters on)", first["anchor_psnr_y_frames"], ANCHOR_STYLE),
              ("filters off (decoded)", first["decoded_psnr_y_frames"], OFF_STYLE)]
    for i, (_, r) in enumerate(g[g["model"] != "none"].sort_values("model").iterrows()):
        curves.append((f"{r['model']} (enhanced)", r["enhanced_psnr_y_frames"],
                       {"color": MODEL_COLORS[i % len(MODEL_COLORS)], "marker": "^", "linewidth": 1.5}))
    drawn = 0
    for label, frames, style in curves:
        if frames is None or (isinstance(frames, float) and math.isnan(frames)) or len(frames) == 0:
            continue
        y = np.asarray(frames, dtype=float)
        ax.plot(np.arange(len(y)), y, label=f"{label}, mean {np.mean(y):.2f} dB", markersize=4, **style)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    n = len(first["decoded_psnr_y_frames"] or [])
    if n and n <= 32:
        ax.set_xticks(range(n))
    short = re.split(r"_\d+x\d+", sequence)[0]
    _style(ax, f"Per-frame PSNR: {short} — {config.upper()} QP {qp} ({codec})", "frame (display order)",
           "Y-PSNR (dB)")
    ax.minorticks_off()
    ax.legend(fontsize=8)
    return save(fig, out_dir, safe_name("frames", codec, config, dataset, short, f"qp{qp}"))


def training_plot(hist: pd.DataFrame, model: str, codec: str, config: str, out_dir: str | os.PathLike) -> dict | None:
    """Training loss (log scale) and validation delta-PSNR vs step, one line per QP."""
    h = hist[(hist["model"] == model) & (hist["codec"] == codec) & (hist["config"] == config)]
    if h.empty or "step" not in h:
        return None
    loss_col = "mse" if "mse" in h else ("loss" if "loss" in h else None)
    has_val = "val_delta_psnr" in h and h["val_delta_psnr"].notna().any()
    fig, axes = plt.subplots(1, 2 if has_val else 1, figsize=(11 if has_val else 6.4, 4.2), squeeze=False)
    ax = axes[0][0]
    for i, (qp, g) in enumerate(h.groupby("qp", sort=True)):
        color = MODEL_COLORS[i % len(MODEL_COLORS)]
        if loss_col:
            gl = g.dropna(subset=[loss_col]).sort_values("step")
            ax.plot(gl["step"], gl[loss_col], color=color, linewidth=1.2, label=f"QP {qp}")
        if has_val:
            gv = g.dropna(subset=["val_delta_psnr"]).sort_values("step")
            axes[0][1].plot(gv["step"], gv["val_delta_psnr"], color=color, marker="o", markersize=3, label=f"QP {qp}")
    if loss_col:
        ax.set_yscale("log")
    _style(ax, f"Training loss: {model} — {config.upper()} ({codec})", "step",
           f"training {loss_col or 'loss'} (samples scaled to [0, 1]; log scale)")
    ax.legend(fontsize=8)
    if has_val:
        a2 = axes[0][1]
        a2.axhline(0.0, color="0.5", linewidth=0.8)
        _style(a2, f"Validation ΔPSNR: {model} — {config.upper()}", "step", "ΔPSNR vs filters-off input (dB)")
        a2.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, out_dir, safe_name("training", model, codec, config))


def bd_bar_plot(summary: pd.DataFrame, codec: str, dataset: str, out_dir: str | os.PathLike) -> dict | None:
    """Average BD-rate (Y, vs anchor) per configuration: filters off and each model, as grouped bars.

    Only values are drawn: a model a configuration does not train has no bar there, and a model with no
    BD-rate anywhere (fewer than four QPs, as SPiLF's and NL-ConvLSTM's demo models) is named under the
    axes instead of drawn as "n/a" bars (issue #30)."""
    s = summary[(summary["level"] == "average") & (summary["metric"] == "y") & (summary["codec"] == codec)
                & (summary["dataset"] == dataset) & summary["comparison"].isin(["off_vs_anchor", "model_vs_anchor"])]
    from .tables import models_without_bd

    no_bd = models_without_bd(s)
    s = s.dropna(subset=["bd_rate_pct"])
    if s.empty:
        return None
    configs = [c for c in CONFIGS if c in set(s["config"])]
    methods = (["none"] if "none" in set(s["model"]) else []) + sorted(m for m in s["model"].unique() if m != "none")
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(configs))
    for i, m in enumerate(methods):
        vals = [s[(s["model"] == m) & (s["config"] == c)]["bd_rate_pct"].mean() for c in configs]
        color = OFF_STYLE["color"] if m == "none" else MODEL_COLORS[(i - 1) % len(MODEL_COLORS)]
        bars = ax.bar(x + (i - (len(methods) - 1) / 2) * width, np.nan_to_num(vals), width,
                      label="filters off" if m == "none" else m, color=color)
        for b, v in zip(bars, vals):
            if not np.isfinite(v):  # not trained for this configuration: no bar, no label
                continue
            ax.annotate(f"{v:+.2f}", (b.get_x() + b.get_width() / 2, b.get_height()),
                        textcoords="offset points", xytext=(0, 3 if v >= 0 else -11), ha="center", fontsize=8)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, [c.upper() for c in configs])
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo - 0.12 * (hi - lo), hi + 0.12 * (hi - lo))
    _style(ax, f"Average BD-rate vs anchor ({codec}, {dataset or 'no dataset'})",
           "configuration" + (f"\nno BD-rate (fewer than 4 QPs; ΔPSNR in the tables): {', '.join(no_bd)}"
                              if no_bd else ""),
           "BD-rate, Y (%)  (negative = bit saving)")
    ax.minorticks_off()
    ax.legend(fontsize=8)
    return save(fig, out_dir, safe_name("bdrate", codec, dataset))


__all__ = ["FORMATS", "bd_bar_plot", "frames_plot", "rd_plot", "safe_name", "save", "training_plot"]
