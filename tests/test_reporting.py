"""Reporting (issue #4, second half): aggregation, paper-shaped tables, claims, plots, HTML report.

Everything runs on REAL x265 encodes of the real 128x96 city clip in
tests/fixtures/codecs (AI/LDP/RA x filters off/on x QP 22/27/32/37, 48 tiny
encodes shared by the module). Evaluation JSONs are written in the evaluate
stage's format from the encode stats, with model "none" (anchor vs filters off
only). One extra model, "synthetic-plus0.3dB", is SYNTHETIC: its enhanced PSNR
is the filters-off PSNR + 0.3 dB at the filters-off rate; it only exercises the
model columns.
"""

from __future__ import annotations

import csv
import html.parser
import json
import math
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import CITY as _CITY

from inloop.evaluation.metrics import fluctuation
from inloop.fsutil import write_json

CLIP = _CITY
QPS = (22, 27, 32, 37)
CONFIGS = ("ai", "ldp", "ra")
SYNTH = "synthetic-plus0.3dB"
MODES = {"ai": "in-loop (AI: every frame intra, equals in-loop filtering)",
         "ldp": "post-processing (LDP/RA, as GL-Fusion IV.A)", "ra": "post-processing (LDP/RA, as GL-Fusion IV.A)"}


def _curve(stats: dict, plus: float = 0.0) -> dict:
    frames = [f["y"] + plus for f in stats["psnr_per_frame"]]
    p = stats["psnr"]
    return {"kbps": stats["kbps"], "bpp": stats["bpp"],
            "psnr": {"y": p["y"] + plus, "u": p["u"], "v": p["v"], "yuv": p["yuv"] + 6 * plus / 8},
            "ssim_y": None, "ms_ssim_y": None, "psnr_y_frames": frames}


def _record(model: str, on: dict, off: dict, seq: str, plus: float | None) -> dict:
    dec = _curve(off)
    enh = _curve(off, plus) if plus is not None else None
    fl = lambda c: {k: v for k, v in fluctuation(c["psnr_y_frames"]).items() if k in ("std", "pvd")}  # noqa: E731
    return {
        "model": model, "codec": "x265", "config": off["config"], "dataset": "demo", "sequence": seq,
        "seq_class": "", "qp": off["qp"], "frames": off["frames"], "width": off["width"], "height": off["height"],
        "fps": off["fps"], "mode": MODES[off["config"]], "anchor": _curve(on), "decoded": dec, "enhanced": enh,
        "delta": None if enh is None else {"psnr_y": plus, "psnr_yuv": 6 * plus / 8, "ssim_y": None},
        "fluctuation": {"decoded": fl(dec), "enhanced": fl(enh) if enh else None},
        "seconds_per_frame": None if enh is None else 0.01, "lpips": None,
    }


@pytest.fixture(scope="module")
def encodes(tmp_path_factory) -> dict:
    """48 real x265 encodes: {(config, filters, qp): stats}."""
    from inloop.codecs import EncodeJob, get_codec
    from inloop.yuv import YuvFormat

    root = tmp_path_factory.mktemp("enc")
    src = root / "city_128x96_30fps_8bit_420.yuv"
    shutil.copyfile(CLIP, src)
    codec, fmt = get_codec("x265"), YuvFormat(128, 96, 8, 30)
    out = {}
    for cfg in CONFIGS:
        for filters in ("off", "on"):
            for qp in QPS:
                out[(cfg, filters, qp)] = codec.encode(EncodeJob(src, fmt, 5, qp, cfg, filters),
                                                       root / cfg / filters / f"qp{qp}.bin")
    return out


@pytest.fixture(scope="module")
def eval_dir(encodes, tmp_path_factory) -> Path:
    """results/eval-shaped tree: model "none" (real) and the synthetic +0.3 dB model, plus training histories."""
    root = tmp_path_factory.mktemp("results")
    seq = "city_128x96_30fps_8bit_420"
    for cfg in CONFIGS:
        for qp in QPS:
            on, off = encodes[(cfg, "on", qp)], encodes[(cfg, "off", qp)]
            write_json(root / "eval" / "none" / "x265" / cfg / "demo" / seq / f"qp{qp}.json",
                       _record("none", on, off, seq, None))
            write_json(root / "eval" / SYNTH / "x265" / cfg / "demo" / seq / f"qp{qp}.json",
                       _record(SYNTH, on, off, seq, 0.3))
            # A training history shaped like training.run's model.json (synthetic numbers).
            hist = [{"step": s, "mse": 2e-3 * (1 + qp / 22) / (1 + s / 50)} for s in range(10, 210, 10)]
            for h in hist:
                if h["step"] % 50 == 0:
                    h.update({"val_psnr_input": 30.0, "val_psnr_output": 30.0 + h["step"] / 1000,
                              "val_delta_psnr": h["step"] / 1000})
            write_json(root / "models" / SYNTH / "x265" / cfg / f"qp{qp}" / "model.json",
                       {"model": SYNTH, "codec": "x265", "config": cfg, "qp": qp, "history": hist, "result": {}})
    # A curve with three QPs only: must give NaN and the BDRateError message, not vanish.
    for qp in QPS[:3]:
        on, off = encodes[("ai", "on", qp)], encodes[("ai", "off", qp)]
        write_json(root / "eval" / "none" / "x265" / "ai" / "demo" / "short3qp" / f"qp{qp}.json",
                   _record("none", on, off, "short3qp", None))
    return root


@pytest.fixture(scope="module")
def agg(eval_dir):
    from inloop.reporting.aggregate import aggregate

    return aggregate(eval_dir / "eval", "cubic")


@pytest.fixture(scope="module")
def report(eval_dir):
    from inloop.reporting.report import build_report

    return build_report(eval_dir / "eval", eval_dir / "models", eval_dir / "report",
                        {"bdrate": {"method": "cubic"}, "train": {"steps": 200, "device": "cpu"}})


def _bd(bd, model, cfg, comparison, seq="city_128x96_30fps_8bit_420", metric="y"):
    r = bd[(bd["model"] == model) & (bd["config"] == cfg) & (bd["comparison"] == comparison)
           & (bd["sequence"] == seq) & (bd["metric"] == metric)]
    assert len(r) == 1, r
    return r.iloc[0]


# --------------------------------------------------------------------------- aggregation


def test_points_are_flat_rows(agg):
    pts = agg["points"]
    assert len(pts) == 2 * 3 * 4 + 3
    for col in ("anchor_kbps", "decoded_psnr_y", "enhanced_psnr_y", "delta_psnr_y", "anchor_psnr_y_frames"):
        assert col in pts.columns
    assert pts["qp"].dtype.kind == "i"


def test_filters_off_costs_bits_per_config(agg):
    """Real encodes: switching x265's deblocking+SAO off costs bits in every configuration (a few %)."""
    bd = agg["bd"]
    for cfg in CONFIGS:
        r = _bd(bd, "none", cfg, "off_vs_anchor")
        assert r["note"] == "" and r["n_points"] == 4 and r["method"] == "cubic"
        assert 0.0 < r["bd_rate_pct"] < 15.0, (cfg, r["bd_rate_pct"])
        assert r["bd_psnr_db"] < 0
        ryuv = _bd(bd, "none", cfg, "off_vs_anchor", metric="yuv")
        assert math.isfinite(ryuv["bd_rate_pct"])
    # one off-vs-anchor curve per sequence, not one per model
    assert set(bd[bd["comparison"] == "off_vs_anchor"]["model"]) == {"none"}


