"""The ct-lung task: networks, lung guidance, and whole smoke trials through run_trial."""

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.cases import CASE_FILE, load_cases
from bench.config import TrialConfig
from bench.errors import ConfigError, TrialPruned
from bench.guidance import LESION_GUIDANCE
from bench.tasks import TASKS
from bench.tasks.ct_lung.data import inspect, make_phantom
from bench.tasks.ct_lung.spec import LESION_METRICS, SMOKE_PARAMS
from bench.tasks.seg_engine.guided import make_guidance
from bench.tasks.seg_engine.nets import build_seg_net, family_of
from bench.tasks.seg_engine.training import infer, make_volumes, predictions
from bench.train import NullReporter
from bench.trial import run_trial

SPEC = TASKS.get("ct-lung")


@pytest.mark.parametrize("name", ["monai_unet", "basic_unet", "segresnet", "attention_unet", "dynunet", "unetr"])
def test_shared_3d_nets_contract(name):
    torch.manual_seed(0)
    net = build_seg_net(name, 2, "3d", width=8, patch=(16, 32, 32))  # segresnet: GroupNorm needs >= 8
    x = torch.randn(1, 2, 16, 32, 32)  # not a cube: UNETR's position embedding follows the patch
    y = net(x)
    assert y.shape == (1, 1, 16, 32, 32) and torch.isfinite(y).all()
    y.mean().backward()


def test_every_gpu_space_network_builds_for_the_gpu_patch():
    from bench.search.space import load_space

    preset = SPEC.preset("gpu")
    params = preset.config["task_params"]
    choices = next(p.choices for p in load_space(SPEC.space_path("gpu")).params if p.name == "seg_arch")
    assert {"basic_unet", "dynunet", "unetr", "segresnet", "attention_unet", "monai_unet", "unet"} <= set(choices)
    for name in choices:
        family = family_of(name)
        patch = tuple(params["patch"]) if family == "3d" else (1, params["patch_2d"], params["patch_2d"])
        net = build_seg_net(name, 1, family, "resnet18", params["width"], patch=patch).eval()
        with torch.no_grad():
            assert net(torch.zeros(1, 1, *patch)).shape == (1, 1, *patch), name


def test_2d_family_runs_slice_by_slice():
    net = build_seg_net("unet", 1, "2d").eval()
    with torch.no_grad():
        assert net(torch.randn(2, 1, 1, 32, 32)).shape == (2, 1, 1, 32, 32)
    assert family_of("unet") == "2d" and family_of("segresnet") == "3d"
    with pytest.raises(ConfigError, match="seg_arch"):
        family_of("vnet9000")
    with pytest.raises(ConfigError, match="family"):
        build_seg_net("unet", 1, "3d")  # smp networks are 2D only
    assert family_of("dynunet", "2d") == "2d"  # a MONAI entry may run 2D, slice by slice
    with torch.no_grad():
        assert build_seg_net("dynunet", 1, "2d", width=4).eval()(torch.randn(1, 1, 1, 32, 32)).shape == (1, 1, 1, 32, 32)


def test_spec_metrics_are_the_ones_the_lesion_metrics_report():
    from bench import metrics_seg3d

    assert SPEC.metrics == LESION_METRICS == metrics_seg3d.LESION_METRICS


def test_guidance_comes_from_lesion_guidance():
    assert SPEC.guidance is LESION_GUIDANCE and set(SPEC.guidance.names()) >= {
        "none", "restrict_output", "lung_channel", "lung_crop", "cascade"}
    assert make_guidance("cascade", {"dilate": 1, "margin": 0.1}).train_mask == "predicted"
    with pytest.raises(ConfigError, match="guidance"):
        make_guidance("soft_mask", {})
    with pytest.raises(ConfigError, match="train_mask"):
        make_guidance("restrict_output", {"train_mask": "oracle"})
    with pytest.raises(ConfigError, match="guidance_params"):
        make_guidance("lung_crop", {"dilate": 1})


class SaysLesionEverywhere(torch.nn.Module):
    def forward(self, x):
        return torch.full_like(x[:, :1], 5.0)


@pytest.mark.parametrize("name", ["restrict_output", "cascade"])
def test_inference_predicts_nothing_outside_the_dilated_guiding_lung(name):
    """A net that says "lesion" everywhere: restricting guidance keeps only the (dilated) predicted lungs."""
    case = {"image": np.random.default_rng(0).random((8, 16, 16), np.float32),
            "lesion": np.zeros((8, 16, 16), np.uint8)}
    lung = np.zeros((8, 16, 16), np.uint8)
    lung[2:6, 4:12, 3:9] = 1
    vols = make_volumes([case], "lesion", make_guidance(name, {"dilate": 1}), [lung])
    (pred,) = infer(SaysLesionEverywhere(), vols, (8, 16, 16))
    dilated = torch.nn.functional.max_pool3d(torch.from_numpy(lung).float()[None, None], 3, 1, 1)[0, 0].numpy()
    assert pred[lung > 0].all() and not pred[dilated == 0].any()
    (unguided,) = infer(SaysLesionEverywhere(),
                        make_volumes([case], "lesion", make_guidance("none", {}), [lung]), (8, 16, 16))
    assert unguided.all()


class ThresholdsTheImage(torch.nn.Module):
    def forward(self, x):
        return x[:, :1] - 0.5


