"""One trial: build → fit (report each epoch, may be stopped) → evaluate.

``run_trial(config, reporter)`` is the only boundary searchers and trackers see. It imports neither
Optuna, Ray nor MLflow: they are Reporters. Tasks compose the generic loops below into their pipeline.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from bench.config import TrialConfig
from bench.errors import TrialPruned


class Reporter(Protocol):
    """Receives a trial's progress; returning True from ``report`` asks the trial to stop (prune)."""

    def log(self, metrics: dict[str, float], step: int) -> None: ...

    def report(self, objective: float, step: int) -> bool: ...


class NullReporter:
    def log(self, metrics: dict[str, float], step: int) -> None:
        pass

    def report(self, objective: float, step: int) -> bool:
        return False


class MultiReporter:
    """Fans progress out to several reporters; the trial stops if any of them asks."""

    def __init__(self, *reporters: Reporter):
        self.reporters = [r for r in reporters if r is not None]

    def log(self, metrics: dict[str, float], step: int) -> None:
        for r in self.reporters:
            r.log(metrics, step)

    def report(self, objective: float, step: int) -> bool:
        stop = False
        for r in self.reporters:
            stop = r.report(objective, step) or stop
        return stop


@dataclass
class TrialResult:
    config: TrialConfig
    objective_name: str
    objective: float
    metrics: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    state_dicts: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    previews: dict[str, bytes] = field(default_factory=dict)  # artifact name -> PNG bytes (e.g. overlay.png)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch and force deterministic kernels, so a replay matches bit for bit."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def batches(n: int, batch_size: int, generator: torch.Generator | None) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def make_optimiser(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True)
    from bench.errors import ConfigError

    raise ConfigError(f"optimiser must be one of adam, adamw, sgd, but got '{name}'.")


def fit(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor],
    tensors: dict[str, torch.Tensor],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    optimiser: str,
    seed: int,
    on_epoch: Callable[[int, float], None],
) -> None:
    """Plain mini-batch training over aligned tensors; ``loss_fn(model, batch)`` returns the loss.

    ``on_epoch(epoch, mean_loss)`` may raise TrialPruned to stop early.
    """
    dev = device()
    model.to(dev).train()
    opt = make_optimiser(optimiser, model.parameters(), lr)
    gen = torch.Generator().manual_seed(seed)
    n = len(next(iter(tensors.values())))
    for epoch in range(epochs):
        model.train()
        total = torch.zeros((), device=dev)
        for idx in batches(n, batch_size, gen):
            if len(idx) == 1 and n > 1:
                continue  # BatchNorm cannot train on a single sample; it is seen again next epoch
            batch = {k: v[idx].to(dev) for k, v in tensors.items()}
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model, batch)
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)
        epoch_loss = float(total) / max(n, 1)
        if not np.isfinite(epoch_loss):
            raise FloatingPointError(f"training loss became {epoch_loss} at epoch {epoch}")
        on_epoch(epoch, epoch_loss)


@torch.no_grad()
def predict(model: torch.nn.Module, inputs: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    dev = device()
    model.to(dev).eval()
    outs = [model(inputs[idx].to(dev)).float().cpu() for idx in batches(len(inputs), batch_size, None)]
    return torch.cat(outs) if outs else torch.empty(0)


def stop_if_asked(reporter: Reporter, objective: float, step: int) -> None:
    if reporter.report(objective, step):
        raise TrialPruned(f"stopped by the searcher at step {step} (objective {objective:.4f})")


def run_trial(config: TrialConfig, reporter: Reporter | None = None) -> TrialResult:
    """Run one trial of ``config.task`` and return its validation objective, metrics and weights.

    Raises TrialPruned when the reporter asks to stop; any other exception is a failed trial.
    """
    from bench.tasks import TASKS

    task = TASKS.get(config.task)
    seed_everything(config.seed)
    return task.run(config, reporter or NullReporter())