def test_model_columns_with_synthetic_model(agg):
    """SYNTHETIC model (+0.3 dB over the filters-off decode at the same rate): a bit saving against filters off."""
    bd = agg["bd"]
    for cfg in CONFIGS:
        r = _bd(bd, SYNTH, cfg, "model_vs_off")
        assert r["bd_rate_pct"] < 0
        assert r["bd_psnr_db"] == pytest.approx(0.3, abs=1e-6)  # a constant shift is exactly 0.3 dB
        assert r["delta_psnr_y_mean"] == pytest.approx(0.3)
        vs_anchor = _bd(bd, SYNTH, cfg, "model_vs_anchor")
        off = _bd(bd, "none", cfg, "off_vs_anchor")
        assert vs_anchor["bd_rate_pct"] < off["bd_rate_pct"]  # better than filters off against the same anchor


def test_short_curve_is_nan_with_reason(agg):
    r = _bd(agg["bd"], "none", "ai", "off_vs_anchor", seq="short3qp")
    assert math.isnan(r["bd_rate_pct"]) and "at least 4" in r["note"]
    s = agg["summary"]
    avg = s[(s["model"] == "none") & (s["config"] == "ai") & (s["level"] == "average") & (s["metric"] == "y")]
    assert len(avg) == 1
    assert avg.iloc[0]["n_valid"] == 1 and avg.iloc[0]["n_sequences"] == 2 and "short3qp" in avg.iloc[0]["note"]
    city = _bd(agg["bd"], "none", "ai", "off_vs_anchor")["bd_rate_pct"]
    assert avg.iloc[0]["bd_rate_pct"] == pytest.approx(city)


def test_class_and_average_rows():
    """Class rows average their sequences; Average is over all sequences (GL-Fusion's tables)."""
    from inloop.reporting.aggregate import summarize

    bd = pd.DataFrame([
        {"model": "m", "codec": "x265", "config": "ai", "dataset": "ctc", "sequence": s, "seq_class": c,
         "comparison": "model_vs_anchor", "metric": "y", "method": "cubic", "n_points": 4, "qps": "22 27 32 37",
         "bd_rate_pct": v, "bd_psnr_db": -v / 30, "delta_psnr_y_mean": 0.1, "note": ""}
        for s, c, v in [("Traffic", "A", -10.0), ("PeopleOnStreet", "A", -12.0), ("Kimono", "B", -3.0)]])
    s = summarize(bd)
    rows = dict(zip(s["row"], s["bd_rate_pct"]))
    assert rows["Class A"] == pytest.approx(-11.0) and rows["Class B"] == pytest.approx(-3.0)
    assert rows["Average"] == pytest.approx(-25.0 / 3)  # over sequences, not (-11 - 3) / 2
    from inloop.reporting.tables import glfusion_table

    t = glfusion_table(s)
    assert list(t["Sequence"]) == ["PeopleOnStreet", "Traffic", "Kimono", "Class A", "Class B", "Average",
                                   "Average: 95% t interval over the clips"]
    cell = t.iloc[-1]["m AI BD-rate (%)"]
    lo, hi = map(float, cell.split("]")[0].strip("[").split(","))
    assert lo < -12.0 and -3.0 < hi and cell.endswith("(n = 3)")  # t over 3 clips: wider than their range


# --------------------------------------------------------------------------- tables and report


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_tables_written_and_parse(report, agg):
    t = report["tables"]
    gl = t["glfusion_table6_x265_demo"]
    rows = _read_csv(gl["csv"])
    assert [r["Sequence"] for r in rows] == ["city_128x96_30fps_8bit_420", "short3qp", "Average",
                                             "Average: 95% t interval over the clips"]
    assert not any(rows[-1][k] for k in rows[-1] if k != "Sequence")  # one valid clip: no interval
    rows = rows[:-1]
    avg = rows[-1]
    for cfg in ("AI", "LDP", "RA"):
        v = float(avg[f"filters off {cfg} BD-rate (%)"])
        assert v > 0
        assert float(avg[f"{SYNTH} {cfg} ΔPSNR-Y (dB)"]) == pytest.approx(0.3)
    md = Path(gl["md"]).read_text()
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert all(ln.count("|") == lines[0].count("|") for ln in lines)
    # the 3-QP curve has no value in any column: the CSV has its row, the Markdown names it below the table
    assert len(lines) == 2 + len(rows) - 1 and not any("short3qp" in ln for ln in lines)
    assert "- rows with no value left out: short3qp, Average: 95% t interval over the clips (the CSV has them)" in md
    assert [c.strip() for c in lines[0].strip("|").split("|")] == list(rows[0])
    assert lines[1].startswith("|:-") and lines[1].endswith("-:|")  # label left, numbers right
    assert [c.strip() for c in lines[-1].strip("|").split("|")][1:4] == [f"{float(avg[c]):.2f}" for c in list(avg)[1:4]]
    for name in ("points", "bd_per_sequence", "bd_summary", "ablation_ai_x265_demo", "nlconvlstm_table4_ldp_x265_demo",
                 "fluctuation_ra_x265_demo", "runtime_x265_demo"):
        assert name in t, name
        assert len(_read_csv(t[name]["csv"])) > 0 and Path(t[name]["md"]).stat().st_size > 0
    dt = _read_csv(t["nlconvlstm_table4_ldp_x265_demo"]["csv"])
    assert float(dt[0][f"{SYNTH} ΔPSNR (dB)"]) == pytest.approx(0.3)
    # SPiLF shape: these clips are ~1-4 bpp, above 0.075-0.3 bpp: no QP choice reaches the targets,
    # and each cell says what the minimum is
    sp = _read_csv(t["spilf_table2_x265_demo"]["csv"])
    assert [r["Method"] for r in sp] == ["anchor (x265, filters on)", "x265, filters off"]
    assert all("minimum achievable rate" in r["0.3 bpp PSNR-Y ↑"] for r in sp)


def test_table_view_leaves_out_what_holds_no_value():
    """Markdown and HTML show the columns and rows holding data, in order; the CSV (the frame) keeps all."""
    from inloop.reporting.report import html_table
    from inloop.reporting.tables import markdown_table, table_view

    df = pd.DataFrame({"QP": [22, 22, 27], "Seq.": ["a", "b", "a"], "m1 AI": [0.1234, math.nan, 0.5],
                       "m1 LDP": [math.nan] * 3, "m2 AI": [1.0, None, math.nan], "why": ["", "", "n/a (reason)"]})
    view = table_view(df, 3)
    assert view["columns"] == ["QP", "Seq.", "m1 AI", "m2 AI", "why"]
    assert [[c["text"] for c in r] for r in view["rows"]] == [["22", "a", "0.123", "1.000", ""],
                                                               ["27", "a", "0.500", "n/a", "n/a (reason)"]]
    assert view["left_out"] == "rows with no value left out: 22 b; columns with no value left out: m1 LDP (the CSV has them)"
    md = markdown_table(view).splitlines()
    assert md[0].split("|")[1:-1] == [" QP   ", " Seq.   ", "   m1 AI ", "   m2 AI ", " why          "]
    assert md[1] == "|:-----|:-------|--------:|--------:|:-------------|" and md[3].endswith("| n/a (reason) |")
    # a column of labels only (no float column): no row is left out, empty columns still are
    assert table_view(pd.DataFrame({"a": ["x", "y"], "b": ["", ""]}))["rows"] == [[{"text": "x", "num": False}],
                                                                                [{"text": "y", "num": False}]]
    # HTML: escaped text, numbers marked for right alignment
    h = html_table(pd.DataFrame({"<b>name</b>": ["<script>alert('x')</script> & co"], "v": [1.5]}))
    assert "<script>" not in h and "<b>" not in h
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co" in h and "&lt;b&gt;name&lt;/b&gt;" in h
    assert '<td class="num">1.50</td>' in h


