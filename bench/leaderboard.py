"""Leaderboard: trial runs read back from MLflow, ranked by the task's objective in its own direction."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bench.config import atomic_write_text
from bench.errors import BenchError
from bench.metrics import higher_is_better
from bench.tables import render, write  # noqa: F401  (bench.leaderboard.render/write are public)
from bench.tasks import TASKS
from bench.tracking import (
    KIND_TAG,
    REPEAT_KIND,
    REPEAT_TAG,
    STATE_TAG,
    Tracker,
    experiment_name,
    tracking_uri,
)

ALWAYS_SHOWN = ("seg_arch", "seg_loss", "guidance")
COST_METRICS = ("n_weights", "trial_seconds", "epochs_trained")  # logged by the search backends per trial
FORMATS = ("table", "csv", "md", "json")  # --format of `bench leaderboard` (render also takes "wide")


def leaderboard(task: str, study: str | None = None, top: int | None = None, kind: str = "trial",
                where: Sequence[str] = ()) -> pd.DataFrame:
    """Trials of ``task`` (optionally one study), best first; unfinished trials rank last.

    Args:
        task: registered task name.
        study: keep only this Optuna study's trials.
        top: keep the first ``top`` rows (after filtering).
        kind: ``trial`` or ``replay`` runs.
        where: filters ``"key=value"`` or ``"key!=value"`` on table columns or any logged param
            (``seg_loss=tversky``, ``guidance=soft_mask``, ``state=COMPLETE``); all must hold.

    Returns:
        One row per run, indexed by rank from 1.

    Raises:
        BenchError: when there are no runs, or a filter is malformed or names an unknown column.
    """
    spec = TASKS.get(task)
    flt = f"tags.`{KIND_TAG}` = '{kind}'"
    if study:
        flt += f" AND tags.study = '{study}'"
    runs, uri = task_runs(task, flt)
    if runs.empty:
        scope = f" in study '{study}'" if study else ""
        raise BenchError(
            f"the leaderboard needs finished trials in experiment '{experiment_name(task)}'{scope}, but found none "
            f"in {uri}. Run `bench search --task {task}` first (in this folder, or set MLFLOW_TRACKING_URI)."
        )
    runs = own_params_by_name(runs)
    objective = f"metrics.{spec.objective}"
    if objective not in runs:
        runs[objective] = float("nan")
    params = [c for c in runs.columns if c.startswith("params.")]
    varying = [c for c in params if runs[c].nunique(dropna=True) > 1 or c[len("params."):] in ALWAYS_SHOWN]
    metric_cols = sorted(c for c in runs.columns if c.startswith("metrics.") and (
        c[len("metrics."):].startswith(("val_", "test_")) or c[len("metrics."):] in COST_METRICS))
    table = pd.DataFrame({
        "run": runs["tags.mlflow.runName"] if "tags.mlflow.runName" in runs else runs["run_id"],
        "run_id": runs["run_id"],
        "state": runs.get(f"tags.{STATE_TAG}", pd.Series("?", index=runs.index)).fillna("RUNNING"),
        "trial": pd.to_numeric(runs.get("tags.trial_number"), errors="coerce"),
    })
    table[spec.objective] = runs[objective]
    for c in sorted(varying):
        numeric = pd.to_numeric(runs[c], errors="coerce")
        table[c[len("params."):]] = numeric if numeric.notna().all() else runs[c]
    for c in metric_cols:
        name = c[len("metrics."):]
        if name != spec.objective:
            table[name] = runs[c]
    # every run has it, pruned ones included: the report's anytime curve over time spent
    table["run_seconds"] = (pd.to_numeric(runs["end_time"], errors="coerce")
                            - pd.to_numeric(runs["start_time"], errors="coerce")) / 1000.0
    ascending = not higher_is_better(spec.objective)
    table["_complete"] = table["state"].eq("COMPLETE")
    if where:
        table = table[_where_mask(table, runs, where)]
    table = table.sort_values(["_complete", spec.objective], ascending=[False, ascending], na_position="last")
    table = table.drop(columns="_complete").reset_index(drop=True)
    table.index = table.index + 1
    table.index.name = "rank"
    return table.head(top) if top else table


PAGE_SIZE = 1000  # MLflow's largest page for most stores


def task_runs(task: str, filter_string: str) -> tuple[pd.DataFrame, str]:
    """(:func:`runs_frame` of the task's experiment, the store's URI). On a SQL store with bench's own
    filters neither MLflow is imported nor its store opened (:mod:`bench.store_read`): a leaderboard of a
    search's store then costs less than ``import mlflow``. A store without the task's experiment gives an
    empty frame (nothing is created)."""
    from bench.store_read import experiment_id, sql_runs_frame

    uri = tracking_uri()
    found = experiment_id(uri, experiment_name(task))
    if found is None:
        return pd.DataFrame(), uri
    if found is not False:
        fast = sql_runs_frame(uri, found, filter_string)
        if fast is not None:
            return fast, uri
    return runs_frame(Tracker(task, uri), filter_string), uri


def runs_frame(tracker: Tracker, filter_string: str, page_size: int = PAGE_SIZE) -> pd.DataFrame:
    """Runs of the tracker's experiment as one row each: ``run_id``, ``status``, ``start_time``, ``end_time``
    (ms since the epoch; end is empty while a run is open), ``tags.*``, ``params.*``, ``metrics.*``.

    On SQL stores with bench's own filters it reads MLflow's tables in bulk (``bench.store_read``: 10,000
    runs in about a second instead of ~14 s); otherwise it pages through ``MlflowClient.search_runs`` and
    builds the frame from plain dicts in one go.

    Args:
        tracker: the task's tracker (store and experiment).
        filter_string: an MLflow search filter.
        page_size: runs fetched per request.

    Returns:
        The frame (empty, with no columns, when nothing matches).
    """
    from bench.store_read import sql_runs_frame

    fast = sql_runs_frame(tracker.uri, tracker.experiment_id, filter_string)
    if fast is not None:
        return fast
    return api_runs_frame(tracker, filter_string, page_size)


def api_runs_frame(tracker: Tracker, filter_string: str, page_size: int = PAGE_SIZE) -> pd.DataFrame:
    """``runs_frame`` through MLflow's public API: any store, any filter."""
    records: list[dict[str, object]] = []
    for run in tracker.search(filter_string, page_size=page_size):
        record: dict[str, object] = {"run_id": run.info.run_id, "status": run.info.status,
                                     "start_time": run.info.start_time, "end_time": run.info.end_time}
        data = run.data
        record.update({f"metrics.{k}": v for k, v in data.metrics.items()})
        record.update({f"params.{k}": v for k, v in data.params.items()})
        record.update({f"tags.{k}": v for k, v in data.tags.items()})
        records.append(record)
    frame = pd.DataFrame.from_records(records)
    for col in [c for c in frame.columns if c.startswith("metrics.")]:
        frame[col] = pd.to_numeric(frame[col], errors="coerce")  # a metric missing on some runs is NaN
    return frame


