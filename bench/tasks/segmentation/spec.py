"""The segmentation task's spec, task parameters and budget presets; imports no torch or MONAI.

``segmentation`` trains on any nnU-Net v2 raw folder or MSD task folder (``bench.data.seg_dataset``): it
segments one *target* label and, when the target lies in or on another label (its organ: the label making
up most of its surface, ``bench.data.seg_inspect.organs``), first segments that *guide* organ in a stage shared by every trial; the
``LESION_GUIDANCE`` strategies then use the predicted organ as ct-lung uses the predicted lungs.
"""

from __future__ import annotations

from typing import Any

from bench.config import TrialConfig
from bench.guidance import LESION_GUIDANCE
from bench.stages import Stage
from bench.tasks.base import Preset, TaskSpec, lazy, register_task
from bench.tasks.seg_engine.budgets import ENGINE_BUDGETS

TASK = "segmentation"
# Per-case metrics (bench.metrics_seg3d's, renamed for target and guide; directions in bench.metrics). No
# metric name holds a label name, so every data set's runs share columns.
TARGET_METRICS = ("target_dice", "guide_dice", "target_hd95", "target_nsd", "fp_outside_guide_ml",
                  "target_sensitivity", "case_specificity")
AUTO, NO_GUIDE = "auto", "none"

DEFAULT_TASK_PARAMS: dict[str, Any] = {
    # what to segment: a label name, several joined by commas, or "all" (one network output per label, each
    # scored as val_dice.<label>, the objective their mean); empty = the last foreground label that has a
    # guiding organ, else "all" (bench.tasks.segmentation.data.choose_labels)
    "target": "",
    # the target's organ, which guides it: "auto" = the label making up the largest share of the target's
    # surface (bench.data.seg_inspect.organs), if that share >= guide_min_border and the target is smaller;
    # "none" = no guide stage, no guidance; or a label name
    "guide": AUTO,
    "guide_min_border": 0.2,  # bench.data.seg_inspect.GUIDE_MIN_BORDER says how it was chosen
    "guide_min_containment": 0.8,  # no longer read (runs before the border rule keep it, so they replay)
    "grouping_regex": "",  # the patient of a case: first group of this regex over the case id; empty = the case
    "family": "",  # "3d" / "2d"; empty = inferred from seg_arch (2D data sets: always "2d")
    "spacing": [],  # target (z, y, x) mm; empty = the data's median spacing (2D images keep their pixels)
    # 3D training window (z, y, x voxels); empty = planned from the data (bench.data.seg_plan: the median shape
    # at the target spacing within patch_budget voxels), fixed into every trial's config by a search
    "patch": [],
    "patch_budget": 16 * 48 * 48,  # voxels a planned patch may hold (the preset's memory budget)
    "patch_2d": 64,  # in-plane window of the 2D family (smp encoders need multiples of 32)
    "infer_roi": [32, 64, 64],  # 3D sliding-window size at inference
    "samples_per_volume": 2,  # 3D patches per training volume and epoch (2D: x4 slices)
    "pos_fraction": 0.6,  # share of patches centred on target voxels
    "width": 8,  # base channels of the MONAI networks
    "guide_epochs": 2,
    "guide_samples_per_volume": 8,
    "guide_lr": 3e-3,  # fixed, not config.lr: the guide stage is the same in every trial of a search
    "phantom_cases": 20,  # data "phantom": the organ phantom (bench.data.phantoms.organ)
    "phantom_dims": 3,
    "tolerance_mm": 2.0,  # surface-Dice tolerance (2D data without spacing: pixels)
    "threshold": 0.0,  # target logit above which a voxel is predicted target
}


def task_param(config: TrialConfig, key: str) -> Any:
    """Task parameter ``key`` of ``config``, given or default, checked (``TaskSpec.param``)."""
    return SPEC.param(config, key)


# The guide stage, kept by the stage cache (bench.stages): a fixed light MONAI UNet segmenting the guide organ
# depends on the data (fingerprint), split, fold, seed and these settings, never on what a search or
# comparison varies (the target network, loss, guidance, lr), so all trials of a search share one. The target
# and guide the pipeline resolved from the data are passed as their task parameters.
GUIDE_STAGE = Stage(
    TASK, "guide", "1",
    fields=("max_train_cases", "batch_size", "optimiser", "augment"),
    task_params=("target", "guide", "guide_epochs", "guide_samples_per_volume", "guide_lr", "patch", "patch_2d",
                 "infer_roi", "width", "spacing"),
    produces=("weights", "predicted guide organ of every part", "guide_train_loss per epoch", "rng"),
    description="guide-organ segmenter (MONAI UNet) and its predicted organ masks",
)

