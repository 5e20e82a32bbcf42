"""The ct-lung task: networks, lung guidance, and whole smoke trials through run_trial."""

import json
import math

import numpy as np
import pytest
import torch

from bench.config import TrialConfig
from bench.errors import ConfigError, TrialPruned
from bench.tasks import TASKS
from bench.tasks.ct_lung import inspect, make_phantom
from bench.tasks.ct_lung_guidance import MODES, NEG_LOGIT, LungGuidance
from bench.tasks.ct_lung_nets import LOCAL_3D, build_seg_net, family_of
from bench.train import NullReporter, run_trial

SPEC = TASKS.get("ct-lung")


@pytest.mark.parametrize("name", sorted(LOCAL_3D))
def test_local_3d_nets_contract(name):
    torch.manual_seed(0)
    net = build_seg_net(name, 2, "3d", width=8)
    x = torch.randn(1, 2, 16, 32, 32)
    y = net(x)
    assert y.shape == (1, 1, 16, 32, 32) and torch.isfinite(y).all()
    y.mean().backward()


def test_2d_family_runs_slice_by_slice():
    net = build_seg_net("unet", 1, "2d").eval()
    with torch.no_grad():
        assert net(torch.randn(2, 1, 1, 32, 32)).shape == (2, 1, 1, 32, 32)
    assert family_of("unet") == "2d" and family_of("segresnet") == "3d"
    with pytest.raises(ConfigError, match="seg_arch"):
        family_of("vnet9000")
    with pytest.raises(ConfigError, match="family"):
        build_seg_net("dynunet", 1, "2d")


def test_lung_guidance_modes():
    lung = np.zeros((8, 10, 10), np.uint8)
    lung[2:5, 3:6, 3:6] = 1
    g = LungGuidance.from_config("cascade", {"dilate": 1, "margin": 1})
    assert g.channel and g.restrict and g.crop and g.in_channels == 2
    assert g.box(lung) == (slice(0, 7), slice(1, 8), slice(1, 8))
    assert g.region(lung).sum() > lung.sum()
    assert not LungGuidance.from_config("none", {}).restrict and set(MODES) == set(SPEC.extra["guidance"])
    assert NEG_LOGIT < -10
    with pytest.raises(ConfigError, match="guidance"):
        LungGuidance.from_config("soft_mask", {})
    with pytest.raises(ConfigError, match="mask"):
        LungGuidance.from_config("restrict_output", {"mask": "oracle"})


def smoke(**changes) -> TrialConfig:
    return TrialConfig(task="ct-lung", **{**SPEC.preset("smoke").config, **changes})


@pytest.fixture(scope="module")
def baseline():
    return run_trial(smoke())


@pytest.mark.parametrize("arch,guidance", [("attention_unet", "cascade"), ("monai_unet", "lung_crop"),
                                           ("unet", "lung_channel")])
def test_smoke_trials(arch, guidance):
    # mobilenet_v2: the lightest smp encoder that needs no extra package; keeps the 2D case quick.
    result = run_trial(smoke(seg_arch=arch, guidance=guidance, seg_loss="dice_ce", seg_encoder="mobilenet_v2",
                             augment=True))
    assert result.objective_name == "val_lesion_dice" and 0.0 <= result.objective <= 1.0
    assert result.config.split_hash and {"val_lung_dice", "test_fp_outside_lung_ml"} <= set(result.metrics)
    assert all(math.isfinite(v) for k, v in result.metrics.items() if "sensitivity" not in k)
    assert [h["stage"] for h in result.history][-1] == "lesion"


def test_restrict_output_to_true_lungs_predicts_nothing_outside(baseline):
    result = run_trial(smoke(guidance="restrict_output", guidance_params={"mask": "true", "dilate": 0}))
    assert result.metrics["val_fp_outside_lung_ml"] == 0.0 and result.metrics["test_fp_outside_lung_ml"] == 0.0
    assert baseline.metrics["val_fp_outside_lung_ml"] > 0.0  # unguided, the untrained net does


def test_same_config_same_result(baseline):
    assert run_trial(smoke()).metrics == baseline.metrics


class StopAtOnce(NullReporter):
    def report(self, objective, step):
        return True


def test_searcher_can_prune():
    with pytest.raises(TrialPruned):
        run_trial(smoke(), StopAtOnce())


def test_bad_task_params():
    with pytest.raises(ConfigError, match="task_params"):
        run_trial(smoke(task_params={"patchsize": 3}))


def test_make_phantom_inspect_and_train_on_a_folder(tmp_path):
    out = make_phantom(tmp_path / "luna", "mhd", cases=12, seed=3)
    report = inspect(out, "mhd")
    json.dumps(report)
    assert report["format"] == "luna16" and report["cases"] == 12 and report["spacing_mm"]["z"]["min"] == 5.0
    with pytest.raises(ConfigError, match="format"):
        make_phantom(tmp_path / "x", "png")
    msd = make_phantom(tmp_path / "msd", "nifti", cases=12, seed=3)
    result = run_trial(smoke(data=str(msd), data_format="msd"))
    assert 0.0 <= result.objective <= 1.0
