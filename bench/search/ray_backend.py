"""Ray Tune backend: the same define-by-run space through Ray's OptunaSearch, ASHA/HyperBand stopping.

Each Ray trial builds its TrialConfig from the sampled flat dict, opens its own MLflow run nested under
the driver's parent run and reports the objective to Tune every classifier epoch. A run stopped by the
scheduler is closed KILLED (PRUNED) by the trial itself when it can and, because Ray may end a stopped
trial's actor without unwinding its thread, by a driver-side Tune callback otherwise.

Ray is imported only inside these functions: ``import bench.search.ray_backend`` stays cheap.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from bench import runtime
from bench.config import TrialConfig
from bench.errors import ConfigError, TrialPruned
from bench.metrics import higher_is_better
from bench.search.optuna_backend import (
    SearchSettings,
    SearchSummary,
    base_config,
    runtime_request,
    trial_name,
)
from bench.search.space import load_space
from bench.tasks import TASKS
from bench.tracking import MlflowReporter, Tracker, tracking_uri
from bench.train import MultiReporter, run_trial

SCHEDULERS = ("asha", "hyperband", "none")
RAY_TRIAL_TAG = "ray_trial_id"


class TuneReporter:
    """A Reporter that hands each epoch's objective to Ray Tune; the scheduler stops the trial itself."""

    def __init__(self, objective: str):
        self.objective = objective

    def log(self, metrics: dict[str, float], step: int) -> None:
        pass

    def report(self, objective: float, step: int) -> bool:
        from ray import tune

        tune.report({self.objective: objective, "step": step})
        return False


def make_scheduler(name: str, metric: str, mode: str, max_t: int):
    """ASHA, HyperBand or FIFO; ``max_t`` is the classifier epochs (one Tune iteration per report)."""
    from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, HyperBandScheduler

    # One Tune iteration per classifier epoch plus the final evaluation's report: with max_t = epochs the
    # scheduler would stop every trial at its last epoch, before evaluation, and nothing would COMPLETE.
    max_t = max(int(max_t), 1) + 1
    if name == "asha":
        return AsyncHyperBandScheduler(metric=metric, mode=mode, max_t=max_t, grace_period=1, reduction_factor=2)
    if name == "hyperband":
        return HyperBandScheduler(metric=metric, mode=mode, max_t=max_t, reduction_factor=2)
    if name == "none":
        return FIFOScheduler()
    raise ConfigError(f"scheduler must be one of {list(SCHEDULERS)}, but got '{name}'. Use asha, hyperband or none.")


def make_trainable(task: str, uri: str, parent_id: str, study: str, base_flat: dict[str, Any],
                   objective: str, settings: SearchSettings | None = None) -> Callable[[dict[str, Any]], None]:
    """The Tune function trainable: one trial = one nested MLflow run, closed COMPLETE/PRUNED/FAIL.

    The runtime policy is chosen inside the trial's actor from ``settings`` (its device, its GPU).
    """
    settings = settings or SearchSettings(task=task)

    def trainable(sampled: dict[str, Any]) -> None:
        with runtime.using(settings.runtime_policy()):
            _trial(sampled)

    def _trial(sampled: dict[str, Any]) -> None:
        from ray import tune

        context = tune.get_context()
        number = _trial_number(context.get_trial_id())
        tracker = Tracker(task, uri)
        config = TrialConfig.from_flat({**base_flat, **sampled})
        run_id = tracker.start_trial(parent_id, trial_name(number, config), config,
                                     {"trial_number": number, "study": study, "fold": config.fold,
                                      "backend": "ray", RAY_TRIAL_TAG: context.get_trial_id()})
        state, reason = "FAIL", "interrupted"
        try:
            result = run_trial(config, MultiReporter(MlflowReporter(tracker, run_id), TuneReporter(objective)))
            tracker.log_metrics(run_id, result.metrics)
            if result.tags:
                tracker.set_tags(run_id, result.tags)
            tracker.log_trial_artifacts(run_id, result.config, result.state_dicts, result.history)
            tracker.log_previews(run_id, result.previews)
            state, reason = "COMPLETE", None
        except TrialPruned as exc:
            state, reason = "PRUNED", str(exc)
        except Exception as exc:  # NaN/inf loss and every other error: the trial fails, the search goes on
            reason = "".join(traceback.format_exception_only(exc)).strip()
            raise
        except BaseException:  # Tune stopping the function (scheduler decision) unwinds through here
            state, reason = "PRUNED", "stopped by the Ray Tune scheduler"
            raise
        finally:
            tracker.end(run_id, state, reason)
        # Closed before the last report: once Tune has it, the driver's callback may sweep the run as stopped.
        if state == "COMPLETE":
            tune.report({objective: result.objective, "step": config.reported_epochs})

    return trainable


def _trial_number(trial_id: str) -> int:
    # Tune ids look like "<experiment>_00003": the counter is the trial number shown in run names.
    tail = trial_id.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _closing_callback(tracker: Tracker):
    """Driver-side safety net: close a trial's MLflow run that its stopped or crashed actor left RUNNING."""
    from ray.tune import Callback

    class CloseRuns(Callback):
        def _close(self, trial, state: str, reason: str) -> None:
            runs = tracker.client.search_runs(
                [tracker.experiment_id], max_results=5,
                filter_string=f"tags.{RAY_TRIAL_TAG} = '{trial.trial_id}' AND attributes.status = 'RUNNING'")
            for run in runs:
                tracker.end(run.info.run_id, state, reason)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._close(trial, "PRUNED", "stopped by the Ray Tune scheduler")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._close(trial, "FAIL", "killed")

    return CloseRuns()


