"""The report: tables, plots, claims comparison and one self-contained ``index.html``.

``build_report(eval_dir_or_files, models_dir, out_dir, params)`` writes::

    out_dir/index.html            every table inline, every file linked (relative links)
    out_dir/tables/*.csv|md       paper-shaped tables and the long-form data behind them
    out_dir/claims/*.csv|md       each paper's claimed tables as transcribed, and the comparison
    out_dir/plots/*.png|svg       RD curves, per-frame PSNR, training curves, BD-rate bars
    out_dir/tables/bench_*        run time from ``inloop bench`` results next to the papers' figures

Every file goes through :mod:`inloop.fsutil` (temp file + rename). The CLI is
``inloop report --eval-dir results/eval --models-dir results/models --out
results/report [--params params.yaml]`` (:func:`register`).
"""

from __future__ import annotations

import argparse
import functools
import os
from pathlib import Path

from .. import paths
from ..fsutil import atomic_dir, atomic_write
from ..lazy import lazy_import
from ..names import CONFIGS
from .aggregate import ReportError

# pandas / matplotlib load when a report is built, not when `inloop` builds its parser.
pd = lazy_import("pandas")

MODE_SENTENCE = ("In AI every frame is intra coded, so filtering the filters-off reconstruction equals in-loop "
                 "filtering; in LDP and RA the filter is applied to the decoded frames as post-processing, as "
                 "GL-Fusion does in its experiments (section IV.A), so its output is not used as a reference "
                 "for later frames.")


