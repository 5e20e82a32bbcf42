"""The second stage of a two-stage segmentation task, shared by ct-lung (lesions in the lungs) and segmentation
(a target in its guide organ): train the searched network on patches of the guided volumes, predicting the
validation part after each epoch (reported for pruning), then predict validation and test and score each case
against the truth and the organ that guided it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from bench.config import TrialConfig
from bench.metrics_seg3d import case_metrics, mean_lesion_dice
from bench.tasks.seg_engine.training import Predictions, Volumes, train_net
from bench.train import Reporter, stop_if_asked


@dataclass
class Scored:
    """Per part ("val", "test"): the predicted masks and the per-case metric rows (``case_metrics``)."""

    predictions: dict[str, np.ndarray]
    rows: dict[str, list[dict]]
    # several labels: per label, per part, the per-case rows of that label (``rows`` then holds label 1's)
    per_label: dict[str, dict[str, list[dict]]] | None = None

    def objective_cases(self, groups: Mapping[str, Sequence[int]]) -> tuple[list[float], dict]:
        """Validation Dice of the cases the objective averages (those with a target; several labels: each
        case's mean over the labels it holds), for the case bootstrap, and their anonymous patient numbers
        (``groups`` of ``case_file``) when the data has them."""
        if self.per_label:
            by_case = list(zip(*(rows["val"] for rows in self.per_label.values())))
            dices = [[r["lesion_dice"] for r in case if r["_lesions"] > 0] for case in by_case]
            held = [bool(d) for d in dices]
            values = [float(np.mean(d)) for d in dices if d]
        else:
            held = [r["_lesions"] > 0 for r in self.rows["val"]]
            values = [r["lesion_dice"] for r, h in zip(self.rows["val"], held) if h]
        kept = {"groups": [g for g, h in zip(groups["val"], held) if h]} if "val" in groups else {}
        return values, kept


def label_dice(preds, truths, label_values: Sequence[Sequence[int]] = ()) -> float:
    """Mean over labels (the mask values each stands for, ``label_values``) of their mean Dice over the cases
    holding them; no labels given: the binary lesion Dice."""
    if not label_values:
        return mean_lesion_dice(preds, truths)
    truths = list(truths)
    each = [mean_lesion_dice([np.isin(p, v) for p in preds], [np.isin(t, v) for t in truths])
            for v in label_values]
    kept = [d for d in each if not np.isnan(d)]
    return float(np.mean(kept)) if kept else float("nan")


def train_and_score(config: TrialConfig, reporter: Reporter, history: list[dict], store: Predictions,
                    net: torch.nn.Module, loss, vols: Mapping[str, Volumes], cases: Mapping[str, Sequence[Mapping]],
                    organs: Mapping[str, Sequence[np.ndarray]], *, stage: str, target: str, organ: str,
                    offset: int, patch, roi, slices: int, samples: int, threshold: float, pos_fraction: float,
                    spacing, tolerance_mm: float, labels: Sequence[str] = (),
                    label_values: Sequence[Sequence[int]] = ()) -> Scored:
    """Train ``net`` (history records and logged metrics ``<stage>_train_loss`` and ``val_<stage>_dice`` at
    step ``offset + epoch``), then score val and test: case ``target`` mask against the prediction, with
    ``organs[part]`` (the organ each case's metrics are taken in) and the case's ``organ`` mask. Several
    ``labels`` (names; ``label_values``: the mask values each stands for, default (1,), (2,), ...): the
    validation Dice is their mean and each label is scored on its own (``Scored.per_label``)."""
    n_labels = max(len(labels), 1)
    if n_labels > 1 and not label_values:
        label_values = tuple((k,) for k in range(1, n_labels + 1))
    latest_val: list[np.ndarray] = []  # the last epoch's validation predictions: the final ones too

    def on_epoch(epoch: int, value: float) -> None:
        preds = store.predict(net, vols["val"], roi, threshold)
        if latest_val:
            store.drop(latest_val.pop())
        latest_val.append(preds)
        val_dice = label_dice(preds, [c[target] for c in cases["val"]], label_values if n_labels > 1 else ())
        record = {f"{stage}_train_loss": value, f"val_{stage}_dice": val_dice}
        history.append({"stage": stage, "epoch": epoch, **record})
        reporter.log(record, step=offset + epoch)
        stop_if_asked(reporter, val_dice, epoch)

    train_net(net, vols["train"], loss, patch=patch, samples=samples, pos_fraction=pos_fraction,
              epochs=config.seg_epochs, lr=config.lr, batch_size=config.batch_size * slices, seed=config.seed,
              on_epoch=on_epoch, optimiser=config.optimiser, augment=config.augment)

    predictions, rows = {}, {}
    per_label: dict[str, dict[str, list[dict]]] = {name: {} for name in labels} if n_labels > 1 else {}
    for part in ("val", "test"):
        reuse = part == "val" and latest_val  # empty when no epoch ran
        predictions[part] = latest_val[0] if reuse else store.predict(net, vols[part], roi, threshold)
        if n_labels == 1:
            rows[part] = [case_metrics(p, c[target], o, c[organ], spacing, tolerance_mm)
                          for p, o, c in zip(predictions[part], organs[part], cases[part])]
            continue
        for name, values in zip(labels, label_values):
            per_label[name][part] = [case_metrics(np.isin(p, values), np.isin(c[target], values), o, c[organ],
                                                  spacing, tolerance_mm)
                                     for p, o, c in zip(predictions[part], organs[part], cases[part])]
        rows[part] = per_label[labels[0]][part]
    return Scored(predictions, rows, per_label or None)
