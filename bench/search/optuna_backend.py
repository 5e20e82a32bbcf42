"""Optuna backend: one study (journal file or RDB storage), each trial a nested MLflow run.

The objective wraps ``run_trial``: an Optuna reporter turns per-epoch objective values into
``trial.report`` / ``should_prune`` and a TrialPruned from the trial back into ``optuna.TrialPruned``.
"""

from __future__ import annotations

import dataclasses
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.storages._heartbeat import is_heartbeat_enabled  # not re-exported by optuna.storages

from bench import runtime
from bench.config import TrialConfig
from bench.errors import ConfigError, TrialPruned
from bench.metrics import higher_is_better
from bench.search.space import SearchSpace, load_space
from bench.tasks import TASKS
from bench.tracking import MlflowReporter, Tracker, store_dir
from bench.train import MultiReporter, run_trial

SAMPLERS = ("tpe", "random", "cmaes", "nsga2", "grid")
PRUNERS = ("median", "hyperband", "none")


@dataclass
class SearchSettings:
    task: str
    preset: str | None = None
    data: str = "phantom"
    data_format: str = "phantom"
    trials: int | None = None
    timeout: float | None = None
    seed: int = 0
    sampler: str = "tpe"
    pruner: str = "median"
    storage: str | None = None
    study: str | None = None
    resume: bool = False
    space: str | None = None
    fold: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)
    workers: int | None = None  # None: 1, or GPUs x trials_per_gpu
    trials_per_gpu: int | None = None
    backend: str = "optuna"
    scheduler: str = "asha"
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    address: str | None = None
    # Runtime policy requests (bench.runtime); each trial process resolves them against its own device.
    precision: str = "auto"
    compile: bool = False
    deterministic: bool | None = None  # None: automatic (CPU yes, GPU no)

    def runtime_policy(self) -> runtime.Runtime:
        """The runtime policy these settings ask for, on this process's device (raises ConfigError on conflicts)."""
        return runtime.Runtime.choose(precision=self.precision, compile=self.compile,
                                      deterministic=self.deterministic)
    # Multi-objective search: metric names, e.g. ("val_auroc", "n_weights"); empty = the task's objective.
    objectives: tuple[str, ...] = ()


@dataclass
class SearchSummary:
    study: str
    storage: str
    parent_run_id: str
    experiment: str
    objective: str
    best_value: float | None
    best_run_id: str | None
    n_complete: int
    n_pruned: int
    n_failed: int
    seconds: float
    fail_reasons: list[str] = field(default_factory=list)
    pareto_run_ids: list[str] = field(default_factory=list)  # multi-objective: MLflow runs of the Pareto front


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
    """A journal file storage for a path, an RDB storage (with heartbeats) for a URL."""
    if "://" in url:
        # Heartbeats let a resumed or concurrent search tell dead RUNNING trials from live ones.
        kwargs = {"heartbeat_interval": HEARTBEAT_S, "grace_period": GRACE_S} if heartbeat else {}
        return optuna.storages.RDBStorage(url, **kwargs)
    from optuna.storages.journal import JournalFileBackend

    Path(url).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(url))


def make_sampler(name: str, seed: int, space: SearchSpace) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=4, multivariate=True, group=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "grid":
        grid = {p.name: list(p.choices) for p in space.params if p.type == "categorical" and not p.when}
        return optuna.samplers.GridSampler(grid, seed=seed)
    raise ConfigError(f"sampler must be one of {list(SAMPLERS)}, but got '{name}'.")


def make_pruner(name: str, max_epochs: int) -> optuna.pruners.BasePruner:
    if name == "median":
        # No trial is judged before a third of its epochs: a lesion Dice after one or two epochs is noise
        # (a ct-lung search with warm-up 1 pruned 5 of 8 trials after 1-2 of 10 epochs).
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=max(1, max_epochs // 3))
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(max_epochs, 1), reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"pruner must be one of {list(PRUNERS)}, but got '{name}'.")


def runtime_request(settings: SearchSettings) -> dict[str, Any]:
    """What the search asked of the runtime policy (parent-run settings; trials record what they used)."""
    return {"precision": settings.precision, "compile": settings.compile,
            "deterministic": "auto" if settings.deterministic is None else settings.deterministic}


