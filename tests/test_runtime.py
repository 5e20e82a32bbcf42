"""Runtime policy: the choice from (fake) machine capabilities, tags, activation, the training step under
bf16/compile on CPU, and how searches and replays carry it. No timing assertions."""

from __future__ import annotations

import pytest
import torch

from bench import runtime
from bench.errors import ConfigError
from bench.runtime import Capabilities, Runtime, TrainStep

CPU = Capabilities()
A100 = Capabilities(device="cuda", name="NVIDIA A100", bf16=True)
T4 = Capabilities(device="cuda", name="Tesla T4", bf16=False)


def test_cpu_policy_is_fp32_deterministic_without_extras():
    p = Runtime.choose(CPU)
    assert (p.device, p.precision, p.channels_last, p.compile) == ("cpu", "fp32", False, False)
    assert p.deterministic and not p.cudnn_benchmark and not p.resident_data and p.amp_dtype is None


def test_gpu_policy_uses_bf16_where_supported_else_fp16():
    p = Runtime.choose(A100)
    assert (p.precision, p.amp_dtype, p.channels_last, p.cudnn_benchmark, p.resident_data) == (
        "bf16", torch.bfloat16, True, True, True)
    assert not p.deterministic and p.device_name == "NVIDIA A100"
    assert Runtime.choose(T4).precision == "fp16"
    with pytest.raises(ConfigError, match="bf16 needs a GPU that supports bfloat16, but Tesla T4"):
        Runtime.choose(T4, precision="bf16")


def test_deterministic_mode_keeps_fp32_and_no_benchmark_on_gpu():
    p = Runtime.choose(A100, deterministic=True)
    assert (p.precision, p.deterministic, p.cudnn_benchmark, p.compile) == ("fp32", True, False, False)
    assert Runtime.deterministic_for(A100) == p
    with pytest.raises(ConfigError, match="--deterministic runs fp32 without torch.compile, but got --precision bf16"):
        Runtime.choose(A100, deterministic=True, precision="bf16")
    with pytest.raises(ConfigError, match="and --compile"):
        Runtime.choose(CPU, deterministic=True, compile=True)


def test_explicit_requests_on_cpu():
    bf16 = Runtime.choose(CPU, precision="bf16")
    assert bf16.precision == "bf16" and not bf16.deterministic  # auto determinism yields to the request
    assert Runtime.choose(CPU, compile=True).compile and Runtime.choose(CPU, channels_last=True).channels_last
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        Runtime.choose(CPU, precision="fp16")
    with pytest.raises(ConfigError, match="--precision must be one of"):
        Runtime.choose(CPU, precision="fp8")


def test_tags_round_trip_and_runs_older_than_the_policy():
    p = Runtime.choose(A100)
    tags = p.tags()
    assert tags["bench.runtime.precision"] == "bf16" and tags["bench.runtime.channels_last"] == "True"
    assert set(tags) == {"bench.runtime." + k for k in ("device", "precision", "channels_last", "compile",
                                                        "deterministic", "cudnn_benchmark", "resident_data",
                                                        "data_placement", "loader_workers")}
    back = Runtime.from_tags(tags)
    assert back is not None and back.tags() == tags
    assert Runtime.from_tags({"device": "cpu"}) is None
    # before the policy every trial ran fp32 with deterministic kernels
    assert Runtime.recorded({"device": "cpu"}) == Runtime()
    legacy = Runtime.recorded({"device": "cuda:NVIDIA A100"})
    assert (legacy.device, legacy.precision, legacy.deterministic) == ("cuda", "fp32", True)


def test_recorded_policy_on_another_machine_drops_what_it_cannot_do():
    on_cpu = Runtime.choose(A100).for_machine(CPU)
    assert (on_cpu.device, on_cpu.precision, on_cpu.channels_last) == ("cpu", "bf16", True)  # CPU autocasts bf16
    assert not on_cpu.cudnn_benchmark and not on_cpu.resident_data
    assert Runtime.choose(T4).for_machine(CPU).precision == "fp32"  # no fp16 GradScaler on CPU
    assert Runtime.choose(A100).for_machine(T4).precision == "fp32"