def test_spilf_table_rows_supplied():
    from inloop.reporting.tables import spilf_table

    t = spilf_table([{"label": "anchor", (0.15, "psnr"): 30.4, (0.15, "lpips"): "n/a (LPIPS unavailable)"},
                     {"label": "Arabica", (0.075, "psnr"): 28.35}])
    assert list(t["Method"]) == ["anchor", "Arabica"]
    assert t.loc[0, "0.15 bpp PSNR-Y ↑"] == 30.4 and t.loc[0, "0.15 bpp LPIPS ↓"].startswith("n/a")
    assert t.loc[1, "0.3 bpp MS-SSIM-Y ↑"].startswith("n/a")


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_plots_exist_and_are_images(report):
    p = report["plots"]
    names = set(p)
    for cfg in CONFIGS:
        assert f"rd_x265_{cfg}_demo_city" in names
        assert f"frames_x265_{cfg}_demo_city_qp32" in names or f"frames_x265_{cfg}_demo_city_qp27" in names
        assert f"training_{SYNTH}_x265_{cfg}" in names
    assert "bdrate_x265_demo" in names
    for name, files in p.items():
        png, svg = Path(files["png"]), Path(files["svg"])
        w, h = _png_size(png)
        assert w > 300 and h > 200 and png.stat().st_size > 10_000, name
        text = svg.read_text()
        assert "<svg" in text and text.count("<path") > 10, name


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("href", "src") and v and not v.startswith("#"):
                self.links.append(v)


def test_index_links_resolve(report):
    index = Path(report["index"])
    text = index.read_text()
    parser = _Links()
    parser.feed(text)
    assert len(parser.links) > 20
    for link in parser.links:
        assert not link.startswith(("http:", "https:", "/")), link
        assert (index.parent / link).is_file(), link
    linked = {str((index.parent / ln).resolve()) for ln in parser.links}
    for group in ("tables", "plots", "claims"):
        for files in report[group].values():
            for f in files.values():
                assert str(Path(f).resolve()) in linked, f
    assert "post-processing" in text and "GL-Fusion" in text and "section IV.A" in text
    assert "Claimed vs reproduced" in text
    assert "transcribed from the papers listed in docs/papers.md" in text and "shared/papers" not in text
    assert "source: paper 000 (docs/papers.md; source text 000_" in Path(report["claims"]["glfusion_tableVI"]["md"]).read_text()


# --------------------------------------------------------------------------- claims


def test_claims_spot_checks():
    from inloop.reporting.claims import claim_table, load_claims

    gl = load_claims("glfusion")
    t2 = {r["key"]: r for r in gl["tables"]["II"]["rows"]}
    assert t2["average"]["values"] == [-12.30, -12.70, -13.20, -13.55]
    assert any(r["label"] == "PartySence" and r["key"] == "partyscene" for r in gl["tables"]["II"]["rows"])
    t6 = gl["tables"]["VI"]
    i = next(i for i, c in enumerate(t6["columns"]) if c["method"] == "Proposed" and c["config"] == "LD")
    avg6 = next(r for r in t6["rows"] if r["key"] == "average")
    assert avg6["values"][i] == -11.30 and avg6["values"][i + 1] == -11.70
    assert next(r for r in gl["tables"]["VII"]["rows"] if r["key"] == "average")["values"] == [15.65, 9.77, 6.20]
    sp = load_claims("spilf")
    arabica = next(r for r in sp["tables"]["2"]["rows"] if r["key"] == "arabica")
    assert arabica["values"][:3] == [28.352, 0.9349, 0.304]
    assert next(r for r in sp["tables"]["1"]["rows"] if r["key"] == "arabica_perceptual")["values"] == [1, 50, 0.05, 0.005]
    nl = load_claims("nlconvlstm")
    ave37 = next(r for r in nl["tables"]["4"]["rows"] if r["key"] == "average" and r["qp"] == 37)
    assert ave37["values"][-1] == [0.601, 0.90]
    ave42 = next(r for r in nl["tables"]["4"]["rows"] if r["key"] == "average" and r["qp"] == 42)
    assert ave42["values"][3] == [0.461, None]  # MFQE SSIM printed as a dash
    assert nl["tables"]["5"]["rows"][-1]["values"][-1] == 6738.00
    assert nl["tables"]["1"]["rows"][0]["values"] == [None, None]  # lost in extraction
    for paper in ("glfusion", "spilf", "nlconvlstm"):
        d = load_claims(paper)
        assert {"codec", "configs", "qps", "training_data", "test_data"} <= set(d["setup"])
        for name, t in d["tables"].items():
            for r in t["rows"]:
                assert len(r["values"]) == len(t["columns"]), (paper, name, r["label"])
            assert not claim_table(paper, name).empty


def test_every_matched_claim_names_the_codec_and_dataset_of_its_results():
    """Issue #26: each matched table says which results it may be read against (the codec and the datasets
    registry's name, as the evaluation records them); the Vimeo-90K table (3) is matched too."""
    from inloop.datasets.registry import REGISTRY
    from inloop.names import CODECS
    from inloop.reporting.claims import load_claims, table_setup

    want = {("glfusion", t): ("hm", "jctvc-ctc") for t in ("II", "III", "IV", "V", "VI")}
    want.update({("spilf", "2"): ("ecm", "clic2022-valid"), ("nlconvlstm", "2"): ("hm", "mfqe-yang"),
                 ("nlconvlstm", "3"): ("x265", "vimeo90k-septuplet"), ("nlconvlstm", "4"): ("hm", "mfqe-yang")})
    got = {}
    for paper in ("glfusion", "spilf", "nlconvlstm"):
        for m in load_claims(paper)["match"]:
            setup = table_setup(paper, m["table"])
            assert setup["codec"] in CODECS and setup["dataset"] in REGISTRY, (paper, m["table"], setup)
            got[(paper, m["table"])] = (setup["codec"], setup["dataset"])
    assert got == want


def test_nlconvlstm_quality_fluctuation_std_is_filled_from_the_authors_pdf():
    """Section 4.3's STD values (lost in the stored text) are the authors' PDF's, and say so."""
    from inloop.reporting.claims import load_claims

    nl = load_claims("nlconvlstm")
    fl = next(c for c in nl["text_claims"] if c["where"] == "4.3 Quality fluctuation")
    assert {k: fl["values"][k] for k in ("std_hevc", "std_mfqe", "std_ours")} == \
        {"std_hevc": 1.130, "std_mfqe": 1.055, "std_ours": 1.036}
    assert "authors' published PDF" in fl["note"]
    assert "ablation" in nl["tables"]["2"]["caption_note"] and "complexity" in nl["tables"]["1"]["caption_note"]


