"""xray-heart: segment the heart on a chest radiograph, then classify it with the classifier guided by the
predicted heart mask (seed project 1: congenital heart disease on the phantom; cardiomegaly on the public
sets).

Pipeline of one trial: train the segmenter → predict heart masks for every image → train the classifier
on guided inputs built from *predicted* masks → evaluate on validation (the objective) and test (logged
only, never seen by the search).

The classes come from the data (``XrayData.classes``). ``<part>_auroc`` is the AUROC of the positive class
(the last one) when there are two classes and the macro one-vs-rest AUROC otherwise; the objective is
``val_auroc`` either way. Per-class recall and balanced accuracy are reported for every class list; the
shift gap only where the split has a site-shifted part (the phantom).
"""

from __future__ import annotations

import re

import numpy as np
import torch
import torch.nn.functional as F

from bench import runtime
from bench.cases import CASE_FILE, case_file
from bench.config import TrialConfig
from bench.data.labels import positive_class
from bench.guidance import GUIDANCE
from bench.losses import SEG_LOSSES
from bench.metrics import (
    accuracy,
    attention_in_mask,
    balanced_accuracy,
    ctr_error,
    heart_hd95,
    macro_auroc,
    mean_dice,
    per_case_dice,
    per_class_recall,
    shift_gap,
)
from bench.models import CLASSIFIERS, SEG_MODELS
from bench.tasks.xray_heart.data import XrayData, config_classes, prepare
from bench.tasks.xray_heart.spec import SPEC
from bench.train import Reporter, TrialResult, device, fit, predict, stop_if_asked


def build_models(config: TrialConfig,
                 n_classes: int | None = None) -> tuple[torch.nn.Module, torch.nn.Module, object]:
    """Fresh segmenter, (guidance-wrapped) classifier and guidance strategy for ``config``.

    ``n_classes``: the classifier's outputs; default the config's class list (resolved from the data when
    the config has none, as configs logged before class lists did: the phantom's four).
    """
    seg_kwargs = {"encoder": config.seg_encoder}
    if "img_size" in SEG_MODELS.entry(config.seg_arch).parameters():
        seg_kwargs["img_size"] = config.image_size  # transformers need the input size up front
    seg = SEG_MODELS.create(config.seg_arch, in_channels=1, classes=1, **seg_kwargs)
    n_classes = n_classes or len(config.classes or config_classes(config))
    # Guidance acts on the classifier only, so the segmenter stage must not depend on it: segmentation
    # training draws from torch's global stream (decoder dropout), which a classifier with extra input
    # channels or an extra head would shift. The guided classifier is built on a forked stream, and the
    # global stream then advances as the plain classifier's build does, so unguided trials (and their
    # logged runs) keep the very same random numbers.
    with torch.random.fork_rng(devices=[]):
        guidance = GUIDANCE.create(config.guidance, **config.guidance_params)
        cls = guidance.wrap_model(CLASSIFIERS.create(
            config.classifier, in_channels=1 + guidance.extra_channels, num_classes=n_classes))
    CLASSIFIERS.create(config.classifier, in_channels=1, num_classes=n_classes)
    return seg, cls, guidance


def checkpoint_models(config: TrialConfig) -> dict[str, torch.nn.Module]:
    """The trial's models keyed as in checkpoint.pt."""
    seg, cls, _ = build_models(config)
    return {"segmenter": seg, "classifier": cls}


def _predicted_masks(seg: torch.nn.Module, data: XrayData) -> dict[str, torch.Tensor]:
    return {name: (predict(seg, part["image"]) > 0).float() for name, part in data.parts.items()}


def _class_probs(cls, guidance, images: torch.Tensor, masks: torch.Tensor) -> np.ndarray:
    return torch.softmax(predict(cls, guidance.inputs(images, masks)), dim=1).cpu().numpy()


def _resident(data: XrayData) -> XrayData:
    """The parts moved to the GPU once when the runtime policy keeps small data sets resident there.

    Predictions then stay on the device and metrics that need the host copy what they need once.
    """
    return XrayData(data.split_hash, {name: runtime.resident(part) for name, part in data.parts.items()},
                    data.classes, data.groups)


