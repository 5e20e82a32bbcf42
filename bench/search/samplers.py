"""Registries of the search's strategies: Optuna samplers and pruners, Ray Tune schedulers.

Each entry is a light factory (Optuna and Ray are imported when one is created), so the CLI lists the
names in ``--help`` without importing either. Adding a sampler is one decorated function here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.registry import Registry

if TYPE_CHECKING:
    from bench.search.space import SearchSpace

SAMPLERS: Registry = Registry("sampler")
PRUNERS: Registry = Registry("pruner")
SCHEDULERS: Registry = Registry("scheduler")


@SAMPLERS.register("tpe", "Tree-structured Parzen estimator (multivariate, grouped); 4 random startup trials",
                   multi_objective=True)
def tpe(seed: int = 0, space: SearchSpace | None = None):
    import optuna

    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=4, multivariate=True, group=True)


@SAMPLERS.register("random", "independent uniform draws", multi_objective=True)
def random(seed: int = 0, space: SearchSpace | None = None):
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


@SAMPLERS.register("cmaes", "CMA-ES over the numeric parameters (categoricals sampled independently)",
                   multi_objective=False)
def cmaes(seed: int = 0, space: SearchSpace | None = None):
    import optuna

    return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)


@SAMPLERS.register("nsga2", "NSGA-II genetic algorithm (made for several objectives)", multi_objective=True)
def nsga2(seed: int = 0, space: SearchSpace | None = None):
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed)


@SAMPLERS.register("grid", "every combination of the unconditional categorical parameters", multi_objective=True)
def grid(seed: int = 0, space: SearchSpace | None = None):
    import optuna

    choices = {p.name: list(p.choices) for p in (space.params if space else []) if p.type == "categorical"
               and not p.when}
    return optuna.samplers.GridSampler(choices, seed=seed)


# A pruner judges a trial at each step it reports: the epochs of a single-fold trial, or with --folds K the
# folds (step = fold index, value = the fold's final objective; see bench.search.optuna_backend).


@PRUNERS.register("median", "stop a trial below the median of earlier trials at the same epoch (or fold)")
def median(max_epochs: int = 1):
    import optuna

    # No trial is judged before a third of its epochs: a lesion Dice after one or two epochs is noise
    # (a ct-lung search with warm-up 1 pruned 5 of 8 trials after 1-2 of 10 epochs).
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=max(1, max_epochs // 3))


@PRUNERS.register("hyperband", "successive halving over epochs in several brackets (reduction factor 3)")
def hyperband(max_epochs: int = 1):
    import optuna

    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(max_epochs, 1), reduction_factor=3)


# The exact one-sided Wilcoxon signed-rank p-value of n pairs is at least 2**-n: below Optuna's p_threshold
# 0.1 from n = 4 on. The pruner is never asked after the last fold, so it can act only with 5 or more folds.
WILCOXON_MIN_FOLDS = 5


@PRUNERS.register("wilcoxon", "with --folds K >= 5: stop a trial whose fold scores are worse than the best "
                  "trial's on the same folds (Wilcoxon signed-rank, p < 0.1)", steps="folds",
                  min_folds=WILCOXON_MIN_FOLDS)
def wilcoxon(max_epochs: int = 1):
    import optuna

    # Optuna's defaults; it pairs the steps (folds) of this trial with the best trial's.
    return optuna.pruners.WilcoxonPruner(p_threshold=0.1, n_startup_steps=2)


@PRUNERS.register("none", "never stop a trial early")
def no_pruner(max_epochs: int = 1):
    import optuna

    return optuna.pruners.NopPruner()


def _tune_budget(max_t: int) -> int:
    # One Tune iteration per classifier epoch plus the final evaluation's report: with max_t = epochs the
    # scheduler would stop every trial at its last epoch, before evaluation, and nothing would COMPLETE.
    return max(int(max_t), 1) + 1


@SCHEDULERS.register("asha", "asynchronous successive halving (grace 1 epoch, reduction factor 2)")
def asha(metric: str = "", mode: str = "max", max_t: int = 1):
    from ray.tune.schedulers import AsyncHyperBandScheduler

    return AsyncHyperBandScheduler(metric=metric, mode=mode, max_t=_tune_budget(max_t), grace_period=1,
                                   reduction_factor=2)


@SCHEDULERS.register("hyperband", "synchronous HyperBand (reduction factor 2)")
def ray_hyperband(metric: str = "", mode: str = "max", max_t: int = 1):
    from ray.tune.schedulers import HyperBandScheduler

    return HyperBandScheduler(metric=metric, mode=mode, max_t=_tune_budget(max_t), reduction_factor=2)


@SCHEDULERS.register("none", "first in, first out: every trial runs to its end")
def fifo(metric: str = "", mode: str = "max", max_t: int = 1):
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


def make_sampler(name: str, seed: int, space: SearchSpace | None = None) -> Any:
    return SAMPLERS.create(name, seed=seed, space=space)


def make_pruner(name: str, max_epochs: int) -> Any:
    """The pruner ``name`` for trials reporting ``max_epochs`` steps (epochs, or K with --folds K)."""
    return PRUNERS.create(name, max_epochs=max_epochs)


def make_scheduler(name: str, metric: str, mode: str, max_t: int) -> Any:
    """ASHA, HyperBand or FIFO; ``max_t`` is the classifier epochs (one Tune iteration per report)."""
    return SCHEDULERS.create(name, metric=metric, mode=mode, max_t=max_t)