def test_glfusion_average_is_over_sequences():
    """The registry's own numbers justify the averaging rule used by summarize()."""
    from inloop.reporting.claims import load_claims

    rows = load_claims("glfusion")["tables"]["II"]["rows"]
    seq = [r["values"][3] for r in rows if "class" in r]
    cls = [r["values"][3] for r in rows if r["key"].startswith("class_")]
    assert sum(seq) / len(seq) == pytest.approx(-13.55, abs=0.01)
    assert abs(sum(cls) / len(cls) - -13.55) > 0.3


def test_comparison_rows(agg):
    from inloop.reporting.claims import compare

    s = agg["summary"].copy()
    # Label the SYNTHETIC model as glfusion so that its rows match the paper's (test of the matching only); its
    # x265 results on the demo clips are not Table VI's setup (HM on the CTC sequences): never compared.
    s.loc[s["model"] == SYNTH, "model"] = "glfusion"
    demo = compare(s, agg["points"], {("x265", "demo"): {"train_steps": 200, "device": "cpu"}})
    vi = demo[(demo["paper"] == "glfusion") & (demo["table"] == "VI")]
    assert list(vi["row"]) == ["Average"] * 3 and vi["reproduced"].isna().all()
    assert set(vi["codec"]) == {"hm"} and set(vi["dataset"]) == {"jctvc-ctc"}
    assert vi["note"].str.contains("no result of the claim's codec / dataset / configuration").all()
    assert vi["note"].str.contains("x265 / demo / AI, x265 / demo / LDP, x265 / demo / RA").all()
    # Labelled with Table VI's setup, every row of it matches.
    s.loc[s["model"] == "glfusion", ["codec", "dataset"]] = ["hm", "jctvc-ctc"]
    comp = compare(s, agg["points"], {("hm", "jctvc-ctc"): {"train_steps": 200, "device": "cpu"}})
    vi = comp[(comp["paper"] == "glfusion") & (comp["table"] == "VI") & (comp["row"] == "Average")]
    assert set(vi["config"]) == {"ai", "ldp", "ra"}
    for r in vi.to_dict("records"):
        assert math.isfinite(r["claimed"]) and math.isfinite(r["reproduced"])
        assert r["difference"] == pytest.approx(r["reproduced"] - r["claimed"])
        why = r["what differs in the setup"]
        assert "codec hm" in why and "HM-16.9" in why and "200 steps" in why
    claimed = dict(zip(vi["config"], vi["claimed"]))
    assert claimed == {"ai": -13.55, "ldp": -11.30, "ra": -11.70}
    # Without the model the headline claim is still listed, as not evaluated.
    comp0 = compare(agg["summary"], agg["points"])
    head = comp0[(comp0["table"] == "VI") & (comp0["model"] == "glfusion")]
    assert len(head) == 3 and head["reproduced"].isna().all() and head["note"].str.contains("not evaluated").all()


def _labelled(encodes, model, codec, dataset, cfg, qp, seq, plus, ssim=None) -> dict:
    """One evaluation record on the real x265 encodes, labelled with another codec / dataset (the matching is what
    is tested; the model is SYNTHETIC: enhanced = filters-off + ``plus`` dB, and ΔSSIM = ``plus`` x 10^-2)."""
    qp_enc = min(QPS, key=lambda q: abs(q - qp))  # the encodes have QP 22-37; the label carries the claim's QP
    rec = _record(model, encodes[(cfg, "on", qp_enc)], encodes[(cfg, "off", qp_enc)], seq, plus)
    rec.update(codec=codec, dataset=dataset, qp=qp)
    if ssim is not None:
        rec["decoded"]["ssim_y"], rec["enhanced"]["ssim_y"] = ssim, ssim + plus / 100
        rec["delta"]["ssim_y"] = plus / 100
    return rec


def test_two_codecs_and_two_datasets_give_each_claim_row_its_own_numbers(encodes, tmp_path):
    """Issue #26: claims are matched by codec, dataset, configuration (and QP), never across them nor pooled.
    One tree holds NL-ConvLSTM on HM / Yang et al.'s dataset (ΔPSNR 1.38 and 1.58: mean 1.48), on x265 / the
    same sequences (0.98 and 1.18: mean 1.08) and on x265 / Vimeo-90K, and GL-Fusion AI on HM and on x265 over
    the CTC names."""
    from inloop.reporting.aggregate import aggregate
    from inloop.reporting.claims import compare

    ev = tmp_path / "eval"
    trees = {("hm", "mfqe-yang"): {"PeopleOnStreet_2560x1600_30": 1.38, "Kimono_1920x1080_24": 1.58},
             ("x265", "mfqe-yang"): {"PeopleOnStreet_2560x1600_30": 0.98, "Kimono_1920x1080_24": 1.18},
             ("x265", "vimeo90k-septuplet"): {"00001_0001_448x256": 0.5, "00001_0002_448x256": 0.7}}
    recs = []
    for (codec, dataset), seqs in trees.items():
        qps = (32, 37) if dataset == "vimeo90k-septuplet" else (37, 42)
        for seq, plus in seqs.items():
            for qp in qps:
                recs.append(_labelled(encodes, "nlconvlstm", codec, dataset, "ldp", qp, seq, plus, ssim=0.9))
    for codec, plus in (("hm", 0.3), ("x265", 0.6)):
        for seq, cls in (("Traffic_2560x1600_30_crop", "A"), ("Kimono1_1920x1080_24", "B")):
            for qp in QPS:
                rec = _labelled(encodes, "glfusion", codec, "jctvc-ctc", "ai", qp, seq, plus)
                recs.append({**rec, "seq_class": cls})
    for r in recs:
        write_json(ev / r["model"] / r["codec"] / r["config"] / r["dataset"] / r["sequence"] / f"qp{r['qp']}.json", r)
    agg = aggregate(ev, "cubic")
    comp = compare(agg["summary"], agg["points"])

    def cells(paper, table, qp=None, **match):
        c = comp[(comp["paper"] == paper) & (comp["table"] == table)]
        for k, v in match.items():
            c = c[c[k] == v]
        if qp is not None:  # every delta / PSNR row's note starts with its QP
            c = c[c["note"].str.match(rf"QP {qp}\b")]
        return c

    # Table 4 (HM, Yang et al.'s dataset): HM's numbers only, one row per claim, never the pooled 1.28.
    for qp in (37, 42):
        ave = cells("nlconvlstm", "4", row="Ave.", model="nlconvlstm", unit="ΔPSNR-Y (dB)", qp=qp)
        assert len(ave) == 1 and ave.iloc[0]["codec"] == "hm" and ave.iloc[0]["dataset"] == "mfqe-yang"
        assert ave.iloc[0]["reproduced"] == pytest.approx(1.48) and ave.iloc[0]["qp"] == qp
        ssim = cells("nlconvlstm", "4", row="Ave.", model="nlconvlstm", unit="ΔSSIM-Y (×10^-2)", qp=qp)
        assert list(ssim["reproduced"]) == [pytest.approx(1.48)]
    seq1 = cells("nlconvlstm", "4", row="1", model="nlconvlstm", unit="ΔPSNR-Y (dB)")
    assert list(seq1["reproduced"]) == [pytest.approx(1.38)]  # PeopleOnStreet, HM only
    # Table 2 (the ablation, QP 37, same setup as Table 4): HM's 1.48 again, one row.
    t2 = cells("nlconvlstm", "2", model="nlconvlstm", unit="ΔPSNR-Y (dB)")
    assert list(t2["reproduced"]) == [pytest.approx(1.48)] and list(t2["codec"]) == ["hm"]
    # Table 3 (x265, Vimeo-90K): PSNR / SSIM of the Vimeo clips alone, per QP.
    pts = agg["points"]
    for qp in (32, 37):
        vim = pts[(pts["dataset"] == "vimeo90k-septuplet") & (pts["qp"] == qp)]
        ours = cells("nlconvlstm", "3", row="Our method", qp=qp, unit="PSNR-Y (dB)")
        assert len(ours) == 1 and ours.iloc[0]["codec"] == "x265" and ours.iloc[0]["dataset"] == "vimeo90k-septuplet"
        assert ours.iloc[0]["reproduced"] == pytest.approx(vim["enhanced_psnr_y"].mean())
        assert ours.iloc[0]["claimed"] == {32: 35.95, 37: 33.39}[qp]
        hevc = cells("nlconvlstm", "3", row="HEVC [34]", qp=qp, unit="PSNR-Y (dB)")
        assert list(hevc["reproduced"]) == [pytest.approx(vim["decoded_psnr_y"].mean())]
        assert list(cells("nlconvlstm", "3", row="Our method", qp=qp, unit="SSIM-Y")["reproduced"]) == \
            [pytest.approx(0.9 + 0.006)]
    # No NL-ConvLSTM claim row carries another setup's result.
    nl = comp[comp["paper"] == "nlconvlstm"]
    assert set(zip(nl["table"], nl["codec"], nl["dataset"])) == {
        ("2", "hm", "mfqe-yang"), ("3", "x265", "vimeo90k-septuplet"), ("4", "hm", "mfqe-yang")}
    # GL-Fusion Table VI: AI from the HM results alone; LDP / RA, which the run lacks, named as missing.
    s = agg["summary"]
    bd = {c: s[(s["model"] == "glfusion") & (s["codec"] == c) & (s["comparison"] == "model_vs_anchor")
               & (s["metric"] == "y") & (s["level"] == "average")]["bd_rate_pct"].item() for c in ("hm", "x265")}
    assert abs(bd["hm"] - bd["x265"]) > 1.0
    vi = cells("glfusion", "VI", row="Average", model="glfusion")
    assert list(vi["config"]) == ["ai", "ldp", "ra"]
    assert vi.iloc[0]["reproduced"] == pytest.approx(bd["hm"]) and vi.iloc[0]["codec"] == "hm"
    for r in vi.iloc[1:].to_dict("records"):
        assert math.isnan(r["reproduced"]) and r["codec"] == "hm" and r["dataset"] == "jctvc-ctc"
        assert f"hm / jctvc-ctc / {r['config'].upper()}" in r["note"]
        assert "has results only for: hm / jctvc-ctc / AI, x265 / jctvc-ctc / AI" in r["note"]
        assert "no result of the claim's codec, dataset and configuration" in r["what differs in the setup"]
    assert not (comp["codec"] == "x265").any() or set(comp.loc[comp["codec"] == "x265", "table"]) == {"3"}