# 16 phantom cases: every val part of the 5 folds holds a lesion-bearing case (the objective is undefined
# on a val part without one).
SMOKE_PARAMS = {"patch_budget": 16 * 32 * 32, "patch_2d": 32, "infer_roi": [24, 48, 48], "guide_epochs": 1,
                "guide_samples_per_volume": 4, "samples_per_volume": 1, "width": 8, "phantom_cases": 16}

SPEC = register_task(
    TaskSpec(
        name=TASK,
        params=DEFAULT_TASK_PARAMS,
        description="Any nnU-Net v2 / MSD folder: one label, several (one output each) or nnU-Net regions; a "
                    "target on or in an organ is guided by it",
        classes=("target",),
        objective="val_target_dice",
        metrics=TARGET_METRICS,
        formats=("nnunet", "msd_seg"),
        presets={
            "smoke": Preset(
                config={**ENGINE_BUDGETS["smoke"], "task_params": SMOKE_PARAMS},
                trials=2, space="segmentation-smoke.yaml", description="seconds; tiny volumes, used by the tests",
            ),
            "cpu": Preset(
                config={**ENGINE_BUDGETS["cpu"],
                        "task_params": {"guide_epochs": 6, "samples_per_volume": 8, "pos_fraction": 0.7,
                                        "patch_budget": 16 * 32 * 32, "patch_2d": 32, "infer_roi": [32, 64, 64]}},
                trials=8, space="segmentation-cpu.yaml",
                description="8 trials on a 2-core CPU (both network families; not yet timed)",
            ),
            "gpu": Preset(
                config={**ENGINE_BUDGETS["gpu"],
                        "task_params": {"guide_epochs": 10, "patch_budget": 32 * 96 * 96, "patch_2d": 128, "width": 16,
                                        "infer_roi": [64, 128, 128], "samples_per_volume": 4}},
                trials=50, space="segmentation.yaml", description="one GPU, 50 trials (not yet timed)",
            ),
        },
        run=lazy("bench.tasks.segmentation.pipeline:run"),
        prepare=lazy("bench.tasks.segmentation.data:prepare"),
        make_phantom=lazy("bench.tasks.segmentation.data:make_phantom"),
        # nnunet_2d: the nnunet layout with 2D PNG slices
        phantom_formats=("nnunet", "msd_seg", "nnunet_2d"),
        phantom_cases_help="N patients, one volume each (default 20)",
        inspect=lazy("bench.tasks.segmentation.data:inspect"),
        predictor=lazy("bench.tasks.segmentation.predict:Predictor"),
        stages=(GUIDE_STAGE,),
        headline=("val_guide_dice", "val_fp_outside_guide_ml", "test_target_dice", "test_fp_outside_guide_ml"),
        # ``--format msd`` on this task is the Decathlon reader of any task folder (ct-lung's ``msd`` reads
        # Task06_Lung only).
        format_aliases={"msd": "msd_seg"},
        cli_params={
            "target": "what to segment: a label name, 'A,B' or 'all' (one output per label, each scored as "
                      "val_dice.<label>, objective their mean; default: the last label that has a guiding organ, "
                      "else all)",
            "guide": "the target's organ, which guides it: a label name, 'auto' (default: the label the target "
                     "borders most, on >= guide_min_border of its surface, larger than the target) or 'none' "
                     "(no guide stage, guidance fixed to none)",
            "grouping_regex": "regex whose first group over a case id is its patient, for the split (default: one "
                              "case, one patient)",
        },
        # Organ guidance: on a data set without a guide organ only ``none`` runs (the pipeline refuses others),
        # so there the search fixes it and a comparison of it is refused.
        guidance=LESION_GUIDANCE,
        fixed_by_data=lazy("bench.tasks.segmentation.data:fixed_by_data"),
        compare_metrics={
            "*": ("val_target_dice", "val_target_nsd", "val_fp_outside_guide_ml", "val_target_hd95",
                  "val_target_sensitivity", "test_target_dice", "test_fp_outside_guide_ml"),
        },
    )
)