def search_objectives(settings: SearchSettings) -> list[str]:
    """The metrics the study optimises: the task's objective, or ``settings.objectives`` (two or more).

    Raises:
        ConfigError: a name is not a registered metric, or fewer than two objectives are given.
    """
    from bench.metrics import METRICS, base_name

    if not settings.objectives:
        return [TASKS.get(settings.task).objective]
    names = list(dict.fromkeys(settings.objectives))
    unknown = [n for n in names if base_name(n) not in METRICS]
    if unknown:
        raise ConfigError(f"--objectives must name metrics with a declared direction, but got {unknown}. Known "
                          f"metrics (with val_/test_ prefix where they are scored per part): {sorted(METRICS)}.")
    if len(names) < 2:
        raise ConfigError(f"--objectives needs two or more metrics for a multi-objective search, but got {names}. "
                          "For one objective just leave --objectives out.")
    return names


def directions(objectives: list[str]) -> list[str]:
    return ["maximize" if higher_is_better(name) else "minimize" for name in objectives]


def base_config(settings: SearchSettings) -> TrialConfig:
    spec = TASKS.get(settings.task)
    preset = spec.preset(settings.preset)
    values = {**preset.config, **settings.overrides}
    return TrialConfig(task=settings.task, data=settings.data, data_format=settings.data_format,
                       seed=settings.seed, fold=settings.fold, **values)


def trial_name(number: int, config: TrialConfig) -> str:
    return f"t{number:03d} {config.seg_arch}/{config.seg_loss}/{config.guidance}"


@dataclass(frozen=True)
class WorkerJob:
    """Everything a worker process needs to join the shared study (picklable for the spawn context)."""

    settings: SearchSettings
    study_name: str
    storage_url: str
    direction: str
    parent_run_id: str
    base_flat: dict[str, Any]
    space_path: str
    n_trials: int
    worker: int = 0
    workers: int = 1
    torch_threads: int | None = None
    gpu: str | None = None


def trial_objective(job: WorkerJob, tracker: Tracker, space: SearchSpace) -> Callable[[optuna.Trial], float]:
    """The Optuna objective: one nested MLflow run per trial around ``run_trial``.

    With several objectives it returns their values as a tuple, and the trial is never asked whether to
    prune: Optuna's ``trial.report``/``should_prune`` do not exist for multi-objective studies.
    """
    extra_tags = {"worker": job.worker, "workers": job.workers}
    if job.gpu is not None:
        extra_tags["cuda_visible_devices"] = job.gpu
    objectives = search_objectives(job.settings)
    multi = len(objectives) > 1

    def objective(trial: optuna.Trial) -> float | tuple[float, ...]:
        try:
            config = TrialConfig.from_flat({**job.base_flat, **space(trial)})
        except Exception as exc:
            # A recorded reason tells a failed trial from a killed one (no reason) on resume.
            trial.set_user_attr("fail_reason", "".join(traceback.format_exception_only(exc)).strip()[:1000])
            raise
        run_id = tracker.start_trial(job.parent_run_id, trial_name(trial.number, config), config,
                                     {"trial_number": trial.number, "study": job.study_name, "fold": config.fold,
                                      "backend": "optuna", **extra_tags})
        trial.set_user_attr("mlflow_run_id", run_id)
        reporter = MultiReporter(MlflowReporter(tracker, run_id), None if multi else OptunaReporter(trial))
        started = time.perf_counter()
        try:
            result = run_trial(config, reporter)
        except TrialPruned as exc:
            tracker.end(run_id, "PRUNED", str(exc))
            raise optuna.TrialPruned(str(exc)) from None
        except Exception as exc:  # FloatingPointError (NaN/inf loss) lands here: failed, search goes on
            reason = "".join(traceback.format_exception_only(exc)).strip()
            trial.set_user_attr("fail_reason", reason[:1000])  # recorded: not a killed trial
            tracker.end(run_id, "FAIL", reason)
            raise
        except BaseException:  # KeyboardInterrupt: close the run before the search stops
            tracker.end(run_id, "FAIL", "interrupted")
            raise
        seconds = time.perf_counter() - started
        scored = {**tracker.log_result(run_id, result, seconds), result.objective_name: result.objective}
        values = [scored.get(name, float("nan")) for name in objectives]
        bad = [(n, v) for n, v in zip(objectives, values) if not math.isfinite(v)]
        if bad:
            # Optuna fails a NaN objective; say why so MLflow and the study agree (e.g. one class in val)
            name, value = bad[0]
            reason = (f"objective {name} is {value} (undefined on this validation part)" if name in result.metrics
                      or name == result.objective_name else f"objective {name} is not a metric this trial logged")
            trial.set_user_attr("fail_reason", reason)
            tracker.end(run_id, "FAIL", reason)
            raise FloatingPointError(reason)
        tracker.end(run_id, "COMPLETE")
        return tuple(values) if multi else values[0]

    return objective


