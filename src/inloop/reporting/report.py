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
import html
import math
import os
from pathlib import Path

import numpy as np

from ..fsutil import atomic_write
from ..lazy import lazy_import

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


def _fmt(x, digits: int = 2) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, (float, np.floating)):
        return "n/a" if not math.isfinite(float(x)) else f"{float(x):.{digits}f}"
    return str(x)


def html_table(df: pd.DataFrame, digits: int = 2) -> str:
    """A plain HTML table; NaN as "n/a", negative numbers (bit savings) unstyled, no external CSS."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for row in df.itertuples(index=False):
        cells = []
        for v in row:
            num = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
            cells.append(f"<td class='{'num' if num else 'txt'}'>{html.escape(_fmt(v, digits))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.4em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0 1em}th,td{border:1px solid #ccc;padding:2px 6px}
th{background:#f3f3f3;position:sticky;top:0}td.num{text-align:right;font-variant-numeric:tabular-nums}
.files{font-size:.85em;color:#555}.note{font-size:.9em;color:#444}figure{display:inline-block;margin:.5em}
figure img{max-width:640px;border:1px solid #ddd}figcaption{font-size:.8em}details{margin:.4em 0}
.box{background:#fafafa;border:1px solid #ddd;padding:.6em 1em}
"""


class _Page:
    def __init__(self, root: Path):
        self.root = root
        self.parts: list[str] = []
        self.linked: list[Path] = []

    def add(self, s: str) -> None:
        self.parts.append(s)

    def link(self, path: Path, text: str | None = None) -> str:
        self.linked.append(Path(path))
        rel = _rel(Path(path), self.root)
        return f"<a href='{html.escape(rel)}'>{html.escape(text or rel)}</a>"

    def table(self, info: dict, level: str = "h3") -> None:
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in info.get("notes") or [] if n)
        self.add(f"<{level} id='{html.escape(info['name'])}'>{html.escape(info.get('title') or info['name'])}</{level}>")
        self.add(f"<div class='files'>{self.link(info['csv'], 'CSV')} · {self.link(info['md'], 'Markdown')}</div>")
        self.add(html_table(info["frame"], info.get("digits", 2)))
        if notes:
            self.add(f"<ul class='note'>{notes}</ul>")

    def figure(self, paths: dict, caption: str) -> None:
        png, svg = paths["png"], paths["svg"]
        self.linked += [Path(png), Path(svg)]
        self.add(f"<figure><a href='{html.escape(_rel(png, self.root))}'><img src='{html.escape(_rel(png, self.root))}' "
                 f"alt='{html.escape(caption)}'></a><figcaption>{html.escape(caption)} "
                 f"({self.link(png, 'PNG')}, {self.link(svg, 'SVG')})</figcaption></figure>")

    def render(self, title: str) -> str:
        return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                f"<style>{CSS}</style></head><body>{''.join(self.parts)}</body></html>\n")


def _spec(params: dict | None, model: str) -> dict:
    """``models.<model>``'s network (its ``base``, ``arch`` resolved); a model the params do not list is its own
    arch. Only the network is read: a report does not need the train / qps settings to be valid."""
    from ..params import model_network

    try:
        return model_network(params or {}, model)
    except Exception:  # noqa: BLE001 - a report of old results must not fail on params that moved on
        return {"arch": model, "kwargs": {}}


def _repro_info(points: pd.DataFrame, hist: pd.DataFrame, params: dict | None) -> dict:
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
        if not hist.empty and "step" in hist:
            h = hist[hist["codec"] == codec]
            if not h.empty:
                d["train_steps"] = int(h["step"].max())
        elif _get(params, "train.steps", None) is not None and (points["model"] != "none").any():
            d["train_steps"] = _get(params, "train.steps", None)
        info[(codec, dataset)] = d
    return info


