"""ct-lung: segment the lungs, then segment lung lesions (nodules, ground-glass opacities) guided by the
predicted lung mask; the objective is the validation lesion Dice.

Pipeline of one trial: read cases (phantom or a CT reader) → clip HU to a lung window, resample to the
target spacing, scale to [0, 1] (cached) → stage 1: a fixed light 3D network segments the lungs → stage 2:
the searched lesion network (3D MONAI or 2D smp run slice by slice) trains on patches balanced between
lesion and background (MONAI RandCropByPosNegLabel), guided by the stage-1 lung mask (a
``LESION_GUIDANCE`` strategy, see ``bench.tasks.seg_engine.guided``) → sliding-window inference on whole
volumes → per-case metrics on val (objective) and test (logged only). Both stages run on the shared
segmentation engine (``bench.tasks.seg_engine``: ``first_stage``, ``target_stage``).
"""

from __future__ import annotations

import numpy as np
import torch

from bench import runtime
from bench.cases import CASE_FILE, case_file
from bench.config import TrialConfig
from bench.losses import SEG_LOSSES
from bench.metrics_seg3d import summarise
from bench.tasks.ct_lung.data import CtData, prepare
from bench.tasks.ct_lung.spec import LUNG_STAGE, SPEC, task_param
from bench.tasks.seg_engine.first_stage import FirstStage, first_stage
from bench.tasks.seg_engine.guided import make_guidance
from bench.tasks.seg_engine.nets import build_seg_net, family_of
from bench.tasks.seg_engine.target_stage import train_and_score
from bench.tasks.seg_engine.training import Predictions, make_volumes, predictions
from bench.train import Reporter, TrialResult


def run(config: TrialConfig, reporter: Reporter) -> TrialResult:
    guide = make_guidance(config.guidance, config.guidance_params)
    family = family_of(config.seg_arch, task_param(config, "family") or None)
    width = int(task_param(config, "width"))
    patch3d = tuple(int(p) for p in task_param(config, "patch"))
    p2d = int(task_param(config, "patch_2d"))
    patch = patch3d if family == "3d" else (1, p2d, p2d)
    roi3d = tuple(int(p) for p in task_param(config, "infer_roi"))
    roi = roi3d if family == "3d" else (1, p2d, p2d)
    # A 2D sample is one slice, ~1/16 of a 3D patch: draw 4x as many and batch 4x as many.
    slices = 1 if family == "3d" else 4
    samples = int(task_param(config, "samples_per_volume")) * slices
    # Built now (a bad architecture fails before any work) on a forked random stream, so the lung stage
    # starts from the same random state whatever the lesion network is, and is shared by all of them.
    with torch.random.fork_rng(devices=[]):
        lesion_net = build_seg_net(config.seg_arch, 1 + guide.extra_channels, family, config.seg_encoder, width,
                                   patch=patch)
    threshold = float(task_param(config, "threshold"))
    loss = SEG_LOSSES.create(config.seg_loss, **config.seg_loss_params)  # validate before any work
    data, streamed = placed(prepare(config))
    with predictions(streamed) as store:
        return _stages(config, reporter, data, store, guide, lesion_net, loss, patch=patch, roi=roi,
                       slices=slices, samples=samples, threshold=threshold)


