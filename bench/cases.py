"""Per-case validation values of a trial, and the seed-pooled case bootstrap the leaderboard reports.

A task that wants its objective bootstrapped over cases puts ``val_cases.json`` (built by
:func:`case_file`) into ``TrialResult.previews``; the tracker logs it as a run artifact like any preview.
The file holds only what the objective needs to be recomputed on a resample of the validation cases, in
validation-part order, and never a case or patient identifier:

* statistic ``mean``: ``fields.values`` = one value per case (ct-lung: lesion Dice per case);
* statistic ``macro_auroc``: ``fields.probs`` (N×C class probabilities) and ``fields.labels`` (N ints);
  AUROC has no per-case value, so a resample recomputes it from the resampled cases;
* any statistic: a field named ``*_dice`` holds a per-case Dice for the report's box plot (xray-heart:
  ``val_heart_dice``); a ``mean`` of a Dice objective is its own per-case Dice;
* any statistic: ``fields.groups`` = each case's patient as an anonymous number within the validation
  part (0, 1, 2, ... in order of first appearance; :func:`patient_numbers`), never an id, so that
  statistics can treat a patient's images as one unit.

How statistics turn a case resample into a number is the ``CASE_STATISTICS`` registry.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.errors import BenchError
from bench.registry import Registry

CASE_FILE = "val_cases.json"
CASE_STATISTICS: Registry = Registry("case statistic")


@dataclass(frozen=True)
class CaseSet:
    """One run's per-case validation data: ``statistic`` applied to all of ``fields`` gives ``metric``."""

    metric: str
    statistic: str
    fields: dict[str, np.ndarray]

    @property
    def n(self) -> int:
        return len(next(iter(self.fields.values())))

    def per_case_dice(self) -> tuple[str, np.ndarray] | None:
        """(name, values) of the per-case Dice the file holds: a ``*_dice`` field, or the per-case values
        when the objective itself is a Dice; None when it holds none."""
        named = [k for k in self.fields if k.endswith("_dice")]
        if named:
            return named[0], np.asarray(self.fields[named[0]], float)
        if self.statistic == "mean" and self.metric.endswith("_dice"):
            return self.metric, np.asarray(self.fields["values"], float)
        return None

    @property
    def folds(self) -> np.ndarray | None:
        """Each case's fold for the out-of-fold cases of a cross-validated trial (:func:`combine_folds`)."""
        return np.asarray(self.fields[FOLDS]) if FOLDS in self.fields else None

    def value(self) -> float:
        """The statistic over all cases, or the mean of its values within folds for a cross-validated
        trial's cases (either way it equals the logged objective)."""
        fn = CASE_STATISTICS.get(self.statistic)
        if self.folds is not None:
            fn = _within(fn, self.folds)
        return float(fn(self.fields, np.arange(self.n)[None])[0])


