"""Confidence intervals on every average (issue #19): bootstrap over clips, and over seeds with train.seeds."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from inloop.reporting.aggregate import bootstrap_interval, summarize


def test_the_interval_of_identical_values_has_zero_width():
    assert bootstrap_interval([-3.5] * 7) == (-3.5, -3.5)
    assert bootstrap_interval(np.full((5, 3), 0.25)) == (0.25, 0.25)


def test_the_interval_holds_the_mean_and_narrows_with_more_clips():
    rng = np.random.default_rng(0)
    few, many = rng.normal(-4, 2, 6), rng.normal(-4, 2, 200)
    lo1, hi1 = bootstrap_interval(few)
    lo2, hi2 = bootstrap_interval(many)
    assert lo1 < few.mean() < hi1 and lo2 < many.mean() < hi2
    assert hi2 - lo2 < hi1 - lo1
    assert few.min() <= lo1 and hi1 <= few.max()


def test_the_interval_is_reproducible_and_follows_its_params():
    v = [1.0, 2.0, 4.0, 8.0]
    assert bootstrap_interval(v, seed=3) == bootstrap_interval(v, seed=3)
    lo90, hi90 = bootstrap_interval(v, level=0.9)
    lo99, hi99 = bootstrap_interval(v, level=0.99)
    assert lo99 <= lo90 and hi90 <= hi99
    assert all(map(math.isnan, bootstrap_interval([])))
    assert all(map(math.isnan, bootstrap_interval([2.5])))  # one clip: no interval
    assert bootstrap_interval([[2.5, 3.5]]) != (math.nan, math.nan)  # one clip, two seeds: the seeds' spread


def test_seeds_widen_the_interval_of_clips_that_agree():
    """Clips x seeds: with every clip at the same mean, the spread comes from the seeds alone."""
    same_clips = np.array([[1.0, 3.0]] * 6)
    lo, hi = bootstrap_interval(same_clips)
    assert lo < 2.0 < hi
    assert bootstrap_interval(same_clips.mean(axis=1)) == (2.0, 2.0)
    # a clip with one seed missing still counts, with the seeds it has
    partial = np.array([[1.0, np.nan], [3.0, 3.0]])
    lo, hi = bootstrap_interval(partial)
    assert 1.0 <= lo <= hi <= 3.0


def _bd(rows):
    return pd.DataFrame([
        {"model": "m", "codec": "x265", "config": "ai", "dataset": "demo", "sequence": s, "seq_class": "",
         "seed": seed, "comparison": "model_vs_anchor", "metric": "y", "method": "cubic", "n_points": 4,
         "qps": "22 27 32 37", "bd_rate_pct": v, "bd_psnr_db": -v / 30, "delta_psnr_y_mean": -v / 40, "note": ""}
        for s, seed, v in rows])


def test_summary_averages_seeds_per_clip_and_carries_intervals():
    s = summarize(_bd([("a", "", -4.0), ("a", "1", -2.0), ("b", "", -6.0), ("b", "1", -6.0)]))
    seq = s[s["level"] == "sequence"].set_index("row")
    assert seq.loc["a", "bd_rate_pct"] == -3.0 and seq.loc["b", "bd_rate_pct"] == -6.0
    assert list(seq["n_seeds"]) == [2, 2]
    avg = s[s["level"] == "average"].iloc[0]
    assert avg["bd_rate_pct"] == -4.5 and avg["n_sequences"] == 2 and avg["n_seeds"] == 2
    assert -6.0 <= avg["bd_rate_pct_ci_low"] < -4.5 < avg["bd_rate_pct_ci_high"] <= -2.0
    assert avg["delta_psnr_y_mean_ci_low"] <= avg["delta_psnr_y_mean"] <= avg["delta_psnr_y_mean_ci_high"]
    one_seed = summarize(_bd([("a", "", -4.0), ("b", "", -6.0)]), {"resamples": 500, "seed": 1})
    a1 = one_seed[one_seed["level"] == "average"].iloc[0]
    assert a1["n_seeds"] == 1 and -6.0 <= a1["bd_rate_pct_ci_low"] <= a1["bd_rate_pct_ci_high"] <= -4.0


def test_train_seeds_make_model_instances_that_train_with_their_seed():
    from inloop.params import model_instances, model_spec, split_seed

    p = {"train": {"models": ["glfusion", "arcnn"], "seed": 0, "seeds": [5, 7]}, "encode": {"qps": [37]},
         "models": {}}
    assert model_instances(p) == ["glfusion", "glfusion-seed7", "arcnn", "arcnn-seed7"]
    assert split_seed("glfusion-seed7") == ("glfusion", "7") and split_seed("glfusion") == ("glfusion", "")
    assert model_spec(p, "glfusion-seed7")["train"]["seed"] == 7
    assert model_instances({"train": {"models": ["glfusion"]}}) == ["glfusion"]


def test_the_claims_comparison_says_whether_the_claim_lies_in_the_interval():
    from inloop.reporting.claims import compare

    rows = [("BasketballDrive", "", -9.0), ("Kimono", "", -11.0), ("Cactus", "", -10.0)]
    # labelled with Table VI's setup (HM on the CTC sequences): claims match only results of their codec and dataset
    bd = _bd(rows).assign(config="ra", model="glfusion", codec="hm", dataset="jctvc-ctc")
    s = summarize(bd)
    out = compare(s, papers=["glfusion"])
    avg = out[(out["row"] == "Average") & (out["config"] == "ra") & (out["table"] == "VI")]
    assert len(avg) == 1
    r = avg.iloc[0]
    assert r["95% CI low"] <= -10.0 <= r["95% CI high"]
    assert r["claim inside"] == ("yes" if r["95% CI low"] <= r["claimed"] <= r["95% CI high"] else "no")
