"""Metrics with a declared direction, so rankings never need a hand-passed ``mode``.

Directions live in the ``METRICS`` registry (one declaration per base name; an undeclared name is an error,
never a silent "higher is better"). Importing this module is light: torch, MONAI and scikit-learn are
imported by the functions that compute a metric. Segmentation distances come from MONAI, classification
scores from scikit-learn; only what neither has
is written here: the cardiothoracic ratio (CTR) error, attention-in-mask (share of input-gradient
saliency, Simonyan et al. 2014, "Deep Inside Convolutional Networks", that falls inside the true
heart) and the shift gap between the normal and the site-shifted test part.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bench.errors import RegistryError
from bench.registry import Registry

if TYPE_CHECKING:  # torch is imported by the functions that need it, so directions stay cheap to read
    import torch

PART_PREFIXES = ("test_shifted_", "val_", "test_", "train_")
# Metric names that carry a suffix: recall_<class>, shift_gap_<metric>.
FAMILIES = ("recall", "shift_gap")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    higher_is_better: bool
    description: str
    # Region of practical equivalence (``bench compare``): differences within +-rope do not matter in practice.
    rope: float | None = None


METRICS: Registry = Registry("metric")


def metric(name: str, higher_is_better: bool, description: str, rope: float | None = None) -> MetricSpec:
    """Declare a metric's direction (once: a second declaration of ``name`` raises RegistryError) and, for a
    score, its region of practical equivalence ``rope`` (a difference within +-rope is practically none)."""
    spec = MetricSpec(name, higher_is_better, description, rope)
    METRICS.add(name, spec, description, higher_is_better=higher_is_better)
    return spec


metric("auroc", True, "area under the ROC curve: the positive class's when binary, else macro one-vs-rest", rope=0.01)
metric("accuracy", True, "share of cases whose arg-max class is right", rope=0.01)
metric("heart_dice", True, "Dice of the thresholded predicted heart mask, mean over cases", rope=0.01)
metric("loss", False, "training loss")
# Radiographs often carry no pixel spacing (CheXpert, PNG folders), so the heart's HD95 is measured in pixels of
# the model's input grid and named so: a distance without a unit in its name would read as millimetres.
metric("heart_hd95_px", False, "95th-percentile Hausdorff distance of the predicted heart mask in pixels of the "
       "model's input grid (not mm), mean over cases")
metric("heart_hd95", False, "older runs' name of heart_hd95_px: pixels of the model's input grid, not mm")
metric("ctr_error", False, "mean absolute error of the cardiothoracic ratio measured on the predicted heart mask")
metric("balanced_accuracy", True, "mean per-class recall (balanced accuracy) of the classifier", rope=0.01)
metric("recall", True, "recall of one class (recall_<class>)", rope=0.01)
metric("attention_in_heart", True, "share of the classifier's input-gradient saliency inside the true heart mask", rope=0.01)
metric("shift_gap", False, "metric on the normal test part minus the site-shifted test part (shift_gap_<metric>)")
# Per-epoch training curves the tasks log (cls_train_loss: xray-heart classifier; lesion_train_loss: ct-lung).
metric("cls_train_loss", False, "classifier training loss per epoch (learning curve)")
metric("lesion_train_loss", False, "lesion segmenter training loss per epoch (learning curve)")
# CT lesion metrics, computed in bench.metrics_seg3d (declared here so directions never import it).
metric("lesion_dice", True, "Dice of the predicted lesion mask, mean over lesion-bearing cases", rope=0.01)
metric("lung_dice", True, "Dice of the predicted lung mask, mean over cases", rope=0.01)
metric("lesion_hd95", False, "95th-percentile Hausdorff distance of lesions in mm, mean over lesion-bearing cases")
metric("lesion_nsd", True, "normalised surface Dice of lesions at a mm tolerance, mean over lesion-bearing cases", rope=0.01)
metric("fp_outside_lung_ml", False, "predicted lesion volume outside the true lungs in mL, mean over cases")
metric("lesion_sensitivity", True, "share of true lesions (connected components) hit by the prediction", rope=0.01)
metric("case_specificity", True, "share of lesion-free cases with no predicted lesion voxel", rope=0.01)
# Target / guide metrics of the segmentation task (bench.metrics_seg3d's lesion / lung metrics for any data set's
# target label and the organ that encloses it).
metric("target_dice", True, "Dice of the predicted target mask, mean over target-bearing cases", rope=0.01)
metric("guide_dice", True, "Dice of the guide stage's predicted organ mask, mean over cases", rope=0.01)
metric("target_hd95", False, "95th-percentile Hausdorff distance of the target in mm, mean over target-bearing cases")
metric("target_nsd", True, "normalised surface Dice of the target at a mm tolerance, mean over target-bearing cases", rope=0.01)
metric("fp_outside_guide_ml", False, "predicted target volume outside the true guide organ in mL, mean over cases")
metric("target_sensitivity", True, "share of true target components hit by the prediction", rope=0.01)
# Several targets (segmentation --target all / A,B): each label's own, named <metric>.<label> (val_dice.PZ).
metric("dice", True, "Dice of one label (dice.<label>), mean over the cases holding it", rope=0.01)
metric("hd95", False, "95th-percentile Hausdorff distance of one label in mm (hd95.<label>), mean over its cases")
metric("nsd", True, "normalised surface Dice of one label (nsd.<label>), mean over the cases holding it", rope=0.01)
metric("target_train_loss", False, "target segmenter training loss per epoch (learning curve)")
metric("guide_train_loss", False, "guide-organ segmenter training loss per epoch (learning curve)")
# Costs, logged for every trial by the search backends so multi-objective searches and --pareto can use them.
metric("epochs_trained", False, "epochs a trial trained, all stages, until it finished or was pruned")
metric("trial_seconds", False, "wall time of the whole trial (training and evaluation), seconds")
metric("n_weights", False, "numbers in the trial's checkpoint: parameters and buffers of all its models")
metric("run_seconds", False, "wall time of the trial's MLflow run (end minus start), a leaderboard column")


def base_name(metric_name: str) -> str:
    """Strip a part prefix and a per-class/per-metric/per-label suffix: ``test_shifted_recall_VSD`` ->
    ``recall``, ``val_dice.PZ`` -> ``dice``."""
    metric_name = metric_name.split(".", 1)[0]
    for prefix in PART_PREFIXES:
        if metric_name.startswith(prefix):
            metric_name = metric_name[len(prefix) :]
            break
    for family in FAMILIES:
        if metric_name.startswith(family + "_"):
            return family
    return metric_name


def practical_difference(metric_name: str) -> float | None:
    """The declared region of practical equivalence of a (possibly prefixed, ``@fold``/``@run``-suffixed)
    metric name; None when its base declares none or is not declared."""
    base = base_name(metric_name.split("@")[0])
    return METRICS.get(base).rope if base in METRICS else None


def higher_is_better(metric_name: str) -> bool:
    """Direction of a (possibly prefixed) metric name such as ``val_auroc`` or ``test_shifted_heart_hd95``.

    Raises:
        RegistryError: the name's base (prefix and suffix stripped) is not a declared metric.
    """
    base = base_name(metric_name)
    if base not in METRICS:
        raise RegistryError(f"'{metric_name}' needs a declared direction to be ranked: {METRICS.unknown_message(base)}"
                            " Declare new metrics with bench.metrics.metric(name, higher_is_better, description).")
    return METRICS.get(base).higher_is_better


def per_case_dice(pred: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """Dice of each case of binary masks (N,1,...); a case with both masks empty counts as 1."""
    from monai.metrics import compute_dice  # lazy: MONAI takes seconds to import; the leaderboard needs none

    per_case = compute_dice(pred.float(), target.float(), include_background=True, ignore_empty=False)
    return per_case.reshape(-1).cpu().numpy().astype(float)


def mean_dice(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean per-case Dice of binary masks (N,1,...); a case with both masks empty counts as 1."""
    return float(np.nanmean(per_case_dice(pred, target)))


