"""The fold-stratified set-level statistic (``val_auroc@fold``) against independent computations."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from bench.compare import plan
from bench.compare.analysis import analyse
from bench.compare.collect import CaseData
from bench.compare_stats import (
    ArmCases,
    Stratified,
    arm_cases,
    arm_summary,
    compare_arms,
    delong_test,
    paired_set_level,
    stratified_case_draws,
    stratified_delong_test,
)
from bench.errors import BenchError

PROBS = [f"prob_{k}" for k in range(4)]
FIELDS = {"probs": PROBS, "labels": "label"}


def _softmax_probs(labels, noise, rng, shift=0.0):
    logits = rng.normal(0, noise, (len(labels), 4))
    logits[:, 0] += shift  # a fold model that favours class 0 more: miscalibrated against the other folds
    logits[np.arange(len(labels)), labels] += 1.0
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


def _frame(arms, sizes=(12, 20), seeds=(0,), seed=0):
    """Tidy cases: arm -> (noise, per-fold class-0 logit shift); every fold holds all 4 classes."""
    rows = []
    for fold, size in enumerate(sizes):
        labels = np.arange(size) % 4
        for s in seeds:
            for a, (arm, (noise, shift)) in enumerate(arms.items()):
                probs = _softmax_probs(labels, noise, np.random.default_rng([seed, fold, s, a]), shift * fold)
                for case, label in enumerate(labels):
                    rows.append({"arm": arm, "fold": fold, "seed": s, "case": case, "label": int(label),
                                 **{f"prob_{k}": probs[case, k] for k in range(4)}})
    return pd.DataFrame(rows)


def _sklearn_fold_mean(frame, arm):
    """Case-weighted mean over folds (and plain mean over seeds) of sklearn's macro one-vs-rest AUROC."""
    per_seed = []
    for _, part in frame[frame["arm"] == arm].groupby("seed"):
        aucs = [(len(g), roc_auc_score(g["label"], g[PROBS].to_numpy(), multi_class="ovr", average="macro"))
                for _, g in part.groupby("fold")]
        per_seed.append(sum(n * a for n, a in aucs) / sum(n for n, _ in aucs))
    return float(np.mean(per_seed))


def test_stratified_auroc_is_the_case_weighted_mean_of_sklearn_per_fold_aurocs():
    frame = _frame({"none": (1.5, 0.0), "crop": (0.8, 0.7)}, sizes=(12, 20), seeds=(0, 1))
    table = compare_arms(frame, "val_auroc@fold", "none", statistic="macro_auroc", fields=FIELDS,
                         strata="fold", higher_is_better=True, resamples=200).set_index("arm")
    for arm in ("none", "crop"):
        assert table.loc[arm, "mean"] == pytest.approx(_sklearn_fold_mean(frame, arm), abs=1e-12)
        assert table.loc[arm, "n"] == 32
    assert table.loc["crop", "delta"] == pytest.approx(_sklearn_fold_mean(frame, "crop")
                                                       - _sklearn_fold_mean(frame, "none"), abs=1e-12)
    pooled = compare_arms(frame, "val_auroc", "none", statistic="macro_auroc", fields=FIELDS, resamples=50)
    assert pooled.set_index("arm").loc["crop", "mean"] != pytest.approx(table.loc["crop", "mean"], abs=1e-3)


def test_stratified_draws_stay_inside_their_strata():
    strata = np.array([2, 2, 0, 0, 0, 1, 2, 1])
    idx = stratified_case_draws(strata, resamples=300, seed=4)
    assert idx.shape == (300, 8)
    assert (strata[idx] == strata[None, :]).all()  # every column draws from its own stratum only
    assert set(np.unique(idx[:, 2])) == {2, 3, 4}  # and from all of it
    np.testing.assert_array_equal(idx, stratified_case_draws(strata, resamples=300, seed=4))


