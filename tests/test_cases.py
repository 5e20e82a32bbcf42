"""Per-case validation files and the seed-pooled case bootstrap, against numpy/sklearn references."""

from __future__ import annotations

import numpy as np
import pytest

from bench.cases import CASE_STATISTICS, case_file, load_cases, pooled_case_bootstrap
from bench.errors import BenchError
from bench.metrics import macro_auroc


def _probs(rng, n, c=4):
    raw = rng.random((n, c))
    return raw / raw.sum(1, keepdims=True)


def test_vectorised_macro_auroc_matches_the_metric_on_every_resample():
    rng = np.random.default_rng(1)
    probs, labels = _probs(rng, 30), rng.integers(0, 4, 30)
    probs[3] = probs[4]  # ties must use averaged ranks, as sklearn does
    idx = rng.integers(0, 30, size=(200, 30))
    idx[0] = 0  # one class only: undefined
    fast = CASE_STATISTICS.get("macro_auroc")({"probs": probs, "labels": labels}, idx)
    reference = np.array([macro_auroc(probs[i], labels[i]) for i in idx])
    assert np.isnan(fast[0]) and np.isnan(reference[0])
    np.testing.assert_allclose(fast, reference, rtol=0, atol=1e-12)
    binary = _probs(rng, 12, 2)
    y2 = np.array([0, 1] * 6)
    assert CASE_STATISTICS.get("macro_auroc")({"probs": binary, "labels": y2}, np.arange(12)[None])[0] == \
        pytest.approx(macro_auroc(binary, y2), abs=1e-12)


def test_case_file_round_trip_and_value_is_the_objective():
    rng = np.random.default_rng(2)
    probs, labels = _probs(rng, 20), np.arange(20) % 4
    cases = load_cases(case_file("val_auroc", "macro_auroc", probs=probs, labels=labels))
    assert cases.n == 20 and cases.metric == "val_auroc"
    assert cases.value() == pytest.approx(macro_auroc(probs, labels), abs=1e-12)
    assert load_cases(case_file("val_lesion_dice", "mean", values=[0.2, 0.4])).value() == pytest.approx(0.3)
    with pytest.raises(BenchError, match="one entry per case"):
        case_file("val_auroc", "macro_auroc", probs=probs, labels=labels[:5])
    with pytest.raises(Exception, match="case statistic must be one of"):
        case_file("x", "median", values=[1.0])


def test_pooled_bootstrap_equals_the_hand_written_formula():
    """theta*_b = mean over seeds of T(D_s[I_b]) with one shared I_b; CI = percentiles of theta*_b."""
    seeds = [np.array([0.1, 0.5, 0.9, 0.4, 0.6]), np.array([0.3, 0.5, 0.7, 0.2, 0.8]),
             np.array([0.2, 0.6, 0.8, 0.3, 0.7])]
    sets = [load_cases(case_file("val_lesion_dice", "mean", values=v)) for v in seeds]
    mean, lo, hi = pooled_case_bootstrap(sets, resamples=500, seed=7)
    idx = np.random.default_rng(7).integers(0, 5, size=(500, 5))
    theta = np.mean([[v[i].mean() for i in idx] for v in seeds], axis=0)
    assert mean == pytest.approx(np.mean([v.mean() for v in seeds]))
    assert (lo, hi) == pytest.approx(tuple(np.quantile(theta, [0.025, 0.975])))
    assert lo < mean < hi
    # pooling shares the case draw: identical seeds give exactly the one-seed interval
    assert pooled_case_bootstrap(sets[:1] * 3, seed=3) == pytest.approx(pooled_case_bootstrap(sets[:1], seed=3))


def test_pooled_bootstrap_auroc_and_mismatched_seeds():
    rng = np.random.default_rng(3)
    labels = np.arange(40) % 4
    sets = [load_cases(case_file("val_auroc", "macro_auroc", probs=_probs(rng, 40), labels=labels)) for _ in range(2)]
    mean, lo, hi = pooled_case_bootstrap(sets, resamples=300)
    assert mean == pytest.approx(np.mean([macro_auroc(s.fields["probs"], labels) for s in sets]))
    assert 0.0 <= lo <= hi <= 1.0
    short = load_cases(case_file("val_auroc", "macro_auroc", probs=_probs(rng, 10), labels=labels[:10]))
    with pytest.raises(BenchError, match="must share the validation cases"):
        pooled_case_bootstrap([sets[0], short])
    assert all(np.isnan(pooled_case_bootstrap([])))