def run(config: TrialConfig, reporter: Reporter) -> TrialResult:
    data = _resident(prepare(config))
    train, val = data.parts["train"], data.parts["val"]
    history: list[dict] = []
    seg, cls, guidance = build_models(config, len(data.classes))

    # --- stage 1: heart segmentation ------------------------------------------------------------
    seg_loss = SEG_LOSSES.create(config.seg_loss, **config.seg_loss_params)

    def seg_epoch(epoch: int, loss: float) -> None:
        dice = mean_dice(predict(seg, val["image"]) > 0, val["heart"])
        record = {"seg_train_loss": loss, "seg_val_heart_dice": dice}
        history.append({"stage": "seg", "epoch": epoch, **record})
        reporter.log(record, step=epoch)

    seg_train = {"image": train["image"], "heart": train["heart"]}  # fit copies every tensor it is given
    fit(seg, lambda m, b: seg_loss(m(b["image"]), b["heart"]), seg_train, epochs=config.seg_epochs,
        batch_size=config.batch_size, lr=config.lr, optimiser=config.optimiser, seed=config.seed,
        on_epoch=seg_epoch)
    masks = _predicted_masks(seg, data)

    # --- stage 2: guided classification; validation/test always see predicted masks -------------
    train_masks = train["heart"] if getattr(guidance, "train_mask", "predicted") == "ground_truth" else masks["train"]
    cls_train = {"image": train["image"], "mask": train_masks, "label": train["label"]}

    def cls_loss(model, batch):
        x = guidance.inputs(batch["image"], batch["mask"])
        logits = model(x)
        loss = F.cross_entropy(logits, batch["label"])
        extra = guidance.extra_loss(model, x, batch["mask"], logits)
        return loss if extra is None else loss + extra

    def cls_epoch(epoch: int, loss: float) -> None:
        auroc = macro_auroc(_class_probs(cls, guidance, val["image"], masks["val"]), val["label"].cpu().numpy())
        record = {"cls_train_loss": loss, "val_auroc": auroc}
        history.append({"stage": "cls", "epoch": epoch, **record})
        reporter.log(record, step=epoch)
        stop_if_asked(reporter, auroc, epoch)

    fit(cls, cls_loss, cls_train, epochs=config.cls_epochs, batch_size=config.batch_size, lr=config.cls_lr,
        optimiser=config.optimiser, seed=config.seed + 1, on_epoch=cls_epoch)

    probs = _part_probs(data, masks, cls, guidance)
    metrics = _scores(data, masks, cls, guidance, probs)
    # Per-case validation scores (probabilities + labels, in validation order, no ids): lets the leaderboard
    # bootstrap val_auroc over cases across seeds (bench.cases); AUROC itself has no per-case value.
    # Per-case heart Dice rides along for the report's per-case box plot.
    val_cases = case_file(SPEC.objective, "macro_auroc", labels=val["label"].cpu().numpy(), probs=probs["val"],
                          val_heart_dice=per_case_dice(masks["val"], val["heart"]),
                          **({"groups": data.groups["val"]} if "val" in data.groups else {}))  # issue 21: patients
    return TrialResult(
        config=config.replace(split_hash=data.split_hash, classes=data.classes),
        objective_name=SPEC.objective,
        objective=metrics[SPEC.objective],
        metrics=metrics,
        history=history,
        state_dicts={"segmenter": seg.state_dict(), "classifier": cls.state_dict()},
        previews={"overlay.png": _overlay(val, masks["val"], cls, guidance, data.classes),
                  CASE_FILE: val_cases},
        tags=class_tags(data.classes),
    )


def class_tags(classes: tuple[str, ...]) -> dict[str, str]:
    """Run tags naming what the AUROC is of: the classes in label order and, if binary, the positive one."""
    positive = positive_class(classes)
    return {"classes": ",".join(classes), **({"positive_class": positive} if positive else {})}


