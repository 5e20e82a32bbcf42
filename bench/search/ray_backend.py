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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import runtime
from bench.config import TrialConfig
from bench.errors import ConfigError
from bench.search.driver import (
    SearchSettings,
    SearchSummary,
    close_search,
    open_search,
    prepare_search,
    trial_name,
)
from bench.search.samplers import SCHEDULERS, make_scheduler  # noqa: F401  (make_scheduler re-exported)
from bench.tasks import TASKS
from bench.tracking import STATE_TAG, Tracker, tracking_uri
from bench.trial import COMPLETE, FAIL, PRUNED, tracked_trial

RAY_TRIAL_TAG = "ray_trial_id"
TRIAL_NUMBER_KEY = "bench_trial_number"  # put into each sampled config by numbered_searcher, taken out by the trial
STOPPED = (PRUNED, "stopped by the Ray Tune scheduler")


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
        sampled = dict(sampled)
        number = int(sampled.pop(TRIAL_NUMBER_KEY))
        config = TrialConfig.from_flat({**base_flat, **sampled})
        outcome = tracked_trial(
            Tracker(task, uri), config, name=trial_name(number, config), parent_run_id=parent_id,
            tags={"trial_number": number, "study": study, "fold": config.fold, "backend": "ray",
                  RAY_TRIAL_TAG: context.get_trial_id()},
            reporters=[TuneReporter(objective)], objectives=[objective], interrupted=STOPPED)
        if outcome.state == FAIL:
            raise outcome.error  # Tune records the trial as errored; its run is already closed FAIL
        # Closed before the last report: once Tune has it, the driver's callback may sweep the run as stopped.
        if outcome.state == COMPLETE:
            tune.report({objective: outcome.objective, "step": TASKS.get(config.task).reported_epochs(config)})

    return trainable


def _ray_log_level() -> int:
    """Ray's start-up banners (token authentication, "Started a local Ray instance") only with bench -v."""
    import logging

    from bench.logs import verbose

    return logging.INFO if verbose() else logging.ERROR


def numbered_searcher(space: dict, metric: str, mode: str, seed: int):
    """Ray's OptunaSearch that hands each trial its Optuna trial number (``TRIAL_NUMBER_KEY`` in the sampled
    config), so Ray trials are named t000, t001, ... exactly as the Optuna backend names them. Tune's own
    trial ids are random hex today, so they cannot carry a number."""
    from ray.tune.search.optuna import OptunaSearch

    class NumberedOptunaSearch(OptunaSearch):
        def suggest(self, trial_id: str):
            config = super().suggest(trial_id)
            if isinstance(config, dict) and trial_id in self._ot_trials:
                config = {**config, TRIAL_NUMBER_KEY: self._ot_trials[trial_id].number}
            return config

    return NumberedOptunaSearch(space=space, metric=metric, mode=mode, seed=seed)


class FinishedTrial:
    """What the progress callback of every backend is given: the trial's number and end state (the shape of
    an Optuna ``FrozenTrial`` that ``on_trial`` reads)."""

    class _State:
        def __init__(self, name: str):
            self.name = name

    def __init__(self, number: int, state: str):
        self.number = number
        self.state = self._State(state)


def _closing_callback(tracker: Tracker, on_trial: Callable | None = None):
    """Driver-side safety net: close a trial's MLflow run that its stopped or crashed actor left RUNNING; then
    tell ``on_trial`` (the progress line) that the trial finished, with the state its run was closed in."""
    from ray.tune import Callback

    class CloseRuns(Callback):
        def __getstate__(self):  # Tune pickles its callbacks for a later restore: the progress line stays here
            return {k: v for k, v in self.__dict__.items() if k != "on_trial"}

        def __init__(self, progress: Callable | None):
            self.on_trial = progress  # an attribute, not a closure: the class itself is pickled by value

        def _close(self, trial, state: str, reason: str) -> None:
            flt = f"tags.{RAY_TRIAL_TAG} = '{trial.trial_id}'"
            closed = tracker.close_open(flt, state=state, reason=reason)
            if getattr(self, "on_trial", None) is not None:
                # the state the trial's run ended in: ours when we closed it, else the one it closed itself in
                runs = [] if closed else tracker.search(flt, limit=1)
                ended = runs[0].data.tags.get(STATE_TAG) if runs else state
                number = (trial.config or {}).get(TRIAL_NUMBER_KEY, -1)
                self.on_trial(None, FinishedTrial(int(number), ended or state))

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._close(trial, "PRUNED", "stopped by the Ray Tune scheduler")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._close(trial, "FAIL", "killed")

    return CloseRuns(on_trial)


def run_search(settings: SearchSettings, on_trial: Callable | None = None) -> SearchSummary:
    """Run a search with Ray Tune: OptunaSearch over our space, ASHA/HyperBand, resources per trial.

    With ``settings.address`` the search joins that cluster (``ray.init(address=...)``, token
    authentication switched on when a token is available); otherwise it starts a local Ray with as many
    CPUs as this machine and no dashboard.

    Example:
        >>> run_search(SearchSettings(task="xray-heart", preset="smoke", trials=2, backend="ray"))  # doctest: +SKIP
    """
    # A conflicting request (e.g. --deterministic --precision bf16) fails here, not in every trial.
    with runtime.using(settings.runtime_policy()):
        return _run_search(settings, on_trial)


