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

Data comes in batches (``bench.data.rows``, ``bench.train.loading``): the parts stay in the cache's files
and are streamed, or are gathered into memory (on the GPU when resident) where the runtime policy says they
fit (``bench.runtime.place_data``, recorded as ``bench.runtime.data``); both give the same numbers.
Predicted masks of streamed parts go to the trial's scratch folder as ``.npy`` files.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench import runtime
from bench.cases import CASE_FILE, case_file
from bench.config import TrialConfig
from bench.data.cache import RowStream, scratch, write_rows
from bench.data.labels import positive_class
from bench.data.rows import NpyColumn, Rows
from bench.guidance import GUIDANCE
from bench.losses import SEG_LOSSES
from bench.metrics import (
    accuracy,
    attention_in_mask,
    balanced_accuracy,
    ctr_error,
    heart_hd95,
    macro_auroc,
    per_case_dice,
    per_class_recall,
    shift_gap,
)
from bench.models import CLASSIFIERS, SEG_MODELS
from bench.stages import run_stage
from bench.tasks.xray_heart.data import PREPROCESSING_VERSION, XrayData, config_classes, prepare
from bench.tasks.xray_heart.spec import SEG_STAGE, SPEC
from bench.train import Reporter, TrialResult, device, fit, in_order, loading, predict_batch, stop_if_asked


def build_models(config: TrialConfig,
                 n_classes: int | None = None) -> tuple[torch.nn.Module, torch.nn.Module, object]:
    """Fresh segmenter, (guidance-wrapped) classifier and guidance strategy for ``config``.

    ``n_classes``: the classifier's outputs; default the config's class list (resolved from the data when
    the config has none, as configs logged before class lists did: the phantom's four).
    """
    seg_kwargs = {"encoder": config.seg_encoder}
    if "img_size" in SEG_MODELS.entry(config.seg_arch).parameters():
        seg_kwargs["img_size"] = SPEC.param(config, "image_size")  # transformers need the input size up front
    seg = SEG_MODELS.create(config.seg_arch, in_channels=1, classes=1, **seg_kwargs)
    n_classes = n_classes or len(config.classes or config_classes(config))
    # Guidance acts on the classifier only, so the segmenter stage must not depend on it: segmentation
    # training draws from torch's global stream (decoder dropout), which a classifier with extra input
    # channels or an extra head would shift. The guided classifier is built on a forked stream, and the
    # global stream then advances as the plain classifier's build does, so unguided trials (and their
    # logged runs) keep the very same random numbers.
    classifier = SPEC.param(config, "classifier")
    with torch.random.fork_rng(devices=[]):
        guidance = GUIDANCE.create(config.guidance, **config.guidance_params)
        cls = guidance.wrap_model(CLASSIFIERS.create(
            classifier, in_channels=1 + guidance.extra_channels, num_classes=n_classes))
    CLASSIFIERS.create(classifier, in_channels=1, num_classes=n_classes)
    return seg, cls, guidance


def checkpoint_models(config: TrialConfig) -> dict[str, torch.nn.Module]:
    """The trial's models keyed as in checkpoint.pt."""
    seg, cls, _ = build_models(config)
    return {"segmenter": seg, "classifier": cls}


EVAL_BATCH = 64  # rows per prediction / scoring batch (streamed and resident alike, so both give one number)


def _placed(data: XrayData) -> XrayData:
    """The parts where the runtime policy puts them, by their measured size (``bench.runtime.place_data``):
    gathered into memory (on the GPU when resident there) or left streaming from the cache."""
    nbytes = sum(part.select("image", "heart").nbytes() for part in data.parts.values())
    where = runtime.place_data(nbytes)
    if where == "stream":
        return data
    dev = device() if where == "device" else None
    return XrayData(data.split_hash, {name: part.in_memory(dev) for name, part in data.parts.items()}, data.classes,
                    data.groups, data.key)


def _predicted_masks(seg: torch.nn.Module, data: XrayData, scratch: Path | None) -> dict[str, Rows]:
    """Every part with its predicted heart mask (column ``mask``, 0/1, drawn as float32).

    Streamed parts get theirs written to ``scratch/<part>/mask.npy`` a row at a time and read back in
    batches like the images; parts in memory keep theirs as one tensor beside their images.
    """
    runtime.prepare_model(seg).eval()
    out = {}
    for name, part in data.parts.items():
        order = in_order(len(part), EVAL_BATCH)

        def masks(part=part, order=order) -> Iterator[torch.Tensor]:
            with loading(part.select("image"), order) as drawn:
                for batch in drawn:
                    yield (predict_batch(seg, batch["image"]) > 0).to(torch.uint8)

        if part.streamed and scratch is not None and len(part):
            folder = scratch / name
            folder.mkdir()
            produced = masks()
            try:
                write_rows(folder, RowStream(len(part), ({"mask": row} for m in produced for row in m.cpu().numpy())))
            finally:
                produced.close()
            column = NpyColumn(folder / "mask.npy")
        else:
            column = torch.cat([m.to(_column_device(part)) for m in masks()]) if len(part) else \
                torch.zeros((0, *part.row_shape("image")), dtype=torch.uint8)
        out[name] = part.with_columns({"mask": torch.float32}, mask=column)
    return out


