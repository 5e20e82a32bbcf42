"""From a tidy table of per-case values to the results table of a comparison, as CSV and Markdown."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bench.compare_stats._many_to_one import ManyToOne, equivalent, many_to_one
from bench.compare_stats._paired import (
    metric_direction,
    paired_per_case,
    run_verdict,
    set_level_from_draws,
)
from bench.compare_stats._ranks import rank_table
from bench.compare_stats._resample import ArmCases, StatisticSpec, draws_for, percentile_ci, resolve_statistic
from bench.compare_stats._runs import POWER, fold_means, run_level_test
from bench.compare_stats._stratified import Stratified
from bench.errors import BenchError

KEY_COLUMNS = ("arm", "fold", "seed", "case")
GROUP = "group"  # optional column: each case's patient as an anonymous number within its fold
RESULT_COLUMNS = ["metric", "arm", "n", "mean", "ci_low", "ci_high", "delta", "delta_low", "delta_high", "p",
                  "p_adjusted", "test", "verdict", "n_paired", "n_folds", "n_seeds", "run_delta", "run_delta_low",
                  "run_delta_high", "sd_fold", "sd_seed", "detectable", "p_case", "test_case", "rank", "mean_rank",
                  "rank_low", "rank_high", "baseline", "higher_is_better", "alpha", "level", "rope"]
FieldColumns = Mapping[str, "str | Sequence[str]"]


def arm_cases(frame: pd.DataFrame, metric: str, *, statistic: StatisticSpec = "mean",
              fields: FieldColumns | None = None,
              case_key: Sequence[str] = ("fold", "case"), strata: str | None = None) -> dict[str, ArmCases]:
    """Per-arm :class:`ArmCases` from a tidy table with one row per arm × fold × seed × case.

    A case is identified by ``case_key``: (fold, case) for validation parts (each case is validated by one
    fold's model), (case,) for a test part scored by every fold model. The other key columns (seed, and
    fold when not in the key) are the replicates an arm's value is averaged over. Cases are sorted by key,
    so every arm lists them in one order.

    Args:
        frame: columns arm, fold, seed, case (an index within the part, never a patient id) and the metric.
        metric: the column of per-case values (statistic ``mean``); for a set-level metric only its name.
        statistic: ``mean`` for per-case metrics, else a ``CASE_STATISTICS`` name or callable.
        fields: for a set-level statistic, field name -> column (or list of columns, stacked as the last
            axis), e.g. ``{"probs": ["prob_0", "prob_1"], "labels": "label"}``.
        case_key: the columns that identify one case.
        strata: a column of ``case_key`` (``fold``) within whose values a set-level statistic is computed
            and then averaged (:class:`Stratified`; its bootstrap resamples within strata).

    Raises:
        BenchError: on a missing column, a duplicate row, an arm that lacks some case × replicate, or
            strata that are not a set-level statistic's case key column.
    """
    if fields is None and statistic != "mean":
        raise BenchError(f"a set-level statistic needs the columns it is computed from, but got statistic "
                         f"{statistic!r} and no fields. Pass e.g. fields={{'probs': [...], 'labels': 'label'}}.")
    fields = {"values": metric} if fields is None else dict(fields)
    columns = {c for cols in fields.values() for c in ([cols] if isinstance(cols, str) else cols)}
    missing = sorted((set(KEY_COLUMNS) | columns) - set(frame.columns))
    if missing:
        raise BenchError(f"a comparison table needs columns {sorted(set(KEY_COLUMNS) | columns)}, but it lacks "
                         f"{missing}. Give one row per arm, fold, seed and case.")
    key = list(case_key)
    replicate_key = [c for c in ("fold", "seed") if c not in key]
    duplicated = frame.duplicated(["arm", *key, *replicate_key])
    if duplicated.any():
        first = frame.loc[duplicated, ["arm", *key, *replicate_key]].iloc[0].to_dict()
        raise BenchError(f"a comparison table needs one row per arm, fold, seed and case, but got "
                         f"{int(duplicated.sum())} duplicates, e.g. {first}. Drop repeated runs.")
    case_rows = frame[key].drop_duplicates().sort_values(key)
    cases = pd.MultiIndex.from_frame(case_rows)
    if strata is not None:
        if statistic == "mean" or strata not in key:
            raise BenchError(f"strata must be a case key column {key} of a set-level statistic, but got "
                             f"strata={strata!r} with statistic {statistic!r}. Per-case means need no strata.")
        statistic = Stratified(statistic, case_rows[strata].to_numpy())
    out = {}
    for arm, rows in frame.groupby("arm", sort=False):
        indexed = rows.set_index([*key, *replicate_key]).sort_index()
        replicates = pd.MultiIndex.from_frame(rows[replicate_key].drop_duplicates().sort_values(replicate_key))
        grid = pd.MultiIndex.from_tuples([(*c, *r) for r in replicates for c in cases],
                                         names=[*key, *replicate_key])
        absent = grid.difference(indexed.index)
        if len(absent):
            raise BenchError(f"arm '{arm}' needs a row for every case and replicate, but lacks {len(absent)} "
                             f"of {len(grid)}, e.g. {dict(zip(grid.names, absent[0]))}. Finish its runs.")
        stacked = {}
        for name, cols in fields.items():
            block = indexed.loc[grid, [cols] if isinstance(cols, str) else list(cols)].to_numpy()
            if statistic != "mean" and block.dtype.kind == "f" and not np.isfinite(block).all():
                where = dict(zip(grid.names, grid[int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])]))
                raise BenchError(f"a set-level metric needs every {name} value to be a number, but arm '{arm}' has "
                                 f"NaN or infinite {name} at fold {where.get('fold')}, seed {where.get('seed')} "
                                 f"(case {where.get('case')}). Re-run that run; a NaN would silently drop its fold "
                                 f"for this arm only.")
            block = block.reshape(len(replicates), len(cases), -1)
            stacked[name] = block[..., 0] if isinstance(cols, str) else block
        out[str(arm)] = ArmCases(stacked, statistic)
    return out


def per_case_means(frame: pd.DataFrame, metric: str,
                   case_key: Sequence[str] = ("fold", "case")) -> dict[str, np.ndarray]:
    """Arm -> per-case values averaged over replicates, in case order (for strip/box plots)."""
    return {arm: np.nanmean(cases.fields["values"], axis=0)
            for arm, cases in arm_cases(frame, metric, case_key=case_key).items()}


def run_values(frame: pd.DataFrame, metric: str, *, statistic: StatisticSpec = "mean",
               fields: FieldColumns | None = None, case_key: Sequence[str] = ("fold", "case"),
               strata: str | None = None) -> pd.DataFrame | None:
    """One value per arm x fold x seed run from a tidy per-case table: columns arm, fold, seed, ``metric``.

    A run's value is the statistic over that run's own cases: the mean of a per-case metric, or a set-level
    statistic within the fold x seed (with ``strata``, the ``<metric>@fold`` values; for a test part scored
    by every fold model, case key (case,), the statistic of each fold model on it). A set-level statistic
    of the out-of-fold predictions pooled over folds has no per-run value: None.
    """
    if statistic != "mean" and strata is None and "fold" in case_key:
        return None
    fn = resolve_statistic(statistic)
    fields = {"values": metric} if fields is None else dict(fields)
    rows = []
    for (arm, fold, seed), part in frame.groupby(["arm", "fold", "seed"], sort=False):
        part = part.sort_values(list(case_key))
        data = {name: part[cols].to_numpy() if isinstance(cols, str) else part[list(cols)].to_numpy()
                for name, cols in fields.items()}
        value = float(fn(data, np.arange(len(part))[None])[0])
        rows.append({"arm": str(arm), "fold": int(fold), "seed": int(seed), metric: value})
    return pd.DataFrame(rows, columns=["arm", "fold", "seed", metric])


def _run_grid(runs: pd.DataFrame, metric: str, arm: str) -> pd.DataFrame:
    part = runs[runs["arm"].astype(str) == arm]
    return part.pivot_table(index="fold", columns="seed", values=metric, aggfunc="mean", dropna=False)


def compare_arms(frame: pd.DataFrame, metric: str, baseline: str, *, higher_is_better: bool | None = None,
                 statistic: StatisticSpec = "mean", fields: FieldColumns | None = None,
                 case_key: Sequence[str] = ("fold", "case"), strata: str | None = None, alpha: float = 0.05,
                 level: float = 0.95, resamples: int = 2000, seed: int = 0,
                 trial_hours: Mapping[str, float] | None = None, runs: pd.DataFrame | None = None,
                 min_seeds: int | None = None, rope: float | None = None) -> pd.DataFrame:
    """Results table of one metric: every arm's mean and CIs and its paired comparison with the baseline.

    **The verdict** comes from the training runs, every arm against the baseline as one family
    (:func:`bench.compare_stats.many_to_one`): each run's value, seeds averaged within each fold, gives an
    arms x folds table; an arm's difference is the mean over folds of its paired difference with the
    baseline (``run_delta``, its t interval ``run_delta_low``/``run_delta_high``), tested against the arm x
    fold variation pooled over the arms ((A - 1)(K - 1) degrees of freedom) with Dunnett's max-t over the
    arms (``p_adjusted``), or, where the arms' run spread differs (Bartlett), each arm on its own K fold
    values with Holm over the arms. ``sd_fold``/``sd_seed`` are the arm's variance components and
    ``detectable`` the smallest difference the family test detects with 80 % power. The verdict at
    ``alpha`` in the metric's direction (given, or declared in ``bench.metrics``); an undecided arm whose
    (1 - 2 alpha) interval lies inside +-``rope`` (given, or the metric's declared region of practical
    equivalence) is "practically equivalent"; "too few runs (n): descriptive only" below ``min_seeds``
    seeds (default :data:`MIN_SEEDS`). The runs' values are ``runs`` (arm, fold, seed, ``metric``) or,
    when not given, computed from the cases (:func:`run_values`); a statistic of the predictions pooled over
    folds has none and is descriptive.

    **Given these models** (the trained models fixed, the cases resampled): mean and case-bootstrap CI
    (as :func:`arm_summary`), the difference's CI (``delta_low``/``delta_high``) and the case-level p
    (``p_case``, ``test_case``: Wilcoxon on per-case differences, DeLong or the paired case bootstrap, as
    :func:`paired_per_case` / :func:`paired_set_level`); ranks with bootstrap CIs (as
    :func:`bootstrap_ranks`). All of it from one case draw (``seed``). With ``strata`` (``fold``) a set-level
    statistic is computed within each stratum and averaged by cases, and the draw is stratified
    (:class:`Stratified`). Arguments as :func:`arm_cases`.

    Returns:
        One row per arm, baseline first: the columns of ``RESULT_COLUMNS`` (and trial_hours when given).
        The baseline's delta and p are NaN, its verdict "baseline".
    """
    from bench.compare_stats._runs import MIN_SEEDS

    min_seeds = MIN_SEEDS if min_seeds is None else min_seeds
    arms = arm_cases(frame, metric, statistic=statistic, fields=fields, case_key=case_key, strata=strata)
    if baseline not in arms:
        raise BenchError(f"the baseline must be one of the arms {list(arms)}, but got '{baseline}'. "
                         "Pass --baseline with an arm of the comparison.")
    higher = metric_direction(metric, higher_is_better)
    order = [baseline, *[a for a in arms if a != baseline]]
    if runs is None:
        runs = run_values(frame, metric, statistic=statistic, fields=fields, case_key=case_key, strata=strata)
    base_grid = _run_grid(runs, metric, baseline) if runs is not None else None
    # One case draw for every arm; each arm's draws serve its CI, its difference and the ranks.
    idx = draws_for(arms[baseline].statistic, arms[baseline].n, resamples, seed, _labels(arms[baseline]))
    draws = {name: arms[name].thetas(idx) for name in order}
    values = {name: arms[name].value() for name in order}
    patients = _patients(frame, case_key)
    if rope is None:
        from bench.metrics import practical_difference

        rope = practical_difference(metric)
    family = None
    if base_grid is not None:
        grids = {name: _run_grid(runs, metric, name).reindex(index=base_grid.index, columns=base_grid.columns)
                 for name in order}
        family = many_to_one(np.stack([fold_means(grids[name].to_numpy(float)) for name in order]), level)
    rows = []
    for number, name in enumerate(order):
        row = {"metric": metric, "arm": name, "n": arms[name].n, "mean": values[name]}
        row["ci_low"], row["ci_high"] = percentile_ci(draws[name], level)
        if name != baseline:
            if arms[name].statistic == "mean":
                paired = paired_per_case(arms[name], arms[baseline], level=level, resamples=resamples, seed=seed,
                                         **patients)
            else:
                paired = set_level_from_draws(arms[name], arms[baseline], draws[name], draws[baseline], level,
                                              clusters=patients.get("clusters"))
            row.update(delta=paired.delta, delta_low=paired.delta_low, delta_high=paired.delta_high,
                       p_case=paired.p, test_case=paired.test, n_paired=paired.n)
            if family is not None:
                result = run_level_test((grids[name] - base_grid).to_numpy(float), level)
                i = number - 1
                row.update(n_folds=result.n_folds, n_seeds=result.n_seeds, run_delta=family.delta[i],
                           run_delta_low=family.low[i], run_delta_high=family.high[i], p=family.p[i],
                           p_adjusted=family.p_adjusted[i], sd_fold=result.sd_fold, sd_seed=result.sd_seed,
                           test=family_test_name(family, i), detectable=family_detectable(family, i, alpha),
                           equivalent=equivalent(family.delta[i], family.se[i], family.df[i], rope or 0.0, alpha))
        rows.append(row)
    equivalents = {row["arm"]: bool(row.pop("equivalent", False)) for row in rows}
    table = pd.DataFrame(rows).reindex(columns=RESULT_COLUMNS)
    if runs is not None:
        table["n_folds"] = table["n_folds"].fillna(base_grid.shape[0])
        table["n_seeds"] = table["n_seeds"].fillna(base_grid.shape[1])
    table["verdict"] = [
        "baseline" if a == baseline else
        run_verdict(d, p, higher, baseline, alpha, n_seeds=s, n_runs=f * s, min_seeds=min_seeds,
                    pooled=runs is None, equivalent_within=rope if equivalents[a] else None)
        for a, d, p, f, s in zip(table["arm"], table["run_delta"], table["p_adjusted"],
                                 table["n_folds"].fillna(0).astype(int), table["n_seeds"].fillna(0).astype(int))]
    table["test"] = table["test"].astype(object).fillna("")
    table["test_case"] = table["test_case"].astype(object).fillna("")
    table["baseline"], table["higher_is_better"], table["alpha"], table["level"] = baseline, higher, alpha, level
    table["rope"] = float("nan") if rope is None else float(rope)
    ranks = rank_table(order, np.array([values[a] for a in order]), np.stack([draws[a] for a in order], axis=1),
                       higher, level).set_index("arm")
    for column in ("rank", "mean_rank", "rank_low", "rank_high"):
        table[column] = table["arm"].map(ranks[column])
    if trial_hours is not None:
        table["trial_hours"] = [trial_hours.get(a, float("nan")) for a in table["arm"]]
    return table


def family_test_name(family: ManyToOne, i: int) -> str:
    """How arm ``i``'s run-level p was computed, for the results table."""
    if not np.isfinite(family.df[i]):
        return f"no test: {family.n_folds} complete fold(s)"
    if family.pooled[i]:
        block = "" if family.pooled.all() else f", {int(family.pooled.sum())} of {len(family.pooled)} arms"
        return f"Dunnett max-t over {family.n_folds} folds, arm x fold pooled ({int(family.df[i])} df{block})"
    return (f"paired t over {family.n_folds} folds (seed means), set apart: its runs vary unlike the others' "
            f"(Bonferroni)")