@pytest.mark.parametrize("streamed", [False, True])
def test_predictions_of_streamed_volumes_go_to_scratch_with_the_values_held_in_memory(streamed, tmp_path,
                                                                                      monkeypatch):
    """Issue 22: a part's predicted masks are written a volume at a time and memory-mapped when the volumes
    stream (nothing holds the part), and equal the masks predicted in memory; a superseded prediction's file
    goes, and the scratch folder goes with the trial."""
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(1)
    cases = [{"image": rng.random((8, 16, 16), np.float32), "lesion": np.zeros((8, 16, 16), np.uint8)}
             for _ in range(3)]
    vols = make_volumes(cases, "lesion", make_guidance("none", {}), None)
    expected = np.stack(infer(ThresholdsTheImage(), vols, (8, 16, 16)))
    with predictions(streamed) as store:
        first = store.predict(ThresholdsTheImage(), vols, (8, 16, 16))
        second = store.predict(ThresholdsTheImage(), vols, (8, 16, 16))
        assert isinstance(first, np.memmap) == streamed
        np.testing.assert_array_equal(first, expected)
        np.testing.assert_array_equal(second, expected)
        assert store.predict(ThresholdsTheImage(), make_volumes([], "lesion", make_guidance("none", {}), None),
                             (8, 16, 16)).shape == (0,)
        if streamed:
            store.drop(first)
            assert not Path(first.filename).exists() and Path(second.filename).exists()
            folder = store.folder
    if streamed:
        assert not folder.exists()


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
    # The phantom's test part has no lesion-free case, so its case specificity is NaN by definition.
    assert math.isnan(result.metrics["test_case_specificity"])
    assert all(math.isfinite(v) for k, v in result.metrics.items() if k != "test_case_specificity")
    assert [h["stage"] for h in result.history][-1] == "lesion"
    cases = load_cases(result.previews[CASE_FILE])  # for `bench leaderboard --seeds`: its mean is the objective
    assert cases.metric == "val_lesion_dice" and np.mean(cases.fields["values"]) == pytest.approx(result.objective)
    overlay = Image.open(io.BytesIO(result.previews["overlay.png"]))
    assert overlay.format == "PNG" and overlay.size[0] > overlay.size[1]  # one panel per validation case


def test_restrict_output_cuts_false_positives_outside_the_lungs(baseline):
    result = run_trial(smoke(guidance="restrict_output", guidance_params={"train_mask": "ground_truth", "dilate": 0}))
    # Guided by predicted lungs, only the lung stage's own errors can leave lesions outside the true lungs.
    for part in ("val", "test"):
        assert result.metrics[f"{part}_fp_outside_lung_ml"] < baseline.metrics[f"{part}_fp_outside_lung_ml"]


def test_same_config_same_result(baseline, monkeypatch):
    # The first run trains the lung stage (this test's cache is empty); the second loads it from the stage
    # cache (another lesion network: the lung stage does not depend on it), the third trains it again with
    # the cache off; the same network must match the baseline exactly either way.
    from bench import stages

    first_logs, again_logs = Recorder(), Recorder()
    first = run_trial(smoke(), first_logs)
    assert first.tags["bench.stage.lung"] == "trained"
    assert json.dumps(first.metrics, sort_keys=True) == json.dumps(baseline.metrics, sort_keys=True)  # NaN-safe
    from bench.tasks.seg_engine import first_stage, target_stage

    trained = []
    real_train_net = target_stage.train_net
    for module in (first_stage, target_stage):  # the lung stage trains in first_stage, the lesion stage in target_stage
        monkeypatch.setattr(module, "train_net",
                            lambda net, *a, **k: trained.append(net) or real_train_net(net, *a, **k))
    other = run_trial(smoke(seg_arch="attention_unet"))
    assert other.tags["bench.stage.lung"] == "loaded" and len(trained) == 1  # the lesion network only
    again = run_trial(smoke(), again_logs)
    assert again.tags["bench.stage.lung"] == "loaded" and len(trained) == 2
    # A loaded lung stage replays its epochs into the run: the same curves (and epochs_trained) either way.
    lung_epochs, lesion_epochs = SMOKE_PARAMS["lung_epochs"], smoke().seg_epochs
    assert [sorted(m) for m in first_logs.logged].count(["lung_train_loss"]) == lung_epochs
    assert len(first_logs.logged) == lung_epochs + lesion_epochs and again_logs.logged == first_logs.logged
    assert json.dumps(again.metrics, sort_keys=True) == json.dumps(baseline.metrics, sort_keys=True)  # NaN-safe
    assert again.history == baseline.history
    with stages.switched(False):
        off = run_trial(smoke())
    assert off.tags["bench.stage.lung"] == "trained" and len(trained) == 4
    assert json.dumps(off.metrics, sort_keys=True) == json.dumps(baseline.metrics, sort_keys=True)


class Recorder(NullReporter):
    def __init__(self):
        self.logged: list[dict] = []

    def log(self, metrics, step):
        self.logged.append(dict(metrics))


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
    msd = make_phantom(tmp_path / "msd", "msd", cases=12, seed=3)
    result = run_trial(smoke(data=str(msd), data_format="msd"))
    lesion_cases = load_cases(result.previews[CASE_FILE]).fields["values"]
    if len(lesion_cases):
        assert 0.0 <= result.objective <= 1.0
    else:  # a tiny folder's validation part may hold only lesion-free cases: no lesion Dice (documented NaN)
        assert math.isnan(result.objective) and 0.0 <= result.metrics["val_case_specificity"] <= 1.0
