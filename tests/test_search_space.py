import optuna
import pytest

from bench.errors import ConfigError
from bench.search.space import load_space, parse_space
from bench.tasks import SEARCH_SPACES_DIR


def test_conditional_parameter_sampled_only_when_active():
    space = parse_space({"params": {
        "guidance": {"type": "categorical", "choices": ["none", "soft_mask"]},
        "guidance_params.floor": {"type": "float", "low": 0.0, "high": 0.5, "when": {"guidance": ["soft_mask"]}},
        "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    }})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = []
    for _ in range(20):
        trial = study.ask()
        values = space(trial)
        seen.append(values)
        study.tell(trial, 0.0)
        assert ("guidance_params.floor" in values) == (values["guidance"] == "soft_mask")
        assert 1e-4 <= values["lr"] <= 1e-2
    assert {v["guidance"] for v in seen} == {"none", "soft_mask"}


@pytest.mark.parametrize("params, message", [
    ({"seg_archh": {"type": "categorical", "choices": ["unet"]}}, "Did you mean seg_arch"),
    ({"seg_arch": {"type": "categorical", "choices": ["unett"]}}, "Did you mean unet"),
    ({"lr": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}, "0 < low < high"),
    ({"lr": {"type": "double", "low": 0.1, "high": 1.0}}, "must have type"),
    ({"guidance_params.floor": {"type": "float", "low": 0, "high": 1, "when": {"guidance": ["soft_mask"]}}},
     "declared above"),
])
def test_invalid_spaces_give_clear_errors(params, message):
    with pytest.raises(ConfigError, match=message):
        parse_space({"params": params}, source="space.yaml")


def test_shipped_spaces_load():
    for path in sorted(SEARCH_SPACES_DIR.glob("*.yaml")):
        assert load_space(path).params, path
