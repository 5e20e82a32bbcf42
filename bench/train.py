"""Generic training loops and the Reporter protocol that tasks compose into their trial pipelines.

Imports neither Optuna, Ray nor MLflow: they are Reporters. The trial boundary (``run_trial`` and the
tracked lifecycle around it) is :mod:`bench.trial`, one layer up, because it dispatches to the tasks.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from bench import runtime
from bench.config import TrialConfig
from bench.data.rows import Rows
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
    # what predicting with ``state_dicts`` needs besides the config (bench.model_file: models, classes or
    # labels, preprocessing); logged as model.json beside checkpoint.pt
    model: dict[str, Any] = field(default_factory=dict)


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


def _seed_worker(worker_id: int) -> None:
    """DataLoader workers: NumPy and ``random`` seeded from the worker's torch seed (itself drawn from the
    loader's seeded generator), so anything random in a worker is reproducible."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


@contextlib.contextmanager
def loading(rows: Rows, order: Iterable[Sequence[int]], *, seed: int = 0,
            policy: runtime.Runtime | None = None) -> Iterator[Iterator[dict[str, torch.Tensor]]]:
    """Batches ``rows[idx]`` for each ``idx`` of ``order``, in that order, as an iterator inside a ``with``.

    Rows in memory are indexed in the trial's process. Rows read from disk go through a torch ``DataLoader``
    whose sampler yields whole batches (``batch_size=None``): the policy's ``loader_workers`` processes read
    them ahead (prefetch), into pinned memory on a GPU machine. The batch order is drawn by the caller, so
    the batches are the same with or without workers, streamed or resident. Leaving the ``with`` block —
    finished, pruned or failed — shuts the workers down at once (not when the garbage collector gets to an
    iterator a traceback still references).
    """
    policy = policy or runtime.current()
    order = list(order)
    if not rows.streamed:
        yield (rows[idx] for idx in order)
        return
    workers = int(policy.loader_workers)
    gpu = policy.device == "cuda"
    loader = torch.utils.data.DataLoader(
        rows, sampler=order, batch_size=None, num_workers=workers, pin_memory=gpu and torch.cuda.is_available(),
        prefetch_factor=2 if workers else None, worker_init_fn=_seed_worker if workers else None,
        generator=torch.Generator().manual_seed(seed), persistent_workers=False)
    it = iter(loader)
    try:
        yield it
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)  # multi-process iterators only
        if shutdown is not None:
            shutdown()
        del it


def in_order(n: int, batch_size: int) -> list[torch.Tensor]:
    """Batches of ``n`` rows in their order (prediction, scoring)."""
    return list(batches(n, batch_size, None))


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
    tensors: Mapping[str, torch.Tensor] | Rows,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    optimiser: str,
    seed: int,
    on_epoch: Callable[[int, float], None],
    spatial_dims: int = 2,
) -> None:
    """Plain mini-batch training over aligned tensors or :class:`~bench.data.rows.Rows`; ``loss_fn(model, batch)``
    returns the loss.

    Rows read from disk are streamed through :func:`loading` (a DataLoader); tensors and in-memory rows are
    indexed where they lie. The batch order comes from one generator seeded with ``seed`` either way, so
    streamed and resident data train on the same batches. Runs under the active :mod:`bench.runtime` policy: autocast and GradScaler, channels_last for 2D
    models and 4-D image tensors, optional ``torch.compile``, data kept on the GPU when small. The epoch
    loss is accumulated on the device and read once per epoch (no per-step host sync); a non-finite epoch
    loss raises FloatingPointError. ``on_epoch(epoch, mean_loss)`` may raise TrialPruned to stop early.
    """
    policy = runtime.current()
    runtime.prepare_model(model, policy, spatial_dims).train()
    step = runtime.TrainStep(model, make_optimiser(optimiser, model.parameters(), lr), policy)
    rows = tensors if isinstance(tensors, Rows) else Rows(runtime.resident(tensors, policy))
    gen = torch.Generator().manual_seed(seed)
    n = len(rows)

    @contextlib.contextmanager
    def epoch_batches(epoch: int) -> Iterator[Iterator[Batch]]:
        # BatchNorm cannot train on a single sample; a lone last row is seen again next epoch
        order = [idx for idx in batches(n, batch_size, gen) if not (len(idx) == 1 and n > 1)]
        with loading(rows, order, seed=seed + epoch, policy=policy) as drawn:
            yield (_row_batch(drawn_batch, loss_fn, policy) for drawn_batch in drawn)

    train_epochs(model, step, epochs=epochs, epoch_batches=epoch_batches, count=n, on_epoch=on_epoch)


Batch = tuple[Callable[[Callable], torch.Tensor], int]
"""One training step's work: ``compute(net) -> loss`` for :class:`runtime.TrainStep`, and how many samples it
holds (the loss's weight in the epoch mean)."""


def _row_batch(drawn: Mapping[str, torch.Tensor], loss_fn: Callable, policy: runtime.Runtime) -> Batch:
    batch = {k: runtime.prepare_batch(v, policy) for k, v in drawn.items()}
    return (lambda net: loss_fn(net, batch)), len(next(iter(batch.values())))


def train_epochs(model: torch.nn.Module, step: runtime.TrainStep, *, epochs: int,
                 epoch_batches: Callable[[int], contextlib.AbstractContextManager[Iterable[Batch]]], count: int,
                 on_epoch: Callable[[int, float], None], accumulate: torch.dtype = torch.float32) -> None:
    """The one epoch loop every training goes through (:func:`fit` over rows, ct-lung's patches).

    Each epoch, ``epoch_batches(epoch)`` opens the epoch's batch source (a DataLoader over cached rows, or
    patches drawn from volumes; it closes, and frees what it holds, when the epoch ends); every batch is one
    ``step``. The epoch loss is the size-weighted sum of batch losses over ``count``, accumulated on the
    device in ``accumulate`` and read once per epoch (no per-step host sync). A non-finite epoch loss raises
    FloatingPointError; ``on_epoch(epoch, mean_loss)`` may raise TrialPruned to stop early.
    """
    dev = runtime.device(step.policy)
    for epoch in range(epochs):
        model.train()
        total = torch.zeros((), dtype=accumulate, device=dev)
        with epoch_batches(epoch) as drawn:
            for compute, size in drawn:
                total += step(compute).to(accumulate) * size
        epoch_loss = float(total) / max(count, 1)  # the one host sync of the epoch
        if not np.isfinite(epoch_loss):
            raise FloatingPointError(f"training loss became {epoch_loss} at epoch {epoch}")
        on_epoch(epoch, epoch_loss)


@torch.no_grad()
def predict_batch(model: torch.nn.Module, x: torch.Tensor, policy: runtime.Runtime | None = None) -> torch.Tensor:
    """Float32 outputs of ``model`` (in eval mode, on the policy's device) for one batch; stays on the device."""
    policy = policy or runtime.current()
    with runtime.autocast(policy):
        return model(runtime.prepare_batch(x, policy)).float()


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
