"""Optuna backend: one study (journal file or RDB storage), each trial a nested MLflow run.

The objective wraps ``run_trial``: an Optuna reporter turns per-epoch objective values into
``trial.report`` / ``should_prune`` and a TrialPruned from the trial back into ``optuna.TrialPruned``.
"""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna

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


def make_storage(url: str) -> optuna.storages.BaseStorage | str:
    if "://" in url:
        return url  # an RDB URL (sqlite:///, postgresql://...) is passed to Optuna as is
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
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(max_epochs, 1), reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"pruner must be one of {list(PRUNERS)}, but got '{name}'.")


def base_config(settings: SearchSettings) -> TrialConfig:
    spec = TASKS.get(settings.task)
    preset = spec.preset(settings.preset)
    values = {**preset.config, **settings.overrides}
    return TrialConfig(task=settings.task, data=settings.data, data_format=settings.data_format,
                       seed=settings.seed, fold=settings.fold, **values)


def trial_name(number: int, config: TrialConfig) -> str:
    return f"t{number:03d} {config.seg_arch}/{config.seg_loss}/{config.guidance}"


def run_search(settings: SearchSettings, on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None]
               | None = None) -> SearchSummary:
    started = time.time()
    spec = TASKS.get(settings.task)
    preset_name = settings.preset or spec.default_preset
    preset = spec.preset(preset_name)
    space = load_space(settings.space or spec.space_path(preset_name))
    base = base_config(settings)
    prepared = spec.prepare(base)  # builds the cache once and pins the split before any trial starts
    base = base.replace(split_hash=prepared.split_hash)
    n_trials = settings.trials if settings.trials is not None else preset.trials

    if settings.resume and not settings.study:
        raise ConfigError("--resume must name the study to continue, but got no --study. Add --study NAME.")
    study_name = settings.study or f"{settings.task}-{preset_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    storage_url = settings.storage or default_storage()
    direction = "maximize" if higher_is_better(spec.objective) else "minimize"
    study = optuna.create_study(
        study_name=study_name, storage=make_storage(storage_url), direction=direction,
        sampler=make_sampler(settings.sampler, settings.seed, space),
        pruner=make_pruner(settings.pruner, base.cls_epochs), load_if_exists=settings.resume,
    )
    tracker = Tracker(settings.task)
    search_settings = {"backend": "optuna", "study": study_name, "storage": storage_url, "preset": preset_name,
                       "sampler": settings.sampler, "pruner": settings.pruner, "trials": n_trials,
                       "objective": spec.objective, "space": space.source, "searched": ",".join(space.names),
                       "seed": settings.seed, "data": settings.data if settings.data == "phantom" else "folder"}
    parent = tracker.start_search(f"search {study_name}", {**search_settings, "split_hash": base.split_hash})
    tracker.set_tags(parent, {"split_hash": base.split_hash, "study": study_name})
    tracker.log_params(parent, {f"base.{k}": v for k, v in base.flat().items()})

    def objective(trial: optuna.Trial) -> float:
        config = TrialConfig.from_flat({**base.flat(), **space(trial)})
        run_id = tracker.start_trial(parent, trial_name(trial.number, config), config,
                                     {"trial_number": trial.number, "study": study_name, "fold": config.fold})
        trial.set_user_attr("mlflow_run_id", run_id)
        reporter = MultiReporter(MlflowReporter(tracker, run_id), OptunaReporter(trial))
        try:
            result = run_trial(config, reporter)
        except TrialPruned as exc:
            tracker.end(run_id, "PRUNED", str(exc))
            raise optuna.TrialPruned(str(exc)) from None
        except Exception as exc:
            tracker.end(run_id, "FAIL", "".join(traceback.format_exception_only(exc)).strip())
            raise
        except BaseException:  # KeyboardInterrupt: close the run before the search stops
            tracker.end(run_id, "FAIL", "interrupted")
            raise
        tracker.log_metrics(run_id, result.metrics)
        tracker.log_trial_artifacts(run_id, result.config, result.state_dicts, result.history)
        tracker.end(run_id, "COMPLETE")
        return result.objective

    callbacks = [lambda s, t: on_trial(s, t)] if on_trial else []
    try:
        study.optimize(objective, n_trials=n_trials, timeout=settings.timeout, callbacks=callbacks,
                       catch=(Exception,), gc_after_trial=True)
    finally:
        summary = _summarise(study, storage_url, parent, tracker, spec.objective, started)
        tracker.log_metrics(parent, {k: v for k, v in asdict(summary).items()
                                     if k.startswith("n_") or k == "seconds"})
        if summary.best_value is not None:
            tracker.log_metrics(parent, {f"best_{spec.objective}": summary.best_value})
            tracker.set_tags(parent, {"best_run_id": summary.best_run_id})
        tracker.end(parent, "COMPLETE" if summary.n_complete else "FAIL")
    return summary


def _summarise(study, storage_url, parent, tracker, objective, started) -> SearchSummary:
    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == states.COMPLETE]
    best = None
    if complete:
        best = study.best_trial
    return SearchSummary(
        study=study.study_name, storage=storage_url, parent_run_id=parent,
        experiment=f"bench/{tracker.task}", objective=objective,
        best_value=best.value if best else None,
        best_run_id=best.user_attrs.get("mlflow_run_id") if best else None,
        n_complete=len(complete), n_pruned=sum(t.state == states.PRUNED for t in trials),
        n_failed=sum(t.state == states.FAIL for t in trials), seconds=round(time.time() - started, 2),
    )