def test_report_cli(eval_dir, tmp_path):
    import argparse

    from inloop.reporting.report import register

    # A small subset (model "none", AI) keeps this test fast; the full tree is covered by `report`.
    small = tmp_path / "eval"
    shutil.copytree(eval_dir / "eval" / "none" / "x265" / "ai", small / "none" / "x265" / "ai")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", "--eval-dir", str(small), "--models-dir",
                              str(tmp_path / "no-models"), "--out", str(tmp_path / "rep"),
                              "--params", str(Path(__file__).resolve().parents[1] / "params.yaml")])
    assert args.func(args) == 0
    assert (tmp_path / "rep" / "index.html").is_file()
    names = sorted(p.name for p in (tmp_path / "rep" / "plots").iterdir())
    assert "rd_x265_ai_demo_city.png" in names and "rd_x265_ai_demo_city.svg" in names
    rows = _read_csv(tmp_path / "rep" / "tables" / "glfusion_table6_x265_demo.csv")
    assert rows[-2]["Sequence"] == "Average" and float(rows[-2]["filters off AI BD-rate (%)"]) > 0
    # the plots drawn by two processes (resources.report.threads): the same figures, pixel for pixel
    args = parser.parse_args(["report", "--eval-dir", str(small), "--models-dir", str(tmp_path / "no-models"),
                              "--out", str(tmp_path / "rep2"), "--threads", "2"])
    assert args.func(args) == 0
    pngs = sorted((tmp_path / "rep" / "plots").glob("*.png"))
    assert len(pngs) > 2 and [p.name for p in pngs] == sorted(p.name for p in (tmp_path / "rep2" / "plots").glob("*.png"))
    for png in pngs:
        assert png.read_bytes() == (tmp_path / "rep2" / "plots" / png.name).read_bytes(), png.name


def test_spilf_rows_allocate_qps_under_each_budget():
    """SPiLF 2.3 in the Table 2 shape: per target, one QP per sequence, total bits within the budget,
    and the pooled PSNR of the best such choice (checked by brute force)."""
    import itertools
    import math

    import pandas as pd

    from inloop.reporting.tables import spilf_rows_from_points

    rows = []
    for seq, (w, h), base in (("a", (64, 32), 1.0), ("b", (32, 32), 0.5)):
        for qp, bpp, psnr in ((37, 0.4 * base, 34.0 + base), (42, 0.2 * base, 31.0 + base), (47, 0.1 * base, 28.0 + base)):
            rows.append({"model": "spilf-x", "codec": "x265", "dataset": "demo", "config": "ai", "sequence": seq,
                         "qp": qp, "width": w, "height": h, "frames": 2, "decoded_bpp": bpp, "anchor_bpp": bpp,
                         "enhanced_psnr_y": psnr + 0.5, "anchor_psnr_y": psnr, "enhanced_ms_ssim_y": 0.9})
    points = pd.DataFrame(rows)
    [row] = spilf_rows_from_points(points, "enhanced", "X", model="spilf-x", targets=(0.15, 0.05))
    pix = {"a": 64 * 32 * 2, "b": 32 * 32 * 2}
    meas = {(r["sequence"], r["qp"]): (round(r["decoded_bpp"] * pix[r["sequence"]]), r["enhanced_psnr_y"]) for r in rows}
    best = None
    for qa, qb in itertools.product((37, 42, 47), repeat=2):
        bits = meas["a", qa][0] + meas["b", qb][0]
        if bits <= 0.15 * sum(pix.values()):
            sse = sum(pix[s] * 255**2 * 10 ** (-meas[s, q][1] / 10) for s, q in (("a", qa), ("b", qb)))
            best = sse if best is None else min(best, sse)
    assert row[(0.15, "bpp")] <= 0.15
    assert row[(0.15, "psnr")] == pytest.approx(10 * math.log10(255**2 * sum(pix.values()) / best))
    assert "minimum achievable rate" in row[(0.05, "psnr")]  # 0.05 bpp is below every choice


