"""segmentation: one trial on an nnU-Net / MSD folder.

Read and preprocess once (``data``) → guide stage: a fixed light MONAI UNet segments the guide organ (shared
by every trial through the stage cache; skipped when the data set has no guide) → the searched target network
(3D MONAI, or 2D run slice by slice; 2D data sets: 2D only) trains on target/background-balanced patches,
guided by the predicted organ through a ``LESION_GUIDANCE`` strategy → sliding-window inference on whole
volumes → per-case metrics on val (objective) and test (logged only).

The patch training, inference, networks, guidance application and second stage are the shared segmentation
engine's (``bench.tasks.seg_engine``: ``training`` / ``nets`` / ``guided`` / ``target_stage``, which ct-lung
uses too); this module maps a data set's target and
guide labels onto them and names the metrics for target and guide.
"""

from __future__ import annotations

import numpy as np
import torch

from bench import runtime
from bench.cases import CASE_FILE, case_file
from bench.config import TrialConfig
from bench.errors import ConfigError
from bench.losses import SEG_LOSSES
from bench.metrics_seg3d import summarise
from bench.tasks.seg_engine.first_stage import FirstStage, first_stage
from bench.tasks.seg_engine.guided import Guided, make_guidance
from bench.tasks.seg_engine.nets import build_seg_net, family_of
from bench.tasks.seg_engine.target_stage import train_and_score
from bench.tasks.seg_engine.training import Predictions, Volumes, predictions
from bench.tasks.segmentation.data import SegData, prepare
from bench.tasks.segmentation.spec import GUIDE_STAGE, SPEC, task_param
from bench.train import Reporter, TrialResult

# bench.metrics_seg3d's names (lesion = target, lung = guide) -> this task's.
RENAMED = {"lesion_dice": "target_dice", "lung_dice": "guide_dice", "lesion_hd95": "target_hd95",
           "lesion_nsd": "target_nsd", "fp_outside_lung_ml": "fp_outside_guide_ml",
           "lesion_sensitivity": "target_sensitivity", "case_specificity": "case_specificity"}
GUIDE_ONLY = ("guide_dice", "fp_outside_guide_ml")


class SegVolumes(Volumes):
    """ct-lung's ``Volumes`` for images of C channels: (C,D,H,W) cases, guide organ in the lung's place, and
    one target channel per entry of ``channel_values`` (the values of the case's target map it stands for:
    (k,) for the k-th label, a region's values for nnU-Net regions); ``class_order``: the value each region's
    output writes back at inference (``training.decode``), empty for labels."""

    def __init__(self, guide, cases, target: str, lungs, channel_values=((1,),), class_order=()):
        super().__init__(guide, cases, target, lungs)
        self.channel_values, self.class_order = tuple(channel_values), tuple(class_order)
        self.target_channels = len(self.channel_values)

    @property
    def channels(self) -> int:
        return int(self.cases[0]["image"].shape[0]) + self.guide.extra_channels if len(self.cases) else 0

    @torch.no_grad()
    def guided(self, i: int) -> Guided:
        case = self.cases[i]
        image = torch.from_numpy(np.array(case["image"], np.float32))[None]
        organ = torch.from_numpy(np.array(self.lung(i) > 0, np.float32))[None, None]
        truth = np.asarray(case[self.target])
        if self.channel_values == ((1,),):
            target = torch.from_numpy(np.array(truth > 0, np.float32))[None, None]
        else:  # one channel per label or region
            target = torch.from_numpy(np.stack([np.isin(truth, values) for values in self.channel_values]
                                               ).astype(np.float32))[None]
        g = self.guide
        return Guided(inputs=g.inputs(image, organ)[0].numpy().astype(np.float32),
                      target=(g.to_grid(target, organ)[0] > 0.5).numpy().astype(np.float32),
                      lung=(g.to_grid(organ, organ)[0] > 0.5).numpy().astype(np.float32))

    def lung(self, i: int) -> np.ndarray:
        return np.zeros(self.cases[i]["target"].shape, np.uint8) if self.lungs is None else self.lungs[i]