def family_detectable(family: ManyToOne, i: int, alpha: float) -> float:
    """Smallest |difference| arm ``i``'s family test detects with 80 % power: (critical + t_power) x SE (the
    usual one-sided approximation of the noncentral t's power)."""
    from scipy.stats import t as student_t

    from bench.compare_stats._many_to_one import cached_critical

    df, m = float(family.df[i]), len(family.delta)
    if not np.isfinite(df):
        return float("nan")
    if family.pooled[i]:
        block = int(family.pooled.sum())
        critical = cached_critical(block, df, alpha * block / m)
    else:
        critical = float(student_t.ppf(1 - alpha / (2 * m), df))
    return float((critical + student_t.ppf(POWER, df)) * family.se[i])


def _patients(frame: pd.DataFrame, case_key: Sequence[str]) -> dict[str, np.ndarray]:
    """``clusters`` (fold and patient number) and ``strata`` (fold) per case, in case order, when the table
    has a ``group`` column (each case's anonymous patient number within its fold); else nothing."""
    key = list(case_key)
    if GROUP not in frame or "fold" not in key:
        return {}
    cases = frame[[*key, GROUP]].drop_duplicates(key).sort_values(key)
    if cases[GROUP].isna().any():
        return {}
    folds = cases["fold"].astype(str).to_numpy()
    return {"clusters": np.char.add(np.char.add(folds, ":"), cases[GROUP].astype(int).astype(str).to_numpy()),
            "strata": folds}