def test_cross_validated_cases_keep_their_fold_and_bootstrap_within_fold_and_class():
    # issue 20 §7: a --folds K trial had no val_cases.json, so no case-bootstrap CI
    from bench.cases import combine_folds, stratified_draws
    from bench.compare_stats import Stratified

    rng = np.random.default_rng(4)
    labels = [np.arange(n) % 4 for n in (12, 16, 8)]
    files = [case_file("val_auroc", "macro_auroc", probs=_probs(rng, len(y)), labels=y) for y in labels]
    cases = load_cases(combine_folds(files))
    assert cases.n == 36 and cases.folds.tolist() == [0] * 12 + [1] * 16 + [2] * 8
    per_fold = [load_cases(f).value() for f in files]
    assert cases.value() == pytest.approx(np.mean(per_fold))  # the trial's objective: the folds' mean
    mean, lo, hi = pooled_case_bootstrap([cases], resamples=300, seed=5)
    assert mean == pytest.approx(np.mean(per_fold))
    strata = np.char.add(np.char.add(cases.folds.astype(str), "|"), cases.fields["labels"].astype(str))
    idx = stratified_draws(strata, 300, 5)
    assert (cases.folds[idx] == cases.folds).all()  # every resampled case stays in its fold ...
    assert (cases.fields["labels"][idx] == cases.fields["labels"]).all()  # ... and its class
    folds = cases.folds
    theta = np.mean([CASE_STATISTICS.get("macro_auroc")(cases.fields, idx[:, folds == f]) for f in range(3)], axis=0)
    assert (lo, hi) == pytest.approx(tuple(np.quantile(theta, [0.025, 0.975])))
    assert isinstance(Stratified("macro_auroc", folds), Stratified)
    with pytest.raises(BenchError, match="same per-case fields"):
        combine_folds([files[0], case_file("val_lesion_dice", "mean", values=[0.1])])


def test_a_cross_validated_trial_result_carries_its_folds_cases():
    from types import SimpleNamespace

    from bench.cases import CASE_FILE, combine_folds
    from bench.trial import _fold_cases

    files = [case_file("val_lesion_dice", "mean", values=[0.1 * k, 0.2]) for k in range(3)]
    outcomes = [SimpleNamespace(result=SimpleNamespace(previews={CASE_FILE: f})) for f in files]
    assert _fold_cases(outcomes) == {CASE_FILE: combine_folds(files)}
    outcomes[1].result.previews = {}
    assert _fold_cases(outcomes) == {}


def test_seed_summary_on_a_store_with_per_case_values_and_without(workdir):
    """The ct-lung path (statistic "mean" over per-case lesion Dice) and a config whose runs lack the file."""
    from bench.cases import CASE_FILE
    from bench.leaderboard import seed_summary
    from bench.search.seeds import REPEAT_KIND, REPEAT_TAG
    from bench.tracking import KIND_TAG, STATE_TAG, Tracker

    tracker = Tracker("xray-heart")
    per_seed = {"a": [[0.9, 0.8, 0.7, 0.6], [0.8, 0.8, 0.6, 0.6], [1.0, 0.7, 0.8, 0.5]],
                "b": [[0.2, 0.3, 0.4, 0.5], [0.3, 0.3, 0.3, 0.3]]}
    originals = {}
    for config, seeds in per_seed.items():
        for seed, values in enumerate(seeds):
            kind = "trial" if seed == 0 else REPEAT_KIND
            tags = {KIND_TAG: kind, "study": "s", STATE_TAG: "COMPLETE"}
            if seed:
                tags[REPEAT_TAG] = originals[config]
            run_id = tracker.start_run(f"{config} seed {seed}", tags)
            tracker.log_params(run_id, {"seed": seed})
            tracker.log_metrics(run_id, {"val_auroc": float(np.mean(values))})  # stands in for the objective
            if config == "a":
                tracker.log_bytes(run_id, CASE_FILE, case_file("val_auroc", "mean", values=values))
            originals.setdefault(config, run_id)
    table = seed_summary("xray-heart", study="s", resamples=400)
    assert table["config"].tolist() == ["a seed 0", "b seed 0"]  # best mean first
    a, b = table.iloc[0], table.iloc[1]
    assert (a.n_seeds, a.seeds, a.n_cases) == (3, "0,1,2", 4)
    sets = [load_cases(case_file("val_auroc", "mean", values=v)) for v in per_seed["a"]]
    assert (a["mean"], a.ci95_low, a.ci95_high) == pytest.approx(pooled_case_bootstrap(sets, resamples=400))
    assert b.n_seeds == 2 and b["mean"] == pytest.approx(np.mean([0.35, 0.3]))
    assert np.isnan(b.ci95_low) and "lacks" in b.ci_over
