"""Intervals on every average (issues #19 and #29): Student-t over the held-out clips, two-way with crossed seeds;
their coverage simulated with known truth."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from inloop.reporting.aggregate import mean_interval, summarize


def test_the_interval_of_identical_values_has_zero_width():
    assert mean_interval([-3.5] * 7)[:2] == (-3.5, -3.5)
    assert mean_interval(np.full((5, 3), 0.25))[:2] == (0.25, 0.25)


def test_the_interval_is_the_t_interval_and_narrows_with_more_clips():
    from scipy import stats

    rng = np.random.default_rng(0)
    few, many = rng.normal(-4, 2, 6), rng.normal(-4, 2, 200)
    lo1, hi1, method = mean_interval(few)
    half = stats.t.ppf(0.975, 5) * few.std(ddof=1) / math.sqrt(6)
    assert (lo1, hi1) == pytest.approx((few.mean() - half, few.mean() + half))
    assert method == "95% t interval, 6 clips"
    lo2, hi2, _ = mean_interval(many)
    assert lo2 < many.mean() < hi2 and hi2 - lo2 < hi1 - lo1
    # three clips: wider than their range, where the bootstrap it replaced was their range
    three = [-6.04, -3.4, -1.47]
    lo, hi, _ = mean_interval(three)
    assert lo < min(three) and max(three) < hi


def test_the_level_comes_from_params_and_too_little_data_has_no_interval():
    v = [1.0, 2.0, 4.0, 8.0]
    lo90, hi90, m90 = mean_interval(v, level=0.9)
    lo99, hi99, m99 = mean_interval(v, level=0.99)
    assert lo99 < lo90 and hi90 < hi99 and m90.startswith("90% ") and m99.startswith("99% ")
    assert all(map(math.isnan, mean_interval([])[:2]))
    lo, hi, why = mean_interval([2.5])
    assert math.isnan(lo) and math.isnan(hi) and why == "no 95% interval: 1 clip(s) x 1 seed(s)"
    lo, hi, method = mean_interval([[2.5, 3.5]])  # one clip, two seeds: the seeds' spread
    assert lo < 3.0 < hi and "1 clips x 2 seeds" in method


def test_seeds_widen_the_interval_of_clips_that_agree():
    """Clips x seeds, crossed: with every clip at the same mean, the spread comes from the seeds alone."""
    same_clips = np.array([[1.0, 3.0]] * 6)
    lo, hi, method = mean_interval(same_clips)
    assert lo < 2.0 < hi and "6 clips x 2 seeds (two-way, Satterthwaite)" in method
    assert mean_interval(same_clips.mean(axis=1))[:2] == (2.0, 2.0)
    # a seed missing on one clip: the seeds complete on every clip are used, and the method says so
    partial = np.array([[1.0, np.nan, 2.0], [3.0, 3.0, 4.0], [2.0, 1.0, 2.5]])
    lo, hi, method = mean_interval(partial)
    assert lo < hi and "the 2 seed(s) complete on every clip" in method


def _coverage(interval, clips, seeds, sd_clip, sd_seed, sd_noise, runs=2000, seed=0):
    """The share of ``runs`` simulated designs (value = clip effect + seed effect + noise, true mean 0; every seed
    on every clip, as train.seeds runs) whose interval holds the true mean."""
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(runs):
        v = (rng.normal(0, sd_clip, (clips, 1)) + rng.normal(0, sd_seed, (1, seeds))
             + rng.normal(0, sd_noise, (clips, seeds)))
        lo, hi = interval(v if seeds > 1 else v[:, 0])[:2]
        hits += lo <= 0.0 <= hi
    return hits / runs


@pytest.mark.parametrize("clips, seeds, sds", [
    (3, 1, (1.0, 0.0, 0.3)),     # the demo: three held-out clips, one seed
    (8, 1, (1.0, 0.0, 0.3)),
    (3, 3, (1.0, 0.5, 0.3)),     # train.seeds: [0, 1, 2]
    (8, 3, (1.0, 1.0, 1.0)),
])
def test_the_interval_covers_what_its_level_says(clips, seeds, sds):
    """Issue #29: the percentile bootstrap over three clips was their range (simulated coverage ~74 % for its
    "95 %"), and it resampled crossed seeds as if nested in clips. Simulated here with a known mean of 0: the
    95 % interval holds it in 93-97.5 % of 2000 designs (binomial standard error 0.5 %)."""
    cov = _coverage(mean_interval, clips, seeds, *sds)
    assert 0.93 <= cov <= 0.975, f"{clips} clips x {seeds} seeds: simulated coverage {cov:.3f}"


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
    assert avg["bd_rate_pct_ci_low"] < -4.5 < avg["bd_rate_pct_ci_high"]
    assert avg["ci_method"].startswith("95% t interval, 2 clips x 2 seeds (two-way, Satterthwaite)")
    assert avg["delta_psnr_y_mean_ci_low"] <= avg["delta_psnr_y_mean"] <= avg["delta_psnr_y_mean_ci_high"]
    one_seed = summarize(_bd([("a", "", -4.0), ("b", "", -6.0)]), {"level": 0.9})  # params report.interval
    a1 = one_seed[one_seed["level"] == "average"].iloc[0]
    half = 6.313751514675  # t(0.95, df 1) x sd 1.414 / sqrt(2)
    assert a1["n_seeds"] == 1 and a1["ci_method"] == "90% t interval, 2 clips" and a1["ci_level"] == 0.9
    assert (a1["bd_rate_pct_ci_low"], a1["bd_rate_pct_ci_high"]) == pytest.approx((-5 - half, -5 + half))


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
    assert r["CI low"] <= -10.0 <= r["CI high"] and r["interval"] == "95% t interval, 3 clips"
    assert r["claim inside"] == ("yes" if r["CI low"] <= r["claimed"] <= r["CI high"] else "no")