def test_spilf_table2_claims_are_paired_with_measured_points_in_rgb():
    """SPiLF Table 2's claimed points next to the rate-allocated measured ones (same model, same bpp); RGB
    metrics (params metrics.rgb) are used and named where the evaluate stage measured them."""
    import pandas as pd

    from inloop.reporting.claims import compare
    from inloop.reporting.tables import spilf_rows_from_points, spilf_table

    rows = []
    for seq in ("a", "b"):
        for qp, bpp in ((37, 0.4), (42, 0.15), (47, 0.07)):
            rows.append({"model": "spilf-arabica", "codec": "ecm", "dataset": "clic2022-valid", "config": "ai",
                         "sequence": seq, "qp": qp, "width": 64, "height": 32, "frames": 1, "decoded_bpp": bpp,
                         "anchor_bpp": bpp, "anchor_psnr_y": 30.0 + qp / 10, "anchor_psnr_rgb": 29.0 + qp / 10,
                         "anchor_ms_ssim_rgb": 0.95, "enhanced_psnr_y": 31.0, "enhanced_psnr_rgb": 30.0,
                         "enhanced_ms_ssim_rgb": 0.96, "enhanced_lpips": 0.2, "anchor_lpips": 0.25})
    points = pd.DataFrame(rows)
    measured = (spilf_rows_from_points(points, "anchor", "anchor", targets=(0.075, 0.15)) +
                spilf_rows_from_points(points, "enhanced", "spilf-arabica", model="spilf-arabica",
                                       targets=(0.075, 0.15)))
    assert {r["space"] for r in measured} == {"RGB"}
    assert "0.15 bpp PSNR (RGB) ↑" in spilf_table(measured, (0.075, 0.15)).columns
    comp = compare(pd.DataFrame(), None, {}, papers=("spilf",), spilf_rows=measured)
    ara = comp[(comp["row"] == "Arabica") & (comp["column"] == "0.15 bpp PSNR ↑")].iloc[0]
    assert ara["claimed"] == 30.604 and ara["reproduced"] == pytest.approx(30.0)
    assert ara["difference"] == pytest.approx(30.0 - 30.604) and "RGB, as the paper" in ara["note"]
    ecm = comp[(comp["row"] == "ECM") & (comp["column"] == "0.15 bpp LPIPS ↓")].iloc[0]
    assert ecm["claimed"] == 0.235 and ecm["reproduced"] == pytest.approx(0.25)
    assert "ArabicaPerceptual" not in set(comp["row"])  # not measured: no row
    lost = compare(pd.DataFrame(), None, {}, papers=("spilf",),
                   spilf_rows=spilf_rows_from_points(points, "anchor", "anchor", targets=(0.15,)))
    assert lost[lost["column"] == "0.3 bpp PSNR ↑"]["note"].str.contains("not measured in this run").all()


# --------------------------------------------------------------------------- run time: inloop bench results


