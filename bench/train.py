"""Generic training loops and the Reporter protocol that tasks compose into their trial pipelines.

Imports neither Optuna, Ray nor MLflow: they are Reporters. The trial boundary (``run_trial`` and the
tracked lifecycle around it) is :mod:`bench.trial`, one layer up, because it dispatches to the tasks.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from bench import runtime
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
    tags: dict[str, str] = field(default_factory=dict)  # run tags learnt while running (compile fallback)


def seed_everything(seed: int, policy: runtime.Runtime | None = None) -> None:
    """Seed Python, NumPy and torch and set the policy's kernel switches (deterministic: replays match bit
    for bit; otherwise cudnn may autotune)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    runtime.apply_backend_flags(policy)


def device() -> torch.device:
    """The active runtime policy's device (CUDA when there is one)."""
    return runtime.device()


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
    spatial_dims: int = 2,
) -> None:
    """Plain mini-batch training over aligned tensors; ``loss_fn(model, batch)`` returns the loss.

    Runs under the active :mod:`bench.runtime` policy: autocast and GradScaler, channels_last for 2D
    models and 4-D image tensors, optional ``torch.compile``, data kept on the GPU when small. The epoch
    loss is accumulated on the device and read once per epoch (no per-step host sync); a non-finite epoch
    loss raises FloatingPointError. ``on_epoch(epoch, mean_loss)`` may raise TrialPruned to stop early.
    """
    policy = runtime.current()
    dev = runtime.device(policy)
    runtime.prepare_model(model, policy, spatial_dims).train()
    step = runtime.TrainStep(model, make_optimiser(optimiser, model.parameters(), lr), policy)
    tensors = runtime.resident(tensors, policy)
    gen = torch.Generator().manual_seed(seed)
    first = next(iter(tensors.values()))
    n, data_device = len(first), first.device  # the device when resident: index there, copy nothing
    for epoch in range(epochs):
        model.train()
        total = torch.zeros((), device=dev)
        for idx in batches(n, batch_size, gen):
            if len(idx) == 1 and n > 1:
                continue  # BatchNorm cannot train on a single sample; it is seen again next epoch
            rows = idx.to(data_device, non_blocking=True)
            batch = {k: runtime.prepare_batch(v[rows], policy) for k, v in tensors.items()}
            total += step(lambda net, batch=batch: loss_fn(net, batch)) * len(idx)
        epoch_loss = float(total) / max(n, 1)  # the one host sync of the epoch
        if not np.isfinite(epoch_loss):
            raise FloatingPointError(f"training loss became {epoch_loss} at epoch {epoch}")
        on_epoch(epoch, epoch_loss)


@torch.no_grad()
def predict(model: torch.nn.Module, inputs: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Float32 outputs of ``model`` over ``inputs`` in batches, returned on the device ``inputs`` are on.

    Outputs stay on the compute device until all batches are done and move once (no per-batch sync).
    """
    policy = runtime.current()
    runtime.prepare_model(model, policy).eval()
    outs = []
    with runtime.autocast(policy):
        for idx in batches(len(inputs), batch_size, None):
            outs.append(model(runtime.prepare_batch(inputs[idx.to(inputs.device)], policy)).float())
    if not outs:
        return torch.empty(0)
    return torch.cat(outs).to(inputs.device).contiguous()


def stop_if_asked(reporter: Reporter, objective: float, step: int) -> None:
    if reporter.report(objective, step):
        raise TrialPruned(f"stopped by the searcher at step {step} (objective {objective:.4f})")