def _mask_array(part: Rows) -> np.ndarray:
    """A part's predicted masks (uint8, one row per case) as the stage cache stores them."""
    column = part.columns["mask"]
    if isinstance(column, NpyColumn):
        return np.load(column.path, mmap_mode="r", allow_pickle=False)
    return column.cpu().numpy()


def _with_mask(part: Rows, masks: np.ndarray, folder: Path) -> Rows:
    """``part`` with masks the stage cache loaded, placed as :func:`_predicted_masks` places its own: written
    to ``folder/mask.npy`` row by row for a streamed part, one tensor beside the images otherwise."""
    if part.streamed and len(part):
        folder.mkdir()
        write_rows(folder, RowStream(len(part), ({"mask": row} for row in masks)))
        column = NpyColumn(folder / "mask.npy")
    else:
        column = torch.from_numpy(np.array(masks)).to(_column_device(part))
    return part.with_columns({"mask": torch.float32}, mask=column)


def _column_device(part: Rows) -> torch.device:
    image = part.columns["image"]
    return image.device if isinstance(image, torch.Tensor) else torch.device("cpu")


def _val_dice(seg: torch.nn.Module, part: Rows) -> float:
    """Mean per-case heart Dice of the segmenter on ``part``, batch by batch."""
    runtime.prepare_model(seg).eval()
    dice = []
    with loading(part.select("image", "heart"), in_order(len(part), EVAL_BATCH)) as drawn:
        for batch in drawn:
            pred = predict_batch(seg, batch["image"]) > 0
            dice.append(per_case_dice(pred, batch["heart"].to(pred.device)))
    return float(np.nanmean(np.concatenate(dice))) if dice else float("nan")


def _class_probs(cls, guidance, part: Rows) -> np.ndarray:
    """Class probabilities of every case of ``part`` (one row per case), guided by its ``mask`` column."""
    runtime.prepare_model(cls).eval()
    probs = []
    with loading(part.select("image", "mask"), in_order(len(part), EVAL_BATCH)) as drawn:
        for batch in drawn:
            dev = device()
            x = guidance.inputs(batch["image"].to(dev), batch["mask"].to(dev))
            probs.append(torch.softmax(predict_batch(cls, x), dim=1).cpu().numpy())
    return np.concatenate(probs) if probs else np.zeros((0, 0))


def run(config: TrialConfig, reporter: Reporter) -> TrialResult:
    data = _placed(prepare(config))
    with scratch() as space:
        return _run(config, reporter, data, space)


