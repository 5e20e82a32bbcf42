"""Optuna backend: one study (journal file or RDB storage), each trial a nested MLflow run.

The objective is the shared tracked-trial lifecycle (:func:`bench.trial.tracked_trial`) plus an Optuna
reporter that turns per-epoch objective values into ``trial.report`` / ``should_prune``.

With ``--folds K`` the trial is cross-validated and its Optuna steps are the folds, not the epochs: after
each fold (but the last) its objective is reported at step = fold index and the pruner asked. Epoch values
then stay in the fold runs' MLflow curves and never reach the Optuna trial: Optuna keeps one value per step,
so the K folds' epochs would collide on the same steps, and WilcoxonPruner pairs steps across trials as the
same instance (fold k of this trial with fold k of the best), which an epoch of a different fold is not.
Median and HyperBand then compare fold scores too (a trial's fold k against earlier trials' fold k).

``--trials`` is the study's total however many processes join it: each process asks before every trial how
many have ended or are running (:func:`study_is_full`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.storages._heartbeat import is_heartbeat_enabled  # not re-exported by optuna.storages

from bench import runtime
from bench.config import TrialConfig
from bench.diskspace import DISK_FULL, DiskFull, disk_full, is_disk_full
from bench.errors import BenchError, ConfigError
from bench.search.driver import (  # noqa: F401  (re-exported: the public names of a search)
    SearchSettings,
    SearchSummary,
    base_config,
    close_search,
    directions,
    open_search,
    prepare_search,
    runtime_request,
    search_objectives,
    trial_name,
)
from bench.search.journal import SafeJournalBackend, check_journal
from bench.search.samplers import make_pruner, make_sampler
from bench.search.space import SearchSpace, load_space
from bench.search.workers import WorkerJob
from bench.tracking import KILLED, KIND_TAG, REASON_TAG, Tracker, ended_on_its_own, full_store_path, store_dir
from bench.trial import FAIL, FOLD_KIND, PRUNED, exception_reason, tracked_trial


class TrialFailed(Exception):
    """A trial that ended FAIL with a recorded reason (its MLflow run is already closed)."""


class _DiskFullStop(BaseException):  # passes through Optuna's catch (Exception, KeyboardInterrupt)
    """Stops the worker's study.optimize at once when a full disk stopped a trial. Not an Exception: Optuna
    would log a traceback and go on to the next trial, which the full disk stops too. The trial stays
    RUNNING (no write to a full disk) and is failed as killed, so ``--resume`` runs it again."""

    def __init__(self, error: DiskFull, trial_id: int):
        super().__init__(str(error))
        self.error, self.trial_id = error, trial_id


class OptunaReporter:
    def __init__(self, trial: optuna.Trial):
        self.trial = trial

    def log(self, metrics: dict[str, float], step: int) -> None:
        pass

    def report(self, objective: float, step: int) -> bool:
        if math.isnan(objective):
            return False
        self.trial.report(objective, step)
        return self.trial.should_prune()


def default_storage() -> str:
    return str(store_dir() / "optuna.journal")


HEARTBEAT_S = 60  # RDB trials whose process has not beaten for GRACE_S are failed as killed
GRACE_S = 180


def make_storage(url: str, heartbeat: bool = True) -> optuna.storages.BaseStorage:
    """A journal file storage for a path, an RDB storage (with heartbeats) for a URL.

    Raises:
        ConfigError: the URL's database driver is not installed (names the extra that installs it).
    """
    if "://" in url:
        # Heartbeats let a resumed or concurrent search tell dead RUNNING trials from live ones.
        kwargs = {"heartbeat_interval": HEARTBEAT_S, "grace_period": GRACE_S} if heartbeat else {}
        from sqlalchemy.exc import NoSuchModuleError

        try:
            # pool_pre_ping: a connection the database dropped (a restart, a failover) is replaced on its next
            # use instead of failing that query, so a search rides out a restart between its queries.
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, **kwargs)
        except (ImportError, NoSuchModuleError) as exc:  # SQLAlchemy loads the driver when it connects
            scheme = url.split("://", 1)[0]
            extra = "postgres" if scheme in ("postgresql", "postgres", "postgresql+psycopg") else None
            hint = (f'Install it with: pip install -e ".[{extra}]"' if extra
                    else "Install the DBAPI driver SQLAlchemy names for this URL")
            raise ConfigError(f"--storage {scheme}://... needs its database driver, but it is not installed "
                              f"({exc}). {hint}.") from None
    Path(url).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(SafeJournalBackend(url))


def trial_objective(job: WorkerJob, tracker: Tracker, space: SearchSpace) -> Callable[[optuna.Trial], float]:
    """The Optuna objective: the tracked-trial lifecycle with an Optuna reporter for pruning.

    With several objectives it returns their values as a tuple, and the trial is never asked whether to
    prune: Optuna's ``trial.report``/``should_prune`` do not exist for multi-objective studies.
    """
    extra_tags = {"worker": job.worker, "workers": job.workers}
    if job.gpu is not None:
        extra_tags["cuda_visible_devices"] = job.gpu
    objectives = search_objectives(job.settings)
    multi = len(objectives) > 1
    folds = job.settings.folds

    def objective(trial: optuna.Trial) -> float | tuple[float, ...]:
        try:
            return _objective(trial)
        except DiskFull as exc:  # the trial did not end on its own: no fail_reason, so it counts as killed
            raise _DiskFullStop(exc, trial._trial_id) from None

    def _objective(trial: optuna.Trial) -> float | tuple[float, ...]:
        try:
            config = TrialConfig.from_flat({**job.base_flat, **space(trial)})
        except Exception as exc:
            # A recorded reason tells a failed trial from a killed one (no reason) on resume.
            trial.set_user_attr("fail_reason", exception_reason(exc)[:1000])
            raise
        # A cross-validated trial's run has no single fold: its folds are tagged on its fold runs.
        fold_tag = {"fold": config.fold} if folds == 1 else {}
        outcome = tracked_trial(
            tracker, config, name=trial_name(trial.number, config), parent_run_id=job.parent_run_id,
            tags={"trial_number": trial.number, "study": job.study_name, **fold_tag, "backend": "optuna",
                  **extra_tags},
            reporters=[] if multi or folds > 1 else [OptunaReporter(trial)], objectives=objectives,
            on_start=lambda run_id: trial.set_user_attr("mlflow_run_id", run_id),
            folds=folds, on_fold=None if multi else lambda fold, value: OptunaReporter(trial).report(value, fold))
        if outcome.state == PRUNED:
            raise optuna.TrialPruned(outcome.reason)
        if outcome.state == FAIL:
            trial.set_user_attr("fail_reason", (outcome.reason or "failed")[:1000])  # recorded: not killed
            raise TrialFailed(outcome.reason)
        return outcome.values if multi else outcome.values[0]

    return objective


def pruner_steps(settings: SearchSettings, base: TrialConfig) -> int:
    """The steps a trial reports to its pruner: its epochs, or with ``--folds K`` its K folds."""
    from bench.tasks import TASKS

    return settings.folds if settings.folds > 1 else TASKS.get(base.task).reported_epochs(base)


def study_is_full(study: optuna.Study, total: int) -> bool:
    """True when the trials that ended (killed ones excepted) plus those running reach ``total``.

    Asked before each trial by every process on the study, so ``--trials`` is the study's total: the
    overshoot is at most the trials started in the instant between two processes' checks.
    """
    running = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))
    return count_finished(study) + running >= total


def run_worker(job: WorkerJob, on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None
               ) -> None:
    """Run up to ``job.n_trials`` trials of the shared study in this process (the driver's or a spawned
    worker's), stopping early when the study holds ``job.study_total`` trials or the timeout passes."""
    if job.n_trials <= 0:
        return
    # Chosen here, in the process that trains (after its GPU is pinned), and recorded on every trial run.
    with runtime.using(job.settings.runtime_policy()):
        _run_worker(job, on_trial)


def _run_worker(job: WorkerJob, on_trial: Callable | None) -> None:
    if job.torch_threads:
        import torch

        # Set before any trial so the run's torch_threads tag (read by replay) is the count really used.
        torch.set_num_threads(job.torch_threads)
    space = load_space(job.space_path, job.settings.task).fix(job.fixed)
    # A different sampler seed per worker: with one seed, every worker would draw the same startup points.
    study = optuna.load_study(
        study_name=job.study_name, storage=make_storage(job.storage_url),
        sampler=make_sampler(job.settings.sampler, job.settings.seed + job.worker, space),
        pruner=make_pruner(job.settings.pruner, pruner_steps(job.settings, TrialConfig.from_flat(job.base_flat))),
    )
    tracker = Tracker(job.settings.task)
    callbacks = [lambda s, t: on_trial(s, t)] if on_trial else []
    objective = trial_objective(job, tracker, space)
    deadline = time.monotonic() + job.settings.timeout if job.settings.timeout else None
    # One trial per optimize() call, the study's total checked before each: MaxTrialsCallback checks only
    # after a trial ends, so processes joining one study would overshoot by one trial each. The share
    # keeps this search's own workers from all starting the last trial at once.
    for _ in range(job.n_trials):
        if study_is_full(study, job.study_total or job.n_trials):
            break
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            break
        try:
            study.optimize(objective, n_trials=1, timeout=left, callbacks=callbacks, catch=(Exception,),
                           gc_after_trial=True)
        except _DiskFullStop as stop:
            _fail_as_killed(study, stop.trial_id)
            raise stop.error from None
        except Exception as exc:  # the journal's own append met the full disk (Optuna's ask or tell)
            if is_disk_full(exc):
                raise disk_full(exc, job.storage_url) from None
            raise


def _fail_as_killed(study: optuna.Study, trial_id: int) -> None:
    """Fail a trial a full disk stopped as a killed one (re-run by ``--resume``); on a disk still full this
    write fails too, and the trial stays RUNNING until ``--resume`` fails it the same way."""
    try:
        study._storage.set_trial_user_attr(trial_id, KILLED_ATTR, True)
        study._storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
    except Exception:  # noqa: BLE001,S110  the disk-full error is the one to report
        pass


def spawned_worker(job: WorkerJob) -> None:
    """Entry point of a spawned worker process: quiet logs, then its share of the study's trials. A full disk
    ends it with status DISK_FULL_EXIT (the driver prints the one line)."""
    import sys

    from bench.diskspace import DISK_FULL_EXIT
    from bench.logs import quiet_libraries

    quiet_libraries()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        run_worker(job)
    except DiskFull:
        sys.exit(DISK_FULL_EXIT)


def run_search(settings: SearchSettings, on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None]
               | None = None) -> SearchSummary:
    """Run (or resume, or join) a search with ``settings.workers`` processes on one shared Optuna study.

    The driver prepares the data once, creates the study and the parent MLflow run, closes what a killed
    earlier run left open (on ``resume``), then runs trials in-process (one worker) or in spawned worker
    processes attached to the same storage and parent run, until the study holds ``--trials`` trials.

    Example:
        >>> run_search(SearchSettings(task="xray-heart", preset="smoke", trials=2, workers=2))  # doctest: +SKIP
    """
    with runtime.using(settings.runtime_policy()):  # validates the request before anything is created
        try:
            return _run_search(settings, on_trial)
        except Exception as exc:  # before the study exists (the data cache): nothing to resume
            if not is_disk_full(exc):
                raise
            raise disk_full(exc, store_dir()) from None