def test_cross_fold_miscalibration_does_not_lower_the_stratified_auroc_or_its_bootstrap():
    # Each fold model separates its own cases perfectly, but fold 1's scores are all higher than fold 0's:
    # the pooled AUROC scores that miscalibration, the within-fold AUROC (and every stratified resample) not.
    labels = np.tile([0, 1], 10)
    score = np.where(labels == 1, 0.4, 0.1) + np.repeat([0.0, 0.5], 10)
    fields = {"probs": np.stack([1 - score, score], axis=1)[None], "labels": labels[None]}
    strata = np.repeat([0, 1], 10)
    stratified = ArmCases(fields, Stratified("macro_auroc", strata))
    pooled = ArmCases(fields, "macro_auroc")
    assert stratified.value() == 1.0 and pooled.value() < 0.8
    summary = arm_summary(stratified, resamples=500)
    assert (summary.ci_low, summary.ci_high) == (1.0, 1.0)
    assert arm_summary(pooled, resamples=500).ci_low < 0.8


def test_a_single_class_stratum_drops_out_instead_of_giving_nan():
    rng = np.random.default_rng(3)
    labels = np.r_[np.zeros(8, int), np.tile([0, 1], 15)]  # fold 0: class 0 only; fold 1: both classes
    score = rng.uniform(size=labels.size) + 0.3 * labels
    fields = {"probs": np.stack([1 - score, score], axis=1)[None], "labels": labels[None]}
    strata = np.repeat([0, 1], [8, 30])
    arm = ArmCases(fields, Stratified("macro_auroc", strata))
    assert arm.value() == pytest.approx(roc_auc_score(labels[8:], score[8:]))  # fold 1's AUROC alone
    draws = arm.thetas(stratified_case_draws(strata, 1000, seed=0))
    assert np.isfinite(draws).all()


def test_a_known_difference_is_better_and_an_identical_arm_no_detectable_difference():
    frame = _frame({"none": (2.0, 0.0), "good": (0.3, 0.0)}, sizes=(40, 40, 40), seeds=range(5))
    same = frame[frame["arm"] == "none"].assign(arm="same")
    frame = pd.concat([frame, same], ignore_index=True)
    table = compare_arms(frame, "val_auroc@fold", "none", statistic="macro_auroc", fields=FIELDS,
                         strata="fold", higher_is_better=True, resamples=500).set_index("arm")
    assert table.loc["good", "verdict"] == "better than none" and table.loc["good", "delta"] > 0.15
    assert table.loc["good", "delta_low"] > 0 and table.loc["good", "test_case"] == "stratified bootstrap"
    # the verdict's p: t over the 3 folds' seed means of the per-run within-fold AUROC differences
    runs = {arm: np.array([[roc_auc_score(g["label"], g[PROBS].to_numpy(), multi_class="ovr")
                            for _, g in part.groupby("seed")] for _, part in frame[frame["arm"] == arm].groupby("fold")])
            for arm in ("none", "good")}
    import statsmodels.formula.api as smf

    runs["same"] = runs["none"]
    long = pd.DataFrame([{"arm": arm, "fold": f, "y": v.mean(axis=1)[f]} for arm, v in runs.items() for f in range(3)])
    fit = smf.ols("y ~ C(arm, Treatment('none')) + C(fold)", long).fit()  # the pooled arm x fold model
    assert table.loc["good", "p"] == pytest.approx(fit.pvalues["C(arm, Treatment('none'))[T.good]"])
    assert table.loc["good", "test"] == "Dunnett max-t over 3 folds, arm x fold pooled (4 df)"
    assert table.loc["same", "verdict"] == "no detectable difference from none"
    assert table.loc["same", "delta"] == 0 and table.loc["same", "p_case"] == 1.0