def _labels(arm: ArmCases) -> np.ndarray | None:
    """The class labels of a set-level arm's cases (the draws are then stratified by class), else None."""
    labels = arm.fields.get("labels")
    return None if labels is None else np.asarray(labels)[0]


def results_csv(table: pd.DataFrame, path: str | Path | None = None) -> str:
    """The results table as CSV text; written to ``path`` too when given (atomically)."""
    text = table.to_csv(index=False, float_format="%.6g")
    if path is not None:
        from bench.config import atomic_write_text

        atomic_write_text(path, text)
    return text


def _decimals(*values: float) -> int:
    """Decimals for numbers shown together: 1 for distances like HD95, 3 for scores like Dice or AUROC, and
    two significant digits of the largest when all are smaller than 0.01."""
    finite = [abs(float(v)) for v in values if v is not None and math.isfinite(float(v))]
    largest = max(finite, default=0.0)
    if largest >= 100:
        return 1
    if largest >= 0.01 or largest == 0:
        return 3
    return 1 - math.floor(math.log10(largest))


def _num(x: float, decimals: int, sign: str = "") -> str:
    return "–" if x is None or not math.isfinite(float(x)) else format(float(x), f"{sign}.{decimals}f")


def ci_decimals(low: float, high: float) -> int | None:
    """Decimals a CI supports: two significant digits of its half-width (0.032 -> 3, 0.25 -> 2, 12 -> 0);
    None when the interval is not finite or has no width."""
    if low is None or high is None or not (math.isfinite(float(low)) and math.isfinite(float(high))):
        return None
    half = abs(float(high) - float(low)) / 2
    if half == 0:
        return None
    return int(min(6, max(0, 1 - math.floor(math.log10(half)))))