def _run_search(settings: SearchSettings, on_trial: Callable | None) -> SearchSummary:
    from bench.search import workers as worker_pool

    storage_url = settings.storage or default_storage()
    open_journal(storage_url, settings.repair_journal)
    search = prepare_search(settings)
    plan = worker_pool.plan_workers(settings.workers, settings.trials_per_gpu)
    if len(search.objectives) > 1:
        settings = search.settings = dataclasses.replace(settings, pruner="none")  # Optuna cannot prune multi-objective
    study_name = search.study_name
    storage = make_storage(storage_url, heartbeat=True)
    then = (f"free space and run `bench search --study {study_name} --resume` (with this command's other "
            "options) to finish its trials")
    try:
        study = optuna.create_study(
            study_name=study_name, storage=storage, directions=directions(search.objectives),
            sampler=make_sampler(settings.sampler, settings.seed, search.space),
            pruner=make_pruner(settings.pruner, pruner_steps(settings, search.base)),
            load_if_exists=settings.resume,
        )
    except optuna.exceptions.DuplicatedStudyError:
        raise ConfigError(f"a new search needs an unused study name, but '{study_name}' exists in {storage_url}. "
                          "Add --resume to continue it (or join it from another machine), or pick another "
                          "--study.") from None
    except Exception as exc:
        if is_disk_full(exc):
            raise disk_full(exc, storage_url, then) from None
        raise
    tracker = Tracker(settings.task)
    try:
        killed = close_killed(study, tracker, study_name) if settings.resume else 0
        done = count_finished(study)
        parent = open_search(tracker, search, {
            "storage": storage_url, "sampler": settings.sampler, "pruner": settings.pruner,
            "workers": plan.workers, "resumed": settings.resume, "already_finished": done, "killed_closed": killed})
    except Exception as exc:
        if is_disk_full(exc):
            raise disk_full(exc, full_store_path(exc), then) from None
        raise
    jobs = [WorkerJob(settings=settings, study_name=study_name, storage_url=storage_url,
                      direction=directions(search.objectives)[0], parent_run_id=parent, base_flat=search.base.flat(),
                      space_path=search.space_path, n_trials=share, study_total=search.n_trials, worker=i,
                      workers=plan.workers, torch_threads=plan.threads, gpu=plan.gpu(i), fixed=search.fixed)
            for i, share in enumerate(worker_pool.split_trials(max(search.n_trials - done, 0), plan.workers))]
    lost: Exception | None = None
    full: Exception | None = None
    with tracker.closing(parent):  # closed by close_search; by the rule of closing if anything else fails
        try:
            if plan.workers == 1:
                run_worker(jobs[0], on_trial)
            else:
                worker_pool.run_pool(jobs, study, spawned_worker, on_trial)
        except Exception as exc:
            if is_disk_full(exc):
                full = exc  # the search stops: every later trial would meet the same full disk
            elif is_storage_error(exc):
                lost = exc
            else:
                raise
        finally:
            try:
                summary = _summarise(study, storage_url, parent, tracker, search.objective, search.started)
                if full is None:
                    close_search(tracker, parent, summary)
                else:
                    tracker.end(parent, "FAIL", DISK_FULL)
            except Exception as exc:
                if is_disk_full(exc) or full is not None:
                    full = full or exc
                    tracker.end_quietly(parent, "FAIL", DISK_FULL)
                elif is_storage_error(exc):
                    tracker.end(parent, "FAIL", "the Optuna storage stopped answering")
                    lost = lost or exc
                else:
                    raise
    if full is not None:
        raise disk_full(full, full_store_path(full), then) from None
    if lost is not None:
        first = (str(lost).strip().splitlines() or [type(lost).__name__])[0][:200]
        raise BenchError(f"the Optuna storage {storage_url} stopped answering mid-search ({first}). Trials that "
                         f"finished are kept: once it runs again, add --resume to the same command (--study "
                         f"{study_name}) to finish the study's {search.n_trials} trials.") from None
    return summary