def _overlay(part: dict[str, torch.Tensor], predicted: torch.Tensor, cls, guidance, classes: tuple[str, ...],
             n: int = 4) -> bytes:
    """Overlay PNG of the first ``n`` cases of a part: true/predicted heart and the classifier's saliency.

    Saliency is |d top logit / d image| through the guidance with the predicted mask, as in
    :func:`bench.metrics.attention_in_mask`. Titles carry the class only, never a case or patient id.
    """
    from bench.report import overlay_png

    rows = slice(0, min(n, len(part["image"])))
    cls = cls.to(device()).eval()
    x = part["image"][rows].detach().to(device()).requires_grad_(True)
    logits = cls(guidance.inputs(x, predicted[rows].to(x.device)))
    top = logits.gather(1, logits.argmax(1, keepdim=True)).sum()
    (grad,) = torch.autograd.grad(top, x)
    saliency = grad.abs().sum(1, keepdim=True).cpu()
    titles = [f"val {i}: {classes[int(label)]}" for i, label in enumerate(part["label"][rows])]
    return overlay_png(part["image"][rows].cpu(), part["heart"][rows].cpu(), predicted[rows].cpu(), saliency, titles)


def metric_names(classes: tuple[str, ...]) -> list[str]:
    """Class names as metric keys use them (``recall_<name>``): MLflow allows letters, digits and _-. /."""
    safe = [re.sub(r"[^\w\-. /]", "_", c) for c in classes]
    return [name if safe.count(name) == 1 else f"{name}_{k}" for k, name in enumerate(safe)]


def _part_probs(data: XrayData, masks: dict[str, torch.Tensor], cls, guidance) -> dict[str, np.ndarray]:
    """Class probabilities of every scored part (not train; not an empty part, e.g. JSRT has no test part)."""
    return {part: _class_probs(cls, guidance, truth["image"], masks[part])
            for part, truth in data.parts.items() if part != "train" and len(truth["label"])}


def _scores(data: XrayData, masks: dict[str, torch.Tensor], cls, guidance,
            part_probs: dict[str, np.ndarray]) -> dict[str, float]:
    """Validation is the objective; test parts are logged only."""
    metrics: dict[str, float] = {}
    for part, probs in part_probs.items():
        truth = data.parts[part]
        labels = truth["label"].cpu().numpy()
        metrics[f"{part}_auroc"] = macro_auroc(probs, labels)  # two classes: AUROC of the positive one
        metrics[f"{part}_accuracy"] = accuracy(probs, labels)
        metrics[f"{part}_balanced_accuracy"] = balanced_accuracy(probs, labels)
        recalls = per_class_recall(probs, labels, metric_names(data.classes))
        metrics.update({f"{part}_{k}": v for k, v in recalls.items()})
        metrics[f"{part}_heart_dice"] = mean_dice(masks[part], truth["heart"])
        metrics[f"{part}_heart_hd95_px"] = heart_hd95(masks[part], truth["heart"])  # pixels, never mm
        metrics[f"{part}_ctr_error"] = ctr_error(masks[part], truth["heart"], truth["thorax_width"].cpu().numpy())
        # saliency w.r.t. the raw image, through the guidance, measured against the *true* heart
        metrics[f"{part}_attention_in_heart"] = attention_in_mask(
            cls.to(device()), truth["image"], truth["heart"],
            prepare=lambda x, rows, part=part: guidance.inputs(x, masks[part][rows].to(x.device)))
    if "test_shifted_auroc" in metrics and "test_auroc" in metrics:
        for name in ("auroc", "balanced_accuracy", "attention_in_heart"):
            metrics[f"shift_gap_{name}"] = shift_gap(metrics, name)
    return metrics


def evaluate(config: TrialConfig, state_dicts: dict[str, dict]) -> dict[str, float]:
    """Score logged weights without training (``bench replay --checkpoint``)."""
    data = _resident(prepare(config))
    seg, cls, guidance = build_models(config, len(data.classes))
    seg.load_state_dict(state_dicts["segmenter"])
    cls.load_state_dict(state_dicts["classifier"])
    masks = _predicted_masks(seg, data)
    return _scores(data, masks, cls, guidance, _part_probs(data, masks, cls, guidance))