def run_worker(job: WorkerJob, on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None
               ) -> None:
    """Run ``job.n_trials`` trials of the shared study in this process (the driver's or a spawned worker's)."""
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
    space = load_space(job.space_path)
    # A different sampler seed per worker: with one seed, every worker would draw the same startup points.
    study = optuna.load_study(
        study_name=job.study_name, storage=make_storage(job.storage_url),
        sampler=make_sampler(job.settings.sampler, job.settings.seed + job.worker, space),
        pruner=make_pruner(job.settings.pruner, TrialConfig.from_flat(job.base_flat).reported_epochs),
    )
    tracker = Tracker(job.settings.task)
    callbacks = [lambda s, t: on_trial(s, t)] if on_trial else []
    # n_trials per worker (the driver splits the remainder exactly) rather than MaxTrialsCallback, which
    # checks only after a trial ends and so lets concurrent workers overshoot by up to workers - 1.
    study.optimize(trial_objective(job, tracker, space), n_trials=job.n_trials, timeout=job.settings.timeout,
                   callbacks=callbacks, catch=(Exception,), gc_after_trial=True)


def run_search(settings: SearchSettings, on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None]
               | None = None) -> SearchSummary:
    """Run (or resume) a search with ``settings.workers`` processes on one shared Optuna study.

    The driver prepares the data once, creates the study and the parent MLflow run, closes what a killed
    earlier run left open (on ``resume``), then runs the remaining trials in-process (one worker) or in
    spawned worker processes attached to the same storage and parent run.

    Example:
        >>> run_search(SearchSettings(task="xray-heart", preset="smoke", trials=2, workers=2))  # doctest: +SKIP
    """
    with runtime.using(settings.runtime_policy()):  # validates the request before anything is created
        return _run_search(settings, on_trial)