@CASE_STATISTICS.register("mean", "mean of one value per case (e.g. lesion Dice)")
def _mean(fields: Mapping[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
    """Per row of ``idx`` (B×N case indices), the mean of ``fields['values']`` over those cases (NaNs skipped)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample of only-NaN cases is NaN, not an error
        return np.nanmean(np.asarray(fields["values"], float)[idx], axis=1)


@CASE_STATISTICS.register("macro_auroc", "macro one-vs-rest AUROC recomputed on the resampled cases")
def _macro_auroc(fields: Mapping[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
    """Per row of ``idx``, :func:`bench.metrics.macro_auroc` of the selected cases, all rows at once.

    One-vs-rest AUROC of class k is the Mann-Whitney statistic (R_k - n_k(n_k+1)/2) / (n_k (n - n_k)) with
    R_k the sum of the (tie-averaged) ranks of class-k cases among all scores for class k; the macro value
    averages it over the classes present in the resample, and is NaN when fewer than two classes are
    present, exactly as ``macro_auroc``. With two classes it is, as there, the AUROC of class 1 (the positive
    class) alone: the class-0 AUROC from the float32 column ``probs[:, 0]`` is the same number only where its
    ties are the same as column 1's, which softmax rounding does not guarantee.
    Vectorised over resamples because thousands of sklearn calls per config would take minutes.
    """
    from scipy.stats import rankdata  # scipy.stats takes ~1 s to import; the leaderboard table needs none

    probs, labels = np.asarray(fields["probs"], float), np.asarray(fields["labels"], int)
    y = labels[idx]  # B×N
    n = idx.shape[1]

    def class_auroc(k: int) -> np.ndarray:
        ranks = rankdata(probs[idx, k], axis=1)
        pos = y == k
        n_pos = pos.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = ((ranks * pos).sum(1) - n_pos * (n_pos + 1) / 2) / (n_pos * (n - n_pos))
        auc[(n_pos == 0) | (n_pos == n)] = np.nan  # class absent (or alone): not part of the macro mean
        return auc

    if probs.shape[1] == 2:
        return class_auroc(1)
    stacked = np.stack([class_auroc(k) for k in range(probs.shape[1])], axis=1)
    present = np.isfinite(stacked).sum(1)
    out = np.full(len(idx), np.nan)
    ok = present >= 2
    out[ok] = np.nansum(stacked[ok], axis=1) / present[ok]
    return out


GROUPS = "groups"  # the field of anonymous patient numbers
FOLDS = "folds"  # the field of fold ids of a cross-validated trial's out-of-fold cases


def patient_numbers(patient_ids: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Each case's patient as an anonymous number within these cases: 0 for the first patient seen, 1 for
    the next new one, ... The ids themselves go no further than the data layer that calls this.

    Example:
        >>> patient_numbers(["p7", "p3", "p7", "p9"]).tolist()
        [0, 1, 0, 2]
    """
    first: dict[Any, int] = {}
    return np.array([first.setdefault(str(p), len(first)) for p in patient_ids], np.int64)


def case_file(metric: str, statistic: str, **fields: Sequence[Any]) -> bytes:
    """``val_cases.json`` bytes for ``TrialResult.previews``; fields are per-case arrays in case order.

    Example:
        >>> case_file("val_lesion_dice", "mean", values=[0.5, 0.7])[:20]
        b'{"metric": "val_les'
    """
    CASE_STATISTICS.get(statistic)  # unknown statistic: fail in the trial, not later in the leaderboard
    lengths = {len(v) for v in fields.values()}
    if len(lengths) != 1:
        raise BenchError(f"per-case fields must all have one entry per case, but got lengths {sorted(lengths)}.")
    payload = {"metric": metric, "statistic": statistic,
               "fields": {k: np.asarray(v).tolist() for k, v in fields.items()}}
    return json.dumps(payload, separators=(",", ":")).encode()


def combine_folds(files: Sequence[bytes | str]) -> bytes:
    """One ``val_cases.json`` for a cross-validated trial from its K fold runs' files: every fold's cases in
    fold order, each with its fold id in the field ``folds`` (statistics are then computed within folds and
    averaged, as the trial's objective is, and the bootstrap draws within folds: :func:`pooled_case_bootstrap`).

    Raises:
        BenchError: the folds' files disagree on the metric, statistic or fields.
    """
    sets = [load_cases(f) for f in files]
    kinds = {(c.metric, c.statistic, tuple(sorted(c.fields))) for c in sets}
    if len(kinds) != 1:
        raise BenchError(f"the folds of a cross-validated trial must store the same per-case fields, but got "
                         f"{sorted(kinds)}. Were they run by different task versions?")
    fields = {k: np.concatenate([np.asarray(c.fields[k]) for c in sets]) for k in sets[0].fields}
    fields[FOLDS] = np.concatenate([np.full(c.n, k, np.int64) for k, c in enumerate(sets)])
    return case_file(sets[0].metric, sets[0].statistic, **fields)


def load_cases(data: bytes | str) -> CaseSet:
    payload = json.loads(data)
    return CaseSet(payload["metric"], payload["statistic"],
                   {k: np.asarray(v) for k, v in payload["fields"].items()})


def stratified_draws(strata: Sequence[Any] | np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """B×N case indices where column j is drawn with replacement from the cases of j's stratum (a fold, a
    class, or a fold x class cell), strata in first-appearance order, so a given input draws the same.

    Example:
        >>> idx = stratified_draws([0, 0, 1, 1, 1], resamples=4, seed=0)
        >>> bool((idx[:, :2] < 2).all() and (idx[:, 2:] >= 2).all())
        True
    """
    labels = np.asarray(strata)
    if labels.ndim != 1 or labels.size < 1 or resamples < 1:
        raise BenchError(f"a stratified bootstrap needs one stratum label per case and at least one "
                         f"resample, but got strata of shape {labels.shape} and resamples={resamples}.")
    rng = np.random.default_rng(seed)
    idx = np.empty((resamples, labels.size), dtype=np.int64)
    for stratum in dict.fromkeys(labels.tolist()):
        members = np.flatnonzero(labels == stratum)
        idx[:, members] = members[rng.integers(0, members.size, size=(resamples, members.size))]
    return idx


def case_strata(fields: Mapping[str, np.ndarray], folds: Sequence[Any] | np.ndarray | None = None) -> np.ndarray | None:
    """The strata a case bootstrap draws within: fold x class when both are known, the class for a set-level
    statistic (``labels``), the fold alone, or None (plain draws)."""
    parts = [np.asarray(x).astype(str) for x in (folds, fields.get("labels")) if x is not None]
    if not parts:
        return None
    out = parts[0]
    for part in parts[1:]:
        out = np.char.add(np.char.add(out, "|"), part)
    return out


def pooled_case_bootstrap(case_sets: Sequence[CaseSet], level: float = 0.95, resamples: int = 2000,
                          seed: int = 0, folds: Sequence[Any] | np.ndarray | None = None
                          ) -> tuple[float, float, float]:
    """Mean over seeds of the objective and its percentile bootstrap CI over validation cases.

    The K seeds of one config are scored on the same N validation cases (same split, same order), so
    resampling is done on cases and shared by the seeds: for b = 1..B draw case indices I_b (N with
    replacement) and compute

        theta*_b = (1/K) * sum_s T(D_s[I_b])

    where T is the statistic (``mean`` of per-case values, or macro AUROC recomputed from the cases) and D_s
    the seed's per-case data. The point estimate is theta = (1/K) * sum_s T(D_s), the mean of the logged
    objectives; the CI is the (1-level)/2 and (1+level)/2 quantiles of theta*_b (resamples whose statistic is
    undefined, e.g. one class only for AUROC, are left out). The interval therefore shows how much the
    seed-averaged score depends on which cases were validated on, given these models; seed-to-seed spread
    is averaged, not added (report ``n_seeds`` and the per-seed values beside it).

    Cases with class labels (a set-level statistic) are drawn within their class, so every resample keeps
    each class's count; with ``folds`` (the fold of each case, for the out-of-fold cases of a
    cross-validated trial; by default the cases' own ``folds`` field, :func:`combine_folds`) within fold x
    class, the stratified bootstrap ``bench compare`` uses (:func:`stratified_draws`). With folds the
    statistic is computed within each fold and the folds' values averaged, as the trial's objective is
    (each fold's cases were scored by that fold's model).

    Args:
        case_sets: one :class:`CaseSet` per seed, all with the same statistic and number of cases.
        level: CI level.
        resamples: bootstrap resamples B.
        seed: RNG seed, so a leaderboard prints the same CI every time.

    Returns:
        (mean, ci_low, ci_high).
    """
    if not case_sets:
        return float("nan"), float("nan"), float("nan")
    statistics, sizes = {c.statistic for c in case_sets}, {c.n for c in case_sets}
    if len(statistics) != 1 or len(sizes) != 1:
        raise BenchError(f"seeds of one config must share the validation cases, but got statistics "
                         f"{sorted(statistics)} over {sorted(sizes)} cases. Were they run on different splits?")
    fn, n = CASE_STATISTICS.get(statistics.pop()), sizes.pop()
    if folds is None:
        folds = case_sets[0].folds
    strata = case_strata(case_sets[0].fields, folds)
    if strata is None:
        idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    else:
        idx = stratified_draws(strata, resamples, seed)
    if folds is not None:
        fn = _within(fn, np.asarray(folds))
    per_seed = np.stack([fn(c.fields, idx) for c in case_sets])  # K×B
    theta_b = per_seed.mean(axis=0)
    theta_b = theta_b[np.isfinite(theta_b)]
    point = float(np.mean([float(fn(c.fields, np.arange(n)[None])[0]) for c in case_sets]))
    if not theta_b.size:
        return point, float("nan"), float("nan")
    lo, hi = np.quantile(theta_b, [(1 - level) / 2, (1 + level) / 2])
    return point, float(lo), float(hi)


def _within(fn, folds: np.ndarray):
    """``fn`` computed on each fold's columns of idx and the folds' values averaged (NaN folds dropped): the
    statistic of out-of-fold cases, each fold scored by its own model, as a cross-validated trial's
    objective (the plain mean of its folds' values)."""
    groups = [np.flatnonzero(folds == f) for f in dict.fromkeys(folds.tolist())]
    weights = np.ones(len(groups))

    def statistic(fields, idx):
        values = np.stack([fn(fields, idx[:, g]) for g in groups], axis=1)
        defined = np.isfinite(values)
        total = (defined * weights).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, np.where(defined, values, 0.0) @ weights / total, np.nan)

    return statistic