def open_journal(storage_url: str, repair: bool = False) -> None:
    """Before a search appends to a journal file: cut a torn last record off it, refuse (or with ``repair``
    mend) one corrupt in the middle (:func:`bench.search.journal.check_journal`). RDB storages have none."""
    if "://" in storage_url:
        if repair:
            raise ConfigError(f"--repair-journal mends an Optuna journal file, but got --storage {storage_url}, a "
                              "database. Leave --repair-journal out.")
        return
    check_journal(storage_url, repair=repair)


def is_storage_error(exc: BaseException) -> bool:
    """A database error of an RDB Optuna storage (lost connection, server restarting), not a bug of ours."""
    if isinstance(exc, optuna.exceptions.StorageInternalError):  # Optuna's wrapper of a failed commit
        return True
    try:
        from sqlalchemy.exc import DBAPIError, OperationalError
    except ImportError:  # no SQLAlchemy, so no RDB storage
        return False
    return isinstance(exc, (DBAPIError, OperationalError))


TRIAL_KINDS = ("trial", FOLD_KIND)  # runs of one Optuna trial: its own and, cross-validated, its folds'
KILLED_ATTR = "bench_killed"  # user attr on Optuna trials failed because their process died


def is_killed(trial: optuna.trial.FrozenTrial) -> bool:
    """A FAIL without a recorded reason: its process died (kill -9, OOM, node lost) mid-trial."""
    return trial.state == optuna.trial.TrialState.FAIL and (
        bool(trial.user_attrs.get(KILLED_ATTR)) or "fail_reason" not in trial.user_attrs)