def run_search(settings: SearchSettings, on_trial: Callable | None = None) -> SearchSummary:
    """Run a search with Ray Tune: OptunaSearch over our space, ASHA/HyperBand, resources per trial.

    With ``settings.address`` the search joins that cluster (``ray.init(address=...)``); otherwise it
    starts a local Ray with as many CPUs as this machine and no dashboard.

    Example:
        >>> run_search(SearchSettings(task="xray-heart", preset="smoke", trials=2, backend="ray"))  # doctest: +SKIP
    """
    # A conflicting request (e.g. --deterministic --precision bf16) fails here, not in every trial.
    with runtime.using(settings.runtime_policy()):
        return _run_search(settings)


def _run_search(settings: SearchSettings) -> SearchSummary:
    import ray
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from bench.search.workers import cpu_count

    if settings.resume:
        raise ConfigError("--resume works with the optuna backend, but got --backend ray. "
                          "Use --backend optuna with --study NAME --resume.")
    if settings.cpus_per_trial <= 0 or settings.gpus_per_trial < 0:
        raise ConfigError(f"--cpus-per-trial must be > 0 and --gpus-per-trial >= 0, but got "
                          f"{settings.cpus_per_trial} and {settings.gpus_per_trial}.")
    started = time.time()
    spec = TASKS.get(settings.task)
    preset_name = settings.preset or spec.default_preset
    space = load_space(settings.space or spec.space_path(preset_name))
    base = base_config(settings)
    prepared = spec.prepare(base)  # the cache and split exist before any Ray worker reads them
    base = base.replace(split_hash=prepared.split_hash)
    n_trials = settings.trials if settings.trials is not None else spec.preset(preset_name).trials
    study_name = settings.study or f"{settings.task}-{preset_name}-ray-{time.strftime('%Y%m%d-%H%M%S')}"
    mode = "max" if higher_is_better(spec.objective) else "min"
    uri = tracking_uri()

    tracker = Tracker(settings.task, uri)
    search_settings = {"backend": "ray", "study": study_name, "preset": preset_name, "sampler": "tpe (OptunaSearch)",
                       "scheduler": settings.scheduler, "trials": n_trials, "objective": spec.objective,
                       "space": space.source, "searched": ",".join(space.names), "seed": settings.seed,
                       "cpus_per_trial": settings.cpus_per_trial, "gpus_per_trial": settings.gpus_per_trial,
                       "address": settings.address or "local", **runtime_request(settings)}
    parent = tracker.start_search(f"search {study_name}", {**search_settings, "split_hash": base.split_hash})
    tracker.set_tags(parent, {"split_hash": base.split_hash, "study": study_name})
    tracker.log_params(parent, {f"base.{k}": v for k, v in base.flat().items()})

    # Trials run in Ray workers (other processes, maybe other machines, cwd = the trial folder): give them
    # the same MLflow store, an absolute cache path and our import path through the runtime environment.
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
           "BENCH_CACHE": os.path.abspath(os.environ.get("BENCH_CACHE", ".bench/cache"))}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    if not ray.is_initialized():
        if settings.address:
            ray.init(address=settings.address, runtime_env={"env_vars": env}, log_to_driver=False)
        else:
            # address="local": always a fresh instance, never a cluster some other user left on this host.
            ray.init(address="local", num_cpus=cpu_count(), include_dashboard=False, runtime_env={"env_vars": env},
                     log_to_driver=False)
    trainable = tune.with_resources(
        make_trainable(settings.task, uri, parent, study_name, base.flat(), spec.objective, settings),
        {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial},
    )
    searcher = OptunaSearch(space=space, metric=spec.objective, mode=mode, seed=settings.seed)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=n_trials, time_budget_s=settings.timeout,
                                    scheduler=make_scheduler(settings.scheduler, spec.objective, mode,
                                                             base.reported_epochs)),
        run_config=tune.RunConfig(name=study_name, callbacks=[_closing_callback(tracker)], verbose=0,
                                  storage_path=os.path.abspath(".bench/ray")),
    )
    try:
        tuner.fit()
    finally:
        summary = _summarise(tracker, parent, study_name, spec.objective, mode, started)
        tracker.log_metrics(parent, {k: v for k, v in asdict(summary).items() if k.startswith("n_") or k == "seconds"})
        if summary.best_value is not None:
            tracker.log_metrics(parent, {f"best_{spec.objective}": summary.best_value})
            tracker.set_tags(parent, {"best_run_id": summary.best_run_id})
        tracker.end(parent, "COMPLETE" if summary.n_complete else "FAIL")
        if not settings.address:
            ray.shutdown()
    return summary


def _summarise(tracker: Tracker, parent: str, study: str, objective: str, mode: str, started: float) -> SearchSummary:
    runs = tracker.client.search_runs([tracker.experiment_id], max_results=50000,
                                      filter_string=f"tags.study = '{study}' AND tags.`bench.kind` = 'trial'")
    states = [r.data.tags.get("bench.state") for r in runs]
    complete = [r for r in runs if r.data.tags.get("bench.state") == "COMPLETE" and objective in r.data.metrics]
    best = None
    if complete:
        pick = max if mode == "max" else min
        best = pick(complete, key=lambda r: r.data.metrics[objective])
    return SearchSummary(
        study=study, storage="ray", parent_run_id=parent, experiment=f"bench/{tracker.task}", objective=objective,
        best_value=best.data.metrics[objective] if best else None, best_run_id=best.info.run_id if best else None,
        n_complete=states.count("COMPLETE"), n_pruned=states.count("PRUNED"),
        n_failed=sum(s not in ("COMPLETE", "PRUNED") for s in states), seconds=round(time.time() - started, 2),
    )