def windows(config: TrialConfig, family: str, data: SegData) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(training patch, inference window) of a family: the data's 3D patch (given or planned) / infer_roi, or
    one slice of patch_2d."""
    if family == "2d":
        side = int(task_param(config, "patch_2d"))
        return (1, side, side), (1, side, side)
    return tuple(data.patch), tuple(int(p) for p in task_param(config, "infer_roi"))


def run(config: TrialConfig, reporter: Reporter) -> TrialResult:
    guide = make_guidance(config.guidance, config.guidance_params)
    loss = SEG_LOSSES.create(config.seg_loss, **config.seg_loss_params)  # validate before any work
    data, streamed = placed(prepare(config))
    if data.guide is None and config.guidance != "none":
        raise ConfigError(f"guidance must be 'none' on a data set without a guide organ ({data.guide_reason}), but "
                          f"got '{config.guidance}'. Give task_params.guide the target's organ, or leave guidance "
                          "out (a search fixes it to none on such data).")
    family = "2d" if data.dims == 2 else family_of(config.seg_arch, task_param(config, "family") or None)
    family_of(config.seg_arch, family)  # a 2D data set with a 3D-only network stops here
    patch, roi = windows(config, family, data)
    # A 2D sample is one slice, ~1/16 of a 3D patch: draw 4x as many and batch 4x as many (3D data only).
    slices = 4 if family == "2d" and data.dims == 3 else 1
    samples = int(task_param(config, "samples_per_volume")) * slices
    channels = len(data.channels)
    # Built on a forked random stream, so the guide stage starts from the same random state whatever the
    # target network is, and is shared by all of them.
    with torch.random.fork_rng(devices=[]):
        target_net = build_seg_net(config.seg_arch, channels + guide.extra_channels, family, config.seg_encoder,
                                   int(task_param(config, "width")), patch=patch,
                                   out_channels=len(data.channel_values))
    threshold = float(task_param(config, "threshold"))
    with predictions(streamed) as store:
        result = _stages(config, reporter, data, store, guide, target_net, loss, patch=patch, roi=roi,
                         slices=slices, samples=samples, threshold=threshold)
    result.model = model_info(config, data, family, channels + guide.extra_channels)
    return result


def model_info(config: TrialConfig, data: SegData, family: str, in_channels: int) -> dict:
    """What predicting with this trial's weights needs besides its config (``TrialResult.model``, logged in
    model.json: ``bench.model_file``): the networks, the labels and the data's plan;
    ``bench.tasks.segmentation.predict`` reads it back."""
    width = int(task_param(config, "width"))
    patch, roi = windows(config, family, data)
    guide_family = "2d" if data.dims == 2 else "3d"
    guide_patch, guide_roi = windows(config, guide_family, data)
    models = {"target_segmenter": {"builder": "bench.tasks.seg_engine.nets:build_seg_net", "name": config.seg_arch,
                                   "args": {"in_channels": in_channels, "family": family,
                                            "encoder": config.seg_encoder, "width": width, "patch": list(patch),
                                            "out_channels": len(data.channel_values)},
                                   "window": list(roi), "guidance": config.guidance,
                                   "guidance_params": dict(config.guidance_params),
                                   "output": "target logit; target where > threshold"}}
    if data.guide is not None:
        models["guide_segmenter"] = {"builder": "bench.tasks.seg_engine.nets:build_seg_net", "name": "monai_unet",
                                     "args": {"in_channels": len(data.channels), "family": guide_family,
                                              "width": width, "patch": list(guide_patch)},
                                     "window": list(guide_roi), "output": "guide logit; guide where > 0"}
    # several targets: output k is targets[k]; nnU-Net regions write class_order's values back (decode)
    return {"models": models, "labels": dict(data.labels), "target": data.target, "guide": data.guide,
            "targets": list(data.targets), "class_order": list(data.class_order),
            "threshold": float(task_param(config, "threshold")), "preprocessing": data.preprocessing()}


def _stages(config: TrialConfig, reporter: Reporter, data: SegData, store: Predictions, guide, target_net, loss, *,
            patch, roi, slices: int, samples: int, threshold: float) -> TrialResult:
    """Both stages and the evaluation; predicted masks go through ``store`` (scratch when volumes stream)."""
    history: list[dict] = []

    # --- guide stage: the organ that encloses the target (absent without a guide) ----------------------
    guide_net, guide_pred = guide_stage(config, data, reporter, history, store)
    if guide_pred is None:
        organs = {p: None for p in data.parts}
    else:  # validation and test are always guided by predicted organs; training by what train_mask says
        organs = {p: [c["guide"] for c in data.parts[p]] if p == "train" and guide.train_mask == "ground_truth"
                  else guide_pred[p] for p in data.parts}

    # --- target stage; validation is the objective, test is logged only --------------------------------
    vols = {p: SegVolumes(guide, cases, "target", organs[p], data.channel_values, data.class_order)
            for p, cases in data.parts.items()}
    several = len(data.channel_values) > 1
    # the organ each case is scored in: the predicted one, or without a guide stage the data's own
    scored_in = {p: guide_pred[p] if guide_pred is not None else [c["guide"] for c in data.parts[p]]
                 for p in ("val", "test")}
    scored = train_and_score(config, reporter, history, store, target_net, loss, vols, data.parts, scored_in,
                             stage="target", target="target", organ="guide",
                             offset=int(task_param(config, "guide_epochs")) if guide_net is not None else 0,
                             patch=patch, roi=roi, slices=slices, samples=samples, threshold=threshold,
                             pos_fraction=float(task_param(config, "pos_fraction")), spacing=data.spacing,
                             tolerance_mm=float(task_param(config, "tolerance_mm")),
                             labels=data.targets if several else (),
                             label_values=data.channel_values if several else ())
    metrics: dict[str, float] = {}
    for part in ("val", "test"):
        summary = part_metrics(scored, part)
        if guide_pred is None:  # no organ: nothing to score the guide by, nothing outside it
            summary = {k: v for k, v in summary.items() if k not in GUIDE_ONLY}
        metrics.update({f"{part}_{k}": v for k, v in summary.items()})
    # Per-case target Dice of the cases the objective averages (target-bearing ones), for the case bootstrap.
    val_cases, groups = scored.objective_cases(data.groups)
    models = {"target_segmenter": target_net.state_dict()}
    if guide_net is not None:
        models["guide_segmenter"] = guide_net.state_dict()
    return TrialResult(
        config=config.replace(split_hash=data.split_hash),
        objective_name=SPEC.objective,
        objective=metrics[SPEC.objective],
        metrics=metrics,
        history=history,
        state_dicts=models,
        previews={"overlay.png": overlay(data.parts["val"], scored.predictions["val"]),
                  CASE_FILE: case_file(SPEC.objective, "mean", values=val_cases, **groups)},
    )


# Per-label metrics of several targets, ``<part>_<name>.<label>``; the target metrics are their mean (nnU-Net's
# mean foreground Dice), the false-positive volume outside the organ their sum, the guide's Dice the organ's.
PER_LABEL = {"target_dice": "dice", "target_hd95": "hd95", "target_nsd": "nsd"}
SUMMED = ("fp_outside_guide_ml",)


def part_metrics(scored, part: str) -> dict[str, float]:
    """The task's metrics of one part (without its prefix): one target as ``metrics_seg3d`` summarises it;
    several, per label and combined as ``PER_LABEL``/``SUMMED`` say."""
    if not scored.per_label:
        return {RENAMED[k]: v for k, v in summarise(scored.rows[part]).items()}
    each = {label: {RENAMED[k]: v for k, v in summarise(rows[part]).items()}
            for label, rows in scored.per_label.items()}
    first = next(iter(each.values()))
    out: dict[str, float] = {}
    for name in first:
        values = [m[name] for m in each.values()]
        finite = [v for v in values if np.isfinite(v)]
        if name in SUMMED:
            out[name] = float(np.sum(finite)) if finite else float("nan")
        elif name == "guide_dice":
            out[name] = first[name]
        else:
            out[name] = float(np.mean(finite)) if finite else float("nan")
    for label, m in each.items():
        out.update({f"{short}.{label}": m[name] for name, short in PER_LABEL.items()})
    return out


def placed(data: SegData) -> tuple[SegData, bool]:
    """The volumes where the runtime policy puts them by their measured size (``bench.runtime.place_data``):
    copied into memory, or left as the cache's memory-mapped volumes; and whether they stream."""
    nbytes = sum(case.nbytes for cases in data.parts.values() for case in cases)
    if runtime.place_data(nbytes) == "stream":
        return data, True
    data.parts = {p: [case.in_memory() for case in cases] for p, cases in data.parts.items()}
    return data, False


