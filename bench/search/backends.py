"""Search backends and what each supports; the CLI refuses an unsupported combination before any trial.

A backend is one decorated :class:`Backend` entry: its ``run(settings, on_trial)`` (imported when the
search starts) and its capabilities. :func:`check_supported` turns a capability the settings need but the
backend lacks into one clear error, so nothing is "accepted and then ignored".
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.errors import ConfigError
from bench.registry import Registry

if TYPE_CHECKING:
    from bench.search.settings import SearchSettings, SearchSummary

BACKENDS: Registry = Registry("backend")


@dataclass(frozen=True)
class Backend:
    name: str
    description: str
    target: str  # "module:function" of run(settings, on_trial) -> SearchSummary, imported on use
    multi_objective: bool
    resume: bool
    workers: bool  # --workers N processes on one study
    folds: bool = False  # --folds K > 1: cross-validated trials (objective = mean over K folds)
    pruners: tuple[str, ...] = ()  # --pruner values it honours (empty: none)
    schedulers: tuple[str, ...] = ()  # --scheduler values it honours
    samplers: tuple[str, ...] = field(default_factory=tuple)  # --sampler values (empty: its own only)

    def __call__(self) -> Backend:  # Registry.create() calls the entry; a Backend stands for itself
        return self

    def run(self, settings: SearchSettings, on_trial: Callable | None = None) -> SearchSummary:
        module, function = self.target.split(":")
        return getattr(importlib.import_module(module), function)(settings, on_trial)

    def capabilities(self) -> dict[str, Any]:
        return {"multi_objective": self.multi_objective, "resume": self.resume, "workers": self.workers,
                "folds": self.folds,
                "pruners": list(self.pruners), "schedulers": list(self.schedulers), "samplers": list(self.samplers)}


def register_backend(backend: Backend) -> Backend:
    BACKENDS.register(backend.name, backend.description, **backend.capabilities())(backend)
    return backend


register_backend(Backend(
    "optuna", "Optuna study in a journal file or RDB; worker processes share it; resumable",
    "bench.search.optuna_backend:run_search", multi_objective=True, resume=True, workers=True, folds=True,
    pruners=("median", "hyperband", "wilcoxon", "none"), samplers=("tpe", "random", "cmaes", "nsga2", "grid")))
register_backend(Backend(
    "ray", "Ray Tune over the same space (OptunaSearch, TPE), ASHA/HyperBand; local Ray or a running cluster",
    "bench.search.ray_backend:run_search", multi_objective=False, resume=False, workers=False,
    schedulers=("asha", "hyperband", "none"), samplers=("tpe",)))


def check_supported(settings: SearchSettings) -> Backend:
    """The backend the settings name, after refusing any option it does not support.

    Raises:
        ConfigError: unknown backend, or an option (several objectives, resume, workers, folds, a sampler,
            pruner or scheduler) this backend would otherwise ignore, or a pruner that cannot act on the folds.
    """
    from bench.search.samplers import PRUNERS, SAMPLERS, SCHEDULERS

    backend: Backend = BACKENDS.get(settings.backend)
    SAMPLERS.entry(settings.sampler), PRUNERS.entry(settings.pruner), SCHEDULERS.entry(settings.scheduler)
    supports = [b.name for b in BACKENDS.entries() if b.obj.multi_objective]
    if settings.objectives and not backend.multi_objective:
        raise ConfigError(f"--objectives needs a backend that supports several objectives ({', '.join(supports)}), "
                          f"but got --backend {backend.name}. Use --backend optuna.")
    if settings.repair_journal and backend.name != "optuna":
        raise ConfigError(f"--repair-journal mends an Optuna journal, but got --backend {backend.name}, which keeps "
                          "none. Leave --repair-journal out.")
    if settings.resume and not backend.resume:
        raise ConfigError(f"--resume works with the optuna backend, but got --backend {backend.name}. "
                          "Use --backend optuna with --study NAME --resume.")
    if settings.workers not in (None, 1) and not backend.workers:
        raise ConfigError(f"--workers runs processes on one Optuna study, but got --backend {backend.name}. "
                          f"Use --cpus-per-trial/--gpus-per-trial to size {backend.name} trials.")
    if settings.sampler not in backend.samplers:
        raise ConfigError(f"--sampler must be one of {list(backend.samplers)} with --backend {backend.name}, "
                          f"but got '{settings.sampler}'.")
    if backend.pruners and settings.pruner not in backend.pruners:
        raise ConfigError(f"--pruner must be one of {list(backend.pruners)} with --backend {backend.name}, "
                          f"but got '{settings.pruner}'.")
    if backend.schedulers and settings.scheduler not in backend.schedulers:
        raise ConfigError(f"--scheduler must be one of {list(backend.schedulers)} with --backend {backend.name}, "
                          f"but got '{settings.scheduler}'.")
    check_folds(settings, backend)
    if settings.objectives and settings.sampler == "cmaes":
        raise ConfigError("a multi-objective search needs a sampler that supports several objectives (nsga2, "
                          "tpe, random, grid), but got cmaes. Use --sampler nsga2.")
    return backend


def check_folds(settings: SearchSettings, backend: Backend) -> None:
    """Refuse a --folds / --fold / --pruner combination that cannot do what it says (see ``check_supported``)."""
    from bench.search.samplers import PRUNERS

    folds, pruner = settings.folds, PRUNERS.entry(settings.pruner)
    if folds < 1:
        raise ConfigError(f"--folds must be 1 (validate on --fold only) or K >= 2 (the mean over folds 0..K-1), "
                          f"but got {folds}.")
    if folds > 1 and not backend.folds:
        supports = [b.name for b in BACKENDS.entries() if b.obj.folds]
        raise ConfigError(f"--folds {folds} needs a backend that runs cross-validated trials "
                          f"({', '.join(supports)}), but got --backend {backend.name}. Use --backend optuna.")
    if folds > 1 and settings.fold != 0:
        raise ConfigError(f"--fold picks the one validation fold of a single-fold search, but got --fold "
                          f"{settings.fold} with --folds {folds}, which validates on every fold 0..{folds - 1}. "
                          "Leave --fold out.")
    if pruner.tags.get("steps") == "folds":
        least = int(pruner.tags.get("min_folds", 2))
        if folds < least:
            raise ConfigError(f"--pruner {pruner.name} compares a trial's per-fold scores with the best "
                              f"trial's, so it needs --folds {least} or more, but got --folds {folds}: the exact one-sided "
                              "Wilcoxon p-value of n folds is at least 2**-n, under 0.1 from 4 folds on, and a "
                              "trial is never judged after its last fold. Use --folds 5 (or --pruner median).")
        if settings.objectives:
            raise ConfigError(f"--pruner {pruner.name} judges one objective, but got --objectives "
                              f"{','.join(settings.objectives)}: Optuna cannot prune multi-objective trials. "
                              "Leave --pruner out.")


def run_search(settings: SearchSettings, on_trial: Callable | None = None) -> SearchSummary:
    """Run a search with the backend ``settings.backend`` names (checked first)."""
    return check_supported(settings).run(settings, on_trial)