def build_report(eval_source, models_dir, out_dir, params: dict | None = None) -> dict:
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
    Returns ``{"index", "tables": {name: {csv, md}}, "plots": {name: {png, svg}},
    "claims": {name: {csv, md}}, "comparison": DataFrame, "summary": DataFrame,
    "notes": [..], "benchmarks": [paths used]}``.
    """
    from . import benchmarks as bench_mod
    from . import claims as claims_mod
    from . import plots, tables
    from .aggregate import aggregate, load_histories, points_for_csv
    from .summary import write_dvc_files

    out = Path(out_dir)
    tdir, pdir, cdir = out / "tables", out / "plots", out / "claims"
    method = _get(params, "bdrate.method", "cubic")
    papers = _get(params, "report.papers", list(claims_mod.PAPERS))
    bench_listed = bench_mod.listed_files(params)
    bench_results = {f: bench_mod.load_bench(f) for f in bench_mod.existing_files(params)}  # fail before writing
    agg = aggregate(eval_source, method)
    points, bd, summary = agg["points"], agg["bd"], agg["summary"]
    hist = load_histories(models_dir)
    written_tables: dict = {}
    written_plots: dict = {}
    written_claims: dict = {}
    notes: list[str] = []
    page = _Page(out)

    def put_table(df, name, title, notes_=(), digits=2, where=tdir):
        info = tables.write_table(df, where, name, title, notes_, digits)
        (written_claims if where == cdir else written_tables)[name] = info
        return info

    # ---------------------------------------------------------------- data behind everything
    if points.empty:
        notes.append("no evaluation JSON found: nothing to aggregate")
    long_tables = []
    if not points.empty:
        long_tables.append(put_table(points_for_csv(points), "points",
                                     "Every evaluation point (one row per model, codec, config, dataset, sequence, QP)",
                                     digits=4))
        long_tables.append(put_table(bd, "bd_per_sequence",
                                     f"BD-rate / BD-PSNR per sequence ({method}), all comparisons, Y and YUV PSNR",
                                     ["comparison: model_vs_anchor = enhanced vs codec with filters on (the papers' "
                                      "number); model_vs_off = enhanced vs filters-off decode; off_vs_anchor = "
                                      "filters off vs filters on (model 'none')",
                                      "NaN rows carry the Bjontegaard check's message in 'note'"], digits=3))
        long_tables.append(put_table(summary, "bd_summary",
                                     "Per-sequence, per-class (A-E) and average BD values per configuration",
                                     ["class rows: mean over the class's sequences; Average: mean over all "
                                      "sequences (as GL-Fusion's tables)"], digits=3))

    # ---------------------------------------------------------------- paper-shaped tables
    shaped = []
    spilf_rows: list[dict] = []  # SPiLF Table 2 rows of every run, for the claims comparison
    repro = _repro_info(points, hist, params) if not points.empty else {}
    groups = list(points.groupby(["codec", "dataset"], sort=False).groups) if not points.empty else []
    for codec, dataset in groups:
        tag = plots.safe_name(codec, dataset)
        s = summary[(summary["codec"] == codec) & (summary["dataset"] == dataset)]
        p = points[(points["codec"] == codec) & (points["dataset"] == dataset)]
        has_models = (p["model"] != "none").any()
        gl = tables.glfusion_table(s, "y")
        if not gl.empty:
            shaped.append(put_table(
                gl, f"glfusion_table6_{tag}",
                f"GL-Fusion Table VI shape: BD-rate (%, Y, {method}) against {codec} with filters on — {dataset or 'no dataset'}",
                ["negative = bit saving against the anchor (codec with its in-loop filters on)",
                 "'filters off' = the same codec with deblocking and SAO off: what switching the filters off costs",
                 "model columns: the enhanced filters-off decode at the filters-off rate; "
                 "ΔPSNR-Y = mean over QPs of enhanced minus filters-off Y-PSNR",
                 "class rows = mean over the class's sequences; Average = mean over all sequences"
                 + ("" if (p["seq_class"] != "").any() else " (these clips have no CTC class, so no class rows)"),
                 MODE_SENTENCE]))
        gly = tables.glfusion_table(s, "yuv")
        if not gly.empty:
            shaped.append(put_table(gly, f"glfusion_table6_yuv_{tag}",
                                    f"Same as above with YUV-PSNR = (6Y+U+V)/8 — {dataset or 'no dataset'}",
                                    ["BD-rate (%) on YUV-PSNR; the papers quote luma"]))
        if has_models:
            for cfg in [c for c in ("ai", "ldp", "ra") if c in set(p["config"])]:
                ab = tables.ablation_table(s, cfg)
                if not ab.empty:
                    shaped.append(put_table(ab, f"ablation_{cfg}_{tag}",
                                            f"GL-Fusion Tables II-V shape: BD-rate (%) vs anchor, {cfg.upper()}, "
                                            f"one column per model / variant — {dataset or 'no dataset'}"))
                ab2 = tables.ablation_table(s, cfg, comparison="model_vs_off")
                if not ab2.empty:
                    shaped.append(put_table(ab2, f"vs_filters_off_{cfg}_{tag}",
                                            f"BD-rate (%) of each model against the filters-off decode it filters, "
                                            f"{cfg.upper()} — {dataset or 'no dataset'}"))
                dt = tables.delta_table(p, cfg)
                if not dt.empty:
                    shaped.append(put_table(dt, f"nlconvlstm_table4_{cfg}_{tag}",
                                            f"NL-ConvLSTM Table 4 shape: ΔPSNR / ΔSSIM per sequence and QP, "
                                            f"{cfg.upper()} — {dataset or 'no dataset'}",
                                            ["Δ = enhanced minus the filters-off decode (NL-ConvLSTM: minus the "
                                             "codec's output, which had its loop filters on for Yang et al.'s data)"],
                                            digits=3))
        nl_modes = {m: (str(_spec(params, m)["kwargs"].get("mode", "nlconvlstm")),
                        int(_spec(params, m)["kwargs"].get("frames", 7)))
                    for m in sorted(set(p["model"]) - {"none"}) if _spec(params, m)["arch"] == "nlconvlstm"}
        for cfg in [c for c in ("ai", "ldp", "ra") if c in set(p["config"])]:
            at = tables.nlconvlstm_ablation_table(p, cfg, nl_modes)
            if not at.empty:
                trained = {nl_modes[m][0] for m in p.loc[p["config"] == cfg, "model"].unique() if m in nl_modes}
                missing = [name for mode, name in tables.ABLATION_MODES if mode not in trained]
                shaped.append(put_table(
                    at, f"nlconvlstm_ablation_{cfg}_{tag}",
                    f"NL-ConvLSTM ablation shape (section 4.2): ΔPSNR / ΔSSIM per mode, {cfg.upper()} — "
                    f"{dataset or 'no dataset'}",
                    ["mean over the held-out sequences of enhanced minus the decode; the paper's values (Yang et "
                     "al.'s dataset, HM LDP QP 37) are in the claims comparison; ME-ConvLSTM: the paper does not "
                     "describe it, the project's is a ConvLSTM whose states follow a learned motion field "
                     "(inloop.models.nlconvlstm.FlowWarp)"]
                    + ([f"not trained in this run: {', '.join(missing)} (models.<name>.mode; "
                        "config/nlconvlstm-ablation.yaml adds them)"] if missing else []),
                    digits=3))
            ft = tables.fluctuation_table(p, cfg)
            if not ft.empty:
                shaped.append(put_table(ft, f"fluctuation_{cfg}_{tag}",
                                        f"NL-ConvLSTM 4.3 shape: quality fluctuation (STD, PVD of per-frame Y-PSNR), "
                                        f"{cfg.upper()} — {dataset or 'no dataset'}",
                                        ["PVD: mean difference between each peak and its nearest preceding/following "
                                         "valley (MFQE); n/a when a curve has no peak-valley pair"], digits=3))
        rt = tables.runtime_table(p)
        if not rt.empty:
            shaped.append(put_table(rt, f"runtime_{tag}", "NL-ConvLSTM Table 5 shape: ms per frame by resolution",
                                    [f"device: params evaluate.device = {_get(params, 'evaluate.device', '?')}"]))
        # SPiLF Table 2: per target bpp, each image's QP by integer linear programming (SPiLF 2.3)
        if "ai" in set(p["config"]):
            targets = [float(t) for t in _get(params, "report.spilf_bpp", tables.SPILF_BPP)]
            ai = p[p["config"] == "ai"]
            spilf_models = [m for m in sorted(set(ai["model"]) - {"none"}) if _spec(params, m)["arch"] == "spilf"]
            qps = sorted(ai[ai["model"].isin(spilf_models)]["qp"].unique()) if spilf_models else \
                sorted(ai["qp"].unique())
            rows = tables.spilf_rows_from_points(ai, "anchor", f"anchor ({codec}, filters on)", targets=targets,
                                                 qps=qps)
            rows += tables.spilf_rows_from_points(ai, "decoded", f"{codec}, filters off", targets=targets, qps=qps)
            for m in spilf_models:
                rows += tables.spilf_rows_from_points(ai, "enhanced", m, model=m, targets=targets, qps=qps)
            spilf_rows += rows
            sp = tables.spilf_table(rows, targets)
            lpips_cells = sp.filter(like="LPIPS").astype(str)
            lpips_missing = bool(lpips_cells.apply(lambda c: c.str.startswith(tables.NA)).any(axis=None))
            shaped.append(put_table(sp, f"spilf_table2_{tag}", f"SPiLF Table 2 shape — {dataset or 'no dataset'}",
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
                                    digits=4))

    # ---------------------------------------------------------------- claims
    claimed = []
    for paper in papers:
        d = claims_mod.load_claims(paper)
        for tname, t in d["tables"].items():
            cap = t.get("caption") or t.get("caption_note") or ""
            tn = [f"source: ../shared/papers/{d['source']}"] + [t[k] for k in ("config_note", "note", "unit",
                                                                                "columns_note", "caption_note")
                                                                 if t.get(k)]
            claimed.append((paper, put_table(claims_mod.claim_table(paper, tname), f"{paper}_table{tname}",
                                             f"{d['title'][:60]}… — Table {tname}: {cap}", tn, digits=3, where=cdir)))
    comparison = claims_mod.compare(summary, points, repro, papers, spilf_rows=spilf_rows)
    comp_info = put_table(comparison, "comparison", "Claimed vs reproduced",
                          ["difference = reproduced − claimed, in the claim's unit",
                           "BD-rate claims are luma BD-rate against the codec with its filters on"],
                          digits=2, where=cdir)

    # ---------------------------------------------------------------- run time (inloop bench results)
    bench_sections = []  # (file, result, [table infos])
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
            infos.append(put_table(inf, f"bench_inference_{tag}",
                                   f"Inference ms per frame, ours next to NL-ConvLSTM Table 5 — {path}",
                                   head + bench_mod.paper_notes(result)))
        tr = bench_mod.training_table(result)
        if not tr.empty:
            infos.append(put_table(tr, f"bench_training_{tag}", f"Training throughput — {path}",
                                   head + ["synthetic batch on the device; model FLOPs = 3 x forward; MFU only "
                                           "where a peak is known (GPUs)"], digits=4))
        bench_sections.append((path, result, infos))
    if not bench_results:
        notes.append(f"no benchmark file ({', '.join(bench_listed) or 'params report.benchmarks is empty'}): "
                     f"run `{bench_mod.BENCH_COMMAND}`")

    # ---------------------------------------------------------------- plots
    rd_figs, frame_figs, train_figs, bar_figs = [], [], [], []
    if not points.empty:
        for (codec, config, dataset, sequence), g in points.groupby(["codec", "config", "dataset", "sequence"],
                                                                    sort=False):
            r = plots.rd_plot(points, bd, codec, config, dataset, sequence, pdir)
            if r:
                rd_figs.append((r, f"RD curves, {sequence}, {config.upper()}"))
                written_plots[Path(r["png"]).stem] = r
            qps = sorted(g["qp"].unique())
            want = _get(params, "report.frame_qp", None)
            qp = int(want) if want in qps else int(qps[len(qps) // 2])
            f = plots.frames_plot(points, codec, config, dataset, sequence, qp, pdir)
            if f:
                frame_figs.append((f, f"Per-frame Y-PSNR, {sequence}, {config.upper()}, QP {qp}"))
                written_plots[Path(f["png"]).stem] = f
        for codec, dataset in groups:
            b = plots.bd_bar_plot(summary, codec, dataset, pdir)
            if b:
                bar_figs.append((b, f"Average BD-rate vs anchor, {codec}, {dataset or 'no dataset'}"))
                written_plots[Path(b["png"]).stem] = b
    if not hist.empty:
        for (model, codec, config), _ in hist.groupby(["model", "codec", "config"], sort=True):
            t = plots.training_plot(hist, model, codec, config, pdir)
            if t:
                train_figs.append((t, f"Training, {model}, {codec}, {config.upper()}"))
                written_plots[Path(t["png"]).stem] = t
    else:
        notes.append("no training history (models/*/*/*/qp*/model.json) found: no training curves")

    # ---------------------------------------------------------------- index.html
    page.add("<h1>inloop report</h1>")
    page.add("<p class='note'>Contents: <a href='#setup'>setup</a> · <a href='#headline'>headline</a> · "
             "<a href='#tables'>tables</a> · <a href='#comparison'>claimed vs reproduced</a> · "
             "<a href='#runtime'>run time</a> · "
             "<a href='#plots'>plots</a> · <a href='#claims'>claims registry</a> · <a href='#data'>data</a></p>")
    page.add("<h2 id='setup'>Setup and what differs from the papers</h2><div class='box'>")
    page.add(f"<p>{html.escape(MODE_SENTENCE)}</p>")
    page.add(f"<p>BD-rate / BD-PSNR: Bjontegaard, method <b>{html.escape(method)}</b> (params bdrate.method; "
             "cubic = VCEG-M33, pchip = JCT-VC/JVET CTC sheets), luma PSNR unless said otherwise; negative BD-rate = "
             "bit saving. Rate = bits of every NAL unit except SEI, without start codes (HM's count), over the "
             "duration; the CNN output costs no bits, so "
             "an enhanced curve has the filters-off rate.</p><ul>")
    for (codec, dataset), info in repro.items():
        for paper in papers:
            page.add(f"<li><b>{html.escape(paper)}</b> vs this run ({html.escape(codec)}, "
                     f"{html.escape(dataset or 'no dataset')}): "
                     f"{html.escape(claims_mod.setup_differences(paper, info))}</li>")
    page.add("</ul>")
    for n in notes:
        page.add(f"<p class='note'>Note: {html.escape(n)}</p>")
    page.add("</div>")

    page.add("<h2 id='headline'>Headline: average BD-rate per configuration</h2>")
    for b, cap in bar_figs:
        page.figure(b, cap)
    if not summary.empty:
        head = summary[(summary["level"] == "average") & (summary["metric"] == "y")]
        head = head.pivot_table(index=["codec", "dataset", "comparison", "model"], columns="config",
                                values="bd_rate_pct", aggfunc="first")
        head = head[[c for c in ("ai", "ldp", "ra") if c in head.columns]].reset_index()
        head.columns = [c.upper() if c in ("ai", "ldp", "ra") else c for c in head.columns]
        page.add(html_table(head, 2))

    page.add("<h2 id='tables'>Paper-shaped tables</h2>")
    for info in shaped:
        page.table(info)
    page.add("<h2 id='comparison'>Claimed vs reproduced</h2>")
    if comparison.empty:
        page.add("<p class='note'>No claim matches a reproduced row (no paper model evaluated yet).</p>")
    page.table(comp_info, "h3")

    page.add("<h2 id='runtime'>Run time: our benchmarks next to the papers' figures</h2>")
    if not bench_sections:
        listed = ", ".join(bench_listed) or "none"
        page.add(f"<p class='note'>No benchmark file found (params report.benchmarks: {html.escape(listed)}). "
                 f"Produce one with <code>{html.escape(bench_mod.BENCH_COMMAND)}</code>.</p>")
    for path, result, infos in bench_sections:
        page.add(f"<h3>{html.escape(path)}</h3><p class='note'>{html.escape(bench_mod.machine_line(result))}<br>"
                 f"Command: <code>{html.escape(result['command'])}</code></p>")
        for info in infos:
            page.table({**info, "notes": info["notes"][2:]}, "h4")  # notes 1-2 (machine, command): just above
        if not infos:
            page.add("<p class='note'>This file has no inference or training rows.</p>")
    missing = [f for f in bench_listed if f not in bench_results]
    if bench_sections and missing:
        page.add(f"<p class='note'>Listed but not found: {html.escape(', '.join(missing))}.</p>")

    page.add("<h2 id='plots'>Plots</h2><h3>RD curves</h3>")
    for f, cap in rd_figs:
        page.figure(f, cap)
    page.add("<h3>Per-frame PSNR</h3>")
    for f, cap in frame_figs:
        page.figure(f, cap)
    page.add("<h3>Training curves</h3>")
    if not train_figs:
        page.add("<p class='note'>No training history found.</p>")
    for f, cap in train_figs:
        page.figure(f, cap)

    page.add("<h2 id='claims'>Claims registry (transcribed from ../shared/papers)</h2>")
    for paper, info in claimed:
        page.add(f"<details><summary>{html.escape(paper)} — {html.escape(info['title'])}</summary>")
        page.table(info, "h4")
        page.add("</details>")
    page.add("<h2 id='data'>Data</h2>")
    for info in long_tables:
        page.add(f"<p>{html.escape(info['title'])}: {page.link(info['csv'], 'CSV')} · {page.link(info['md'], 'Markdown')}</p>")

    index = out / "index.html"
    with atomic_write(index, "w") as fh:
        fh.write(page.render("inloop report"))
    write_dvc_files(out, summary, hist)  # metrics.json and plot data for `dvc metrics/plots`
    strip = lambda d: {k: {kk: vv for kk, vv in v.items() if kk in ("csv", "md", "png", "svg")} for k, v in d.items()}  # noqa: E731
    return {"index": index, "tables": strip(written_tables), "plots": strip(written_plots),
            "claims": strip(written_claims), "comparison": comparison, "summary": summary, "notes": notes,
            "linked": page.linked, "benchmarks": list(bench_results)}


# --------------------------------------------------------------------------- CLI


def cmd_report(args: argparse.Namespace) -> int:
    from ..params import cli_params

    params = cli_params(args.params)
    res = build_report(args.eval_dir, args.models_dir, args.out, params)
    print(f"report: {len(res['tables'])} tables, {len(res['plots'])} plots, {len(res['claims'])} claims tables "
          f"-> {res['index']}")
    for n in res["notes"]:
        print(f"note: {n}")
    return 0


def register(sub) -> None:
    """Add the ``report`` sub-command to the main parser's sub-parsers (two lines in ``inloop/cli.py``)."""
    p = sub.add_parser("report", help="aggregate evaluations: paper-shaped tables, claims comparison, plots, HTML")
    p.add_argument("--eval-dir", default="results/eval", help="evaluation JSONs (default results/eval)")
    p.add_argument("--models-dir", default="results/models", help="training records (default results/models)")
    p.add_argument("--out", default="results/report", help="output folder (default results/report)")
    p.add_argument("--params", help="params.yaml (default ./params.yaml)")
    p.set_defaults(func=cmd_report)


__all__ = ["MODE_SENTENCE", "build_report", "cmd_report", "html_table", "register"]
