"""The one tracked-trial lifecycle: start the MLflow run → ``run_trial`` → log the result → finite check → end.

Every way a trial is trained — the Optuna objective, the Ray trainable, seed repeats, replay and
comparisons — goes through :func:`tracked_trial`, so a trial's run carries the same metrics, tags and
artifacts and ends in the same state whoever started it:

* ``COMPLETE``: the trial finished and every requested objective is finite;
* ``PRUNED``: a reporter asked it to stop (MLflow status KILLED);
* ``FAIL``: it raised (NaN/inf loss, bad config, ...) or an objective is not finite, with the reason;
  an interrupt (KeyboardInterrupt, a scheduler unwinding the thread) closes the run and re-raises;
  a full disk closes it FAIL "no space left on device" (re-run by ``--resume``) and raises
  :class:`bench.diskspace.DiskFull`: every later trial would meet the same disk.

A cross-validated trial (``folds=K``, ``bench search --folds K``) is still one run of its kind: its K folds
are trained as K nested runs (``bench.kind = fold``), each through this same lifecycle, and the trial's
run logs each fold's objective as ``fold/<objective>`` (step = fold) and, as its own metrics, the mean over
the folds of every metric they logged. Its state follows the folds: a fold that fails fails the trial, a
fold hook (a pruner) may stop it PRUNED between folds, with the folds it ran logged.

``run_trial`` sits here, above :mod:`bench.tasks`, because it dispatches to the task registry.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.config import TrialConfig
from bench.diskspace import disk_full, is_disk_full
from bench.errors import TrialPruned
from bench.tracking import FOLD_KIND, FOLD_OF_TAG, FOLDS_TAG, full_store_path  # tag names re-exported

if TYPE_CHECKING:
    from bench.tracking import Tracker
    from bench.train import Reporter, TrialResult

COMPLETE, PRUNED, FAIL = "COMPLETE", "PRUNED", "FAIL"


def fold_metric(name: str) -> str:
    """The per-fold metric a cross-validated trial's run logs for objective ``name`` (step = fold).

    ``fold/val_auroc``: MLflow allows no ``@`` in metric names; the ``fold/`` prefix groups the per-fold
    charts in the MLflow UI and keeps them out of the leaderboard's ``val_*`` columns.
    """
    return f"fold/{name}"


class FoldFailed(Exception):
    """A fold of a cross-validated trial did not COMPLETE; the trial fails with the fold's reason."""


def run_trial(config: TrialConfig, reporter: Reporter | None = None) -> TrialResult:
    """Run one trial of ``config.task`` and return its validation objective, metrics and weights.

    Seeds Python/NumPy/torch and sets the active runtime policy's kernel switches first. Raises TrialPruned
    when the reporter asks to stop; any other exception is a failed trial.
    """
    from bench import runtime, stages
    from bench.tasks import TASKS
    from bench.train import NullReporter, seed_everything

    task = TASKS.get(config.task)
    policy = runtime.current()
    # Import the task's code before seeding: importing MONAI draws from Python's random stream, so the first
    # trial of a process would otherwise start its stages in another random state than every later one
    # (and never share a cached stage with them).
    getattr(task.run, "resolve", lambda: None)()
    seed_everything(config.seed, policy)
    runtime.take_notes()  # notes belong to one trial
    stages.take_outcomes()  # so do the bench.stage.* outcomes (a pruned trial's are taken by tracked_trial)
    result = task.run(config, reporter or NullReporter())
    result.tags.update(runtime.take_notes())
    result.tags.update(stages.take_outcomes())
    return result


