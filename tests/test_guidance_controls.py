"""Guidance acts on the classifier only: in a comparison of guidance strategies every arm must get the very
same heart segmenter, or the comparison confounds the strategy with a different segmentation."""

from __future__ import annotations

import functools

import pytest

from bench.config import TrialConfig
from bench.tasks import TASKS
from bench.train import NullReporter
from bench.trial import run_trial


class SegmentationLog(NullReporter):
    def __init__(self):
        self.seg_dice = []

    def log(self, metrics, step):
        if "seg_val_heart_dice" in metrics:
            self.seg_dice.append(metrics["seg_val_heart_dice"])


@functools.cache
def _segmenter_curve(guidance: str) -> tuple[float, ...]:
    # fpn's decoder has dropout, which draws from torch's global stream during segmentation training:
    # a classifier built before it with more channels or an extra head used to shift that stream
    preset = TASKS.get("xray-heart").preset("smoke").config
    config = TrialConfig(task="xray-heart", seg_arch="fpn", seg_encoder="resnet18", seg_loss="dice", guidance=guidance,
                         **{**preset, "seg_epochs": 2, "task_params": {**preset["task_params"], "cls_epochs": 1}})
    log = SegmentationLog()
    run_trial(config, log)
    return tuple(log.seg_dice)


@pytest.mark.parametrize("guidance", ["channel", "aux_seg"])
def test_every_guidance_arm_trains_the_same_segmenter(workdir, guidance):
    assert _segmenter_curve(guidance) == _segmenter_curve("none")