def parse_where(expr: str) -> tuple[str, str, str]:
    """Split ``"key=value"`` / ``"key!=value"`` into (key, operator, value)."""
    op = "!=" if "!=" in expr else "="
    key, sep, value = expr.partition(op)
    if not sep or not key.strip():
        raise BenchError(f"--where must look like key=value (e.g. seg_loss=tversky), but got '{expr}'. "
                         "Repeat --where for several conditions.")
    return key.strip(), op, value.strip()


def own_params_by_name(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with each task parameter's column ``params.task_params.<name>`` named ``params.<name>``, merged
    with that column of runs logged when the parameter was a shared field (``config.MOVED_TO_TASK_PARAMS``):
    one column per parameter, spelt as ``--where`` and ``--dimension`` take it."""
    prefix = "params.task_params."
    own = [c for c in runs.columns if c.startswith(prefix)]
    if not own:
        return runs
    runs = runs.copy()
    for column in own:
        short = "params." + column[len(prefix):]
        runs[short] = runs[column].combine_first(runs[short]) if short in runs else runs[column]
    return runs.drop(columns=own)


def _where_mask(table: pd.DataFrame, runs: pd.DataFrame, where: Sequence[str]) -> pd.Series:
    mask = pd.Series(True, index=table.index)
    for expr in where:
        key, op, value = parse_where(expr)
        key = key.removeprefix("task_params.")  # a task parameter's column is its bare name (own_params_by_name)
        if key in table:
            column = table[key]
        elif f"params.{key}" in runs:
            column = runs[f"params.{key}"]  # a param that does not vary is not in the table but still filterable
        else:
            known = sorted((set(table.columns) - {"_complete"}) | {c[len("params."):] for c in runs if c.startswith("params.")})
            raise BenchError(f"--where must name a leaderboard column or param, but got '{key}'. "
                             f"Known: {', '.join(known)}.")
        hit = column.astype(str).eq(value)
        numeric, target = pd.to_numeric(column, errors="coerce"), pd.to_numeric(pd.Series([value]), errors="coerce")[0]
        if not np.isnan(target):  # "lr=0.001" must match a logged "0.001" and "1e-3" alike
            hit |= np.isclose(numeric.to_numpy(float), float(target), rtol=1e-9, atol=0.0)
        mask &= ~hit if op == "!=" else hit
    return mask


T_INTERVAL_BELOW = 20  # below this many values the percentile bootstrap of the mean under-covers


def bootstrap_ci(values: Sequence[float], level: float = 0.95, resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """CI of the mean: Student's t interval below 20 values, else the percentile bootstrap (fixed seed, so
    exported reports are reproducible).

    The percentile bootstrap of a mean ignores that the spread itself is estimated: a nominal 95 % interval
    covers about 51 % at n = 2, 74 % at n = 3 and 91 % at n = 10 (Efron & Tibshirani 1993, sec. 13.7); the t
    interval mean ± t_{n-1} s / sqrt(n) (``scipy.stats.t``) covers 95 % for normal values at every n. A
    single value has no spread: (NaN, NaN).

    Example:
        >>> bootstrap_ci([1.0, 1.0, 1.0])
        (1.0, 1.0)
    """
    x = np.asarray(values, float)
    if x.size < 2:
        return float("nan"), float("nan")
    if x.size < T_INTERVAL_BELOW:
        from scipy.stats import t as student_t

        half = float(student_t.ppf((1 + level) / 2, x.size - 1)) * float(x.std(ddof=1)) / np.sqrt(x.size)
        return float(x.mean() - half), float(x.mean() + half)
    means = np.random.default_rng(seed).choice(x, size=(resamples, x.size), replace=True).mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def group_summary(table: pd.DataFrame, by: str, objective: str, higher: bool | None = None) -> pd.DataFrame:
    """Compare strategies: per value of ``by``, COMPLETE trials' n, mean, 95% bootstrap CI and best objective.

    Args:
        table: a :func:`leaderboard` table.
        by: a column of the table, e.g. ``guidance``, ``seg_loss`` or ``seg_arch``.
        objective: the objective column.
        higher: direction of the objective (default: from the metric registry).

    Returns:
        One row per group, best mean first; ``ci95_low``/``ci95_high`` are NaN where n = 1.
    """
    if by not in table:
        raise BenchError(f"--group-by must be a leaderboard column, but got '{by}'. "
                         f"Known: {', '.join(c for c in table.columns if c not in ('run', 'run_id'))}.")
    higher = higher_is_better(objective) if higher is None else higher
    done = table[table["state"].eq("COMPLETE") & pd.to_numeric(table[objective], errors="coerce").notna()]
    rows = []
    for key, group in done.groupby(done[by].astype(str), sort=True):
        values = group[objective].to_numpy(float)
        lo, hi = bootstrap_ci(values)  # one trial has no spread: NaN, not a "CI" equal to the value
        rows.append({by: key, "n": len(values), "mean": values.mean(), "ci95_low": lo, "ci95_high": hi,
                     "best": values.max() if higher else values.min()})
    frame = pd.DataFrame(rows, columns=[by, "n", "mean", "ci95_low", "ci95_high", "best"])
    return frame.sort_values("mean", ascending=not higher).reset_index(drop=True)


def seed_summary(task: str, study: str | None = None, resamples: int = 2000) -> pd.DataFrame:
    """Configs repeated on several seeds (``bench search --seeds K``): mean objective and case-bootstrap CI.

    Each original trial is grouped with its COMPLETE repeat runs (tag ``bench.repeat_of``). When every
    run of a group has ``val_cases.json``, the CI comes from :func:`bench.cases.pooled_case_bootstrap`
    (cases resampled once per draw and shared by the seeds, within class, and within fold for a
    cross-validated trial, whose file holds every fold's cases with the fold id; formula there): a CI given
    these models; otherwise ``mean`` is the mean of the logged objectives and the CI columns are NaN, with
    the reason in ``ci_over``.

    Args:
        task: registered task name.
        study: keep only this study's repeats.
        resamples: bootstrap resamples.

    Returns:
        One row per config, best mean first: config (the original run's name), run_id, n_seeds, seeds,
        mean, ci95_low, ci95_high, n_cases, per-seed values and what the CI is over.

    Raises:
        BenchError: no repeat runs in the store.
    """
    from bench.cases import CASE_FILE, load_cases, pooled_case_bootstrap

    spec = TASKS.get(task)
    tracker = Tracker(task)
    flt = f"tags.`{KIND_TAG}` = '{REPEAT_KIND}' AND tags.`{STATE_TAG}` = 'COMPLETE'"
    repeats = runs_frame(tracker, flt + (f" AND tags.study = '{study}'" if study else ""))
    if repeats.empty:
        raise BenchError(f"--seeds needs configs repeated on several seeds in experiment '{experiment_name(task)}', "
                         f"but found no COMPLETE repeat runs in {tracker.uri}. Run `bench search --task {task} "
                         "--seeds 3` (repeats the top configs on 3 seeds).")
    rows = []
    objective = f"metrics.{spec.objective}"
    for original_id, group in repeats.groupby(f"tags.{REPEAT_TAG}", sort=False):
        original = tracker.run(original_id)
        group = group.assign(_seed=pd.to_numeric(group["params.seed"], errors="coerce")).sort_values("_seed")
        scores = group[objective] if objective in group else pd.Series(np.nan, index=group.index)
        runs = [(original_id, int(original.data.params.get("seed", 0)),
                 original.data.metrics.get(spec.objective, np.nan))]
        runs += list(zip(group["run_id"], group["_seed"].astype(int), scores.astype(float)))
        values = np.array([v for _, _, v in runs], float)
        case_sets = []
        for run_id, _, _ in runs:
            try:
                case_sets.append(load_cases(tracker.read_artifact(run_id, CASE_FILE)))
            except Exception:  # noqa: BLE001  (MLflow raises several types for a missing artifact)
                break
        if len(case_sets) == len(runs):
            mean, lo, hi = pooled_case_bootstrap(case_sets, resamples=resamples)
            within = " within folds" if case_sets[0].folds is not None else ""  # cross-validated trials
            over, n_cases = f"cases{within} (pooled over seeds, given these models)", case_sets[0].n
        else:
            mean, lo, hi = float(np.nanmean(values)), float("nan"), float("nan")
            over, n_cases = f"none: a run lacks {CASE_FILE}", 0
        rows.append({"config": original.info.run_name, "run_id": original_id, "n_seeds": len(runs),
                     "seeds": ",".join(str(s) for _, s, _ in runs), "mean": mean, "ci95_low": lo, "ci95_high": hi,
                     "n_cases": n_cases, "values": ",".join(f"{v:.4f}" for v in values), "ci_over": over})
    frame = pd.DataFrame(rows)
    frame = frame.sort_values("mean", ascending=not higher_is_better(spec.objective)).reset_index(drop=True)
    frame.index = frame.index + 1
    frame.index.name = "rank"
    return frame


def _search_runs(task: str, study: str | None) -> list[dict[str, object]]:
    """The task's search parent runs (optionally one study), oldest first: ``storage``, ``study`` (from their
    ``search.*`` tags, empty when absent), ``seconds`` (the search's logged wall time, NaN while open) and
    ``split_hash``."""
    tracker = Tracker(task)
    flt = f"tags.`{KIND_TAG}` = 'search'" + (f" AND tags.study = '{study}'" if study else "")
    found = []
    for run in tracker.search(flt, oldest_first=True):
        tags = run.data.tags
        found.append({"storage": tags.get("search.storage", ""), "study": tags.get("search.study", ""),
                      "seconds": run.data.metrics.get("seconds", float("nan")),
                      "split_hash": tags.get("split_hash", "")})
    return found


def export(table: pd.DataFrame, task: str, out_dir: str | Path, study: str | None = None,
           by: str = "guidance") -> list[Path]:
    """Write ``leaderboard.csv``, ``leaderboard.md`` and a self-contained ``report.html`` to ``out_dir``.

    The report reads top-down: headline (task, objective, data, split hash, trials, wall time), the top 10
    trials in the terminal's columns, the strategy summary (``by``), captioned figures (anytime curve,
    objective per strategy, per-case Dice and overlays of each strategy's best trial, parameter importances
    when the Optuna storage named on the search run is readable), notes, and every trial with every column
    last. What cannot be computed is stated as a note instead of failing the export.
    """
    from bench import report

    spec = TASKS.get(task)
    higher = higher_is_better(spec.objective)
    direction = "higher" if higher else "lower"
    out = Path(out_dir)
    tracker = Tracker(task)
    groups = group_summary(table, by, spec.objective, higher) if by in table else None
    searches = _search_runs(task, study)
    notes = []
    figures = [report.Figure(
        "anytime", report.anytime_png(table, spec.objective, higher),
        f"Best {spec.objective} so far ({direction} is better) against the trial number and, where logged, the "
        "epochs and run time spent by all trials, pruned and failed ones included. Dots: complete trials; "
        "step line: the best so far.")]
    if groups is not None and groups["n"].eq(1).any():
        single = ", ".join(groups.loc[groups["n"].eq(1), by].astype(str))
        notes.append(f"No CI for {by} {single}: a single complete trial (n = 1) has no spread to bootstrap.")
    if by in table:
        figures.append(report.Figure(
            f"{spec.objective} per {by}", report.strategy_png(table, spec.objective, by),
            f"{spec.objective} of every complete trial, one box per {by} strategy (box: median and quartiles over "
            "trials; dots: the trials; n: complete trials, a box of n = 1 is a single line)."))
        figures += _best_per_strategy_figures(tracker, table, spec.objective, higher, by, notes)
    studies = [(str(s["storage"]), str(s["study"])) for s in searches if s["storage"] and s["study"]]
    if not studies:
        notes.append("Parameter importances skipped: no search run with search.storage/search.study tags.")
    for storage, name in dict.fromkeys(studies):
        try:
            importances = report.study_importances(storage, name)
            figures.append(report.Figure(
                f"importances {name}", report.importances_png(importances),
                f"How much each searched parameter explains the variation of {spec.objective} across the complete "
                f"trials of study {name} (Optuna's fANOVA importance; the bars sum to 1)."))
        except BenchError as exc:
            notes.append(f"Parameter importances of study {name} skipped: {exc}")
    title = f"bench leaderboard: {task}" + (f", study {study}" if study else "")
    headline = report.headline(tracker, table, spec.objective, direction, searches, study)
    paths = [write(table, "csv", out / "leaderboard.csv"), write(table, "md", out / "leaderboard.md")]
    if groups is not None:
        paths.append(atomic_write_text(out / f"groups-{by}.csv", groups.to_csv(index=False)))
    top = compact(table.head(10), task).drop(columns=["run_id"], errors="ignore")
    top["run"] = table["run"].head(10)  # the full name: the report has the width the terminal lacks
    html_text = report.html_report(title, headline, top, groups, figures, notes,
                                   table.drop(columns=["run_id"]).assign(run_id=table["run_id"]), by)
    paths.append(atomic_write_text(out / "report.html", html_text))
    return paths


def _best_per_strategy_figures(tracker: Tracker, table: pd.DataFrame, objective: str, higher: bool, by: str,
                               notes: list[str]) -> list:
    """The per-case Dice box plot and the prediction overlays of each strategy's best COMPLETE trial,
    read from the runs' ``val_cases.json`` and ``overlay.png``, captioned; what a run lacks becomes a note."""
    from bench import report
    from bench.cases import CASE_FILE, load_cases
    from bench.tables import number

    done = table[table["state"].eq("COMPLETE") & pd.to_numeric(table[objective], errors="coerce").notna()]
    best = done.sort_values(objective, ascending=not higher).groupby(done[by].astype(str), sort=True).head(1)
    per_case, overlays, missing, trials = {}, [], [], []
    for row in best.to_dict("records"):
        strategy, run_id, run = str(row[by]), row["run_id"], row["run"]
        try:
            dice = load_cases(tracker.read_artifact(run_id, CASE_FILE)).per_case_dice()
            if dice is not None:
                per_case[strategy] = dice
                trials.append(f"{strategy}: {run}")
            overlays.append(report.Figure(
                f"overlay, best {by}={strategy}: {run}", tracker.read_artifact(run_id, "overlay.png"),
                f"Validation cases predicted by {run} (run {run_id[:8]}), the best complete trial with "
                f"{by}={strategy} ({objective} {number(row[objective])}). Grey: the image; green contour: the "
                "true mask; red contour: the predicted mask; a second row, where present, is the saliency map."))
        except Exception as exc:  # noqa: BLE001  MLflow raises several kinds for a missing artifact
            missing.append(f"{strategy} ({type(exc).__name__})")
    figures: list = []
    if per_case:
        name = next(iter(per_case.values()))[0]
        figures.append(report.Figure(
            f"{name} per case per {by}",
            report.case_dice_png({k: v for k, (_, v) in per_case.items()}, name, by),
            f"{name} of each validation case (dots) for the best complete trial of each {by} strategy "
            f"({'; '.join(trials)}); box: median and quartiles over the cases."))
    figures += overlays
    if missing:
        notes.append(f"Per-case Dice / overlays incomplete: the best run of {', '.join(missing)} lacks "
                     f"{CASE_FILE} or overlay.png (runs from older versions, or a trial that logged none).")
    return figures


METRIC_PREFIXES = ("val_", "test_", "shift_gap_")


def compact(table: pd.DataFrame, task: str) -> pd.DataFrame:
    """The terminal's columns: rank, run, state, the objective, the searched dimensions and the task's
    headline metrics. The run shows as its trial name (``t003``): its dimensions are columns beside it."""
    spec = TASKS.get(task)
    keep = set(spec.headline) | {spec.objective}
    # nested parameters (seg_loss_params.alpha, ...) stay in --wide/csv/md/json; the terminal shows dimensions
    columns = [c for c in table.columns
               if (not c.startswith(METRIC_PREFIXES) or c in keep) and "_params." not in c
               and c not in COST_METRICS and c not in ("run_seconds", "trial")]
    headline = [c for c in spec.headline if c in columns]
    ordered = [c for c in columns if c not in headline] + headline  # metrics after the dimensions
    frame = table[ordered].copy()
    if "run" in frame:
        frame["run"] = frame["run"].astype(str).str.split(" ", n=1).str[0]
    return frame
