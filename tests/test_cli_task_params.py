"""Task parameters on the command line come from what a task declares (TaskSpec.cli_params), never from a
task name in shared code: `--target/--guide` of the segmentation task reach its trials key by key."""

import argparse

import pytest

from bench.compare.plan import BaseConfig, template_config
from bench.errors import ConfigError
from bench.search.driver import base_config
from bench.tasks import TASKS
from bench.tasks.cli_params import add_task_params, task_param_overrides


def _parse(*argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--task")
    add_task_params(parser)
    return parser.parse_args(list(argv))


def test_every_declared_task_parameter_is_an_option_and_reaches_the_search_config():
    declared = {p for name in TASKS.names() for p in TASKS.get(name).cli_params}
    assert {"target", "guide"} <= declared
    args = _parse("--task", "segmentation", "--target", "tumour", "--guide", "liver")
    overrides = task_param_overrides(args)
    assert overrides == {"task_params": {"target": "tumour", "guide": "liver"}}
    from bench.search.driver import SearchSettings

    settings = SearchSettings(task="segmentation", preset="smoke", data="phantom", data_format="phantom",
                              overrides=overrides)
    params = base_config(settings).task_params
    preset = TASKS.get("segmentation").preset("smoke").config["task_params"]
    assert params["target"] == "tumour" and params["guide"] == "liver"
    assert all(params[k] == v for k, v in preset.items() if k not in ("target", "guide"))  # merged, not replaced


def test_a_task_parameter_another_task_declares_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="--target must be a task parameter of task ct-lung"):
        task_param_overrides(_parse("--task", "ct-lung", "--target", "tumour"))
    assert task_param_overrides(_parse("--task", "ct-lung")) == {}


def test_compare_template_takes_the_task_parameters_over_the_preset_and_base():
    preset = TASKS.get("segmentation").preset("smoke").config
    base = BaseConfig(values={"task_params": {"guide": "none"}}, source="test")
    config = template_config("segmentation", preset, base, "phantom", "phantom", {"guide": "organ"})
    assert config.task_params["guide"] == "organ"
    assert config.task_params["patch_budget"] == preset["task_params"]["patch_budget"]
