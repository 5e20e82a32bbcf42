"""The xray-heart task's spec and budget presets; imports no torch (the pipeline loads on first use)."""

from __future__ import annotations

from bench.data.phantoms.specs import XRAY_CLASSES as CLASSES
from bench.data.phantoms.specs import XrayPhantomSpec
from bench.guidance import GUIDANCE
from bench.models import CLASSIFIERS
from bench.stages import Stage
from bench.tasks.base import Preset, TaskSpec, lazy, register_task

# Stage 1, kept by the stage cache (bench.stages): the heart segmenter depends on the data, split, fold, seed
# and these fields, never on the guidance (the guided classifier is built on a forked random stream), so
# every guidance arm of a comparison, and every trial of a search that keeps these fields, shares one.
SEG_STAGE = Stage(
    "xray-heart", "segmenter", "1",
    # classifier: build_models draws the plain classifier's initial weights from the global stream before the
    # segmenter trains, so another classifier network means another segmenter.
    fields=("seg_arch", "seg_encoder", "seg_loss", "seg_loss_params", "seg_epochs", "lr", "batch_size", "optimiser",
            "max_train_cases", "augment", "classes", "reader_options"),
    task_params=("image_size", "classifier"),
    produces=("weights", "predicted heart masks of every part", "seg_train_loss / seg_val_heart_dice per epoch",
              "rng"),
    description="heart segmenter and its predicted masks",
)

# The task's own configuration fields (TrialConfig.task_params), with their defaults.
TASK_PARAMS = {
    "image_size": 64,  # square side every radiograph is resized to (pixels)
    "classifier": "resnet10",  # the classifier network (bench.models.CLASSIFIERS)
    "cls_epochs": 4,  # classifier epochs (stage 2); the objective is reported after each
    "cls_lr": 1e-3,  # classifier learning rate (``lr`` is the segmenter's)
}

TASK = "xray-heart"
PHANTOM_SPEC = XrayPhantomSpec()


def phantom_cases() -> list:
    """The standard phantom's cases (its committed split names them)."""
    from bench.data.phantoms.xray import generate

    return generate(PHANTOM_SPEC)


def write_phantom(out, fmt: str = "png", cases: int | None = None, seed: int = 0):
    """`bench datasets make-phantom --task xray-heart`: ``cases`` patients (1-3 images each) and, as the
    standard phantom's 100 + 30, 30 % as many (rounded up) site-shifted test patients; None: the standard."""
    from bench.data.phantoms.xray import make_phantom

    if cases is None:
        return make_phantom(out, fmt=fmt, seed=seed)
    return make_phantom(out, fmt=fmt, seed=seed, n_patients=cases,
                        n_shifted_patients=-(-cases * PHANTOM_SPEC.n_shifted_patients // PHANTOM_SPEC.n_patients))


def inspect_data(path, fmt: str | None = None, classes=None, sample: int | None = None, **reader_options) -> dict:
    from bench.data.inspect import inspect

    report = inspect(path, TASK, fmt, classes, sample, formats=SPEC.formats, **reader_options)
    decoded = report.get("images_decoded", 0)
    missing = decoded - report.get("masks", {}).get("heart", 0)
    if missing > 0:  # what a search refuses (bench.data.radiograph), found before one starts
        report["problems"].append(
            f"every image needs a heart mask (xray-heart trains a heart segmenter; a search stops at the first "
            f"image without one), but {missing} of the {decoded} images read have none. Add mask_heart to the "
            "labels file or pick a source with masks.")
    return report


SPEC = register_task(
    TaskSpec(
        name=TASK,
        description="Chest X-ray: heart segmentation + mask-guided classification, classes from the data "
                    "(phantom: normal/VSD/ASD/TOF; ChestX-ray14/CheXpert via CheXmask: cardiomegaly)",
        # The phantom's classes (what `bench tasks` shows); a trial's classes come from its data
        # (bench.tasks.xray_heart.data, bench.data.labels) and are logged in its config.
        classes=CLASSES,
        objective="val_auroc",
        metrics=("auroc", "accuracy", "balanced_accuracy", "recall", "heart_dice", "heart_hd95_px", "ctr_error",
                 "attention_in_heart", "shift_gap"),
        formats=("chexmask", "dicom", "jsrt", "png"),
        headline=("val_heart_dice", "test_auroc", "test_shifted_auroc", "test_attention_in_heart"),
        presets={
            "smoke": Preset(
                config={"max_train_cases": 24, "seg_epochs": 1, "batch_size": 8,
                        "task_params": {"image_size": 32, "cls_epochs": 2}},
                trials=2, space="xray-heart-smoke.yaml", description="seconds; used by the tests",
            ),
            "cpu": Preset(
                config={"seg_epochs": 4, "batch_size": 16, "task_params": {"image_size": 64, "cls_epochs": 5}},
                trials=8, space="xray-heart.yaml", description="8 trials, 6-10 min on a 2-core CPU",
            ),
            "gpu": Preset(
                config={"seg_epochs": 30, "batch_size": 32, "task_params": {"image_size": 128, "cls_epochs": 30}},
                trials=50, space="xray-heart.yaml", description="one GPU, 50 trials (not yet timed: no GPU was available)",
            ),
        },
        run=lazy("bench.tasks.xray_heart.pipeline:run"),
        stages=(SEG_STAGE,),
        prepare=lazy("bench.tasks.xray_heart.data:prepare"),
        phantom_cases=phantom_cases,
        make_phantom=write_phantom,
        phantom_formats=("png", "dicom"),
        phantom_cases_help="N patients of 1-3 radiographs each, plus 30 % as many (rounded up) from a shifted "
                           "site as a test part (default 100 + 30)",
        inspect=inspect_data,
        evaluate=lazy("bench.tasks.xray_heart.pipeline:evaluate"),
        build_models=lazy("bench.tasks.xray_heart.pipeline:checkpoint_models"),
        predictor=lazy("bench.tasks.xray_heart.predict:Predictor"),
        guidance=GUIDANCE,
        params=TASK_PARAMS,
        space_registries={"task_params.classifier": CLASSIFIERS},
        reported_epochs_from=("seg_epochs", "cls_epochs"),
        param_bounds={"image_size": (">=", 1), "cls_epochs": (">=", 0), "cls_lr": (">", 0)},
        data_options=frozenset({"classes", "min_dice", "uncertain", "missing", "sample"}),
        # See bench.compare.plan.MetricPlan for the spelling: the guidance verdicts use val_auroc@fold, since
        # the pooled val_auroc also scores whether the K fold models are calibrated alike.
        compare_metrics={
            "guidance": ("val_auroc@fold", "val_auroc", "val_auroc@run", "val_balanced_accuracy",
                         "shift_gap_auroc", "val_attention_in_heart", "test_auroc", "test_shifted_auroc",
                         "test_attention_in_heart", "val_heart_dice"),
            "classifier": ("val_auroc@fold", "val_auroc", "val_auroc@run", "val_balanced_accuracy",
                           "shift_gap_auroc", "val_attention_in_heart", "test_auroc", "test_shifted_auroc"),
            "seg_loss": ("val_heart_dice", "val_heart_hd95_px", "val_ctr_error", "test_heart_dice", "val_auroc"),
            "seg_arch": ("val_heart_dice", "val_heart_hd95_px", "val_ctr_error", "test_heart_dice", "val_auroc"),
            "*": ("val_auroc@fold", "val_auroc", "val_heart_dice", "val_balanced_accuracy", "test_auroc"),
        },
    )
)
