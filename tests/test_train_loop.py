"""One epoch loop (issue 24, Part 1.2): fit over rows and ct-lung's patch training both run through
``bench.train.train_epochs``, whose batch source is closed however an epoch ends."""

import contextlib

import numpy as np
import pytest
import torch

from bench import runtime, train
from bench.errors import TrialPruned
from bench.tasks.seg_engine import training
from bench.tasks.seg_engine.guided import make_guidance


def _counting(monkeypatch):
    calls = []
    real = train.train_epochs

    def counted(*args, **kwargs):
        calls.append(kwargs["count"])
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "train_epochs", counted)
    monkeypatch.setattr(training, "train_epochs", counted)
    return calls


def test_fit_and_patch_training_go_through_the_one_loop(monkeypatch):
    calls = _counting(monkeypatch)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    x, y = torch.randn(10, 3), torch.randn(10, 1)
    losses = []
    train.fit(model, lambda m, b: torch.nn.functional.mse_loss(m(b["x"]), b["y"]), {"x": x, "y": y}, epochs=2,
              batch_size=4, lr=0.1, optimiser="adam", seed=0, on_epoch=lambda e, v: losses.append(v), spatial_dims=1)
    assert calls == [10] and len(losses) == 2 and losses[1] < losses[0]

    rng = np.random.default_rng(0)
    cases = [{"image": rng.random((8, 16, 16), np.float32), "lesion": (rng.random((8, 16, 16)) > 0.9).astype(np.uint8)}
             for _ in range(2)]
    vols = training.make_volumes(cases, "lesion", make_guidance("none", {}), None)
    net = torch.nn.Conv3d(1, 1, 3, padding=1)
    training.train_net(net, vols, lambda p, t: torch.nn.functional.binary_cross_entropy_with_logits(p, t.float()),
                       patch=(4, 8, 8), samples=3, pos_fraction=0.5, epochs=1, batch_size=2, lr=1e-2,
                       optimiser="adam", seed=0, augment=True, on_epoch=lambda e, v: losses.append(v))
    assert calls == [10, 6] and np.isfinite(losses[-1])


@pytest.mark.parametrize("ending", ["pruned", "failed", "finished"])
def test_the_batch_source_is_closed_however_the_epoch_ends(ending):
    opened, closed = [], []

    @contextlib.contextmanager
    def epoch_batches(epoch):
        opened.append(epoch)
        try:
            yield iter([((lambda m: m(torch.ones(2, 1)).sum()), 2)])
        finally:
            closed.append(epoch)

    def on_epoch(epoch, value):
        if ending == "pruned":
            raise TrialPruned("asked")

    model = torch.nn.Linear(1, 1)
    step = runtime.TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.1), runtime.Runtime())
    if ending == "failed":
        with torch.no_grad():
            model.weight.fill_(float("nan"))
    raised = {"pruned": TrialPruned, "failed": FloatingPointError, "finished": None}[ending]
    with pytest.raises(raised) if raised else contextlib.nullcontext():
        train.train_epochs(model, step, epochs=2, epoch_batches=epoch_batches, count=2, on_epoch=on_epoch)
    assert opened == closed == ([0] if raised else [0, 1])
