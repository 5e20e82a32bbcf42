"""A task's own configuration fields: declared in its spec (types, defaults), carried in
``TrialConfig.task_params``; the X-ray-only fields that once sat on the shared record load from old configs
with their old config hashes."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from bench.config import MOVED_TO_TASK_PARAMS, TrialConfig
from bench.errors import ConfigError
from bench.leaderboard import _where_mask, own_params_by_name
from bench.search.space import parse_space
from bench.tasks import TASKS

XRAY, CT = TASKS.get("xray-heart"), TASKS.get("ct-lung")

# A config.yaml as bench logged it before the move (written by the code of commit 0ddaa8b).
OLD_XRAY_YAML = """augment: false
batch_size: 16
classes: []
classifier: resnet18
cls_epochs: 2
cls_lr: 0.003
data: phantom
data_format: phantom
fold: 0
guidance: none
guidance_params: {}
image_size: 32
lr: 0.001
max_train_cases: 0
optimiser: adam
reader_options: {}
seed: 1
seg_arch: unet
seg_encoder: resnet18
seg_epochs: 4
seg_loss: dice
seg_loss_params: {}
split_hash: ''
task: xray-heart
task_params: {}
"""


def test_an_old_xray_config_loads_into_task_params_with_its_old_hash():
    old = TrialConfig.from_yaml(OLD_XRAY_YAML)
    assert old.task_params == {"classifier": "resnet18", "cls_epochs": 2, "cls_lr": 0.003, "image_size": 32}
    assert old.config_hash() == "baf7cc72d9c5e4fc"  # what the old code computed for this config
    assert XRAY.param(old, "classifier") == "resnet18" and XRAY.param(old, "cls_epochs") == 2
    # the same config written the new way, and from the flat (MLflow / search space) spellings of both
    new = TrialConfig(task="xray-heart", seed=1, task_params={"image_size": 32, "classifier": "resnet18",
                                                               "cls_epochs": 2, "cls_lr": 0.003})
    assert new == old == TrialConfig.from_flat(new.flat()) == TrialConfig.from_yaml(new.to_yaml())
    assert TrialConfig.from_flat({"task": "xray-heart", "seed": 1, "image_size": 32, "classifier": "resnet18",
                                  "cls_epochs": 2, "cls_lr": 0.003}) == old
    # given as the default or left out: one hash, the old one
    assert TrialConfig(task="xray-heart", task_params={"cls_lr": 1e-3}).config_hash() == \
        TrialConfig(task="xray-heart").config_hash()


def test_an_old_ct_config_drops_the_xray_fields_it_never_read_and_keeps_its_hash():
    old = TrialConfig.from_dict({"task": "ct-lung", "seg_epochs": 3, "task_params": {"patch": [16, 32, 32]},
                                 **MOVED_TO_TASK_PARAMS})
    assert old.task_params == {"patch": [16, 32, 32]}
    assert old.config_hash() == "9cd93de760a1b9be"  # the old code's hash of this ct-lung config
    with pytest.raises(ConfigError, match="ct-lung task_params must be among .*'cls_epochs'"):
        CT.param(TrialConfig.from_dict({"task": "ct-lung", "cls_epochs": 9}), "patch")


def test_a_parameter_given_twice_differently_is_one_error():
    with pytest.raises(ConfigError, match="give it once, as task_params.cls_lr"):
        TrialConfig.from_dict({"task": "xray-heart", "cls_lr": 0.1, "task_params": {"cls_lr": 0.2}})


def test_the_shared_record_has_no_task_only_fields_and_no_parameter_shadows_a_field():
    fields = {f.name for f in dataclasses.fields(TrialConfig)}
    assert not fields & set(MOVED_TO_TASK_PARAMS)
    for name in TASKS.names():
        assert not fields & set(TASKS.get(name).params), name
    # the moved fields are the X-ray task's, with the defaults they had, so old configs mean what they meant
    assert {k: XRAY.params[k] for k in MOVED_TO_TASK_PARAMS} == MOVED_TO_TASK_PARAMS


def test_parameters_are_checked_against_the_declared_types():
    assert XRAY.param(TrialConfig(task="xray-heart", task_params={"cls_lr": 1}), "cls_lr") == 1.0
    assert XRAY.param(TrialConfig(task="xray-heart", task_params={"cls_epochs": 3.0}), "cls_epochs") == 3
    with pytest.raises(ConfigError, match=r"xray-heart task_params.cls_epochs must be int .* got 'many'"):
        XRAY.param(TrialConfig(task="xray-heart", task_params={"cls_epochs": "many"}), "cls_lr")
    with pytest.raises(ConfigError, match="must be int"):
        XRAY.param(TrialConfig(task="xray-heart", task_params={"image_size": True}), "image_size")
    with pytest.raises(ConfigError, match=r"'clasifier' \(did you mean classifier\?\)"):
        XRAY.params_of(TrialConfig(task="xray-heart", task_params={"clasifier": "resnet10"}))
    with pytest.raises(ConfigError, match="task_params.patch must be list"):
        CT.param(TrialConfig(task="ct-lung", task_params={"patch": 16}), "patch")


def test_layers_merge_key_by_key_and_the_config_holds_every_parameter():
    preset = XRAY.preset("cpu").config
    config = XRAY.config(preset, {"classifier": "resnet18"}, {"task_params": {"cls_lr": 0.01}}, seed=2)
    assert config.task_params == {**XRAY.params, "image_size": 64, "cls_epochs": 5, "classifier": "resnet18",
                                  "cls_lr": 0.01}
    assert config.seed == 2 and config.seg_epochs == preset["seg_epochs"]
    ct = CT.config(CT.preset("smoke").config, {"image_size": 64, "cls_lr": 1e-3})  # old defaults: dropped
    assert set(ct.task_params) == set(CT.params)
    with pytest.raises(ConfigError, match="ct-lung task_params must be among"):
        CT.params_of(CT.config(CT.preset("smoke").config, {"cls_epochs": 2}))


def test_reported_epochs_come_from_the_task():
    xray = TrialConfig(task="xray-heart", seg_epochs=1, task_params={"cls_epochs": 6})
    assert XRAY.reported_epochs(xray) == 6 and XRAY.reported_epochs(xray.replace(seg_epochs=9)) == 9
    assert CT.reported_epochs(TrialConfig(task="ct-lung", seg_epochs=2)) == 2


def test_search_spaces_name_task_parameters_with_or_without_their_prefix():
    space = parse_space({"params": {"cls_lr": {"type": "float", "low": 1e-4, "high": 1e-2},
                                    "task_params.classifier": {"type": "categorical", "choices": ["resnet10"],
                                                               "when": {"cls_lr": [0.1]}}}},
                        task="xray-heart")
    assert space.names == ["task_params.cls_lr", "task_params.classifier"]
    assert space.params[1].when == (("task_params.cls_lr", (0.1,)),)
    with pytest.raises(ConfigError, match="registered classifiers"):
        parse_space({"params": {"classifier": {"type": "categorical", "choices": ["resnet1000"]}}}, task="xray-heart")
    with pytest.raises(ConfigError, match="one of ct-lung's task parameters .* Did you mean patch"):
        parse_space({"params": {"task_params.pach": {"type": "categorical", "choices": [1]}}}, task="ct-lung")


def test_the_leaderboard_shows_one_column_per_parameter_for_old_and_new_runs():
    runs = pd.DataFrame({"params.classifier": ["resnet18", None], "params.task_params.classifier": [None, "resnet10"],
                         "params.task_params.cls_lr": [None, "0.01"], "params.seed": ["0", "0"]})
    merged = own_params_by_name(runs)
    assert sorted(merged.columns) == ["params.classifier", "params.cls_lr", "params.seed"]
    assert merged["params.classifier"].tolist() == ["resnet18", "resnet10"]
    table = pd.DataFrame({"run": ["a", "b"]})
    assert _where_mask(table, merged, ["task_params.classifier=resnet10"]).tolist() == [False, True]


def test_numeric_parameters_keep_their_bounds():
    for given, message in (({"cls_lr": 0.0}, "cls_lr must be > 0"), ({"image_size": 0}, "image_size must be >= 1"),
                           ({"cls_epochs": -1}, "cls_epochs must be >= 0")):
        with pytest.raises(ConfigError, match=message):
            XRAY.params_of(TrialConfig(task="xray-heart", task_params=given))


def test_a_base_from_an_old_run_keeps_the_run_s_values_not_the_preset_s():
    from bench.compare.plan import from_config, template_config

    old = TrialConfig.from_yaml(OLD_XRAY_YAML.replace("image_size: 32", "image_size: 64")
                                .replace("cls_epochs: 2", "cls_epochs: 4"))  # both at their old defaults
    assert "image_size" not in old.task_params
    template = template_config("xray-heart", XRAY.preset("smoke").config, from_config(old, "run"), "phantom", "phantom")
    assert XRAY.param(template, "image_size") == 64 and XRAY.param(template, "cls_epochs") == 4  # not 32 / 2