@dataclass
class TrialOutcome:
    """How a tracked trial ended. ``values`` follow the requested objectives (NaN where not scored)."""

    run_id: str
    state: str
    reason: str | None = None
    values: tuple[float, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    result: TrialResult | None = None
    error: BaseException | None = None
    seconds: float = 0.0

    @property
    def objective(self) -> float:
        return self.values[0] if self.values else float("nan")


def exception_reason(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(exc)).strip()


def tracked_trial(tracker: Tracker, config: TrialConfig, *, name: str, parent_run_id: str | None,
                  tags: Mapping[str, Any], kind: str = "trial", reporters: Sequence[Reporter] = (),
                  objectives: Sequence[str] | None = None, on_start: Callable[[str], None] | None = None,
                  finish: Callable[[str, TrialResult], None] | None = None,
                  interrupted: tuple[str, str] = (FAIL, "interrupted"), folds: int = 1,
                  on_fold: Callable[[int, float], bool] | None = None) -> TrialOutcome:
    """Train ``config`` as one MLflow run nested under ``parent_run_id`` and close it with its state.

    Args:
        tracker: the task's tracker (its MLflow store).
        config: the trial's full configuration (logged as params and ``config.yaml``).
        name: the run name shown in the MLflow UI.
        parent_run_id: the search/compare run it nests under (None: a top-level run, e.g. a replay).
        tags: extra run tags (trial number, study, backend, ...).
        kind: ``bench.kind`` of the run (trial, repeat, replay, compare).
        reporters: searcher reporters (Optuna, Ray Tune) besides the MLflow one; any may prune.
        objectives: metric names whose values are returned and must be finite (default: the task's
            objective, ``TrialResult.objective_name``).
        on_start: called with the run id as soon as the run exists (e.g. to record it on the Optuna trial).
        finish: called with the run id and result after the result is logged and checked, before the run
            ends COMPLETE (replay logs its verdict there); an exception in it fails the run.
        interrupted: state and reason for a run unwound by a BaseException that is not an Exception.
        folds: K > 1 cross-validates: folds 0..K-1 of the split (``config.fold`` is ignored), each a nested
            run of kind ``fold`` made by this function; the run's metrics are the folds' means (see the
            module docstring). ``reporters`` then go to every fold run (per-epoch progress).
        on_fold: with ``folds`` > 1, called after each fold but the last with (fold, its first objective's
            value); True stops the trial PRUNED (a pruner judging fold scores, e.g. Optuna's WilcoxonPruner).

    Returns:
        The outcome; an ordinary exception is caught, logged as FAIL and kept in ``outcome.error``.
    """
    from bench.tracking import MlflowReporter
    from bench.train import MultiReporter

    if folds > 1:
        tags = {**tags, FOLDS_TAG: folds}
    run_id = tracker.start_trial(parent_run_id, name, config, tags, kind=kind)
    reporter = MultiReporter(MlflowReporter(tracker, run_id), *reporters)
    started = time.perf_counter()
    result: TrialResult | None = None
    seconds: float | None = None
    try:
        # the run store's one close rule: COMPLETE, PRUNED, FAIL "<error>", or `interrupted` (re-raised)
        with tracker.closing(run_id, interrupted=interrupted, describe=exception_reason):
            try:
                if on_start:  # inside: an interrupt while it records the run still closes the run
                    on_start(run_id)
                if folds > 1:
                    result = _cross_validate(tracker, run_id, config, folds, name=name, tags=tags,
                                             reporters=reporters, objectives=objectives, on_fold=on_fold)
                else:
                    result = run_trial(config, reporter)
            except Exception:  # pruned or failed: it still says which stages it trained or loaded
                _stage_tags(tracker, run_id)
                raise
            seconds = time.perf_counter() - started
            logged = tracker.log_result(run_id, result, seconds)
            scored = {**logged, result.objective_name: result.objective}
            names = list(objectives or [result.objective_name])
            values = tuple(float(scored.get(n, float("nan"))) for n in names)
            bad = [(n, v) for n, v in zip(names, values) if not math.isfinite(v)]
            if bad:
                metric, value = bad[0]
                reason = (f"objective {metric} is {value} (undefined on this validation part)" if metric in scored
                          else f"objective {metric} is not a metric this trial logged")
                tracker.end(run_id, FAIL, reason)
                return TrialOutcome(run_id, FAIL, reason, values, scored, result, FloatingPointError(reason), seconds)
            if finish:  # an exception in it fails the run, never leaves it open
                finish(run_id, result)
    except TrialPruned as exc:
        return TrialOutcome(run_id, PRUNED, str(exc), error=exc, seconds=time.perf_counter() - started)
    except Exception as exc:  # noqa: BLE001  FloatingPointError (NaN/inf loss) lands here: the caller goes on
        if is_disk_full(exc):  # closed FAIL "no space left on device" (re-run on --resume); the caller stops
            raise disk_full(exc, full_store_path(exc)) from None
        return TrialOutcome(run_id, FAIL, exception_reason(exc), result=result, error=exc,
                            seconds=seconds if seconds is not None else time.perf_counter() - started)
    return TrialOutcome(run_id, COMPLETE, None, values, scored, result, None, seconds)


def _stage_tags(tracker: Tracker, run_id: str) -> None:
    """A trial that stopped early still says which stages it trained or loaded (``bench.stage.*``)."""
    from bench import stages

    tags = stages.take_outcomes()
    if tags:
        with contextlib.suppress(Exception):  # the run is being closed with its state: a tag must not stop that
            tracker.set_tags(run_id, tags)


def _cross_validate(tracker: Tracker, run_id: str, config: TrialConfig, folds: int, *, name: str,
                    tags: Mapping[str, Any], reporters: Sequence[Reporter], objectives: Sequence[str] | None,
                    on_fold: Callable[[int, float], bool] | None) -> TrialResult:
    """Train folds 0..K-1 as nested tracked runs of ``run_id`` and return their mean as one result.

    Each fold's objective values go on the trial's run as ``fold/<objective>`` at step = fold as soon as the
    fold ends, so a trial stopped after fold j still shows the folds it ran. The mean result carries no
    weights, curve or previews (those stay on the fold runs, where a single-fold replay can use them) but
    one: the folds' per-case values with their fold ids (``val_cases.json``).

    Raises:
        FoldFailed: a fold ended FAIL (its reason, prefixed with the fold).
        TrialPruned: a fold was pruned, or ``on_fold`` asked to stop after a fold.
    """
    from bench.train import TrialResult

    fold_tags = {k: v for k, v in tags.items() if k != FOLDS_TAG}
    outcomes: list[TrialOutcome] = []
    for fold in range(folds):
        outcome = tracked_trial(tracker, config.replace(fold=fold), name=f"{name} fold {fold}",
                                parent_run_id=run_id, tags={**fold_tags, "fold": fold, FOLD_OF_TAG: run_id},
                                kind=FOLD_KIND, reporters=reporters, objectives=objectives)
        if outcome.state == PRUNED:
            raise TrialPruned(f"fold {fold} of {folds} was pruned: {outcome.reason}")
        if outcome.state != COMPLETE:
            raise FoldFailed(f"fold {fold} of {folds} failed: {outcome.reason}") from outcome.error
        names = list(objectives or [outcome.result.objective_name])
        tracker.log_metrics(run_id, {fold_metric(n): v for n, v in zip(names, outcome.values)}, step=fold)
        outcomes.append(outcome)
        if on_fold is not None and fold < folds - 1 and on_fold(fold, outcome.values[0]):
            # Never asked after the last fold: the trial is paid for by then, and its mean is worth keeping.
            raise TrialPruned(f"pruned after fold {fold} of {folds} ({names[0]} per fold "
                              + ", ".join(f"{o.values[0]:.4g}" for o in outcomes) + ")")
    first = outcomes[0].result
    shared = set.intersection(*(set(o.metrics) for o in outcomes))
    # trial_seconds is re-logged by log_result as the whole trial's time; the rest is the folds' mean.
    means = {k: statistics.fmean(o.metrics[k] for o in outcomes) for k in sorted(shared)}
    notes = {k: v for o in outcomes for k, v in o.result.tags.items()}
    return TrialResult(config=config, objective_name=first.objective_name,
                       objective=means[first.objective_name], metrics=means, tags=notes,
                       previews=_fold_cases(outcomes))


def _fold_cases(outcomes: Sequence[TrialOutcome]) -> dict[str, bytes]:
    """The folds' ``val_cases.json`` combined with each case's fold id (:func:`bench.cases.combine_folds`),
    so a cross-validated trial has the per-case values its seed repeats' case-bootstrap CI needs; none
    when some fold has no such file."""
    from bench.cases import CASE_FILE, combine_folds

    files = [o.result.previews.get(CASE_FILE) if o.result is not None else None for o in outcomes]
    return {CASE_FILE: combine_folds(files)} if files and all(f is not None for f in files) else {}