def test_two_classes_use_the_stratified_delong_test_combined_by_hand():
    rng = np.random.default_rng(5)
    strata = np.repeat([0, 1], [16, 24])
    labels = np.tile([0, 1], 20)
    score_a = rng.uniform(size=40) + 0.6 * labels
    score_b = rng.uniform(size=40) + 0.2 * labels
    result = stratified_delong_test(labels, score_a, score_b, strata)
    parts = [delong_test(labels[strata == s], score_a[strata == s], score_b[strata == s]) for s in (0, 1)]
    weights = np.array([16, 24]) / 40
    assert result.delta == pytest.approx(sum(w * p.delta for w, p in zip(weights, parts)))
    assert result.se == pytest.approx(np.sqrt(sum(w**2 * p.se**2 for w, p in zip(weights, parts))))
    by_hand = sum(w * (roc_auc_score(labels[strata == s], score_a[strata == s])
                       - roc_auc_score(labels[strata == s], score_b[strata == s]))
                  for w, s in zip(weights, (0, 1)))
    assert result.delta == pytest.approx(by_hand)

    def arm(score):
        return ArmCases({"probs": np.stack([1 - score, score], axis=1)[None], "labels": labels[None]},
                        Stratified("macro_auroc", strata))

    paired = paired_set_level(arm(score_a), arm(score_b), resamples=300)
    assert paired.test == "stratified delong" and paired.p == pytest.approx(result.p)
    assert paired.delta == pytest.approx(by_hand)


def test_strata_need_a_set_level_statistic_and_a_case_key_column():
    frame = _frame({"none": (1.0, 0.0)})
    with pytest.raises(BenchError, match="strata must be a case key column"):
        arm_cases(frame.assign(val=1.0), "val", strata="fold")
    with pytest.raises(BenchError, match="strata must be a case key column"):
        arm_cases(frame, "val_auroc", statistic="macro_auroc", fields=FIELDS, strata="seed")


def test_analysis_reports_val_auroc_at_fold_as_the_guidance_primary_beside_the_pooled_auroc():
    frame = _frame({"none": (1.5, 0.0), "crop": (0.5, 1.0)}, sizes=(16, 24))
    from bench.compare_stats import balanced_accuracy

    cases = CaseData(frame, [], {"val_auroc": ("macro_auroc", FIELDS),
                                 "val_balanced_accuracy": (balanced_accuracy, FIELDS)})
    runs = pd.DataFrame({"arm": ["none", "crop"] * 2, "fold": [0, 0, 1, 1], "seed": 0})
    from bench.tasks import TASKS

    metrics = plan.metric_plan(TASKS.get("xray-heart"), "guidance")
    assert metrics.primary == "val_auroc@fold" and metrics.others[0] == "val_auroc"
    result = analyse(cases, runs, metrics, "none", {"none": 0.1, "crop": 0.1}, resamples=200)
    table = result.table.set_index(["metric", "arm"])
    assert table.loc[("val_auroc@fold", "crop"), "unit"] == "fold"
    assert table.loc[("val_auroc@fold", "none"), "mean"] == pytest.approx(_sklearn_fold_mean(frame, "none"))
    assert table.loc[("val_auroc", "none"), "unit"] == "case"
    assert bool(table.loc[("val_auroc@fold", "crop"), "higher_is_better"])
    assert result.verdicts[0].startswith("crop: ")


def test_a_nan_probability_is_an_error_naming_arm_fold_and_seed():
    # old code: the NaN fold dropped out of that arm's mean only, and the arms were compared on different cases
    frame = _frame({"none": (1.5, 0.0), "crop": (0.5, 0.0)}, sizes=(12, 12), seeds=(0, 1))
    bad = frame.index[(frame["arm"] == "crop") & (frame["fold"] == 1) & (frame["seed"] == 1)][3]
    frame.loc[bad, "prob_2"] = np.nan
    with pytest.raises(BenchError, match="arm 'crop' has NaN or infinite probs at fold 1, seed 1"):
        compare_arms(frame, "val_auroc@fold", "none", statistic="macro_auroc", fields=FIELDS, strata="fold",
                     higher_is_better=True, resamples=50)


def test_resamples_keep_every_class_within_each_fold():
    # a class with 3 of 33 cases: a plain case bootstrap misses it in ~4% of resamples (old code)
    labels = np.array([0] * 15 + [1] * 15 + [2] * 3)
    probs = np.random.default_rng(0).dirichlet(np.ones(3), size=33)
    arm = ArmCases({"probs": probs[None], "labels": labels[None]}, Stratified("macro_auroc", np.zeros(33, int)))
    from bench.compare_stats import draws_for

    idx = draws_for(arm.statistic, 33, 2000, 0, labels)
    assert (np.sort(labels[idx], axis=1) == np.sort(labels)).all()  # every resample keeps the class counts
    assert ((idx < 33) & (idx >= 0)).all()