def _run_search(settings: SearchSettings, on_trial: Callable | None) -> SearchSummary:
    from bench.search import workers as worker_pool

    started = time.time()
    spec = TASKS.get(settings.task)
    preset_name = settings.preset or spec.default_preset
    preset = spec.preset(preset_name)
    space_path = settings.space or str(spec.space_path(preset_name))
    space = load_space(space_path)
    base = base_config(settings)
    prepared = spec.prepare(base)  # builds the cache once and pins the split before any trial starts
    base = base.replace(split_hash=prepared.split_hash)
    n_trials = settings.trials if settings.trials is not None else preset.trials
    plan = worker_pool.plan_workers(settings.workers, settings.trials_per_gpu)

    objectives = search_objectives(settings)
    if len(objectives) > 1:
        if settings.sampler == "cmaes":
            raise ConfigError("a multi-objective search needs a sampler that supports several objectives (nsga2, "
                              "tpe, random, grid), but got cmaes. Use --sampler nsga2.")
        if settings.backend != "optuna":
            raise ConfigError(f"--objectives needs --backend optuna, but got '{settings.backend}'.")
        settings = dataclasses.replace(settings, pruner="none")  # Optuna cannot prune multi-objective trials
    if settings.resume and not settings.study:
        raise ConfigError("--resume must name the study to continue, but got no --study. Add --study NAME.")
    study_name = settings.study or f"{settings.task}-{preset_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    storage_url = settings.storage or default_storage()
    direction = directions(objectives)[0]
    storage = make_storage(storage_url, heartbeat=True)
    try:
        study = optuna.create_study(
            study_name=study_name, storage=storage, directions=directions(objectives),
            sampler=make_sampler(settings.sampler, settings.seed, space),
            pruner=make_pruner(settings.pruner, base.reported_epochs), load_if_exists=settings.resume,
        )
    except optuna.exceptions.DuplicatedStudyError:
        raise ConfigError(f"a new search needs an unused study name, but '{study_name}' exists in {storage_url}. "
                          "Add --resume to continue it, or pick another --study.") from None
    tracker = Tracker(settings.task)
    killed = close_killed(study, tracker, study_name) if settings.resume else 0
    done = count_finished(study)
    remaining = max(n_trials - done, 0)
    search_settings = {"backend": "optuna", "study": study_name, "storage": storage_url, "preset": preset_name,
                       "sampler": settings.sampler, "pruner": settings.pruner, "trials": n_trials,
                       "objective": spec.objective, "objectives": ",".join(objectives), "space": space.source, "searched": ",".join(space.names),
                       "seed": settings.seed, "data": settings.data if settings.data == "phantom" else "folder",
                       "workers": plan.workers, "resumed": settings.resume, "already_finished": done,
                       "killed_closed": killed, **runtime_request(settings)}
    parent = tracker.start_search(f"search {study_name}", {**search_settings, "split_hash": base.split_hash})
    tracker.set_tags(parent, {"split_hash": base.split_hash, "study": study_name})
    tracker.log_params(parent, {f"base.{k}": v for k, v in base.flat().items()})

    jobs = [WorkerJob(settings=settings, study_name=study_name, storage_url=storage_url, direction=direction,
                      parent_run_id=parent, base_flat=base.flat(), space_path=space_path, n_trials=share,
                      worker=i, workers=plan.workers, torch_threads=plan.threads, gpu=plan.gpu(i))
            for i, share in enumerate(worker_pool.split_trials(remaining, plan.workers))]
    try:
        if plan.workers == 1:
            run_worker(jobs[0], on_trial)
        else:
            worker_pool.run_pool(jobs, study, on_trial)
    finally:
        summary = _summarise(study, storage_url, parent, tracker, objectives[0], started)
        tracker.log_metrics(parent, {k: v for k, v in asdict(summary).items()
                                     if k.startswith("n_") or k == "seconds"})
        if summary.pareto_run_ids:
            tracker.set_tags(parent, {"pareto_run_ids": ",".join(summary.pareto_run_ids)[:5000]})
        if summary.best_value is not None:
            tracker.log_metrics(parent, {f"best_{objectives[0]}": summary.best_value})
            tracker.set_tags(parent, {"best_run_id": summary.best_run_id})
        tracker.end(parent, "COMPLETE" if summary.n_complete else "FAIL")
    return summary


KILLED_ATTR = "bench_killed"  # user attr on Optuna trials failed because their process died


def is_killed(trial: optuna.trial.FrozenTrial) -> bool:
    """A FAIL without a recorded reason: its process died (kill -9, OOM, node lost) mid-trial."""
    return trial.state == optuna.trial.TrialState.FAIL and (
        bool(trial.user_attrs.get(KILLED_ATTR)) or "fail_reason" not in trial.user_attrs)


def count_finished(study: optuna.Study) -> int:
    """Trials that ran to an end (COMPLETE, PRUNED or FAIL with a reason), not those killed mid-run.

    Killed trials do not count, so ``--trials N`` on resume means N trials that really ended.
    """
    states = optuna.trial.TrialState
    return sum(t.state in (states.COMPLETE, states.PRUNED, states.FAIL) and not is_killed(t)
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
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    # A parent run left RUNNING is another machine's live search if any trial still runs (RDB heartbeat):
    # close parents only when the whole study is idle.
    study_idle = not any(t.state == states.RUNNING for t in by_number.values())
    flt = f"tags.study = '{study_name}' AND attributes.status = 'RUNNING'"
    closed = 0
    for run in tracker.client.search_runs([tracker.experiment_id], filter_string=flt, max_results=10000):
        kind = run.data.tags.get("bench.kind")
        number = run.data.tags.get("trial_number")
        trial = by_number.get(int(number)) if number is not None and number.isdigit() else None
        if kind == "trial" and trial is not None and trial.state == states.RUNNING:
            continue  # still alive in another worker (RDB heartbeat says so)
        if kind == "trial" or (kind == "search" and study_idle):
            tracker.end(run.info.run_id, "FAIL", "killed")
            closed += 1
    return closed


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