@pytest.fixture(scope="module")
def bench_file(tmp_path_factory) -> Path:
    """A REAL `inloop bench` result: AR-CNN and NL-ConvLSTM (params.yaml widths) on the CPU at 64x64 and
    1920x1080, whole frame and tiled, and one training step each. The 5 s budget per case skips what would
    take longer (the 1920x1080 cases on a small machine): those rows stay in the file with their reasons."""
    out = tmp_path_factory.mktemp("bench") / "cpu.json"
    repo = Path(__file__).resolve().parents[1]
    cmd = [str(Path(sys.executable).with_name("inloop")), "bench", "--quick", "--device", "cpu",
           "--models", "arcnn", "nlconvlstm", "--sizes", "64x64", "1920x1080", "--train", "--train-steps", "1",
           "--no-costs", "--max-seconds", "5", "--params", str(repo / "params.yaml"), "--out", str(out)]
    r = subprocess.run(cmd, cwd=out.parent, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def bench_report(bench_file, tmp_path_factory) -> dict:
    from inloop.reporting.report import build_report

    out = tmp_path_factory.mktemp("bench-report")
    return build_report([], None, out, {"report": {"benchmarks": [str(bench_file)]}})


def _rows_by(path: Path, *keys: str) -> dict:
    return {tuple(r[k] for k in keys): r for r in _read_csv(path)}


def test_bench_tables_hold_our_measurements(bench_file, bench_report):
    res = json.loads(bench_file.read_text())
    assert bench_report["benchmarks"] == [str(bench_file)]
    inf = _rows_by(bench_report["tables"]["bench_inference_cpu"]["csv"], "Model", "Size")
    assert set(inf) == {(r["model"], r["size"]) for r in res["inference"]}
    measured = 0
    for r in res["inference"]:
        row, kind = inf[r["model"], r["size"]], "whole" if r["mode"] == "whole" else "tiled"
        if r["status"] == "ok":
            assert float(row[f"{kind} ms/frame"]) == pytest.approx(r["ms_per_frame"])
            assert float(row[f"{kind} peak MB"]) == pytest.approx(r["peak_mem_mb"])
            measured += 1
        else:
            assert row[f"{kind} ms/frame"] == "" and r["reason"] in row["note"]
    assert measured > 0
    tr = _rows_by(bench_report["tables"]["bench_training_cpu"]["csv"], "Model")
    assert set(tr) == {(r["model"],) for r in res["training"]}
    assert any(r["status"] == "ok" for r in res["training"])
    for r in res["training"]:
        if r["status"] == "ok":
            row = tr[(r["model"],)]
            assert float(row["ms/step"]) == pytest.approx(r["step_ms"])
            assert float(row["samples/s"]) == pytest.approx(r["samples_per_s"])
            assert float(row["TFLOP/s"]) == pytest.approx(r["tflops"])
            assert row["batch x patch"].startswith(f"{r['batch']} x {r['patch']}²")
    assert "MFU" not in next(iter(tr.values()))  # CPU: no peak, no MFU column
    # the section: machine line and the exact command from the file
    text = Path(bench_report["index"]).read_text()
    assert "Run time: our benchmarks next to the papers" in text
    m = res["machine"]
    for s in (m["device_name"], f"torch {m['torch']}", m["git_commit"][:12], res["command"],
              "/".join(map(str, m["load_avg"]))):
        # escaped as the template's autoescape writes it (Jinja2: quotes as &#34; / &#39;)
        assert html.escape(s, quote=True).replace("&quot;", "&#34;").replace("&#x27;", "&#39;") in text, s
    md = Path(bench_report["tables"]["bench_inference_cpu"]["md"]).read_text()
    assert res["command"] in md and "GL-Fusion Table VII" in md and "15.65" in md


def test_bench_paper_figure_only_at_the_sizes_benchmarked(bench_report):
    """Rule: a row per (model, size) the file holds, timed or skipped; NL-ConvLSTM Table 5's ms beside it when
    the table has that network at that size. 1920x1080 was benchmarked: 6738 (NL-ConvLSTM) and 80.70 (AR-CNN
    baseline); 64x64 is not in Table 5; Table 5's other sizes (416x240 ...) were not benchmarked: no row."""
    inf = _rows_by(bench_report["tables"]["bench_inference_cpu"]["csv"], "Model", "Size")
    assert set(inf) == {(m, s) for m in ("arcnn", "nlconvlstm") for s in ("64x64", "1920x1080")}
    assert float(inf["nlconvlstm", "1920x1080"]["paper ms/frame"]) == 6738.0
    assert inf["nlconvlstm", "1920x1080"]["paper"] == "NL-ConvLSTM Table 5"
    assert float(inf["arcnn", "1920x1080"]["paper ms/frame"]) == pytest.approx(80.70)
    assert inf["arcnn", "1920x1080"]["paper"] == "NL-ConvLSTM Table 5, arcnn baseline"
    for m in ("arcnn", "nlconvlstm"):
        assert inf[m, "64x64"]["paper ms/frame"] == "" and inf[m, "64x64"]["paper"] == ""


def test_bench_missing_file_says_how_to_make_one(tmp_path):
    from inloop.reporting import benchmarks
    from inloop.reporting.report import build_report

    assert benchmarks.listed_files({}) == ["docs/benchmarks/cpu.json"]
    assert benchmarks.existing_files({}, root=tmp_path) == []
    missing = tmp_path / "nope.json"
    res = build_report([], None, tmp_path / "rep", {"report": {"benchmarks": [str(missing)]}})
    text = Path(res["index"]).read_text()
    assert "No benchmark file found" in text and str(missing) in text
    cmd = ("inloop bench --device cpu --sizes 416x240 832x480 --train --codec --out docs/benchmarks/cpu.json "
           "--markdown docs/benchmarks.md")
    assert cmd in text and any(cmd in n for n in res["notes"])
    assert res["benchmarks"] == [] and not any(k.startswith("bench_") for k in res["tables"])


def test_bench_malformed_file_is_named(bench_file, tmp_path):
    from inloop.reporting.aggregate import ReportError
    from inloop.reporting.report import build_report

    truncated = tmp_path / "truncated.json"
    truncated.write_text(bench_file.read_text()[:200])
    res = json.loads(bench_file.read_text())
    for r in res["inference"]:
        del r["size"]
    no_size = tmp_path / "no-size.json"
    no_size.write_text(json.dumps(res))
    for bad, why in ((truncated, "(char "), (no_size, "inference row 0 lacks size")):
        out = tmp_path / f"rep-{bad.stem}"
        with pytest.raises(ReportError, match=re.escape(str(bad))) as exc:
            build_report([], None, out, {"report": {"benchmarks": [str(bench_file), str(bad)]}})
        assert why in str(exc.value) and "inloop bench" in str(exc.value)
        assert not out.exists()  # checked before anything is written


# --------------------------------------------------------------------------- NL-ConvLSTM ablation (section 4.2)

ABLATION = {"nlconvlstm-encdec": ("single", 0.10), "nlconvlstm-convlstm": ("convlstm", 0.20),
            "nlconvlstm-me": ("meconvlstm", 0.25), "nlconvlstm": (None, 0.30)}


def _ablation_report(encodes, root: Path, models: dict, codec: str = "x265", dataset: str = "demo") -> Path:
    """An eval tree of NL-ConvLSTM-arch models on the real LDP encodes (QP 32, 37), each SYNTHETIC:
    enhanced = filters-off + its fixed delta; ``codec`` / ``dataset`` label the records (the encodes are x265's).
    Returns the report folder."""
    seq = "city_128x96_30fps_8bit_420"
    for m, (_, plus) in models.items():
        for qp in (32, 37):
            rec = _record(m, encodes[("ldp", "on", qp)], encodes[("ldp", "off", qp)], seq, plus)
            rec["delta"]["ssim_y"] = plus / 100  # x 10^-2 in the table: the same number as ΔPSNR
            rec.update(codec=codec, dataset=dataset)
            write_json(root / "eval" / m / codec / "ldp" / dataset / seq / f"qp{qp}.json", rec)
    # No encode / train sections: a report reads only the networks of models.<name> (model_spec's qps and
    # train checks do not apply to finished results).
    params = {"bdrate": {"method": "cubic"},
              "models": {m: ({"arch": "nlconvlstm", "mode": mode} if mode else {}) for m, (mode, _) in models.items()}}
    from inloop.reporting.report import build_report

    build_report(root / "eval", root / "models", root / "report", params)
    return root / "report"


def test_nlconvlstm_ablation_table_orders_modes_as_the_paper_and_meets_its_claims(encodes, tmp_path):
    # Labelled with Table 2's setup (HM LDP on Yang et al.'s dataset) so that the claims match (the encodes are
    # x265's: a test of the table and the matching only).
    rep = _ablation_report(encodes, tmp_path, ABLATION, codec="hm", dataset="mfqe-yang")
    rows = _read_csv(rep / "tables" / "nlconvlstm_ablation_ldp_hm_mfqe-yang.csv")
    cols = list(rows[0])
    assert cols == ["QP", "", "Encoder-Decoder with 1 frame (nlconvlstm-encdec)",
                    "ConvLSTM with 7 frames (nlconvlstm-convlstm)", "ME-ConvLSTM with 7 frames (nlconvlstm-me)",
                    "NL-ConvLSTM with 7 frames (nlconvlstm)"]
    assert [(r["QP"], r[""]) for r in rows] == [("32", "ΔPSNR (dB)"), ("32", "ΔSSIM (×10^-2)"),
                                               ("37", "ΔPSNR (dB)"), ("37", "ΔSSIM (×10^-2)")]
    for r in rows:
        assert [float(r[c]) for c in cols[2:]] == pytest.approx([0.10, 0.20, 0.25, 0.30], abs=1e-3)
    assert "not trained in this run" not in (rep / "tables" / "nlconvlstm_ablation_ldp_hm_mfqe-yang.md").read_text()
    # The claims comparison matches the hyphenated model names to the registry's columns, at the table's QP 37.
    comp = [r for r in _read_csv(rep / "claims" / "comparison.csv") if r["paper"] == "nlconvlstm" and r["table"] == "2"]
    got = {(r["model"], r["unit"].split()[0]): (float(r["claimed"]), float(r["reproduced"])) for r in comp}
    assert got == {("nlconvlstm_encdec", "ΔPSNR-Y"): (0.395, pytest.approx(0.10)),
                   ("nlconvlstm_encdec", "ΔSSIM-Y"): (0.684, pytest.approx(0.10)),
                   ("nlconvlstm_convlstm", "ΔPSNR-Y"): (0.456, pytest.approx(0.20)),
                   ("nlconvlstm_convlstm", "ΔSSIM-Y"): (0.723, pytest.approx(0.20)),
                   ("nlconvlstm_me", "ΔPSNR-Y"): (0.503, pytest.approx(0.25)),
                   ("nlconvlstm_me", "ΔSSIM-Y"): (0.827, pytest.approx(0.25)),
                   ("nlconvlstm", "ΔPSNR-Y"): (0.601, pytest.approx(0.30)),
                   ("nlconvlstm", "ΔSSIM-Y"): (0.897, pytest.approx(0.30))}


def test_nlconvlstm_ablation_table_names_the_modes_not_trained(encodes, tmp_path):
    rep = _ablation_report(encodes, tmp_path, {"nlconvlstm": ABLATION["nlconvlstm"]})
    md = (rep / "tables" / "nlconvlstm_ablation_ldp_x265_demo.md").read_text()
    assert "NL-ConvLSTM with 7 frames (nlconvlstm)" in md
    assert "not trained in this run: Encoder-Decoder, ConvLSTM, ME-ConvLSTM" in md
    assert "config/nlconvlstm-ablation.yaml" in md


def test_no_table_is_drawn_without_a_value(eval_dir, tmp_path):
    """Issue #30 item 2: paper-shaped tables with no value in the run (here: only a 3-QP curve, so no BD-rate)
    were drawn as a header over nothing; they are named in one note instead, their CSV still written."""
    import shutil

    from inloop.reporting.report import build_report

    ev = tmp_path / "eval"
    for f in (eval_dir / "eval").rglob("short3qp/*.json"):
        dst = ev / f.relative_to(eval_dir / "eval")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dst)
    r = build_report(ev, None, tmp_path / "report", {"bdrate": {"method": "cubic"}})
    html = Path(r["index"]).read_text()
    shaped = html.split('<h2 id="tables">', 1)[1].split('<h2 id="comparison">', 1)[0]
    assert "<tbody></tbody>" not in shaped and "No value in this run, not shown" in shaped
    assert any(Path(t["csv"]).is_file() for t in r["tables"].values())


