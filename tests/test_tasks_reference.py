"""`bench tasks` shows each task's reference configuration per preset, read from search_spaces/reference/."""

import json

import yaml

from bench.cli import main
from bench.cli.tasks import reference_summary
from bench.compare.plan import reference_path


def test_tasks_lists_the_reference_of_every_preset_in_one_line(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    cpu = yaml.safe_load(reference_path("xray-heart", "cpu").read_text())["config"]
    assert f"    cpu    {reference_summary(cpu)}" in out
    assert "fpn/resnet18, dice, guidance none, resnet10, adam lr 3e-3, cls_lr 1e-3" in out
    assert "monai_unet, dice_ce, guidance none, adam lr 3e-3" in out


def test_tasks_reference_and_json_give_every_field_of_the_files(capsys):
    assert main(["tasks", "--reference"]) == 0
    out = capsys.readouterr().out
    assert "search_spaces/reference/xray-heart-gpu.yaml (fpn/resnet18 segmenter" in out
    assert "      task_params.cls_lr: 1e-3" in out
    assert main(["tasks", "--json"]) == 0
    tasks = {t["name"]: t for t in json.loads(capsys.readouterr().out)}
    for name, task in tasks.items():
        assert set(task["reference"]) == set(task["presets"])  # every preset of both tasks has a reference
        for preset, ref in task["reference"].items():
            data = yaml.safe_load(reference_path(name, preset).read_text())
            assert ref["config"] == data["config"]
            assert ref["file"].endswith(f"{name}-{preset}.yaml")
    assert tasks["xray-heart"]["presets"]["cpu"]["trials"] == 8
    assert tasks["ct-lung"]["default_preset"] == "cpu"
    assert tasks["xray-heart"]["task_params"]["classifier"] == "resnet10"  # the task's own fields, declared


def test_reference_summary_orders_the_known_fields_and_keeps_the_rest():
    summary = reference_summary({"lr": 0.0005, "task_params": {"epochs": 3}, "seg_arch": "unet",
                                 "seg_loss": "dice"})
    assert summary == "unet, dice, lr 5e-4, epochs 3"  # the task's own parameters read like fields
