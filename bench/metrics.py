"""Metrics with a declared direction, so rankings never need a hand-passed ``mode``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from monai.metrics import compute_dice
from sklearn.metrics import roc_auc_score


@dataclass(frozen=True)
class MetricSpec:
    name: str
    higher_is_better: bool
    description: str


METRICS: dict[str, MetricSpec] = {}


def metric(name: str, higher_is_better: bool, description: str) -> MetricSpec:
    spec = MetricSpec(name, higher_is_better, description)
    METRICS[name] = spec
    return spec


metric("auroc", True, "macro one-vs-rest area under the ROC curve of the classifier")
metric("accuracy", True, "share of cases whose arg-max class is right")
metric("heart_dice", True, "Dice of the thresholded predicted heart mask, mean over cases")
metric("loss", False, "training loss")


def higher_is_better(metric_name: str) -> bool:
    """Direction of a (possibly prefixed) metric name such as ``val_auroc``."""
    base = metric_name.split("_", 1)[1] if metric_name.startswith(("val_", "test_", "train_")) else metric_name
    return METRICS[base].higher_is_better if base in METRICS else True


def mean_dice(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean per-case Dice of binary masks (N,1,...); a case with both masks empty counts as 1."""
    per_case = compute_dice(pred.float(), target.float(), include_background=True, ignore_empty=False)
    return float(per_case.nanmean())


def macro_auroc(probs: np.ndarray, labels: np.ndarray) -> float:
    """Macro one-vs-rest AUROC over the classes present; NaN if fewer than two classes are present."""
    present = np.unique(labels)
    if len(present) < 2:
        return float("nan")
    if probs.shape[1] == 2:
        return float(roc_auc_score(labels, probs[:, 1]))
    scores = [roc_auc_score(labels == k, probs[:, k]) for k in present]
    return float(np.mean(scores))


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float((probs.argmax(1) == labels).mean())