def test_each_papers_setup_line_says_what_its_own_models_ran(tmp_path):
    """Issue #30 item 2: every paper's line said "training 1200 steps on auto" (the global train.steps and the
    device setting), while SPiLF trained 600 steps of 2 and NL-ConvLSTM 200, on the CPU in bf16. The line now
    comes from the papers' own model files."""
    from inloop.fsutil import write_json
    from inloop.reporting.aggregate import load_histories
    from inloop.reporting.claims import setup_differences
    from inloop.reporting.report import _training_lines, _training_runs

    runs = {("glfusion", "glfusion"): (1200, 4), ("spilf-arabica", "spilf"): (600, 2), ("nlconvlstm", "nlconvlstm"): (200, 8)}
    for (model, arch), (steps, batch) in runs.items():
        for qp in (32, 37):
            write_json(tmp_path / model / "x265" / "ai" / f"qp{qp}" / "model.json",
                       {"model": model, "arch": arch, "codec": "x265", "config": "ai", "qp": qp,
                        "result": {"steps": steps, "processes": 1, "batch_per_process": batch},
                        "history": [{"step": steps, "mse": 1e-3}],
                        "compute": {"device": "cpu", "precision": "bf16"}})
    lines = _training_lines(_training_runs(load_histories(tmp_path)))
    assert lines == {"glfusion": "glfusion 1200 steps of 4 on cpu in bf16",
                     "spilf": "spilf-arabica 600 steps of 2 on cpu in bf16",
                     "nlconvlstm": "nlconvlstm 200 steps of 8 on cpu in bf16"}
    text = setup_differences("spilf", {"codec": "x265", "training": lines, "train_steps": 1200, "device": "auto"})
    assert "training spilf-arabica 600 steps of 2 on cpu in bf16 vs paper:" in text and "1200" not in text
    nl = setup_differences("nlconvlstm", {"codec": "x265", "training": lines})
    assert "lost in extraction" not in nl.split("vs paper:")[-2] + nl.split("training")[-1].split("; declared")[0] \
        or "learning rate 1e-4" in nl


def test_the_headline_chart_draws_no_bar_for_a_model_a_configuration_does_not_train(tmp_path, monkeypatch):
    """Issue #30 item 2: the headline bars printed "n/a" for every model a configuration does not train."""
    from inloop.reporting import plots

    rows = [("none", "ai", "off_vs_anchor", 5.0), ("none", "ldp", "off_vs_anchor", 4.0),
            ("glfusion", "ai", "model_vs_anchor", -3.0), ("nlconvlstm", "ldp", "model_vs_anchor", float("nan"))]
    summary = pd.DataFrame([{"level": "average", "metric": "y", "codec": "x265", "dataset": "demo", "model": m,
                             "config": c, "comparison": comp, "bd_rate_pct": v} for m, c, comp, v in rows])
    drawn = {}
    monkeypatch.setattr(plots, "save", lambda fig, out, name: drawn.setdefault("fig", fig) and {})
    plots.bd_bar_plot(summary, "x265", "demo", tmp_path)
    ax = drawn["fig"].axes[0]
    labels = [t.get_text() for t in ax.texts]
    # NL-ConvLSTM's LDP curve has no BD value (fewer than four QPs): no "n/a" bar (the 8-clip report looked at in
    # Chromium had three of them), no legend entry; the axis names it
    assert sorted(labels) == ["+4.00", "+5.00", "-3.00"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["filters off", "glfusion"]
    assert "no BD-rate" in ax.get_xlabel() and "nlconvlstm" in ax.get_xlabel()


def test_the_report_reads_at_a_glance_with_models_at_other_qps_and_a_grey_clip(encodes, tmp_path):
    """Issue #30 item 2, what the 8-clip demo report showed in Chromium at 1400 px: one Table 4-shaped table
    holding GL-Fusion (QP 22-37) and SPiLF (QP 37-51) was blocks of n/a; the headline listed a "left out" row per
    comparison of every model without a BD-rate; the claims comparison was 18 rows of "nothing to compare"; the
    YUV table's n/a for the grey zebrafish clips (constant chroma: infinite U/V PSNR) said nothing about why."""
    from inloop.reporting.report import build_report

    ev = tmp_path / "eval"
    for seq in ("city_128x96_30fps_8bit_420", "grey_128x96_30fps_8bit_420"):
        for qp in QPS:
            on, off = encodes[("ai", "on", qp)], encodes[("ai", "off", qp)]
            recs = [_record("none", on, off, seq, None), _record("glfusion", on, off, seq, 0.3)]
            if qp >= 32:  # a model of two QPs: no BD-rate, a QP set of its own
                recs.append(_record("spilf-arabica", on, off, seq, 0.1))
            for rec in recs:
                if seq.startswith("grey"):
                    for part in ("anchor", "decoded", "enhanced"):
                        if rec[part]:
                            rec[part]["psnr"].update({"u": None, "v": None, "yuv": None})
                write_json(ev / rec["model"] / "x265" / "ai" / "demo" / seq / f"qp{qp}.json", rec)
    r = build_report(ev, None, tmp_path / "report", {"bdrate": {"method": "cubic"}})
    t = r["tables"]
    low, high = (_read_csv(t[n]["csv"]) for n in ("nlconvlstm_table4_ai_x265_demo", "nlconvlstm_table4_ai_x265_demo_qp32-37"))
    assert {r["QP"] for r in low} == {"22", "27", "32", "37"} and not any("spilf" in c for c in low[0])
    assert {r["QP"] for r in high} == {"32", "37"} and all(c.startswith(("QP", "Seq.", "spilf-arabica")) for c in high[0])
    assert all(v not in ("", "nan") for row in low + high for c, v in row.items() if "ΔPSNR" in c)  # no n/a block
    html = Path(r["index"]).read_text()
    head = html.split('<h2 id="headline">', 1)[1].split('<h2 id="tables">', 1)[0]
    assert "no BD-rate for spilf-arabica: a Bjontegaard curve needs four QPs" in head
    assert "rows with no value left out" not in head and ">spilf-arabica<" not in head
    comp = html.split('<h2 id="comparison">', 1)[1].split('<h2 id="runtime">', 1)[0]
    assert "nothing to compare" not in comp and re.search(r"(\d+) of \1 claims not shown", comp), comp[:500]
    assert any("nothing to compare" in row["what differs in the setup"]
               for row in _read_csv(r["claims"]["comparison"]["csv"]))  # the CSV keeps every claim
    yuv = Path(t["glfusion_table6_yuv_x265_demo"]["md"]).read_text()
    assert "n/a for grey_128x96_30fps_8bit_420: the decode's chroma equals the original's" in yuv
    assert "city_128x96" not in yuv.split("n/a for", 1)[1]
