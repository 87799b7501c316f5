"""Small files for DVC beside the report: headline metrics and plot data.

``write_dvc_files(out_dir, summary, hist)`` writes::

    out_dir/metrics.json                   average Y BD-rate / BD-PSNR / delta-PSNR per
                                           codec, dataset, configuration and model
                                           (``dvc metrics show`` / ``dvc metrics diff``)
    out_dir/dvc/bd_rate.csv                one row per (codec, dataset, config, model):
                                           average Y BD-rate against the anchor (``dvc plots``)
    out_dir/dvc/train_loss/<run>.csv       step, mse: one file per trained network (``dvc plots``)

``summary`` is the BD summary of :func:`inloop.reporting.aggregate.aggregate`,
``hist`` the training histories of :func:`~inloop.reporting.aggregate.load_histories`.
The metrics are nested ``{codec: {dataset: {config: {model: {...}}}}}``; the
filters-off decode (model ``none``) is reported as ``filters_off``. Values that
could not be computed are ``null``.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import pandas as pd

from ..fsutil import atomic_write, write_json
from .plots import safe_name


def _num(x) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def headline_metrics(summary: pd.DataFrame) -> dict:
    """Average luma BD values per codec / dataset / config / model, as nested dicts."""
    out: dict = {}
    if summary.empty:
        return out
    avg = summary[(summary["level"] == "average") & (summary["metric"] == "y")]
    for r in avg.itertuples(index=False):
        name = "filters_off" if r.model == "none" else r.model
        node = out.setdefault(r.codec, {}).setdefault(r.dataset or "none", {}).setdefault(r.config, {})
        entry = node.setdefault(name, {})
        if r.comparison in ("model_vs_anchor", "off_vs_anchor"):
            entry["bd_rate_y_vs_anchor_pct"] = _num(r.bd_rate_pct)
            entry["bd_psnr_y_vs_anchor_db"] = _num(r.bd_psnr_db)
            if r.model != "none":
                entry["delta_psnr_y_db"] = _num(r.delta_psnr_y_mean)
        elif r.comparison == "model_vs_off":
            entry["bd_rate_y_vs_off_pct"] = _num(r.bd_rate_pct)
    return out


def write_dvc_files(out_dir: str | os.PathLike, summary: pd.DataFrame, hist: pd.DataFrame) -> dict:
    """Write ``metrics.json``, ``dvc/bd_rate.csv`` and ``dvc/train_loss/*.csv``; return their paths."""
    out = Path(out_dir)
    metrics = headline_metrics(summary)
    write_json(out / "metrics.json", metrics)

    rows = [{"series": f"{codec} {dataset} {config.upper()} {model}", "bd_rate_pct": v.get("bd_rate_y_vs_anchor_pct")}
            for codec, ds in metrics.items() for dataset, cfgs in ds.items()
            for config, models in cfgs.items() for model, v in models.items()]
    bd_csv = out / "dvc" / "bd_rate.csv"
    bd_csv.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(bd_csv, "w") as fh:
        pd.DataFrame(rows, columns=["series", "bd_rate_pct"]).to_csv(fh, index=False)

    # One file per run: a plot directory for DVC draws each file as its own line. The folder
    # is rebuilt so that a run no longer trained leaves no stale curve behind.
    loss_dir = out / "dvc" / "train_loss"
    shutil.rmtree(loss_dir, ignore_errors=True)
    loss_dir.mkdir(parents=True)
    written = []
    if not hist.empty and "mse" in hist:
        for (model, codec, config, qp), g in hist.groupby(["model", "codec", "config", "qp"], sort=True):
            g = g.dropna(subset=["mse"])
            path = loss_dir / f"{safe_name(model, codec, config, f'qp{qp}')}.csv"
            with atomic_write(path, "w") as fh:
                g[["step", "mse"]].to_csv(fh, index=False)
            written.append(path)
    return {"metrics": out / "metrics.json", "bd_rate": bd_csv, "train_loss": written}