def _interval(x: float, low: float, high: float, sign: str = "") -> str:
    """``x [low, high]`` with one number of decimals for all three: as many as the interval supports."""
    d = ci_decimals(low, high)
    d = _decimals(x, low, high) if d is None else d
    return f"{_num(x, d, sign)} [{_num(low, d)}, {_num(high, d)}]"


def _p(x: float) -> str:
    if not math.isfinite(float(x)):
        return "–"
    return "<0.001" if x < 0.001 else f"{x:.3f}"


DISPLAY_COLUMNS = ["metric", "unit", "arm", "n", "mean [CI]", "Δ vs baseline [CI]", "Δ over runs [CI]", "p", "test",
                   "adjusted p", "verdict", "detectable Δ", "trial-hours"]


def _get(row: pd.Series, column: str) -> float:
    """A numeric cell, NaN when the table has no such column (a results.csv written by older code)."""
    value = row.get(column, float("nan"))
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def results_display(table: pd.DataFrame) -> pd.DataFrame:
    """The results table as text cells, as :func:`results_markdown` shows them: metric, unit (when the
    table has one), arm, n, mean [CI] and Δ vs baseline [CI] (case bootstrap, given these models), Δ over
    runs [CI] (t interval over the fold means), p and its test (the verdict's), adjusted p, verdict, the
    smallest detectable Δ (80 % power), trial-hours."""
    rows = []
    for _, r in table.iterrows():
        is_base = r["verdict"] == "baseline"
        hours = r.get("trial_hours", float("nan"))
        delta = "–" if is_base else _interval(r["delta"], r["delta_low"], r["delta_high"], "+")
        run_delta = ("–" if is_base or not math.isfinite(_get(r, "run_delta")) else
                     _interval(_get(r, "run_delta"), _get(r, "run_delta_low"), _get(r, "run_delta_high"), "+"))
        test = "" if is_base or not isinstance(r["test"], str) else r["test"]
        rows.append({"metric": r["metric"], "unit": r.get("unit", ""), "arm": str(r["arm"]), "n": int(r["n"]),
                     "mean [CI]": _interval(r["mean"], r["ci_low"], r["ci_high"]),
                     "Δ vs baseline [CI]": delta, "Δ over runs [CI]": run_delta,
                     "p": "–" if is_base else _p(r["p"]), "test": test,
                     "adjusted p": "–" if is_base else _p(r["p_adjusted"]), "verdict": str(r["verdict"]),
                     "detectable Δ": "–" if is_base else _num(_get(r, "detectable"), _decimals(_get(r, "detectable"))),
                     "trial-hours": _num(hours, 3)})
    shown = pd.DataFrame(rows, columns=DISPLAY_COLUMNS)
    return shown if "unit" in table else shown.drop(columns="unit")