def token_available() -> bool:
    """A Ray auth token is at hand: ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    return Path(path).is_file()


def use_token_auth_if_available() -> bool:
    """Token mode for a driver joining a cluster when a token is at hand and the user set no mode.

    A head started with ``ray start --head`` (Ray >= 2.59) requires a token; a driver without
    ``RAY_AUTH_MODE=token`` retries and fails. Set before Ray reads its configuration. Returns the mode used.
    """
    if "RAY_AUTH_MODE" not in os.environ and token_available():
        os.environ["RAY_AUTH_MODE"] = "token"
    return os.environ.get("RAY_AUTH_MODE", "").lower() == "token"


def connect(address: str | None, env: dict[str, str]) -> None:
    """Join the cluster at ``address`` (one clear error if that fails), or start a fresh local Ray."""
    from bench.search.workers import cpu_count

    if address:
        token = use_token_auth_if_available()
    import ray

    if ray.is_initialized():
        return
    if not address:
        # address="local": always a fresh instance, never a cluster some other user left on this host.
        ray.init(address="local", num_cpus=cpu_count(), include_dashboard=False, runtime_env={"env_vars": env},
                 log_to_driver=False, logging_level=_ray_log_level())
        return
    _check_reachable(address)
    try:
        ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=False,
                 logging_level=_ray_log_level())
    except Exception as exc:  # noqa: BLE001  ConnectionError, AuthenticationError, ...: all mean "not joined"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        if token:
            hint = ("the token this driver sent was refused: copy the head's ~/.ray/auth_token (or set "
                    "RAY_AUTH_TOKEN to its content) on this machine")
        else:
            hint = ("if the head runs Ray >= 2.59 (token authentication on), copy its ~/.ray/auth_token to this "
                    "machine or set RAY_AUTH_TOKEN, and RAY_AUTH_MODE=token; otherwise check that "
                    "`ray start --head` is running there and the port is reachable")
        raise ConfigError(f"--address must name a running Ray cluster this driver can join, but connecting to "
                          f"{address} failed ({type(exc).__name__}: {first}). {hint}. See docs/SCALE_OUT.md.") from None


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """One TCP connect to the head's port first: ``ray.init`` retries an address where nothing listens
    for many minutes before it gives up."""
    import socket

    host, _, port = address.rpartition(":")
    if host.startswith("ray://") or not port.isdigit():
        return  # a Ray Client URL or a name Ray resolves itself: let ray.init judge it
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(f"--address must name a running Ray cluster this driver can join, but nothing answers at "
                          f"{address} ({exc.strerror or exc}). Start the head there with `ray start --head --port "
                          f"{port}`, or fix the address; a head with token authentication also needs its "
                          "~/.ray/auth_token (or RAY_AUTH_TOKEN) on this machine. See docs/SCALE_OUT.md.") from None


def _run_search(settings: SearchSettings, on_trial: Callable | None = None) -> SearchSummary:
    import ray
    from ray import tune

    from bench.metrics import higher_is_better

    if settings.cpus_per_trial <= 0 or settings.gpus_per_trial < 0:
        raise ConfigError(f"--cpus-per-trial must be > 0 and --gpus-per-trial >= 0, but got "
                          f"{settings.cpus_per_trial} and {settings.gpus_per_trial}.")
    search = prepare_search(settings)  # the cache and split exist before any Ray worker reads them
    objective = search.objective
    mode = "max" if higher_is_better(objective) else "min"
    uri = tracking_uri()
    # Trials run in Ray workers (other processes, maybe other machines, cwd = the trial folder): give them
    # the same MLflow store, an absolute cache path and our import path through the runtime environment.
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
           "BENCH_CACHE": os.path.abspath(os.environ.get("BENCH_CACHE", ".bench/cache")),
           "BENCH_STAGE_CACHE": os.environ.get("BENCH_STAGE_CACHE", "on")}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    connect(settings.address, env)  # before the parent run: a cluster we cannot join leaves no run behind

    tracker = Tracker(settings.task, uri)
    parent = open_search(tracker, search, {
        "sampler": "tpe (OptunaSearch)", "scheduler": settings.scheduler, "cpus_per_trial": settings.cpus_per_trial,
        "gpus_per_trial": settings.gpus_per_trial, "address": settings.address or "local"})
    try:
        with tracker.closing(parent):  # closed by close_search; by the rule of closing if anything fails first
            trainable = tune.with_resources(
                make_trainable(settings.task, uri, parent, search.study_name, search.base.flat(), objective, settings),
                {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial},
            )
            searcher = numbered_searcher(search.space, objective, mode, settings.seed)
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(search_alg=searcher, num_samples=search.n_trials, time_budget_s=settings.timeout,
                                            scheduler=make_scheduler(settings.scheduler, objective, mode,
                                                                     TASKS.get(settings.task).reported_epochs(search.base))),
                run_config=tune.RunConfig(name=search.study_name, callbacks=[_closing_callback(tracker, on_trial)], verbose=0,
                                          storage_path=os.path.abspath(".bench/ray")),
            )
            try:
                tuner.fit()
            finally:
                summary = _summarise(tracker, parent, search.study_name, objective, mode, search.started)
                close_search(tracker, parent, summary)
    finally:
        if not settings.address:
            ray.shutdown()
    return summary


def _summarise(tracker: Tracker, parent: str, study: str, objective: str, mode: str, started: float) -> SearchSummary:
    runs = tracker.study_trials(study)
    states = [r.data.tags.get(STATE_TAG) for r in runs]
    complete = [r for r in runs if r.data.tags.get(STATE_TAG) == "COMPLETE" and objective in r.data.metrics]
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