def _run(config: TrialConfig, reporter: Reporter, data: XrayData, space: Path) -> TrialResult:
    train, val = data.parts["train"], data.parts["val"]
    history: list[dict] = []
    seg, cls, guidance = build_models(config, len(data.classes))

    # --- stage 1: heart segmentation ------------------------------------------------------------
    seg_loss = SEG_LOSSES.create(config.seg_loss, **config.seg_loss_params)

    trained: dict[str, Rows] = {}

    def train_segmenter(log) -> tuple[dict, dict[str, np.ndarray]]:
        def seg_epoch(epoch: int, loss: float) -> None:
            log({"seg_train_loss": loss, "seg_val_heart_dice": _val_dice(seg, val)}, epoch)

        fit(seg, lambda m, b: seg_loss(m(b["image"]), b["heart"]), train.select("image", "heart"),
            epochs=config.seg_epochs, batch_size=config.batch_size, lr=config.lr, optimiser=config.optimiser,
            seed=config.seed, on_epoch=seg_epoch)
        trained.update(_predicted_masks(seg, data, space))
        return {"segmenter": seg.state_dict()}, {f"mask.{name}": _mask_array(part) for name, part in trained.items()}

    stage = run_stage(SEG_STAGE, config, data_key=data.key, split_hash=data.split_hash, reporter=reporter,
                      train=train_segmenter, params=SPEC.params_of(config))
    history.extend({"stage": "seg", "epoch": step, **record} for step, record in stage.epochs)
    if stage.loaded:
        seg.load_state_dict(stage.weights["segmenter"])
        parts = {name: _with_mask(part, stage.arrays[f"mask.{name}"], space / name)
                 for name, part in data.parts.items()}
    else:
        parts = trained

    # --- stage 2: guided classification; validation/test always see predicted masks -------------
    if getattr(guidance, "train_mask", "predicted") == "ground_truth":
        cls_train = train.with_columns({"mask": torch.float32}, mask=train.columns["heart"])
    else:
        cls_train = parts["train"]
    cls_train = cls_train.select("image", "mask", "label")

    def cls_loss(model, batch):
        x = guidance.inputs(batch["image"], batch["mask"])
        logits = model(x)
        loss = F.cross_entropy(logits, batch["label"])
        extra = guidance.extra_loss(model, x, batch["mask"], logits)
        return loss if extra is None else loss + extra

    def cls_epoch(epoch: int, loss: float) -> None:
        auroc = macro_auroc(_class_probs(cls, guidance, parts["val"]), val.per_case("label"))
        record = {"cls_train_loss": loss, "val_auroc": auroc}
        history.append({"stage": "cls", "epoch": epoch, **record})
        reporter.log(record, step=epoch)
        stop_if_asked(reporter, auroc, epoch)

    fit(cls, cls_loss, cls_train, epochs=SPEC.param(config, "cls_epochs"), batch_size=config.batch_size,
        lr=SPEC.param(config, "cls_lr"), optimiser=config.optimiser, seed=config.seed + 1, on_epoch=cls_epoch)

    metrics, per_case = _scores(parts, cls, guidance, data.classes)
    # Per-case validation scores (probabilities + labels, in validation order, no ids): lets the leaderboard
    # bootstrap val_auroc over cases across seeds (bench.cases); AUROC itself has no per-case value.
    # Per-case heart Dice rides along for the report's per-case box plot.
    val_cases = case_file(SPEC.objective, "macro_auroc", labels=val.per_case("label"), probs=per_case["val"]["probs"],
                          val_heart_dice=per_case["val"]["dice"],
                          **({"groups": data.groups["val"]} if "val" in data.groups else {}))  # issue 21: patients
    return TrialResult(
        config=config.replace(split_hash=data.split_hash, classes=data.classes),
        objective_name=SPEC.objective,
        objective=metrics[SPEC.objective],
        metrics=metrics,
        history=history,
        state_dicts={"segmenter": seg.state_dict(), "classifier": cls.state_dict()},
        previews={"overlay.png": _overlay(parts["val"], cls, guidance, data.classes),
                  CASE_FILE: val_cases},
        tags=class_tags(data.classes),
        model=model_info(config, data.classes),
    )


def model_info(config: TrialConfig, classes: tuple[str, ...]) -> dict:
    """What predicting with this trial's weights needs besides its config (``TrialResult.model``, logged in
    model.json: ``bench.model_file``); ``bench.tasks.xray_heart.predict`` reads it back."""
    size = int(SPEC.param(config, "image_size"))
    seg_args: dict = {"in_channels": 1, "classes": 1, "encoder": config.seg_encoder}
    if "img_size" in SEG_MODELS.entry(config.seg_arch).parameters():
        seg_args["img_size"] = size
    return {
        "models": {
            "segmenter": {"registry": "SEG_MODELS", "name": config.seg_arch, "args": seg_args,
                          "output": "heart logit; heart where > 0"},
            "classifier": {"registry": "CLASSIFIERS", "name": SPEC.param(config, "classifier"),
                           "args": {"num_classes": len(classes)}, "guidance": config.guidance,
                           "guidance_params": dict(config.guidance_params),
                           "output": "class logits; softmax over classes"},
        },
        "classes": list(classes),
        "preprocessing": {"version": PREPROCESSING_VERSION, "image_size": size, "resize": "area to size x size",
                          "intensity": "grey in [0, 1], then z-scored per image"},
    }


def class_tags(classes: tuple[str, ...]) -> dict[str, str]:
    """Run tags naming what the AUROC is of: the classes in label order and, if binary, the positive one."""
    positive = positive_class(classes)
    return {"classes": ",".join(classes), **({"positive_class": positive} if positive else {})}


