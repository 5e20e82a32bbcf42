"""What a search is asked (:class:`SearchSettings`) and what it answers (:class:`SearchSummary`).

Their own module so that the driver and the backends (whose ``run(settings, on_trial) -> SearchSummary``
the driver calls) import them, not each other. ``bench.search.driver`` re-exports both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench import runtime


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
    repair_journal: bool = False  # move corrupt journal lines aside instead of refusing the journal
    space: str | None = None
    fold: int = 0
    folds: int = 1  # K > 1: a trial's objective is the mean over folds 0..K-1 (bench.trial cross-validation)
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
    # Multi-objective search: metric names, e.g. ("val_auroc", "n_weights"); empty = the task's objective.
    objectives: tuple[str, ...] = ()

    def runtime_policy(self) -> runtime.Runtime:
        """The runtime policy these settings ask for, on this process's device (raises ConfigError on conflicts)."""
        from bench import runtime

        return runtime.Runtime.choose(precision=self.precision, compile=self.compile,
                                      deterministic=self.deterministic)


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