def results_markdown(table: pd.DataFrame, path: str | Path | None = None) -> str:
    """Markdown tables, one per metric: arm, n, runs (folds x seeds), mean [CI] and Δ vs baseline [CI]
    given these models (case bootstrap), Δ over runs [CI] (t interval of the fold means), p (the
    verdict's test) and adjusted p, verdict, the smallest Δ detectable with 80 % power, and compute
    (trial-hours) when the table has ``trial_hours``. Written to ``path`` too when given."""
    blocks = []
    for metric, part in table.groupby("metric", sort=False):
        first = part.iloc[0]
        direction = "higher is better" if bool(first["higher_is_better"]) else "lower is better"
        level = f"{100 * float(first['level']):g}%"
        header = ["arm", "n", "runs", f"mean [{level} CI, given these models]",
                  f"Δ vs {first['baseline']} [{level} CI, given these models]", f"Δ over runs [{level} CI]", "p",
                  "adjusted p", f"verdict (α = {first['alpha']:g})", "detectable Δ (80% power)"]
        compute = "trial_hours" in part and part["trial_hours"].notna().any()
        if compute:
            header.append("compute (trial-hours)")
        lines = [f"### {metric} ({direction})", "", "| " + " | ".join(header) + " |",
                 "|" + "---|" * len(header)]
        for _, r in part.iterrows():
            is_base = r["verdict"] == "baseline"
            folds, seeds = _get(r, "n_folds"), _get(r, "n_seeds")
            runs = f"{int(folds)} x {int(seeds)}" if math.isfinite(folds) and math.isfinite(seeds) else "–"
            run_delta = ("–" if is_base or not math.isfinite(_get(r, "run_delta")) else
                         _interval(_get(r, "run_delta"), _get(r, "run_delta_low"), _get(r, "run_delta_high"), "+"))
            test = r["test"] if isinstance(r["test"], str) and r["test"] else ""
            cells = [str(r["arm"]), str(int(r["n"])), runs, _interval(r["mean"], r["ci_low"], r["ci_high"]),
                     "–" if is_base else _interval(r["delta"], r["delta_low"], r["delta_high"], "+"), run_delta,
                     "–" if is_base or not test else f"{_p(r['p'])} ({test})",
                     "–" if is_base else _p(r["p_adjusted"]), str(r["verdict"]),
                     "–" if is_base else _num(_get(r, "detectable"), _decimals(_get(r, "detectable")))]
            if compute:
                cells.append(_num(r["trial_hours"], 2))
            lines.append("| " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    text = "\n\n".join(blocks) + "\n"
    if path is not None:
        from bench.config import atomic_write_text

        atomic_write_text(path, text)
    return text