def _get(params: dict | None, dotted: str, default):
    node = params or {}
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _rel(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _spec(params: dict | None, model: str) -> dict:
    """``models.<model>``'s network (its ``base``, ``arch`` resolved); a model the params do not list is its own
    arch. Only the network is read: a report does not need the train / qps settings to be valid."""
    from ..params import model_network

    try:
        return model_network(params or {}, model)
    except Exception:  # noqa: BLE001 - a report of old results must not fail on params that moved on
        return {"arch": model, "kwargs": {}}


# The paper whose setup a network's results are compared with (the baselines appear in GL-Fusion's tables).
ARCH_PAPER = {"glfusion": "glfusion", "arcnn": "glfusion", "dncnn": "glfusion", "vrcnn": "glfusion",
              "spilf": "spilf", "nlconvlstm": "nlconvlstm"}


def _training_runs(hist: pd.DataFrame) -> pd.DataFrame:
    """One row per trained network (its model.json, as :func:`load_histories` read it): model, arch, codec, steps,
    the global batch, the device and precision it trained in."""
    cols = ["model", "arch", "source", "codec", "trained_steps", "batch", "device", "precision"]
    if hist.empty or "arch" not in hist:
        return pd.DataFrame(columns=cols)
    return hist.drop_duplicates("path").reindex(columns=cols).rename(columns={"trained_steps": "steps"})


#: The key of :func:`_training_lines` under which the networks of no paper (a researcher's own) are listed.
OWN = "own"


def _training_lines(runs: pd.DataFrame) -> dict:
    """Per paper, one phrase of what its networks ran: steps, batch, device and precision per model; the networks
    of no paper (README, "Your own filter") under :data:`OWN`, with the class and the hash of their source."""
    out: dict = {}
    if runs.empty:
        return out
    for model, g in runs.groupby("model", sort=True):
        arch = str(g["arch"].iloc[0])
        paper = ARCH_PAPER.get(arch, OWN)

        def spread(col, unit=""):
            vals = sorted({v for v in g[col] if pd.notna(v)}, key=str)
            return "/".join(f"{v:g}" if isinstance(v, float) else str(v) for v in vals) + unit if vals else "?"

        what = f" ({arch}, source sha256 {spread('source')})" if paper == OWN else ""
        out.setdefault(paper, []).append(f"{model}{what} {spread('steps')} steps of {spread('batch')} on "
                                         f"{spread('device')} in {spread('precision')}")
    return {p: "; ".join(v) for p, v in out.items()}


def _repro_info(points: pd.DataFrame, hist: pd.DataFrame, params: dict | None) -> dict:
    runs = _training_runs(hist)
    info: dict = {}
    for (codec, dataset), g in points.groupby(["codec", "dataset"], sort=False):
        d = {"codec": codec, "dataset": dataset or "(none)", "sequences": g["sequence"].nunique(),
             "classes": sorted(c for c in g["seq_class"].unique() if c),
             "frames": "/".join(f"{c.upper()} {int(f)}" for c, f in
                                g.groupby("config", sort=False)["frames"].max().items()),
             "device": _get(params, "train.device", "cpu"),
             "models": sorted(m for m in g["model"].unique() if m != "none"),
             "deviations": _get(params, "report.deviations", {}) or {}}
        if codec == "x265":
            d["codec_version"] = f"FFmpeg/libx265, preset {_get(params, 'codecs.x265.preset', '?')}"
        d["training"] = _training_lines(runs[runs["codec"] == codec] if not runs.empty else runs)
        if not hist.empty and "step" in hist:
            h = hist[hist["codec"] == codec]
            if not h.empty:
                d["train_steps"] = int(h["step"].max())
        elif _get(params, "train.steps", None) is not None and (points["model"] != "none").any():
            d["train_steps"] = _get(params, "train.steps", None)
        info[(codec, dataset)] = d
    return info


class _Tables:
    """Writes the report's tables (``tables/`` or ``claims/``, CSV + Markdown) and remembers what it wrote."""

    def __init__(self, out: Path):
        self.dirs = {"tables": out / "tables", "claims": out / "claims"}
        self.written: dict[str, dict] = {"tables": {}, "claims": {}}

    def put(self, df, name, title, notes=(), digits=2, where="tables") -> dict:
        from . import tables

        info = tables.write_table(df, self.dirs[where], name, title, notes, digits)
        self.written[where][name] = info
        return info


# --------------------------------------------------------------------------- sections: data only


def _long_tables(put, points, bd, summary, method: str) -> list[dict]:
    """The data behind everything: every point, BD per sequence, the summary (linked under "Data")."""
    from .aggregate import points_for_csv

    if points.empty:
        return []
    return [put(points_for_csv(points), "points",
                "Every evaluation point (one row per model, codec, config, dataset, sequence, QP)", digits=4),
            put(bd, "bd_per_sequence", f"BD-rate / BD-PSNR per sequence ({method}), all comparisons, Y and YUV PSNR",
                ["comparison: model_vs_anchor = enhanced vs codec with filters on (the papers' "
                 "number); model_vs_off = enhanced vs filters-off decode; off_vs_anchor = "
                 "filters off vs filters on (model 'none')",
                 "NaN rows carry the Bjontegaard check's message in 'note'"], digits=3),
            put(summary, "bd_summary", "Per-sequence, per-class (A-E) and average BD values per configuration",
                ["class rows: mean over the class's sequences; Average: mean over all "
                 "sequences (as GL-Fusion's tables)"], digits=3)]


def _glfusion_tables(put, s, p, codec, dataset, tag, method: str) -> list[dict]:
    """GL-Fusion Table VI shape, on Y and on YUV PSNR."""
    from . import tables

    out = []
    ds = dataset or "no dataset"
    gl = tables.glfusion_table(s, "y")
    if not gl.empty:
        out.append(put(
            gl, f"glfusion_table6_{tag}",
            f"GL-Fusion Table VI shape: BD-rate (%, Y, {method}) against {codec} with filters on — {ds}",
            ["negative = bit saving against the anchor (codec with its in-loop filters on)",
             "'filters off' = the same codec with deblocking and SAO off: what switching the filters off costs",
             "model columns: the enhanced filters-off decode at the filters-off rate; "
             "ΔPSNR-Y = mean over QPs of enhanced minus filters-off Y-PSNR",
             "class rows = mean over the class's sequences; Average = mean over all sequences"
             + ("" if (p["seq_class"] != "").any() else " (these clips have no CTC class, so no class rows)"),
             MODE_SENTENCE]))
    gly = tables.glfusion_table(s, "yuv")
    if not gly.empty:
        flat = tables.infinite_chroma_sequences(p)
        out.append(put(gly, f"glfusion_table6_yuv_{tag}", f"Same as above with YUV-PSNR = (6Y+U+V)/8 — {ds}",
                       ["BD-rate (%) on YUV-PSNR; the papers quote luma"]
                       + ([f"n/a for {', '.join(flat)}: the decode's chroma equals the original's at some QP (grey "
                           "footage: constant chroma), so U/V PSNR and YUV-PSNR are infinite there"] if flat else [])))
    return out


def _model_tables(put, s, p, dataset, tag) -> list[dict]:
    """Per configuration: GL-Fusion Tables II-V shape, BD-rate against filters off, NL-ConvLSTM Table 4 shape."""
    from . import tables

    out = []
    ds = dataset or "no dataset"
    for cfg in [c for c in CONFIGS if c in set(p["config"])]:
        ab = tables.ablation_table(s, cfg)
        if not ab.empty:
            out.append(put(ab, f"ablation_{cfg}_{tag}", f"GL-Fusion Tables II-V shape: BD-rate (%) vs anchor, "
                                                        f"{cfg.upper()}, one column per model / variant — {ds}"))
        ab2 = tables.ablation_table(s, cfg, comparison="model_vs_off")
        if not ab2.empty:
            out.append(put(ab2, f"vs_filters_off_{cfg}_{tag}", f"BD-rate (%) of each model against the filters-off "
                                                               f"decode it filters, {cfg.upper()} — {ds}"))
        # one table per set of QPs: models trained at other QPs (GL-Fusion 22-37, SPiLF 37-51) in one table
        # were blocks of n/a (issue #30); the lowest QPs keep the table's name
        groups = tables.models_by_qps(p, cfg)
        for i, (qps, models) in enumerate(groups):
            dt = tables.delta_table(p, cfg, models)  # (switching: _switching_tables)
            if dt.empty:
                continue
            qtxt = f", QP {'/'.join(map(str, qps))}" if len(groups) > 1 else ""
            out.append(put(dt, f"nlconvlstm_table4_{cfg}_{tag}" + (f"_qp{'-'.join(map(str, qps))}" if i else ""),
                           f"NL-ConvLSTM Table 4 shape: ΔPSNR / ΔSSIM per sequence and QP, {cfg.upper()}{qtxt} — {ds}",
                           ["Δ = enhanced minus the filters-off decode (NL-ConvLSTM: minus the "
                            "codec's output, which had its loop filters on for Yang et al.'s data)"], digits=3))
    return out


def _switching_tables(put, s, p, dataset, tag) -> list[dict]:
    """CTU-switched filtering (inloop.evaluation.switching): BD-rate with and without switching, per QP the
    delta-PSNR, the share of CTUs switched on and the flags' share of the rate."""
    from ..evaluation.switching import SWITCHED_MODES
    from . import tables

    out = []
    ds = dataset or "no dataset"
    modes = "; ".join(f"{c.upper()}: {m}" for c, m in SWITCHED_MODES.items() if c in set(p["config"]))
    notes = ["switched: per frame an enable flag and one flag per CTU, each CTU taking the network's or the "
             "decoded samples by D + lambda R (HM-16.9's slice lambda for the picture's QP and GOP position); the "
             "flags' bits, as a CABAC-style coder spends them (three contexts by the left and above CTUs' flags, "
             "as VVC codes alf_ctb_flag, each with VVC's two-rate probability estimate), are added to the rate; an "
             "off CTU takes the filters-off decode, without the codec's deblocking and SAO, where a codec would "
             "keep them",
             f"what a switched frame is: {modes}"]
    bt = tables.switching_bd_table(s)
    if not bt.empty:
        out.append(put(bt, f"switching_bd_{tag}", f"CTU-switched filtering: average BD-rate (%), Y — {ds}",
                       notes + ["everywhere: the network on every pixel (the papers' setting); "
                                f"{tables.level_pct(s)} CI: Student-t interval of the mean over the held-out clips "
                                "(and seeds), n next to it"]))
    qt = tables.switching_qp_table(p)
    if not qt.empty:
        out.append(put(qt, f"switching_qp_{tag}", f"CTU-switched filtering per QP — {ds}",
                       ["ΔPSNR-Y: mean over the held-out clips of the reconstruction minus the filters-off decode "
                        "(the switched one at the filters-off rate plus its flag bits)"], digits=3))
    return out


def _nlconvlstm_tables(put, p, dataset, tag, params) -> list[dict]:
    """Per configuration: NL-ConvLSTM ablation shape (section 4.2) and quality fluctuation (section 4.3)."""
    from . import tables

    out = []
    ds = dataset or "no dataset"
    nl_modes = {m: (str(_spec(params, m)["kwargs"].get("mode", "nlconvlstm")),
                    int(_spec(params, m)["kwargs"].get("frames", 7)))
                for m in sorted(set(p["model"]) - {"none"}) if _spec(params, m)["arch"] == "nlconvlstm"}
    for cfg in [c for c in CONFIGS if c in set(p["config"])]:
        at = tables.nlconvlstm_ablation_table(p, cfg, nl_modes)
        if not at.empty:
            trained = {nl_modes[m][0] for m in p.loc[p["config"] == cfg, "model"].unique() if m in nl_modes}
            missing = [name for mode, name in tables.ABLATION_MODES if mode not in trained]
            out.append(put(
                at, f"nlconvlstm_ablation_{cfg}_{tag}",
                f"NL-ConvLSTM ablation shape (section 4.2): ΔPSNR / ΔSSIM per mode, {cfg.upper()} — {ds}",
                ["mean over the held-out sequences of enhanced minus the decode; the paper's values (Yang et "
                 "al.'s dataset, HM LDP QP 37) are in the claims comparison; ME-ConvLSTM: the paper does not "
                 "describe it, the project's is a ConvLSTM whose states follow a learned motion field "
                 "(inloop.models.nlconvlstm.FlowWarp)"]
                + ([f"not trained in this run: {', '.join(missing)} (models.<name>.mode; "
                    "config/nlconvlstm-ablation.yaml adds them)"] if missing else []),
                digits=3))
        ft = tables.fluctuation_table(p, cfg)
        if not ft.empty:
            out.append(put(ft, f"fluctuation_{cfg}_{tag}",
                           f"NL-ConvLSTM 4.3 shape: quality fluctuation (STD, PVD of per-frame Y-PSNR), "
                           f"{cfg.upper()} — {ds}",
                           ["PVD: mean difference between each peak and its nearest preceding/following "
                            "valley (MFQE); n/a when a curve has no peak-valley pair"], digits=3))
    return out


def _spilf_table(put, p, codec, dataset, tag, params) -> tuple[list[dict], list[dict]]:
    """SPiLF Table 2: per target bpp, each image's QP by integer linear programming (SPiLF 2.3).

    Returns ``([table info] or [], the rows)``; the rows also feed the claims comparison."""
    from . import tables

    if "ai" not in set(p["config"]):
        return [], []
    targets = [float(t) for t in _get(params, "report.spilf_bpp", tables.SPILF_BPP)]
    ai = p[p["config"] == "ai"]
    spilf_models = [m for m in sorted(set(ai["model"]) - {"none"}) if _spec(params, m)["arch"] == "spilf"]
    qps = sorted(ai[ai["model"].isin(spilf_models)]["qp"].unique()) if spilf_models else sorted(ai["qp"].unique())
    rows = tables.spilf_rows_from_points(ai, "anchor", f"anchor ({codec}, filters on)", targets=targets, qps=qps)
    rows += tables.spilf_rows_from_points(ai, "decoded", f"{codec}, filters off", targets=targets, qps=qps)
    for m in spilf_models:
        rows += tables.spilf_rows_from_points(ai, "enhanced", m, model=m, targets=targets, qps=qps)
    sp = tables.spilf_table(rows, targets)
    lpips_cells = sp.filter(like="LPIPS").astype(str)
    lpips_missing = bool(lpips_cells.apply(lambda c: c.str.startswith(tables.NA)).any(axis=None))
    info = put(sp, f"spilf_table2_{tag}", f"SPiLF Table 2 shape — {dataset or 'no dataset'}",
               ([f"LPIPS note: {tables.lpips_note(ai)}"] if lpips_missing else []) +
               [f"targets {', '.join(map(str, targets))} bpp (params report.spilf_bpp; the paper: "
                "0.075, 0.15, 0.3 on CLIC 2022); each held-out sequence's QP among "
                f"{', '.join(map(str, qps))} chosen by integer linear programming (SPiLF 2.3: "
                "minimum total squared error under the total bit budget, HiGHS)",
                ("PSNR (RGB, as the paper) from the pooled MSE, MS-SSIM (RGB) pixel-weighted"
                 if rows and rows[0].get("space") == "RGB" else
                 "PSNR-Y from the pooled MSE, MS-SSIM-Y pixel-weighted (the paper: RGB; "
                 "params metrics.rgb measures RGB)")
                + "; models at the filters-off bits; 'bpp used' is what the chosen QPs spend",
                "a target below the cheapest choice of every sequence is n/a, with the minimum"],
               digits=4)
    return [info], rows


def _shaped_tables(put, points, summary, params, method: str) -> tuple[list[dict], list[dict]]:
    """The paper-shaped tables of every (codec, dataset), and the SPiLF Table 2 rows of every run."""
    from . import plots, tables

    shaped: list[dict] = []
    spilf_rows: list[dict] = []
    if points.empty:
        return shaped, spilf_rows
    for codec, dataset in points.groupby(["codec", "dataset"], sort=False).groups:
        tag = plots.safe_name(codec, dataset)
        s = summary[(summary["codec"] == codec) & (summary["dataset"] == dataset)]
        p = points[(points["codec"] == codec) & (points["dataset"] == dataset)]
        shaped += _glfusion_tables(put, s, p, codec, dataset, tag, method)
        if (p["model"] != "none").any():
            shaped += _model_tables(put, s, p, dataset, tag)
            shaped += _switching_tables(put, s, p, dataset, tag)
        shaped += _nlconvlstm_tables(put, p, dataset, tag, params)
        rt = tables.runtime_table(p)
        if not rt.empty:
            notes = [f"device: params evaluate.device = {_get(params, 'evaluate.device', '?')}"]
            reused = sorted(p.loc[pd.to_numeric(p["warps_reused"]).fillna(0) > 0, "model"].unique())
            if reused:
                notes.append(f"{', '.join(reused)}: per frame of a clip filtered in order, the non-local weights "
                             "between two neighbouring frames computed once for the windows that share them "
                             "(Table 5 times one window on its own, as `inloop bench` does)")
            shaped.append(put(rt, f"runtime_{tag}", "NL-ConvLSTM Table 5 shape: ms per frame by resolution", notes))
        infos, rows = _spilf_table(put, p, codec, dataset, tag, params)
        shaped += infos
        spilf_rows += rows
    return shaped, spilf_rows


def _claims(put, papers, summary, points, repro, spilf_rows, interval=None) -> dict:
    """Each paper's claimed tables as transcribed (``claims/``) and the claimed-vs-reproduced comparison."""
    from . import claims as claims_mod

    claimed = []
    for paper in papers:
        d = claims_mod.load_claims(paper)
        for tname, t in d["tables"].items():
            cap = t.get("caption") or t.get("caption_note") or ""
            tn = [f"source: paper {d['source'].split('_')[0]} (docs/papers.md; source text {d['source']})"] + \
                [t[k] for k in ("config_note", "note", "unit", "columns_note", "caption_note") if t.get(k)]
            claimed.append((paper, put(claims_mod.claim_table(paper, tname), f"{paper}_table{tname}",
                                       f"{d['title'][:60]}… — Table {tname}: {cap}", tn, digits=3, where="claims")))
    comparison = claims_mod.compare(summary, points, repro, papers, spilf_rows=spilf_rows, interval=interval)
    info = put(comparison, "comparison", "Claimed vs reproduced",
               ["difference = reproduced − claimed, in the claim's unit",
                "CI low / high: the interval of an average over the held-out clips (and seeds, train.seeds); "
                "'interval' names its method, n and level (report.interval.level); 'claim inside' says whether "
                "the paper's figure lies in it (n/a: one clip and one seed, no interval)",
                "BD-rate claims are luma BD-rate against the codec with its filters on",
                "each claim is read only against results of its table's codec, dataset and configuration (and QP); "
                "where the run has the model only in another setup, the row says so and names what the run has"],
               digits=2, where="claims")
    return {"claimed": claimed, "comparison": comparison, "comparison_table": _shown_claims(info, comparison)}


def _shown_claims(info: dict, comparison: pd.DataFrame) -> dict:
    """The comparison as the page shows it: the claims this run can be read against; the others (no result of
    their codec, dataset and configuration: every claim, on the demo) summed up in one note instead of one
    "nothing to compare" row each (issue #30). The CSV and Markdown keep every row."""
    from .claims import unmatched_claims
    from .tables import table_view

    if comparison.empty:
        return info
    unmatched = unmatched_claims(comparison)
    if not unmatched.any():
        return info
    setups = sorted({f"{r.paper} {str(r.codec)}/{r.dataset}/{str(r.config).upper()}"
                     for r in comparison[unmatched].itertuples(index=False)})
    note = (f"{int(unmatched.sum())} of {len(comparison)} claims not shown: this run has no result of their codec, "
            f"dataset and configuration ({', '.join(setups)}); the CSV lists each with what the run has instead")
    return {**info, "view": table_view(comparison[~unmatched], 2), "notes": [note] + list(info.get("notes", []))}


def _bench(put, bench_results: dict, bench_listed: list[str]) -> dict:
    """Run time: one section per ``inloop bench`` result (machine, command, inference and training tables)."""
    from . import benchmarks as bench_mod
    from . import plots

    sections = []
    tags: set[str] = set()
    for path, result in bench_results.items():
        tag = plots.safe_name(Path(path).stem)
        while tag in tags:  # two files with one name in different folders
            tag += "-2"
        tags.add(tag)
        infos = []
        head = [f"measured on: {bench_mod.machine_line(result)}", f"command: {result['command']}"]
        inf = bench_mod.inference_table(result)
        if not inf.empty:
            infos.append(put(inf, f"bench_inference_{tag}",
                             f"Inference ms per frame, ours next to NL-ConvLSTM Table 5 — {path}",
                             head + bench_mod.paper_notes(result)))
        tr = bench_mod.training_table(result)
        if not tr.empty:
            infos.append(put(tr, f"bench_training_{tag}", f"Training throughput — {path}",
                             head + ["synthetic batch on the device; model FLOPs = 3 x forward; MFU only "
                                     "where a peak is known (GPUs)"], digits=4))
        sections.append({"path": path, "machine": bench_mod.machine_line(result), "command": result["command"],
                         "tables": infos})
    return {"sections": sections, "listed": bench_listed, "command": bench_mod.BENCH_COMMAND,
            "missing": [f for f in bench_listed if f not in bench_results]}


def _figures(points, bd, summary, hist, params, pdir: Path, workers: int = 1) -> dict:
    """The plots, as ``{group: [(paths, caption)]}`` for the bar charts, RD curves, per-frame PSNR, training;
    rendered by ``workers`` processes (matplotlib draws on one core; the figures are independent)."""
    tasks: list[tuple[str, str, str, tuple]] = []  # (group, caption, plots function, its arguments)
    if not points.empty:
        for (codec, config, dataset, sequence), g in points.groupby(["codec", "config", "dataset", "sequence"],
                                                                    sort=False):
            tasks.append(("rd", f"RD curves, {sequence}, {config.upper()}", "rd_plot",
                          (points, bd, codec, config, dataset, sequence, pdir)))
            qps = sorted(g["qp"].unique())
            want = _get(params, "report.frame_qp", None)
            qp = int(want) if want in qps else int(qps[len(qps) // 2])
            tasks.append(("frames", f"Per-frame Y-PSNR, {sequence}, {config.upper()}, QP {qp}", "frames_plot",
                          (points, codec, config, dataset, sequence, qp, pdir)))
        for codec, dataset in points.groupby(["codec", "dataset"], sort=False).groups:
            tasks.append(("bars", f"Average BD-rate vs anchor, {codec}, {dataset or 'no dataset'}", "bd_bar_plot",
                          (summary, codec, dataset, pdir)))
    if not hist.empty:
        for (model, codec, config), _ in hist.groupby(["model", "codec", "config"], sort=True):
            tasks.append(("training", f"Training, {model}, {codec}, {config.upper()}", "training_plot",
                          (hist, model, codec, config, pdir)))
    figs: dict[str, list] = {"bars": [], "rd": [], "frames": [], "training": []}
    for (group, caption, _, _), files in zip(tasks, _render([(name, args) for _, _, name, args in tasks], workers)):
        if files:
            figs[group].append((files, caption))
    return figs


def _plot(call: tuple[str, tuple]):
    from . import plots

    name, args = call
    return getattr(plots, name)(*args)


def _render(calls: list[tuple[str, tuple]], workers: int) -> list:
    """Each ``(plots function, arguments)`` called, in order; in ``workers`` forked processes when more than one."""
    if workers <= 1 or len(calls) < 2:
        return [_plot(c) for c in calls]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(min(workers, len(calls)), mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(_plot, calls))


def _headline(summary) -> pd.DataFrame:
    """Average luma BD-rate per codec, dataset, comparison and model; per configuration the value and its
    interval over the clips (and seeds), at params report.interval.level."""
    from .tables import ci_text, level_pct

    if summary.empty:
        return pd.DataFrame()
    head = summary[(summary["level"] == "average") & (summary["metric"] == "y")]
    rows: dict = {}
    for r in head.itertuples(index=False):
        row = rows.setdefault((r.codec, r.dataset, r.comparison, r.model),
                              {"codec": r.codec, "dataset": r.dataset, "comparison": r.comparison, "model": r.model})
        row[r.config.upper()] = r.bd_rate_pct
        row[f"{r.config.upper()} {level_pct(summary)} CI"] = ci_text(r)
    cols = [c for cfg in CONFIGS for c in (cfg.upper(), f"{cfg.upper()} {level_pct(summary)} CI")]
    out = pd.DataFrame(list(rows.values()))
    return out[["codec", "dataset", "comparison", "model"] + [c for c in cols if c in out.columns]]


def _headline_note(summary) -> str:
    """The models the headline has no BD-rate for (fewer than four QPs in every configuration: the demo's SPiLF
    and NL-ConvLSTM), named once instead of one "left out" row per comparison (issue #30)."""
    if summary.empty:
        return ""
    from .tables import models_without_bd

    no_bd = models_without_bd(summary[(summary["level"] == "average") & (summary["metric"] == "y")])
    return (f"no BD-rate for {', '.join(no_bd)}: a Bjontegaard curve needs four QPs and these models are trained "
            "at fewer; their ΔPSNR-Y per QP is in the tables below" if no_bd else "")


# --------------------------------------------------------------------------- index.html


@functools.lru_cache(maxsize=1)
def _environment():
    """The templates (``templates/``): autoescaped, so every value renders as text; an unknown name is an error."""
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("inloop.reporting", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def html_table(df: pd.DataFrame, digits: int = 2) -> str:
    """A plain HTML table of the columns and rows that hold data; NaN as "n/a", numbers right-aligned."""
    from .tables import table_view

    return str(_environment().get_template("macros.html.j2").module.table(table_view(df, digits)))


class _Links:
    """Relative links from ``index.html``, and every file they name (``linked`` in the result)."""

    def __init__(self, root: Path):
        self.root = root
        self.linked: list[Path] = []

    def __call__(self, path) -> str:
        self.linked.append(Path(path))
        return _rel(Path(path), self.root)

    def table(self, info: dict, level: str = "h3", skip_notes: int = 0) -> dict:
        view = info["view"]
        notes = [n for n in info.get("notes", [])[skip_notes:] if n] + ([view["left_out"]] if view["left_out"] else [])
        return {**view, "id": info["name"], "title": info.get("title") or info["name"], "level": level,
                "csv": self(info["csv"]), "md": self(info["md"]), "notes": notes}

    def figures(self, figs: list) -> list[dict]:
        return [{"png": self(paths["png"]), "svg": self(paths["svg"]), "caption": caption} for paths, caption in figs]


def _headline_view(headline: pd.DataFrame, note: str) -> dict | None:
    """The headline table without the rows of models that have no BD-rate (``note`` names them)."""
    from .tables import table_view

    if headline.empty:
        return None
    values = headline.drop(columns=["codec", "dataset", "comparison", "model"]).select_dtypes("number")
    view = table_view(headline[values.notna().any(axis=1)] if note else headline, 2)
    return {**view, "left_out": "; ".join(n for n in (note, view["left_out"]) if n)}


def render_index(out: Path, page: dict) -> tuple[str, list[Path]]:
    """``index.html``'s text from the sections' data (templates/index.html.j2), and the files it links."""
    from . import claims as claims_mod

    link = _Links(out)
    bench = page["bench"]
    context = {
        "title": "inloop report",
        "mode_sentence": MODE_SENTENCE,
        "method": page["method"],
        "differences": [{"paper": paper, "codec": codec, "dataset": dataset or "no dataset",
                         "text": claims_mod.setup_differences(paper, info)}
                        for (codec, dataset), info in page["repro"].items() for paper in page["papers"]],
        "own": [{"codec": codec, "dataset": dataset or "no dataset", "text": info["training"][OWN]}
                for (codec, dataset), info in page["repro"].items() if OWN in (info.get("training") or {})],
        "notes": page["notes"],
        "bars": link.figures(page["figures"]["bars"]),
        "headline": _headline_view(page["headline"], page.get("headline_note", "")),
        # a paper-shaped table with no value in this run (GL-Fusion's class tables on clips without a CTC class, a
        # configuration no model trains) is named below the section, not drawn as a header over nothing
        "shaped": [link.table(info) for info in page["shaped"] if info["view"]["rows"]],
        "shaped_empty": [info.get("title") or info["name"] for info in page["shaped"] if not info["view"]["rows"]],
        "comparison_empty": page["claims"]["comparison"].empty,
        "comparison": link.table(page["claims"]["comparison_table"]),
        # a bench table's notes 1-2 (machine, command) are the section's text, just above its tables
        "bench": [{**s, "tables": [link.table(info, "h4", skip_notes=2) for info in s["tables"]]}
                  for s in bench["sections"]],
        "bench_listed": ", ".join(bench["listed"]) or "none",
        "bench_missing": ", ".join(bench["missing"]) if bench["sections"] else "",
        "bench_command": bench["command"],
        "rd": link.figures(page["figures"]["rd"]),
        "frames": link.figures(page["figures"]["frames"]),
        "training": link.figures(page["figures"]["training"]),
        "claimed": [{"paper": paper, "table": link.table(info, "h4")} for paper, info in page["claims"]["claimed"]],
        "data": [{"title": info["title"], "csv": link(info["csv"]), "md": link(info["md"])}
                 for info in page["long_tables"]],
    }
    return _environment().get_template("index.html.j2").render(context), link.linked


def build_report(eval_source, models_dir, out_dir, params: dict | None = None, workers: int = 1) -> dict:
    """:func:`_build_report` into a new folder that replaces ``out_dir`` whole once everything is written
    (:func:`inloop.fsutil.atomic_dir`): a failure (a full disk) leaves the previous report as it was, never
    new tables beside an old index.html, and the one line names the folder. Returns the paths as under
    ``out_dir``. ``workers``: processes drawing the plots."""
    out = Path(out_dir)
    try:
        with atomic_dir(out) as tmp:
            res = _build_report(eval_source, models_dir, tmp, params, workers)
    except OSError as exc:
        raise ReportError(f"{out}: could not write the report ({exc.strerror or exc}: {exc.filename or ''}); "
                          "the previous report is kept as it was") from None
    return _moved(res, tmp, out)


def _moved(obj, old: Path, new: Path):
    """``obj`` with every path under ``old`` (the folder it was written to) re-rooted under ``new``."""
    if isinstance(obj, dict):
        return {k: _moved(v, old, new) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_moved(v, old, new) for v in obj]
    if isinstance(obj, (str, Path)) and str(obj).startswith(str(old)):
        moved = str(new) + str(obj)[len(str(old)):]
        return Path(moved) if isinstance(obj, Path) else moved
    return obj


def _build_report(eval_source, models_dir, out_dir, params: dict | None = None, workers: int = 1) -> dict:
    """Aggregate the evaluation JSONs and training histories; write tables, plots and ``index.html``.

    ``eval_source`` is the evaluation folder (``results/eval``) or a list of
    evaluation JSONs; ``models_dir`` the training folder (``results/models``,
    may be None). Params used: ``bdrate.method`` (default cubic),
    ``report.frame_qp`` (QP of the per-frame plots; default the middle QP),
    ``report.papers`` (claims registries to compare; default all three),
    ``train.steps`` / ``train.device`` and ``codecs.x265.preset`` (setup text),
    ``report.benchmarks`` (``inloop bench`` result JSONs, relative to the repository
    root; default ``docs/benchmarks/cpu.json``; missing files are listed, not an
    error: :mod:`.benchmarks`).
    Each section is collected as data (tables as DataFrames, plot paths, notes)
    and ``templates/index.html.j2`` renders the page (:func:`render_index`).
    Returns ``{"index", "tables": {name: {csv, md}}, "plots": {name: {png, svg}},
    "claims": {name: {csv, md}}, "comparison": DataFrame, "summary": DataFrame,
    "notes": [..], "linked": [paths], "benchmarks": [paths used]}``.
    """
    from . import benchmarks as bench_mod
    from . import claims as claims_mod
    from .aggregate import aggregate, load_histories
    from .summary import write_dvc_files

    out = Path(out_dir)
    method = _get(params, "bdrate.method", "cubic")
    papers = _get(params, "report.papers", list(claims_mod.PAPERS))
    bench_listed = bench_mod.listed_files(params)
    bench_results = {f: bench_mod.load_bench(f) for f in bench_mod.existing_files(params)}  # fail before writing
    interval = _get(params, "report.interval", None)
    agg = aggregate(eval_source, method, interval)
    points, bd, summary = agg["points"], agg["bd"], agg["summary"]
    hist = load_histories(models_dir)
    writer = _Tables(out)
    put = writer.put
    notes: list[str] = []
    if points.empty:
        notes.append("no evaluation JSON found: nothing to aggregate")
    repro = _repro_info(points, hist, params) if not points.empty else {}
    long_tables = _long_tables(put, points, bd, summary, method)
    shaped, spilf_rows = _shaped_tables(put, points, summary, params, method)
    claims = _claims(put, papers, summary, points, repro, spilf_rows, interval)
    bench = _bench(put, bench_results, bench_listed)
    if not bench_results:
        notes.append(f"no benchmark file ({', '.join(bench_listed) or 'params report.benchmarks is empty'}): "
                     f"run `{bench_mod.BENCH_COMMAND}`")
    figures = _figures(points, bd, summary, hist, params, out / "plots", workers)
    if hist.empty:
        notes.append("no training history (models/*/*/*/qp*/model.json) found: no training curves")

    text, linked = render_index(out, {"method": method, "papers": papers, "repro": repro, "notes": notes,
                                      "headline": _headline(summary),
                                      "headline_note": _headline_note(summary), "shaped": shaped, "claims": claims,
                                      "bench": bench, "figures": figures, "long_tables": long_tables})
    index = out / "index.html"
    with atomic_write(index, "w") as fh:
        fh.write(text)
    write_dvc_files(out, summary, hist)  # metrics.json and plot data for `dvc metrics/plots`
    strip = lambda d: {k: {kk: vv for kk, vv in v.items() if kk in ("csv", "md", "png", "svg")} for k, v in d.items()}  # noqa: E731
    plots_written = {Path(paths["png"]).stem: paths for group in figures.values() for paths, _ in group}
    return {"index": index, "tables": strip(writer.written["tables"]), "plots": strip(plots_written),
            "claims": strip(writer.written["claims"]), "comparison": claims["comparison"], "summary": summary,
            "notes": notes, "linked": linked, "benchmarks": list(bench_results)}


# --------------------------------------------------------------------------- CLI


def cmd_report(args: argparse.Namespace) -> int:
    from ..params import cli_params

    params = cli_params(args.params)
    res = build_report(args.eval_dir, args.models_dir, args.out, params, workers=args.threads)
    print(f"report: {len(res['tables'])} tables, {len(res['plots'])} plots, {len(res['claims'])} claims tables "
          f"-> {res['index']}")
    for n in res["notes"]:
        print(f"note: {n}")
    return 0


def register(sub) -> None:
    """Add the ``report`` sub-command to the main parser's sub-parsers (two lines in ``inloop/cli.py``)."""
    p = sub.add_parser("report", help="aggregate evaluations: paper-shaped tables, claims comparison, plots, HTML")
    p.add_argument("--eval-dir", default=paths.EVAL, help=f"evaluation JSONs (default {paths.EVAL})")
    p.add_argument("--models-dir", default=paths.MODELS, help=f"training records (default {paths.MODELS})")
    p.add_argument("--out", default=paths.REPORT, help=f"output folder (default {paths.REPORT})")
    p.add_argument("--params", help="params.yaml (default ./params.yaml)")
    p.add_argument("--threads", type=int, default=1, help="processes drawing the plots (the rule passes the job's "
                   "threads: resources.report.threads)")
    p.set_defaults(func=cmd_report)


__all__ = ["MODE_SENTENCE", "build_report", "cmd_report", "html_table", "register", "render_index"]