def count_finished(study: optuna.Study) -> int:
    """Trials that ran to an end (COMPLETE, PRUNED or FAIL with a reason), not those killed mid-run.

    Killed trials do not count, so ``--trials N`` on resume means N trials that really ended.
    """
    return sum(ended_on_its_own(t.state.name, None if is_killed(t) else t.user_attrs.get("fail_reason"))
               for t in study.get_trials(deepcopy=False))


def close_killed(study: optuna.Study, tracker: Tracker, study_name: str) -> int:
    """Fail the trials (and close the MLflow runs) that a killed earlier search left RUNNING.

    RDB storages have Optuna heartbeats, so ``fail_stale_trials`` finds dead trials even while other
    workers still run. Optuna 5's JournalStorage has no heartbeat: there ``--resume`` assumes nothing
    else is working on the study and treats every RUNNING trial as dead.

    Returns:
        The number of MLflow runs closed as FAILED with reason "killed".
    """
    states = optuna.trial.TrialState
    storage = study._storage
    if is_heartbeat_enabled(storage):
        optuna.storages.fail_stale_trials(study)  # only trials whose heartbeat stopped: live workers are safe
    else:
        for t in study.get_trials(deepcopy=False, states=(states.RUNNING,)):
            # Attributes first: a finished trial can no longer be updated.
            storage.set_trial_user_attr(t._trial_id, KILLED_ATTR, True)
            storage.set_trial_state_values(t._trial_id, states.FAIL)
            _close_finished_run(tracker, t.user_attrs.get("mlflow_run_id"))
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    # A parent run left RUNNING is another machine's live search if any trial still runs (RDB heartbeat):
    # close parents only when the whole study is idle.
    study_idle = not any(t.state == states.RUNNING for t in by_number.values())

    def alive(run) -> bool:
        kind = run.data.tags.get(KIND_TAG)
        number = run.data.tags.get("trial_number")
        trial = by_number.get(int(number)) if number is not None and number.isdigit() else None
        if kind in TRIAL_KINDS:  # still alive in another worker when its trial runs (RDB heartbeat says so)
            return trial is not None and trial.state == states.RUNNING
        return not (kind == "search" and study_idle)

    return len(tracker.close_open(f"tags.study = '{study_name}' AND attributes.status = 'RUNNING'", alive=alive))


