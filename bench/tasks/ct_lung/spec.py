"""The ct-lung task's spec, task parameters and budget presets; imports no torch or MONAI (the data,
training and pipeline modules load on first use)."""

from __future__ import annotations

from typing import Any

from bench.config import TrialConfig
from bench.data.phantoms.specs import CT_CLASSES as CLASSES
from bench.data.phantoms.specs import CtPhantomSpec
from bench.guidance import LESION_GUIDANCE
from bench.stages import Stage
from bench.tasks.base import Preset, TaskSpec, lazy, register_task
from bench.tasks.seg_engine.budgets import ENGINE_BUDGETS

TASK = "ct-lung"
# The per-case metrics ``bench.metrics_seg3d.summarise`` reports (its LESION_METRICS; a test checks they
# agree), named here so that reading the spec does not import torch and MONAI.
LESION_METRICS = ("lesion_dice", "lung_dice", "lesion_hd95", "lesion_nsd", "fp_outside_lung_ml",
                  "lesion_sensitivity", "case_specificity")

DEFAULT_TASK_PARAMS: dict[str, Any] = {
    "family": "",  # "3d" / "2d"; empty = inferred from seg_arch
    "spacing": [5.0, 4.0, 4.0],  # target (z, y, x) mm
    "patch": [16, 48, 48],  # 3D training/inference window (voxels)
    "patch_2d": 64,  # in-plane window of the 2D family (smp encoders need multiples of 32)
    "infer_roi": [32, 64, 64],  # 3D sliding-window size at inference: whole default volumes in one pass
    "samples_per_volume": 2,  # 3D patches per training volume and epoch (2D: x4 slices)
    "pos_fraction": 0.6,  # share of patches centred on lesion voxels
    "width": 8,  # base channels of the MONAI 3D networks
    "lung_epochs": 2,
    "lung_samples_per_volume": 8,  # 3D patches per volume and epoch of the lung stage
    "lung_lr": 3e-3,  # fixed, not config.lr: the lung stage is the same in every trial of a search
    "phantom_patients": 24,
    "phantom_shape": [32, 64, 64],
    "tolerance_mm": 5.0,  # surface-Dice tolerance: one voxel at the default spacing
    "threshold": 0.0,  # lesion logit above which a voxel is predicted lesion
}


def task_param(config: TrialConfig, key: str) -> Any:
    """Task parameter ``key`` of ``config``, given or default, checked (``TaskSpec.param``)."""
    return SPEC.param(config, key)


def phantom_spec(config: TrialConfig) -> CtPhantomSpec:
    return CtPhantomSpec(n_patients=int(task_param(config, "phantom_patients")),
                         shape=tuple(int(s) for s in task_param(config, "phantom_shape")))


# Stage 1, kept by the stage cache (bench.stages): a fixed light 3D network depends on the data (fingerprint),
# split, fold, seed and these settings, never on what a search or comparison varies (the lesion network,
# loss, guidance, lr), so all trials of a search share one.
LUNG_STAGE = Stage(
    TASK, "lung", "2",
    fields=("max_train_cases", "batch_size", "optimiser", "augment"),
    task_params=("lung_epochs", "lung_samples_per_volume", "lung_lr", "patch", "infer_roi", "width"),
    produces=("weights", "predicted lungs of every part", "lung_train_loss per epoch", "rng"),
    description="3D lung segmenter (MONAI UNet) and its predicted lungs",
)

# The phantom keeps its 24 patients: the committed phantom split names them all.
SMOKE_PARAMS = {"phantom_shape": [16, 32, 32], "spacing": [10.0, 8.0, 8.0],
                "patch": [16, 32, 32], "patch_2d": 32, "infer_roi": [16, 32, 32], "lung_epochs": 1,
                "lung_samples_per_volume": 4, "samples_per_volume": 1, "width": 8}

SPEC = register_task(
    TaskSpec(
        name=TASK,
        params=DEFAULT_TASK_PARAMS,
        description="Chest CT: lung segmentation + lung-guided lesion segmentation (nodules, GGO)",
        classes=CLASSES,
        objective="val_lesion_dice",
        metrics=LESION_METRICS,
        formats=("ct_dicom", "msd", "nifti", "luna16"),
        presets={
            "smoke": Preset(
                config={**ENGINE_BUDGETS["smoke"], "task_params": SMOKE_PARAMS},
                trials=2, space="ct-lung-smoke.yaml", description="seconds; tiny volumes, used by the tests",
            ),
            "cpu": Preset(
                # Lesions are 1-7 voxels across at 5x4x4 mm: many small patches (12 of 16x32x32 per volume
                # and epoch, ~70 % centred on lesions), a loss with a voxel-wise or recall term and a lesion
                # threshold of logit -1 (plain Dice with 2 large patches flooded the lungs). The 2D family
                # runs on 32x32 in-plane windows, like the 3D patches, with the light mobilenet_v2 encoder.
                # Measured costs and scores: datasets/ct-lung-phantom/README.md.
                config={**ENGINE_BUDGETS["cpu"],
                        "task_params": {"lung_epochs": 8, "samples_per_volume": 12, "pos_fraction": 0.7,
                                        "patch": [16, 32, 32], "patch_2d": 32, "threshold": -1.0}},
                trials=8, space="ct-lung-cpu.yaml",
                description="8 trials, about 11 min on a 2-core CPU (both network families)",
            ),
            "gpu": Preset(
                config={**ENGINE_BUDGETS["gpu"],
                        "task_params": {"lung_epochs": 10, "phantom_shape": [64, 128, 128],
                                        "spacing": [2.5, 2.0, 2.0],
                                        "patch": [32, 96, 96], "patch_2d": 128, "width": 16,
                                        "infer_roi": [64, 128, 128],
                                        "samples_per_volume": 4}},
                # The phantom's 24 patients at 2.5x2x2 mm (the committed split names them); not yet timed on a GPU.
                trials=50, space="ct-lung.yaml", description="one GPU, 50 trials (not yet timed)",
            ),
        },
        run=lazy("bench.tasks.ct_lung.pipeline:run"),
        prepare=lazy("bench.tasks.ct_lung.data:prepare"),
        make_phantom=lazy("bench.tasks.ct_lung.data:make_phantom"),
        # nnunet: an nnU-Net v2 raw folder with labels lung and lesion, for --task segmentation
        phantom_formats=("msd", "ct_dicom", "nifti", "luna16", "nnunet"),
        phantom_cases_help="the first N scans of the standard phantom (a patient has 1-2 scans; default its 24 "
                           "patients)",
        inspect=lazy("bench.tasks.ct_lung.data:inspect"),
        predictor=lazy("bench.tasks.ct_lung.predict:Predictor"),
        stages=(LUNG_STAGE,),
        headline=("val_lung_dice", "val_fp_outside_lung_ml", "test_lesion_dice", "test_fp_outside_lung_ml"),
        # One name per layout, for readers and writers alike: ``msd`` is the MSD Task06 layout (imagesTr/ +
        # labelsTr/ + dataset.json), ``nifti`` the plain images/ + masks/ folder (whose reader also takes an MSD
        # folder, as runs before this naming read it).
        format_aliases={"dicom": "ct_dicom", "mhd": "luna16"},
        guidance=LESION_GUIDANCE,
        compare_metrics={
            "*": ("val_lesion_dice", "val_lesion_nsd", "val_fp_outside_lung_ml", "val_lesion_hd95",
                  "val_lesion_sensitivity", "test_lesion_dice", "test_fp_outside_lung_ml"),
        },
    )
)