def _stages(config: TrialConfig, reporter: Reporter, data: CtData, store: Predictions, guide, lesion_net, loss, *,
            patch, roi, slices: int, samples: int, threshold: float) -> TrialResult:
    """Both stages and the evaluation; predicted masks go through ``store`` (scratch when volumes stream)."""
    history: list[dict] = []

    # --- stage 1: lungs (a fixed light 3D network, so trials differ only in what the search varies) ----
    lung_net, lung_pred = lung_stage(config, data, reporter, history, store)
    # Validation and test are always guided by predicted lungs; training by what ``train_mask`` says.
    guide_lungs = {p: [c["lung"] for c in data.parts[p]] if p == "train" and guide.train_mask == "ground_truth"
                   else lung_pred[p] for p in data.parts}

    # --- stage 2: lesions, guided by the lungs; validation is the objective, test is logged only ---------
    vols = {p: make_volumes(cases, "lesion", guide, guide_lungs[p]) for p, cases in data.parts.items()}
    scored = train_and_score(config, reporter, history, store, lesion_net, loss, vols, data.parts, lung_pred,
                             stage="lesion", target="lesion", organ="lung",
                             offset=int(task_param(config, "lung_epochs")), patch=patch, roi=roi, slices=slices,
                             samples=samples, threshold=threshold,
                             pos_fraction=float(task_param(config, "pos_fraction")), spacing=data.spacing,
                             tolerance_mm=float(task_param(config, "tolerance_mm")))
    metrics = {f"{part}_{k}": v for part in ("val", "test") for k, v in summarise(scored.rows[part]).items()}
    # Per-case lesion Dice of the cases the objective averages (lesion-bearing ones), for the case bootstrap
    # of `bench leaderboard --seeds`; their plain mean is the objective. Groups: anonymous patient numbers.
    val_cases, groups = scored.objective_cases(data.groups)
    return TrialResult(
        config=config.replace(split_hash=data.split_hash),
        objective_name=SPEC.objective,
        objective=metrics[SPEC.objective],
        metrics=metrics,
        history=history,
        state_dicts={"lung_segmenter": lung_net.state_dict(), "lesion_segmenter": lesion_net.state_dict()},
        previews={"overlay.png": overlay(data.parts["val"], scored.predictions["val"]),
                  CASE_FILE: case_file(SPEC.objective, "mean", values=val_cases, **groups)},
    )


def placed(data: CtData) -> tuple[CtData, bool]:
    """The volumes where the runtime policy puts them by their measured size (``bench.runtime.place_data``):
    copied into memory, or left as the cache's memory-mapped volumes (read as patches and windows need them);
    and whether they stream."""
    nbytes = sum(a.nbytes for cases in data.parts.values() for case in cases for a in case.values())
    if runtime.place_data(nbytes) == "stream":
        return data, True
    parts = {p: [{k: np.array(a) for k, a in case.items()} for case in cases] for p, cases in data.parts.items()}
    return CtData(data.split_hash, data.spacing, parts, data.key, data.groups), False


def overlay(cases: list[dict[str, np.ndarray]], lesion_pred: list[np.ndarray], n: int = 4) -> bytes:
    """Axial slices of up to ``n`` validation cases (lesion-bearing first), each at its largest true lesion
    (or, on a lesion-free case, its largest predicted one): true lesion contour green, predicted red."""
    from bench.report import overlay_png

    order = sorted(range(len(cases)), key=lambda i: not cases[i]["lesion"].any())[:n]
    images, trues, preds, titles = [], [], [], []
    for i in order:
        shown = cases[i]["lesion"] if cases[i]["lesion"].any() else lesion_pred[i]
        z = int(np.argmax(shown.reshape(len(shown), -1).sum(axis=1)))
        images.append(cases[i]["image"][z])
        trues.append(cases[i]["lesion"][z])
        preds.append(lesion_pred[i][z])
        titles.append(f"val case {i}, slice {z}")
    return overlay_png(np.stack(images), np.stack(trues), np.stack(preds), titles=titles)


def lung_stage(config: TrialConfig, data: CtData, reporter: Reporter, history: list[dict], store: Predictions
               ) -> tuple[torch.nn.Module, dict[str, list[np.ndarray]]]:
    """Train the lung segmenter and predict every part's lungs, or load both from the stage cache
    (:mod:`bench.stages`, ``LUNG_STAGE``: it depends on the data, fold, seed and the lung settings, never on
    what a search varies, so all trials of a search share one)."""
    stage = FirstStage(LUNG_STAGE, "lung", 1, "3d", tuple(int(p) for p in task_param(config, "patch")),
                       tuple(int(p) for p in task_param(config, "infer_roi")), int(task_param(config, "width")),
                       int(task_param(config, "lung_samples_per_volume")), int(task_param(config, "lung_epochs")),
                       float(task_param(config, "lung_lr")))
    return first_stage(config, stage, data.parts, lambda unguided, cases: make_volumes(cases, "lung", unguided, None),
                       data_key=data.key, split_hash=data.split_hash, reporter=reporter, history=history,
                       store=store, params={k: task_param(config, k) for k in LUNG_STAGE.task_params})