def _overlay(part: Rows, cls, guidance, classes: tuple[str, ...], n: int = 4) -> bytes:
    """Overlay PNG of the first ``n`` cases of a part: true/predicted heart and the classifier's saliency.

    Saliency is |d top logit / d image| through the guidance with the predicted mask, as in
    :func:`bench.metrics.attention_in_mask`. Titles carry the class only, never a case or patient id.
    """
    from bench.report import overlay_png

    first = part[list(range(min(n, len(part))))]
    cls = cls.to(device()).eval()
    x = first["image"].detach().to(device()).requires_grad_(True)
    logits = cls(guidance.inputs(x, first["mask"].to(x.device)))
    top = logits.gather(1, logits.argmax(1, keepdim=True)).sum()
    (grad,) = torch.autograd.grad(top, x)
    saliency = grad.abs().sum(1, keepdim=True).cpu()
    titles = [f"val {i}: {classes[int(label)]}" for i, label in enumerate(first["label"])]
    return overlay_png(first["image"].cpu(), first["heart"].cpu(), first["mask"].cpu(), saliency, titles)


def metric_names(classes: tuple[str, ...]) -> list[str]:
    """Class names as metric keys use them (``recall_<name>``): MLflow allows letters, digits and _-. /."""
    safe = [re.sub(r"[^\w\-. /]", "_", c) for c in classes]
    return [name if safe.count(name) == 1 else f"{name}_{k}" for k, name in enumerate(safe)]


def _scores(parts: dict[str, Rows], cls, guidance, classes: tuple[str, ...]
            ) -> tuple[dict[str, float], dict[str, dict[str, np.ndarray]]]:
    """Metrics of every scored part (not train; not an empty part, e.g. JSRT has no test part), batch by batch.

    Validation is the objective; test parts are logged only. What a metric needs of the whole part is kept
    per case (class probabilities, Dice) or as a running sum (HD95, CTR error, attention share: means over
    cases), never images. Also returns the per-case ``probs`` and ``dice`` of each part.
    """
    metrics: dict[str, float] = {}
    per_case: dict[str, dict[str, np.ndarray]] = {}
    dev = device()
    cls = runtime.prepare_model(cls).eval()
    for part, rows in parts.items():
        if part == "train" or not len(rows):
            continue
        probs, dice = [], []
        hd95 = attention = ctr = 0.0
        ctr_cases = 0
        with loading(rows, in_order(len(rows), EVAL_BATCH)) as drawn:
            for batch in drawn:
                image, mask, heart = batch["image"].to(dev), batch["mask"].to(dev), batch["heart"].to(dev)
                n = len(image)
                with torch.no_grad():
                    probs.append(torch.softmax(predict_batch(cls, guidance.inputs(image, mask)), dim=1).cpu().numpy())
                dice.append(per_case_dice(mask, heart))
                hd95 += heart_hd95(mask, heart) * n
                width = batch["thorax_width"].cpu().numpy()
                known = int((np.isfinite(width) & (width > 0)).sum())
                if known:
                    ctr += ctr_error(mask, heart, width) * known
                    ctr_cases += known
                # saliency w.r.t. the raw image, through the guidance, measured against the *true* heart
                attention += attention_in_mask(
                    cls, image, heart, prepare=lambda x, sl, mask=mask: guidance.inputs(x, mask[sl].to(x.device))) * n
        probs_all, dice_all, labels = np.concatenate(probs), np.concatenate(dice), rows.per_case("label")
        per_case[part] = {"probs": probs_all, "dice": dice_all}
        metrics[f"{part}_auroc"] = macro_auroc(probs_all, labels)  # two classes: AUROC of the positive one
        metrics[f"{part}_accuracy"] = accuracy(probs_all, labels)
        metrics[f"{part}_balanced_accuracy"] = balanced_accuracy(probs_all, labels)
        recalls = per_class_recall(probs_all, labels, metric_names(classes))
        metrics.update({f"{part}_{k}": v for k, v in recalls.items()})
        metrics[f"{part}_heart_dice"] = float(np.nanmean(dice_all))
        metrics[f"{part}_heart_hd95_px"] = hd95 / len(rows)
        metrics[f"{part}_ctr_error"] = ctr / ctr_cases if ctr_cases else float("nan")
        metrics[f"{part}_attention_in_heart"] = attention / len(rows)
    if "test_shifted_auroc" in metrics and "test_auroc" in metrics:
        for name in ("auroc", "balanced_accuracy", "attention_in_heart"):
            metrics[f"shift_gap_{name}"] = shift_gap(metrics, name)
    return metrics, per_case


def evaluate(config: TrialConfig, state_dicts: dict[str, dict]) -> dict[str, float]:
    """Score logged weights without training (``bench replay --checkpoint``)."""
    data = _placed(prepare(config))
    seg, cls, guidance = build_models(config, len(data.classes))
    seg.load_state_dict(state_dicts["segmenter"])
    cls.load_state_dict(state_dicts["classifier"])
    with scratch() as space:
        return _scores(_predicted_masks(seg, data, space), cls, guidance, data.classes)[0]