def macro_auroc(probs: np.ndarray, labels: np.ndarray) -> float:
    """Macro one-vs-rest AUROC over the classes present; NaN if fewer than two classes are present."""
    from sklearn.metrics import roc_auc_score

    present = np.unique(labels)
    if len(present) < 2:
        return float("nan")
    if probs.shape[1] == 2:
        return float(roc_auc_score(labels, probs[:, 1]))
    scores = [roc_auc_score(labels == k, probs[:, k]) for k in present]
    return float(np.mean(scores))


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float((probs.argmax(1) == labels).mean())


def balanced_accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean recall over the classes present in ``labels`` (sklearn's balanced accuracy)."""
    from sklearn.metrics import balanced_accuracy_score

    if len(labels) == 0:
        return float("nan")
    return float(balanced_accuracy_score(labels, probs.argmax(1)))


def per_class_recall(probs: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """``{"recall_<class>": recall}`` for every class; NaN for a class absent from ``labels``."""
    # By hand rather than sklearn.recall_score, which reports an absent class as 0 with a warning.
    pred = probs.argmax(1) if len(labels) else np.zeros(0, int)
    out = {}
    for k, name in enumerate(classes):
        present = labels == k
        out[f"recall_{name}"] = float((pred[present] == k).mean()) if present.any() else float("nan")
    return out


def heart_hd95(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean 95th-percentile Hausdorff distance in pixels of binary masks (N,1,H,W), via MONAI (logged as
    ``heart_hd95_px``: no spacing is applied, so it is never a distance in mm).

    A case whose prediction is empty while the truth is not gets the image diagonal (the worst distance
    possible), so a segmenter cannot improve its score by predicting nothing; both empty counts as 0.
    """
    pred, target = pred.cpu().float() > 0.5, target.cpu().float() > 0.5  # distance transforms run on the CPU
    if not len(pred):
        return float("nan")
    diagonal = float(np.hypot(*pred.shape[2:]))
    with warnings.catch_warnings():  # MONAI warns about its own deprecated argument and about empty masks
        warnings.simplefilter("ignore")
        from monai.metrics import compute_hausdorff_distance

        values = compute_hausdorff_distance(pred.float(), target.float(), include_background=True, percentile=95)
    values = values.reshape(-1).double().numpy().copy()
    has_p, has_t = pred.flatten(1).any(1).numpy(), target.flatten(1).any(1).numpy()
    values[has_p != has_t] = diagonal
    values[~has_p & ~has_t] = 0.0
    return float(np.mean(values))


def mask_width(masks: torch.Tensor) -> np.ndarray:
    """Widest horizontal extent (pixels) of each mask (N,1,H,W): the CTR's numerator."""
    cols = (masks.cpu().float() > 0.5).flatten(1, 2).reshape(masks.shape[0], -1, masks.shape[-1]).any(1).numpy()
    out = np.zeros(len(cols))
    for i, c in enumerate(cols):
        idx = np.flatnonzero(c)
        out[i] = idx[-1] - idx[0] + 1 if len(idx) else 0
    return out


def ctr_error(pred: torch.Tensor, target: torch.Tensor, thorax_width: np.ndarray) -> float:
    """Mean |CTR(pred) - CTR(true)|, both measured as heart width over the true thoracic width (pixels).

    Cases without a thoracic width (NaN or 0, e.g. no lung masks in the source) are skipped; NaN if none.
    """
    thorax = np.asarray(thorax_width, float)
    ok = np.isfinite(thorax) & (thorax > 0)
    if not ok.any():
        return float("nan")
    err = np.abs(mask_width(pred) - mask_width(target))[ok] / thorax[ok]
    return float(err.mean())


def attention_in_mask(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    masks: torch.Tensor,
    prepare: Callable[[torch.Tensor, slice], torch.Tensor] | None = None,
    batch_size: int = 32,
) -> float:
    """Mean share of input-gradient saliency |d logit_pred / d x| that falls inside ``masks``.

    Args:
        model: the classifier (eval mode is set here; its parameters get no gradient).
        inputs: raw images (N,C,H,W); the gradient is taken with respect to these.
        masks: true region (N,1,H,W), e.g. the ground-truth heart.
        prepare: maps a batch of raw images and its slice of the data set to the model input (e.g. a
            guidance strategy applying the *predicted* mask), so dimming outside the heart counts as
            attending inside it; identity if None.
        batch_size: images per backward pass.

    Returns:
        Mean over cases of sum(saliency * mask) / sum(saliency); NaN for no cases.
    """
    import torch

    model.eval()
    device = next(model.parameters()).device
    shares = []
    for start in range(0, len(inputs), batch_size):
        part = slice(start, start + batch_size)
        x = inputs[part].detach().to(device).requires_grad_(True)
        model_in = prepare(x, part) if prepare is not None else x
        logits = model(model_in)
        top = logits.gather(1, logits.argmax(1, keepdim=True)).sum()
        (grad,) = torch.autograd.grad(top, x)
        saliency = grad.abs().sum(1)  # over channels; stays on the device until the end
        inside = (saliency * (masks[part].to(saliency.device).float()[:, 0] > 0.5)).flatten(1).sum(1)
        shares.append(inside / saliency.flatten(1).sum(1).clamp_min(1e-12))
    return float(torch.cat(shares).cpu().numpy().mean()) if shares else float("nan")


def cost_metrics(state_dicts: Mapping[str, Mapping[str, object]], seconds: float | None = None) -> dict[str, float]:
    """``n_weights`` (tensor elements over every model's state dict) and, if given, ``trial_seconds``."""
    n = sum(int(t.numel()) for sd in state_dicts.values() for t in sd.values() if hasattr(t, "numel"))
    out = {"n_weights": float(n)} if state_dicts else {}
    if seconds is not None:
        out["trial_seconds"] = float(seconds)
    return out


def shift_gap(metrics: Mapping[str, float], name: str) -> float:
    """``test_<name> - test_shifted_<name>``: how much a score drops when the site/class link breaks."""
    return float(metrics[f"test_{name}"] - metrics[f"test_shifted_{name}"])