def test_using_activates_and_restores():
    before = runtime.current()
    wanted = Runtime.choose(CPU, precision="bf16")
    with runtime.using(wanted):
        assert runtime.current() == wanted
        from bench.tracking import environment_tags

        assert environment_tags()["bench.runtime.precision"] == "bf16"
    assert runtime.current() == before


def test_bf16_autocast_trains_and_predicts_an_smp_unet_on_cpu():
    from bench.losses import SEG_LOSSES
    from bench.models import SEG_MODELS
    from bench.train import fit, predict

    torch.manual_seed(0)
    model = SEG_MODELS.create("unet", in_channels=1, classes=1, encoder="resnet18")
    x = torch.randn(4, 1, 32, 32)
    y = (x > 0.5).float()
    loss_fn = SEG_LOSSES.create("dice")
    losses = []
    with runtime.using(Runtime.choose(CPU, precision="bf16", channels_last=True)):
        fit(model, lambda m, b: loss_fn(m(b["image"]), b["heart"]), {"image": x, "heart": y}, epochs=1,
            batch_size=2, lr=1e-3, optimiser="adam", seed=0, on_epoch=lambda e, v: losses.append(v))
        out = predict(model, x)
    assert len(losses) == 1 and losses[0] == losses[0]  # finite, not NaN
    assert out.dtype == torch.float32 and out.shape == (4, 1, 32, 32) and out.device == x.device
    assert torch.isfinite(out).all()


def test_train_step_returns_a_device_loss_and_scales_nothing_in_fp32():
    model = torch.nn.Linear(3, 1)
    step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.1), Runtime())
    loss = step(lambda net: net(torch.ones(2, 3)).square().mean())
    assert step.scaler is None and loss.dtype == torch.float32 and not loss.requires_grad


def test_compile_failure_falls_back_to_eager_and_is_noted(caplog):
    runtime.take_notes()
    policy = Runtime.choose(CPU, compile=True)

    def broken_compiled(module):
        def call(*args):
            raise RuntimeError("no C++ compiler in this test")
        return call

    model = torch.nn.Linear(3, 1)
    step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.1), policy, compiler=broken_compiled)
    with caplog.at_level("WARNING", logger="bench.runtime"):
        first = step(lambda net: net(torch.ones(2, 3)).square().mean())
        second = step(lambda net: net(torch.ones(2, 3)).square().mean())
    assert step.net is model and bool(second < first)  # trained eagerly after the failure
    assert "torch.compile failed" in caplog.text
    notes = runtime.take_notes()
    assert "no C++ compiler" in notes["bench.runtime.compile_fallback"]

    def refuses(module):
        raise RuntimeError("unsupported platform")

    step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.1), policy, compiler=refuses)
    assert step.net is model and "unsupported platform" in runtime.take_notes()["bench.runtime.compile_fallback"]


def test_a_nan_loss_still_fails_with_the_reason():
    from bench.train import fit

    model = torch.nn.Linear(2, 1)
    with pytest.raises(FloatingPointError, match="training loss became nan at epoch 0"):
        fit(model, lambda m, b: m(b["x"]).sum() * float("nan"), {"x": torch.ones(4, 2)}, epochs=1, batch_size=2,
            lr=0.1, optimiser="sgd", seed=0, on_epoch=lambda e, v: None)


def test_search_settings_carry_the_request_and_conflicts_fail_early(workdir):
    from bench.cli import build_parser
    from bench.search.optuna_backend import SearchSettings, run_search

    assert SearchSettings(task="xray-heart", precision="bf16").runtime_policy().precision == "bf16"
    assert SearchSettings(task="xray-heart").runtime_policy() == Runtime.choose()
    with pytest.raises(ConfigError, match="--deterministic runs fp32"):
        run_search(SearchSettings(task="xray-heart", preset="smoke", trials=1, precision="bf16", deterministic=True))
    assert not (workdir / "mlflow.db").exists() and not (workdir / "optuna.journal").exists()  # nothing created
    args = build_parser().parse_args(["search", "--task", "xray-heart", "--precision", "bf16", "--compile"])
    assert (args.precision, args.compile, args.deterministic) == ("bf16", True, False)
    assert build_parser().parse_args(["replay", "--task", "xray-heart", "--deterministic"]).deterministic
