"""Statistics of `bench compare` against scipy/statsmodels/sklearn, brute force and values worked by hand."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy.stats import friedmanchisquare, norm, rankdata, ttest_1samp, wilcoxon
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from statsmodels.stats.multitest import multipletests

from bench.cases import CaseSet, pooled_case_bootstrap
from bench.compare_stats import (
    ArmCases,
    arm_cases,
    arm_summary,
    balanced_accuracy,
    bootstrap_p_value,
    bootstrap_ranks,
    compare_arms,
    critical_difference,
    delong_covariance,
    delong_test,
    detectable_difference,
    friedman_nemenyi,
    holm,
    metric_direction,
    nemenyi_q,
    paired_per_case,
    paired_set_level,
    per_case_means,
    results_csv,
    results_markdown,
    run_level_p,
    run_level_test,
    run_verdict,
    seeds_needed,
    stratified_case_draws,
    stratified_delong_test,
    variance_components,
    verdict,
    wilcoxon_p,
)
from bench.errors import BenchError

# ---------------------------------------------------------------- helpers


def _tidy(arm_values: dict[str, np.ndarray], folds: int = 2) -> pd.DataFrame:
    """Tidy rows from arm -> S×N per-case values; the N cases are split evenly over ``folds``."""
    rows = []
    for arm, values in arm_values.items():
        seeds, n = values.shape
        for s in range(seeds):
            for c in range(n):
                rows.append({"arm": arm, "fold": c % folds, "seed": s, "case": c // folds, "dice": values[s, c]})
    return pd.DataFrame(rows)


def _brute_force_delong(labels, scores):
    """O(m n) placement values psi(X_i, Y_j) straight from DeLong et al. (1988), eqs. for V10, V01, S."""
    y = np.asarray(labels).astype(bool)
    aucs, v10, v01 = [], [], []
    for z in np.atleast_2d(scores):
        x, w = z[y], z[~y]
        psi = (x[:, None] > w[None, :]) + 0.5 * (x[:, None] == w[None, :])
        aucs.append(psi.mean())
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    m, n = y.sum(), (~y).sum()
    s10 = np.array([[np.sum((a - a.mean()) * (b - b.mean())) / (m - 1) for b in v10] for a in v10])
    s01 = np.array([[np.sum((a - a.mean()) * (b - b.mean())) / (n - 1) for b in v01] for a in v01])
    return np.array(aucs), s10 / m + s01 / n


def _binary_probs(labels, signal, rng):
    """P(class 0), P(class 1) of a classifier whose score separates the labels by ``signal``."""
    p1 = 1 / (1 + np.exp(-(signal * (2 * labels - 1) + rng.normal(0, 1, labels.shape))))
    return np.stack([1 - p1, p1], axis=-1)


# ---------------------------------------------------------------- per-arm summary


def test_arm_summary_is_the_pooled_case_bootstrap_and_the_hand_formula():
    rng = np.random.default_rng(0)
    values = rng.random((3, 12))  # 3 seeds × 12 cases
    values[1, 4] = np.nan  # an undefined case value is skipped as in bench.cases
    summary = arm_summary(ArmCases.per_case(values), resamples=400, seed=5)
    sets = [CaseSet("dice", "mean", {"values": v}) for v in values]
    assert tuple(summary) == pytest.approx((12, *pooled_case_bootstrap(sets, resamples=400, seed=5)))
    idx = np.random.default_rng(5).integers(0, 12, size=(400, 12))
    theta = np.mean([np.nanmean(v[idx], axis=1) for v in values], axis=0)  # one case draw shared by seeds
    assert summary.mean == pytest.approx(np.mean([np.nanmean(v) for v in values]))
    assert (summary.ci_low, summary.ci_high) == pytest.approx(tuple(np.quantile(theta, [0.025, 0.975])))
    # a callable statistic takes the same formula here as the registered one in bench.cases
    as_callable = ArmCases({"values": values}, lambda f, i: np.nanmean(f["values"][i], axis=1))
    assert tuple(arm_summary(as_callable, resamples=400, seed=5)) == pytest.approx(tuple(summary))


def test_balanced_accuracy_statistic_matches_sklearn_on_every_resample():
    rng = np.random.default_rng(1)
    probs, labels = rng.random((25, 3)), rng.integers(0, 3, 25)
    idx = rng.integers(0, 25, size=(50, 25))
    fast = balanced_accuracy({"probs": probs, "labels": labels}, idx)
    # sklearn averages the recalls of the classes present in y_true, as the vectorised statistic does
    reference = [balanced_accuracy_score(labels[i], probs[i].argmax(1)) for i in idx]
    np.testing.assert_allclose(fast, reference, atol=1e-12)


# ---------------------------------------------------------------- per-case paired comparison


def test_wilcoxon_p_by_hand_and_against_scipy():
    # five positive differences: the exact two-sided p is 2 * (1/2)^5 = 0.0625
    assert paired_per_case([0.9, 0.8, 0.7, 0.6, 0.5], [0.8, 0.6, 0.4, 0.2, 0.0]).p == pytest.approx(0.0625)
    rng = np.random.default_rng(2)
    a, b = rng.random(40), rng.random(40)
    result = paired_per_case(a, b)
    assert result.p == pytest.approx(wilcoxon(a - b).pvalue)
    assert result.test == "wilcoxon" and result.n == 40 and result.delta == pytest.approx(np.mean(a - b))


def test_wilcoxon_is_exact_on_the_non_zero_differences_with_ties():
    # zeros and tied magnitudes: scipy's default falls back to the normal approximation (old code: 0.929)
    d = np.array([0.0, 0.0, -0.2, 0.6, 0.0, -0.6, -0.9, 3.1, -0.1, -2.0, -0.6, 0.7, -0.5, 1.4])
    nz = d[d != 0]
    ranks = rankdata(np.abs(nz))
    observed = ranks[nz > 0].sum()
    signs = np.array(list(itertools.product([0, 1], repeat=nz.size)), bool)  # every sign pattern
    null = (signs * ranks).sum(axis=1)
    centre = ranks.sum() / 2
    exact = np.mean(np.abs(null - centre) >= abs(observed - centre) - 1e-9)
    assert wilcoxon_p(d) == pytest.approx(exact)
    assert abs(wilcoxon(d).pvalue - exact) > 0.02
    assert wilcoxon_p([0.0, 0.3]) == 1.0  # one non-zero difference: either sign is as likely


def test_all_zero_differences_give_p_one_without_an_exception():
    values = np.array([[0.3, 0.5, 0.7, 0.9]] * 2)
    result = paired_per_case(values, values.copy())
    assert result.p == 1.0 and result.delta == 0.0 and (result.delta_low, result.delta_high) == (0.0, 0.0)
    assert result.p_bootstrap == 1.0


def test_per_case_difference_ci_is_the_bootstrap_of_seed_averaged_differences():
    arm = np.array([[0.6, 0.7, np.nan, 0.9, 0.5], [0.8, 0.7, np.nan, 0.7, 0.7]])  # 2 seeds × 5 cases
    base = np.array([[0.5, 0.5, 0.4, 0.6, np.nan], [0.5, 0.7, 0.6, 0.6, np.nan]])
    result = paired_per_case(arm, base, resamples=300, seed=4)
    d = np.array([0.7 - 0.5, 0.7 - 0.6, 0.8 - 0.6])  # cases 2 and 4 are undefined in one arm: not paired
    draws = d[np.random.default_rng(4).integers(0, 3, size=(300, 3))].mean(axis=1)
    assert result.n == 3 and result.delta == pytest.approx(d.mean())
    assert (result.delta_low, result.delta_high) == pytest.approx(tuple(np.quantile(draws, [0.025, 0.975])))
    assert result.p_bootstrap == pytest.approx(bootstrap_p_value(draws))


def test_bootstrap_p_value_by_hand():
    # 1 of 9 draws at or below zero: p = 2 * (1 + 1) / (9 + 1) = 0.4
    assert bootstrap_p_value([-0.1, 0.2, 0.3, 0.1, 0.5, 0.2, 0.4, 0.3, 0.2]) == pytest.approx(0.4)
    assert bootstrap_p_value(np.ones(999)) == pytest.approx(2 / 1000)


# ---------------------------------------------------------------- DeLong


def test_fast_delong_equals_brute_force_placement_values_and_sklearn_aucs():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 60)
    scores = np.round(rng.random((3, 60)) + 0.4 * labels, 1)  # rounding makes ties within and across classes
    aucs, cov = delong_covariance(labels, scores)
    brute_aucs, brute_cov = _brute_force_delong(labels, scores)
    np.testing.assert_allclose(aucs, [roc_auc_score(labels, s) for s in scores], atol=1e-12)
    np.testing.assert_allclose(aucs, brute_aucs, atol=1e-12)
    np.testing.assert_allclose(cov, brute_cov, atol=1e-12)


def test_delong_test_against_brute_force_for_single_and_multi_seed_arms():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 50)
    a, b = rng.random(50) + 0.8 * labels, rng.random(50) + 0.3 * labels
    result = delong_test(labels, a, b)
    aucs, cov = _brute_force_delong(labels, np.stack([a, b]))
    z = (aucs[0] - aucs[1]) / np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    assert result.delta == pytest.approx(aucs[0] - aucs[1]) and result.z == pytest.approx(z)
    assert result.p == pytest.approx(2 * norm.sf(abs(z)))
    # R seeds per arm: the difference of seed-mean AUCs, variance L S L' with L = (1/2, 1/2, -1/3, -1/3, -1/3)
    a2, b3 = a + rng.normal(0, 0.2, (2, 50)), b + rng.normal(0, 0.2, (3, 50))
    multi = delong_test(labels, a2, b3)
    aucs, cov = _brute_force_delong(labels, np.concatenate([a2, b3]))
    contrast = np.array([1 / 2, 1 / 2, -1 / 3, -1 / 3, -1 / 3])
    assert multi.z == pytest.approx(contrast @ aucs / np.sqrt(contrast @ cov @ contrast))
    assert multi.auc_a == pytest.approx(aucs[:2].mean())


def test_delong_identical_scores_give_p_one_and_bad_labels_are_refused():
    labels = np.array([0, 1, 0, 1, 1, 0])
    scores = np.array([0.1, 0.9, 0.4, 0.6, 0.4, 0.2])
    assert delong_test(labels, scores, scores).p == 1.0
    with pytest.raises(BenchError, match="binary labels"):
        delong_test([0, 1, 2, 1, 0, 2], scores, scores)
    with pytest.raises(BenchError, match="two positive and two negative"):
        delong_test([0, 0, 0, 0, 0, 1], scores, scores)


# ---------------------------------------------------------------- Holm and verdicts


def test_holm_against_statsmodels_and_by_hand():
    p = np.array([0.01, 0.04, 0.03, 0.2])
    assert holm(p) == pytest.approx(multipletests(p, method="holm")[1])
    # sorted 0.01*4, 0.03*3, 0.04*2, 0.2*1 -> running max -> 0.04, 0.09, 0.09, 0.2
    assert holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    with_missing = holm([0.01, np.nan, 0.04])
    assert np.isnan(with_missing[1]) and with_missing[[0, 2]] == pytest.approx([0.02, 0.04])


def test_verdict_uses_the_metric_direction():
    assert verdict(0.05, 0.001, True, "dice") == "better than dice"
    assert verdict(0.05, 0.001, False, "dice") == "worse than dice"
    assert verdict(-3.0, 0.01, False, "dice") == "better than dice"
    assert verdict(0.05, 0.2, True, "dice") == "no detectable difference from dice"
    assert verdict(0.05, float("nan"), True, "dice") == "no detectable difference from dice"
    assert metric_direction("val_heart_hd95") is False and metric_direction("val_auroc") is True
    assert metric_direction("val_heart_hd95", higher_is_better=True) is True


def test_a_clear_difference_is_better_flipped_worse_and_an_identical_pair_no_difference():
    rng = np.random.default_rng(5)
    base = np.clip(rng.normal(0.7, 0.1, (5, 60)), 0, 1)  # 5 seeds × 60 cases over 3 folds
    frame = _tidy({"dice": base, "spread_dice": base + 0.08 + rng.normal(0, 0.02, base.shape),
                   "copy": base.copy()}, folds=3)
    table = compare_arms(frame, "dice", "dice", higher_is_better=True, resamples=500)
    by_arm = table.set_index("arm")
    assert list(table["arm"]) == ["dice", "spread_dice", "copy"]
    assert by_arm.loc["spread_dice", "verdict"] == "better than dice"
    assert by_arm.loc["spread_dice", "delta_low"] > 0.05 and by_arm.loc["spread_dice", "p_case"] < 1e-6
    assert by_arm.loc["spread_dice", "test"] == "Dunnett max-t over 3 folds, arm x fold pooled (4 df)"
    assert (by_arm.loc["spread_dice", "n_folds"], by_arm.loc["spread_dice", "n_seeds"]) == (3, 5)
    assert by_arm.loc["copy", "verdict"] == "practically equivalent to dice (within ±0.01)"  # dice declares ±0.01
    assert by_arm.loc["copy", "p_case"] == 1.0 and by_arm.loc["copy", "delta"] == 0.0
    assert by_arm.loc["dice", "verdict"] == "baseline" and np.isnan(by_arm.loc["dice", "p"])
    # the identical arm counts in the family (t = 0): the max-t p lies between the arm's p and Bonferroni's
    p, adjusted = by_arm.loc["spread_dice", "p"], by_arm.loc["spread_dice", "p_adjusted"]
    assert p <= adjusted <= 2 * p
    assert (table["n"] == 60).all() and by_arm.loc["spread_dice", "mean"] == pytest.approx(np.mean(base + 0.08), abs=0.01)
    for arm in ("dice", "spread_dice"):  # the table's CI is the arm's pooled case bootstrap, its ranks bootstrap_ranks'
        summary = arm_summary(arm_cases(frame, "dice")[arm], resamples=500)
        assert tuple(by_arm.loc[arm, ["n", "mean", "ci_low", "ci_high"]]) == pytest.approx(tuple(summary))
    ranks = bootstrap_ranks(arm_cases(frame, "dice"), higher_is_better=True, resamples=500).set_index("arm")
    assert by_arm[["rank", "mean_rank", "rank_low", "rank_high"]].to_numpy() == pytest.approx(
        ranks.loc[by_arm.index, ["rank", "mean_rank", "rank_low", "rank_high"]].to_numpy())
    assert by_arm.loc["spread_dice", "rank"] == 1
    flipped = compare_arms(frame, "dice", "dice", higher_is_better=False, resamples=200).set_index("arm")
    assert flipped.loc["spread_dice", "verdict"] == "worse than dice"


def _fold_mean_table(arms, folds):
    """Arm x fold means of S x N per-case values whose case c is in fold c % folds (as _tidy lays them out)."""
    return {arm: np.array([v[:, f::folds].mean() for f in range(folds)]) for arm, v in arms.items()}


def test_the_verdict_is_the_arm_plus_fold_model_of_fold_means_with_dunnett_over_arms():
    """The pooled family test against statsmodels' OLS of y ~ arm + fold on the fold means (its t, p and
    interval) and its max-t adjustment against a brute-force draw of the multivariate t."""
    import pandas as pd
    import statsmodels.formula.api as smf

    rng = np.random.default_rng(11)
    base = rng.normal(0.7, 0.1, (5, 40))
    arms = {"dice": base, "a": base + rng.normal(0.01, 0.03, base.shape), "b": base + rng.normal(0.0, 0.03, base.shape),
            "c": base + rng.normal(0.02, 0.03, base.shape)}
    table = compare_arms(_tidy(arms, folds=4), "dice", "dice", higher_is_better=True, resamples=100).set_index("arm")
    means = _fold_mean_table(arms, 4)
    long = pd.DataFrame([{"arm": a, "fold": f, "y": m[f]} for a, m in means.items() for f in range(4)])
    fit = smf.ols("y ~ C(arm, Treatment('dice')) + C(fold)", long).fit()
    t_abs = []
    for arm in ("a", "b", "c"):
        term = f"C(arm, Treatment('dice'))[T.{arm}]"
        assert table.loc[arm, "run_delta"] == pytest.approx(fit.params[term])
        assert table.loc[arm, "p"] == pytest.approx(fit.pvalues[term])
        lo, hi = fit.conf_int(0.05).loc[term]
        assert (table.loc[arm, "run_delta_low"], table.loc[arm, "run_delta_high"]) == pytest.approx((lo, hi))
        assert table.loc[arm, "test"] == "Dunnett max-t over 4 folds, arm x fold pooled (9 df)"
        t_abs.append(abs(fit.tvalues[term]))
    # P(max |T| >= |t_a|), T trivariate t (9 df, correlation 0.5), by 400,000 direct draws
    draws = np.random.default_rng(0)
    shape = np.full((3, 3), 0.5) + 0.5 * np.eye(3)
    z = draws.multivariate_normal(np.zeros(3), shape, size=400_000)
    t = z / np.sqrt(draws.chisquare(fit.df_resid, size=(400_000, 1)) / fit.df_resid)
    brute = [(np.abs(t).max(axis=1) >= x).mean() for x in t_abs]
    assert table.loc[["a", "b", "c"], "p_adjusted"].to_numpy() == pytest.approx(brute, abs=0.004)


def test_an_arm_whose_runs_vary_unlike_the_others_is_set_apart_and_tested_on_its_own():
    """Bartlett rejects equal spread: the wild arm is tested by its own fold values (t, K - 1 df, Bonferroni
    x m); the others keep the variance pooled over the whole table (OLS of y ~ arm + fold on every arm)."""
    import pandas as pd
    import statsmodels.formula.api as smf

    rng = np.random.default_rng(11)
    base = rng.normal(0.7, 0.1, (5, 40))
    swing = np.array([0.3, -0.4, 0.5, -0.2])[np.arange(40) % 4]  # case c is in fold c % 4: one shift per fold
    arms = {"dice": base, "a": base + rng.normal(0.01, 0.03, base.shape),
            "wild": base + rng.normal(0.0, 0.03, base.shape) + swing}
    table = compare_arms(_tidy(arms, folds=4), "dice", "dice", higher_is_better=True, resamples=100).set_index("arm")
    assert table.loc["wild", "test"] == ("paired t over 4 folds (seed means), set apart: its runs vary unlike the "
                                         "others' (Bonferroni)")
    assert table.loc["a", "test"] == "Dunnett max-t over 4 folds, arm x fold pooled (6 df, 1 of 2 arms)"
    wild = _fold_mean_table({"wild": arms["wild"] - base}, 4)["wild"]
    expected = ttest_1samp(wild, 0.0)
    assert table.loc["wild", "p"] == pytest.approx(expected.pvalue)
    assert table.loc["wild", "p_adjusted"] == pytest.approx(min(1.0, 2 * expected.pvalue))
    lo, hi = expected.confidence_interval(0.95)
    assert (table.loc["wild", "run_delta_low"], table.loc["wild", "run_delta_high"]) == pytest.approx((lo, hi))
    means = _fold_mean_table(arms, 4)
    long = pd.DataFrame([{"arm": a, "fold": f, "y": m[f]} for a, m in means.items() for f in range(4)])
    fit = smf.ols("y ~ C(arm, Treatment('dice')) + C(fold)", long).fit()
    pooled_p = fit.pvalues["C(arm, Treatment('dice'))[T.a]"]
    assert table.loc["a", "p"] == pytest.approx(pooled_p)
    assert table.loc["a", "p_adjusted"] == pytest.approx(min(1.0, 2 * pooled_p))  # a block of one: its own p


def test_equivalence_is_a_verdict_when_the_interval_lies_inside_the_rope():
    rng = np.random.default_rng(3)
    base = rng.normal(0.7, 0.1, (5, 60))
    arms = {"dice": base, "near": base + rng.normal(0.0, 0.002, base.shape),
            "far": base + rng.normal(0.05, 0.002, base.shape)}
    table = compare_arms(_tidy(arms, folds=5), "dice", "dice", higher_is_better=True, resamples=100,
                         rope=0.01).set_index("arm")
    assert table.loc["near", "verdict"] == "practically equivalent to dice (within ±0.01)"
    assert table.loc["far", "verdict"] == "better than dice"
    wide = compare_arms(_tidy(arms, folds=5), "dice", "dice", higher_is_better=True, resamples=100, rope=1e-4)
    assert wide.set_index("arm").loc["near", "verdict"] == "no detectable difference from dice"
    from bench.metrics import practical_difference

    assert practical_difference("val_lesion_dice") == 0.01 and practical_difference("val_auroc@fold") == 0.01
    assert practical_difference("val_lesion_hd95") is None  # a distance declares none: no equivalence verdict


def test_fewer_than_five_seeds_is_descriptive_only_never_better():
    rng = np.random.default_rng(12)
    base = rng.normal(0.7, 0.1, (2, 60))
    frame = _tidy({"dice": base, "big": base + 0.2}, folds=3)
    row = compare_arms(frame, "dice", "dice", higher_is_better=True, resamples=100).set_index("arm").loc["big"]
    assert row["verdict"] == "too few runs (6): descriptive only"
    assert row["p_case"] < 1e-6 and row["delta_low"] > 0.15  # the case-level columns still describe it
    allowed = compare_arms(frame, "dice", "dice", higher_is_better=True, resamples=100, min_seeds=2)
    assert allowed.set_index("arm").loc["big", "verdict"] == "no verdict: the runs' differences do not vary (zero variance)"


def test_zero_variance_with_a_difference_is_no_verdict_and_delong_gives_no_p():
    # old code: p = 0 from DeLong with zero variance (2 + 2 perfectly separated cases) and a verdict from it
    labels = np.array([0, 0, 1, 1])
    result = delong_test(labels, [0.1, 0.2, 0.8, 0.9], [0.9, 0.8, 0.2, 0.1])  # AUC 1 vs 0, no spread
    assert result.delta != 0 and np.isnan(result.p)
    assert delong_test(labels, [0.1, 0.2, 0.8, 0.9], [0.1, 0.2, 0.8, 0.9]).p == 1.0
    d = np.full((5, 5), 0.01)
    assert np.isnan(run_level_test(d).p)
    assert run_verdict(0.01, float("nan"), True, "none", n_seeds=5, n_runs=25).startswith("no verdict")


def test_variance_components_recover_known_fold_and_seed_terms():
    rng = np.random.default_rng(13)
    k, s, reps = 8, 6, 400
    d = rng.normal(0, 0.02, (reps, k, 1)) + rng.normal(0, 0.01, (reps, k, s))
    components = np.array([variance_components(x) for x in d])
    assert components[:, 0].mean() == pytest.approx(0.02**2, rel=0.1)
    assert components[:, 1].mean() == pytest.approx(0.01**2, rel=0.05)
    # one-seed pilot: all variance is the fold term
    assert np.isnan(variance_components(d[0][:, :1])[1])


def test_detectable_difference_has_the_stated_power_by_simulation():
    sd_fold, sd_seed, k, s = 0.01, 0.02, 5, 5
    mdd = detectable_difference(sd_fold, sd_seed, k, s, alpha=0.05)
    rng = np.random.default_rng(14)
    d = mdd + rng.normal(0, sd_fold, (4000, k, 1)) + rng.normal(0, sd_seed, (4000, k, s))
    power = np.mean(run_level_p(d) < 0.05)
    assert power == pytest.approx(0.8, abs=0.03)
    needed = seeds_needed(mdd, sd_fold, sd_seed, k)
    assert needed == 5 and 20 < seeds_needed(0.8 * mdd, sd_fold, sd_seed, k) < 40
    assert seeds_needed(0.001, 0.05, 0.0, k) is None  # the fold term alone is too large: seeds cannot help


# ---------------------------------------------------------------- set-level metrics from a tidy table


def _auroc_frame(rng, n=80, seeds=2, signals=None):
    labels = rng.integers(0, 2, n)
    rows = []
    for arm, signal in (signals or {"none": 0.3, "multiply": 2.5}).items():
        for s in range(seeds):
            probs = _binary_probs(labels, signal, rng)
            for c in range(n):
                rows.append({"arm": arm, "fold": c % 2, "seed": s, "case": c // 2, "label": labels[c],
                             "prob_0": probs[c, 0], "prob_1": probs[c, 1]})
    return pd.DataFrame(rows)


def test_auroc_arms_are_compared_by_delong_and_balanced_accuracy_by_the_paired_bootstrap():
    frame = _auroc_frame(np.random.default_rng(6))
    fields = {"probs": ["prob_0", "prob_1"], "labels": "label"}
    table = compare_arms(frame, "val_auroc", "none", statistic="macro_auroc", fields=fields, resamples=300)
    row = table.set_index("arm").loc["multiply"]
    assert row["test_case"] == "delong" and row["delta_low"] > 0
    # the AUROC of predictions pooled over fold models has no per-run value: no run-level verdict
    assert row["verdict"] == "descriptive only (pooled over fold models: no per-run value)" and np.isnan(row["p"])
    alone = paired_set_level(arm_cases(frame, "val_auroc", statistic="macro_auroc", fields=fields)["multiply"],
                             arm_cases(frame, "val_auroc", statistic="macro_auroc", fields=fields)["none"],
                             resamples=300)
    assert (row["delta_low"], row["delta_high"]) == pytest.approx((alone.delta_low, alone.delta_high))
    arms = arm_cases(frame, "val_auroc", statistic="macro_auroc", fields=fields)
    labels = arms["none"].fields["labels"][0]
    expected = delong_test(labels, arms["multiply"].fields["probs"][..., 1], arms["none"].fields["probs"][..., 1])
    assert row["p_case"] == pytest.approx(expected.p) and row["delta"] == pytest.approx(expected.delta)
    assert row["mean"] == pytest.approx(np.mean([roc_auc_score(labels, p[:, 1]) for p in arms["multiply"].fields["probs"]]))
    accuracy = compare_arms(frame, "val_balanced_accuracy", "none", statistic=balanced_accuracy, fields=fields,
                            resamples=300).set_index("arm")
    assert accuracy.loc["multiply", "test_case"] == "bootstrap" and accuracy.loc["multiply", "delta_low"] > 0


def test_paired_set_level_bootstrap_shares_one_case_draw_between_the_arms():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 3, 30)
    probs_a, probs_b = rng.random((1, 30, 3)), rng.random((1, 30, 3))
    arm = ArmCases({"probs": probs_a, "labels": labels[None]}, balanced_accuracy)
    base = ArmCases({"probs": probs_b, "labels": labels[None]}, balanced_accuracy)
    result = paired_set_level(arm, base, resamples=200, seed=1)
    idx = stratified_case_draws(labels, 200, 1)  # cases drawn within their class
    draws = [balanced_accuracy_score(labels[i], probs_a[0, i].argmax(1))
             - balanced_accuracy_score(labels[i], probs_b[0, i].argmax(1)) for i in idx]
    assert (result.delta_low, result.delta_high) == pytest.approx(tuple(np.quantile(draws, [0.025, 0.975])))
    assert result.p == pytest.approx(bootstrap_p_value(draws)) and result.test == "bootstrap"
    same = paired_set_level(arm, arm, resamples=200)
    assert same.p == 1.0 and same.delta == 0.0


def test_test_part_scored_by_every_fold_model_pairs_cases_across_folds():
    frame = _tidy({"a": np.arange(12, dtype=float).reshape(1, 12)}, folds=3)
    frame["case"] = frame["case"] % 2  # 2 test cases, each scored by the 3 fold models (+ seed 0)
    frame = frame.drop_duplicates(["fold", "case"])
    arms = arm_cases(frame, "dice", case_key=("case",))
    assert arms["a"].n == 2 and arms["a"].replicates == 3


def test_tidy_table_errors_name_what_is_wrong():
    frame = _tidy({"a": np.ones((1, 4)), "b": np.ones((1, 4))})
    with pytest.raises(BenchError, match="lacks \\['dice'\\]"):
        arm_cases(frame.drop(columns="dice"), "dice")
    with pytest.raises(BenchError, match="duplicates"):
        arm_cases(pd.concat([frame, frame.iloc[:1]]), "dice")
    with pytest.raises(BenchError, match="arm 'b' needs a row for every case"):
        arm_cases(frame.iloc[:-1], "dice")
    with pytest.raises(BenchError, match="no fields"):
        arm_cases(frame, "val_auroc", statistic="macro_auroc")
    with pytest.raises(BenchError, match="baseline must be one of"):
        compare_arms(frame, "dice", "c", higher_is_better=True)


# ---------------------------------------------------------------- ranks


def test_bootstrap_ranks_order_clear_arms_and_average_ties():
    rng = np.random.default_rng(8)
    base = rng.random((1, 50))
    arms = {"low": ArmCases.per_case(base), "high": ArmCases.per_case(base + 0.5),
            "low_copy": ArmCases.per_case(base.copy())}
    ranks = bootstrap_ranks(arms, higher_is_better=True, resamples=200).set_index("arm")
    assert ranks.loc["high", "rank"] == 1 and ranks.loc["high", "rank_high"] == 1
    assert ranks.loc["low", "rank"] == 2.5 and ranks.loc["low", "mean_rank"] == 2.5  # ties averaged
    lower = bootstrap_ranks(arms, higher_is_better=False, resamples=50).set_index("arm")
    assert lower.loc["high", "rank"] == 3


def test_bootstrap_rank_ci_spans_ranks_of_close_arms():
    rng = np.random.default_rng(9)
    a = rng.random((1, 30))
    noise = rng.normal(0, 0.2, a.shape)
    arms = {"a": ArmCases.per_case(a), "b": ArmCases.per_case(a + noise - noise.mean() + 0.005)}
    ranks = bootstrap_ranks(arms, higher_is_better=True, resamples=300)
    assert set(ranks["rank"]) == {1.0, 2.0}
    assert (ranks["rank_low"] == 1).all() and (ranks["rank_high"] == 2).all()
    assert ranks["mean_rank"].sum() == pytest.approx(3.0)


# ---------------------------------------------------------------- across tasks


@pytest.mark.parametrize("alpha,table", [
    (0.05, [1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164]),  # Demšar 2006, table 5(a)
    (0.10, [1.645, 2.052, 2.291, 2.459, 2.589, 2.693, 2.780, 2.855, 2.920]),
])
def test_nemenyi_q_matches_demsar_table(alpha, table):
    assert [nemenyi_q(k, alpha) for k in range(2, 11)] == pytest.approx(table, abs=1e-3)


def test_critical_difference_by_hand():
    # k = 4 arms over N = 10 tasks: 2.569 * sqrt(4 * 5 / 60)
    assert critical_difference(4, 10) == pytest.approx(2.569 * np.sqrt(20 / 60), abs=1e-3)


def test_friedman_mean_ranks_by_hand_and_scipy_statistic():
    scores = pd.DataFrame({"a": [0.9, 0.8, 0.7, 0.9], "b": [0.8, 0.8, 0.6, 0.7], "c": [0.7, 0.6, 0.5, 0.8]},
                          index=["t1", "t2", "t3", "t4"])
    result = friedman_nemenyi(scores, higher_is_better=True)
    # ranks per task (1 = best, tie averaged): a 1,1.5,1,1  b 2,1.5,2,3  c 3,3,3,2
    assert result.mean_ranks.to_dict() == pytest.approx({"a": 1.125, "b": 2.125, "c": 2.75})
    reference = friedmanchisquare(scores["a"], scores["b"], scores["c"])
    assert (result.statistic, result.p) == pytest.approx((reference.statistic, reference.pvalue))
    assert result.cd == pytest.approx(critical_difference(3, 4)) and result.note == ""
    flipped = friedman_nemenyi(scores, higher_is_better=False)
    assert flipped.mean_ranks["a"] == pytest.approx(4 - 1.125)


def test_friedman_with_two_arms_says_it_does_not_apply():
    result = friedman_nemenyi(pd.DataFrame({"a": [1.0, 2.0], "b": [2.0, 3.0]}), higher_is_better=True)
    assert np.isnan(result.p) and "at least 3 arms" in result.note
    assert result.mean_ranks.to_dict() == {"b": 1.0, "a": 2.0}
    tied = friedman_nemenyi(pd.DataFrame({"a": [1.0, 2.0], "b": [1.0, 2.0], "c": [1.0, 2.0]}), True)
    assert (tied.statistic, tied.p) == (0.0, 1.0) and tied.mean_ranks.to_dict() == {"a": 2.0, "b": 2.0, "c": 2.0}
    with pytest.raises(BenchError, match="score on every task"):
        friedman_nemenyi(pd.DataFrame({"a": [1.0, np.nan], "b": [2.0, 3.0]}), higher_is_better=True)


# ---------------------------------------------------------------- output


def test_csv_and_markdown_hold_every_column(tmp_path):
    rng = np.random.default_rng(10)
    base = rng.random((5, 20))
    frame = _tidy({"dice": base, "spread_dice": base + 0.2 + rng.normal(0, 0.01, base.shape)}).rename(
        columns={"dice": "val_lesion_dice"})
    table = compare_arms(frame, "val_lesion_dice", "dice", higher_is_better=True, resamples=100,
                         trial_hours={"dice": 1.5, "spread_dice": 2.25})
    text = results_csv(table, tmp_path / "out" / "results.csv")
    back = pd.read_csv(tmp_path / "out" / "results.csv")
    assert (tmp_path / "out" / "results.csv").read_text() == text
    for column in ("arm", "n", "mean", "ci_low", "ci_high", "delta", "delta_low", "delta_high", "p", "p_adjusted",
                   "verdict", "trial_hours"):
        assert column in back
    assert back["verdict"].tolist() == ["baseline", "better than dice"]
    md = results_markdown(table, tmp_path / "results.md")
    assert ("| arm | n | runs | mean [95% CI, given these models] | Δ vs dice [95% CI, given these models] | "
            "Δ over runs [95% CI] | p | adjusted p | verdict (α = 0.05) | detectable Δ (80% power) | "
            "compute (trial-hours) |") in md
    assert "### val_lesion_dice (higher is better)" in md
    assert "| spread_dice | 20 | 2 x 5 |" in md and "better than dice |" in md and "| 2.25 |" in md
    assert "(Dunnett max-t over 2 folds, arm x fold pooled (1 df))" in md
    row = table.iloc[1]  # one number of decimals per interval (what its CI supports), signed difference
    from bench.compare_stats._table import ci_decimals

    m, d = ci_decimals(row["ci_low"], row["ci_high"]), ci_decimals(row["delta_low"], row["delta_high"])
    assert f"| {row['mean']:.{m}f} [{row['ci_low']:.{m}f}, {row['ci_high']:.{m}f}] | {row['delta']:+.{d}f} [" in md
    means = per_case_means(frame, "val_lesion_dice")
    assert means["spread_dice"] == pytest.approx(means["dice"] + 0.2, abs=0.02) and sorted(means["dice"]) == pytest.approx(
        sorted(base.mean(axis=0)))


def test_the_module_imports_no_torch_mlflow_or_optuna():
    code = ("import sys, bench.compare_stats; "
            "print([m for m in ('torch', 'mlflow', 'optuna', 'matplotlib') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- patients


def test_patient_numbers_are_anonymous_and_in_order():
    from bench.cases import patient_numbers

    assert patient_numbers(["JSRT-0042", "JSRT-0007", "JSRT-0042"]).tolist() == [0, 1, 0]


def test_per_case_wilcoxon_runs_on_patient_means_and_the_bootstrap_draws_patients():
    rng = np.random.default_rng(15)
    groups = np.repeat(np.arange(12), [1, 2, 3] * 4)  # 24 images of 12 patients in one fold
    d_patient = rng.normal(0.01, 0.05, 12)
    arm = 0.5 + d_patient[groups] + rng.normal(0, 0.001, groups.size)
    base = np.full(groups.size, 0.5)
    result = paired_per_case(arm, base, clusters=groups, strata=np.zeros(groups.size), resamples=300, seed=2)
    means = np.array([(arm - base)[groups == g].mean() for g in range(12)])
    assert result.n == 12 and result.test == "wilcoxon on patient means"
    assert result.p == pytest.approx(wilcoxon_p(means))
    sums, counts = np.bincount(groups, arm - base), np.bincount(groups).astype(float)
    from bench.cases import stratified_draws

    idx = stratified_draws(np.zeros(12).astype(str), 300, 2)
    draws = sums[idx].sum(1) / counts[idx].sum(1)
    assert (result.delta_low, result.delta_high) == pytest.approx(tuple(np.quantile(draws, [0.025, 0.975])))
    # through the tidy table: a `group` column makes compare_arms use the patients
    frame = pd.DataFrame({"arm": ["a"] * 24 + ["b"] * 24, "fold": 0, "seed": 0, "case": list(range(24)) * 2,
                          "group": list(groups) * 2, "dice": np.concatenate([base, arm])})
    row = compare_arms(frame, "dice", "a", higher_is_better=True, resamples=100).set_index("arm").loc["b"]
    assert row["test_case"] == "wilcoxon on patient means" and row["n_paired"] == 12


def _brute_force_obuchowski(labels, scores, clusters):
    """Obuchowski (1997) straight from its definitions: psi over all case pairs, summed per patient."""
    y = np.asarray(labels).astype(bool)
    clusters = np.asarray(clusters)
    patients = list(dict.fromkeys(clusters.tolist()))
    m, n, total = y.sum(), (~y).sum(), len(patients)
    i10 = len({c for c, pos in zip(clusters, y) if pos})
    i01 = len({c for c, pos in zip(clusters, y) if not pos})
    aucs, a_dev, b_dev = [], [], []
    for z in np.atleast_2d(scores):
        psi = (z[y][:, None] > z[~y][None, :]) + 0.5 * (z[y][:, None] == z[~y][None, :])
        auc = psi.mean()
        v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
        a = [sum(v for v, c in zip(v10, clusters[y]) if c == p) - auc * np.sum(clusters[y] == p) for p in patients]
        b = [sum(v for v, c in zip(v01, clusters[~y]) if c == p) - auc * np.sum(clusters[~y] == p) for p in patients]
        aucs.append(auc)
        a_dev.append(np.array(a))
        b_dev.append(np.array(b))
    k = len(aucs)
    cov = np.zeros((k, k))
    for r in range(k):
        for s in range(k):
            s10 = i10 / ((i10 - 1) * m) * np.sum(a_dev[r] * a_dev[s])
            s01 = i01 / ((i01 - 1) * n) * np.sum(b_dev[r] * b_dev[s])
            s11 = total / (total - 1) * (np.sum(a_dev[r] * b_dev[s]) + np.sum(a_dev[s] * b_dev[r]))
            cov[r, s] = s10 / m + s01 / n + s11 / (m * n)
    return np.array(aucs), cov


def test_clustered_delong_equals_obuchowski_by_hand_and_delong_for_one_image_per_patient():
    rng = np.random.default_rng(21)
    clusters = np.repeat(np.arange(15), [1, 2, 3] * 5)  # 30 images of 15 patients, mixed labels within some
    labels = rng.integers(0, 2, clusters.size)
    scores = np.round(labels + rng.normal(0, 1.0, (3, clusters.size)), 1)  # ties included
    aucs, cov = delong_covariance(labels, scores, clusters)
    brute_aucs, brute_cov = _brute_force_obuchowski(labels, scores, clusters)
    assert aucs == pytest.approx(brute_aucs, abs=1e-14)
    assert cov == pytest.approx(brute_cov, abs=1e-14)
    # one image per patient: Obuchowski's estimate is DeLong's
    singletons = np.arange(clusters.size)
    assert delong_covariance(labels, scores, singletons)[1] == pytest.approx(delong_covariance(labels, scores)[1],
                                                                             abs=1e-14)


def test_clustered_delong_holds_alpha_where_images_of_a_patient_are_correlated():
    """Known truth: two arms of equal quality whose errors are shared by a patient's images (correlation
    0.8). Plain DeLong treats the 2-3 images of a patient as independent cases and rejects far above alpha;
    the clustered test stays within the binomial range of alpha = 0.05 over 600 replicates."""
    rng = np.random.default_rng(5)
    patients = np.repeat(np.arange(60), [2, 3] * 30)  # 150 images of 60 patients
    labels = np.repeat(rng.integers(0, 2, 60), [2, 3] * 30)
    plain, clustered = [], []
    for _ in range(600):
        def arm_scores():
            shared, own = rng.standard_normal(60)[patients], rng.standard_normal(patients.size)
            return labels + np.sqrt(0.8) * shared + np.sqrt(0.2) * own
        a, b = arm_scores(), arm_scores()
        plain.append(delong_test(labels, a, b).p < 0.05)
        clustered.append(delong_test(labels, a, b, clusters=patients).p < 0.05)
    assert 0.02 <= np.mean(clustered) <= 0.085  # 99.9 % binomial range of 600 draws at 0.05: ~[0.023, 0.083]
    assert np.mean(plain) > 0.1


def test_a_group_column_makes_the_auroc_comparison_a_clustered_delong_test():
    rng = np.random.default_rng(8)
    frame = _auroc_frame(rng)
    cases = frame[["fold", "case"]].drop_duplicates()
    frame = frame.merge(cases.assign(group=cases["case"] // 2), on=["fold", "case"])  # 2 images per patient
    fields = {"probs": ["prob_0", "prob_1"], "labels": "label"}
    table = compare_arms(frame, "val_auroc", "none", statistic="macro_auroc", fields=fields, resamples=200,
                         strata="fold").set_index("arm")
    assert table.loc["multiply", "test_case"] == "stratified clustered delong"
    arms = arm_cases(frame, "val_auroc", statistic="macro_auroc", fields=fields, strata="fold")
    ordered = frame[frame["arm"] == "none"].drop_duplicates(["fold", "case"]).sort_values(["fold", "case"])
    clusters = (ordered["fold"].astype(str) + ":" + ordered["group"].astype(str)).to_numpy()
    expected = stratified_delong_test(arms["none"].fields["labels"][0], arms["multiply"].fields["probs"][..., 1],
                                      arms["none"].fields["probs"][..., 1], ordered["fold"].astype(str).to_numpy(),
                                      clusters)
    assert table.loc["multiply", "p_case"] == pytest.approx(expected.p)