def overlay(cases, target_pred: list[np.ndarray], n: int = 4) -> bytes:
    """Slices of up to ``n`` validation cases (target-bearing first), each at its largest true target (or its
    largest predicted one): true contour green, predicted red; the first input channel underneath."""
    from bench.report import overlay_png

    truths = [c["target"] for c in cases]
    order = sorted(range(len(cases)), key=lambda i: not truths[i].any())[:n]
    images, trues, preds, titles = [], [], [], []
    for i in order:
        shown = (truths[i] if truths[i].any() else np.asarray(target_pred[i])) > 0
        z = int(np.argmax(shown.reshape(len(shown), -1).sum(axis=1)))
        images.append(np.asarray(cases[i]["image"][0, z]))
        trues.append(truths[i][z] > 0)  # several targets: every label's contour
        preds.append(np.asarray(target_pred[i][z]) > 0)
        titles.append(f"val case {i}, slice {z}")
    return overlay_png(np.stack(images), np.stack(trues), np.stack(preds), titles=titles)


def guide_stage(config: TrialConfig, data: SegData, reporter: Reporter, history: list[dict],
                store: Predictions) -> tuple[torch.nn.Module | None, dict[str, list[np.ndarray]] | None]:
    """Train the guide-organ segmenter and predict every part's organ, or load both from the stage cache
    (``GUIDE_STAGE``: it depends on the data, fold, seed and the guide settings, never on what a search
    varies). (None, None) when the data set has no guide."""
    if data.guide is None:
        return None, None
    family = "2d" if data.dims == 2 else "3d"
    patch, roi = windows(config, family, data)
    stage = FirstStage(GUIDE_STAGE, "guide", len(data.channels), family, patch, roi, int(task_param(config, "width")),
                       int(task_param(config, "guide_samples_per_volume")), int(task_param(config, "guide_epochs")),
                       float(task_param(config, "guide_lr")))
    params = {k: task_param(config, k) for k in GUIDE_STAGE.task_params}
    params.update(target=data.target, guide=data.guide, patch=list(data.patch))  # as resolved from the data
    return first_stage(config, stage, data.parts, lambda unguided, cases: SegVolumes(unguided, cases, "guide", None),
                       data_key=data.key, split_hash=data.split_hash, params=params, reporter=reporter,
                       history=history, store=store)