def _close_finished_run(tracker: Tracker, run_id: str | None) -> None:
    """A trial's run that MLflow holds closed while Optuna lost the trial's end (a torn journal record, or a
    kill between the two writes): the study runs the trial again, so its run is closed "killed" too, and the
    study and the run store count the same finished trials. A run still RUNNING is for ``close_open``."""
    if not run_id:
        return
    try:
        run = tracker.run(run_id)
    except BenchError:  # no such run (another store, or removed)
        return
    if run.info.status not in ("RUNNING", "SCHEDULED") and run.data.tags.get(REASON_TAG) != KILLED:
        tracker.end(run_id, "FAIL", KILLED)


def _summarise(study, storage_url, parent, tracker, objective, started) -> SearchSummary:
    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == states.COMPLETE]
    best, pareto = None, []
    if complete and len(study.directions) > 1:
        # no single best trial: report the best of the first objective, and the front's runs
        first = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
        best = max(complete, key=lambda t: t.values[0] if first else -t.values[0])
        pareto = [t.user_attrs.get("mlflow_run_id", "") for t in study.best_trials]
    elif complete:
        best = study.best_trial
    return SearchSummary(
        study=study.study_name, storage=storage_url, parent_run_id=parent,
        experiment=f"bench/{tracker.task}", objective=objective,
        best_value=best.values[0] if best else None,
        best_run_id=best.user_attrs.get("mlflow_run_id") if best else None,
        n_complete=len(complete), n_pruned=sum(t.state == states.PRUNED for t in trials),
        n_failed=sum(t.state == states.FAIL for t in trials), seconds=round(time.time() - started, 2),
        fail_reasons=sorted({t.user_attrs["fail_reason"] for t in trials
                             if t.state == states.FAIL and "fail_reason" in t.user_attrs}),
        pareto_run_ids=[r for r in pareto if r],
    )
