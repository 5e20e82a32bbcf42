"""ct-lung: segment the lungs, then segment lung lesions (nodules, ground-glass opacities) guided by the
predicted lung mask; the objective is the validation lesion Dice.

Pipeline of one trial: read cases (phantom or a CT reader) → clip HU to a lung window, resample to the
target spacing, scale to [0, 1] (cached) → stage 1: a fixed light 3D network segments the lungs → stage 2:
the searched lesion network (3D MONAI or 2D smp run slice by slice) trains on patches balanced between
lesion and background (MONAI RandCropByPosNegLabel), guided by the stage-1 lung mask (a ``LESION_GUIDANCE`` strategy, see
``ct_lung_guidance``) → sliding-window inference on whole volumes → per-case metrics on val (objective)
and test (logged only).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.transforms import (
    Compose,
    RandCropByPosNegLabel,
    RandFlip,
    RandGaussianNoise,
    RandScaleIntensity,
    Resize,
    ScaleIntensityRange,
    SpatialPad,
)
from monai.transforms.utils import map_binary_to_indices
from monai.utils import convert_to_tensor

from bench import runtime
from bench.cases import CASE_FILE, case_file
from bench.config import TrialConfig
from bench.data.cache import cached_arrays, fingerprint
from bench.data.ct_io import lung_mask_from_hu
from bench.data.phantoms.ct import CLASSES, CtPhantomSpec, generate
from bench.data.sources import read_cases, resolve_split, source_descriptor, source_name
from bench.errors import ConfigError, SplitError
from bench.guidance import LESION_GUIDANCE, LesionGuidance
from bench.losses import SEG_LOSSES
from bench.metrics_seg3d import LESION_METRICS, case_metrics, mean_lesion_dice, summarise
from bench.tasks import Preset, TaskSpec, register_task
from bench.tasks.ct_lung_guidance import make_guidance, to_image_grid, to_segmenter_grid
from bench.tasks.ct_lung_nets import build_seg_net, family_of
from bench.train import Reporter, TrialResult, device, make_optimiser, stop_if_asked

TASK = "ct-lung"
PREPROCESSING_VERSION = "ct-prep-v1"
HU_WINDOW = (-1000.0, 400.0)  # lung window wide enough to keep solid nodules and vessels distinct

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
    "tolerance_mm": 5.0,
    "threshold": 0.0,  # lesion logit above which a voxel is predicted lesion  # surface-Dice tolerance: one voxel at the default spacing
}


def task_param(config: TrialConfig, key: str) -> Any:
    unknown = sorted(set(config.task_params) - set(DEFAULT_TASK_PARAMS))
    if unknown:
        raise ConfigError(f"ct-lung task_params must be among {sorted(DEFAULT_TASK_PARAMS)}, but got {unknown}.")
    return config.task_params.get(key, DEFAULT_TASK_PARAMS[key])


def phantom_spec(config: TrialConfig) -> CtPhantomSpec:
    return CtPhantomSpec(n_patients=int(task_param(config, "phantom_patients")),
                         shape=tuple(int(s) for s in task_param(config, "phantom_shape")))


@dataclass
class CtData:
    split_hash: str
    spacing: tuple[float, float, float]
    parts: dict[str, list[dict[str, np.ndarray]]]  # part -> cases: image (D,H,W) float32, lung, lesion uint8
    key: str = ""  # fingerprint of source + preprocessing (the volume cache's key)


def prepare(config: TrialConfig) -> CtData:
    """Load (or build once) the preprocessed volumes and cut them by the split; no patient ids leave here."""
    if config.data_format in ("dicom", "mhd"):  # the make-phantom export names → this task's readers
        config = config.replace(data_format={"dicom": "ct_dicom", "mhd": "luna16"}[config.data_format])
    spec = phantom_spec(config)
    spacing = tuple(float(s) for s in task_param(config, "spacing"))
    descriptor = source_descriptor(config.data, config.data_format, spec.name())
    source = source_name(config.data, descriptor)
    key = fingerprint({"data": descriptor, "prep": PREPROCESSING_VERSION, "spacing": spacing})
    built_cases: list = []

    def build() -> dict[str, np.ndarray]:
        cases = read_cases(config.data, config.data_format, CLASSES, lambda: generate(spec))
        built_cases.extend(cases)
        return preprocess(cases, spacing)

    arrays = cached_arrays(key, build)
    ids = [str(i) for i in arrays["case_id"]]
    patient_of = dict(zip(ids, map(str, arrays["patient_id"])))
    if config.data_format == "luna16" and built_cases:
        from bench.data.formats.luna16 import keep_official_split

        keep_official_split(TASK, source, built_cases)
    split = resolve_split(TASK, source, patient_of, built_cases or None)
    if config.split_hash and config.split_hash != split.sha256:
        raise SplitError(
            f"the trial's split_hash must match the data's split, but got {config.split_hash[:12]}… vs "
            f"{split.sha256[:12]}…. The split file or data changed since this trial was configured."
        )
    row = {case_id: i for i, case_id in enumerate(ids)}
    parts: dict[str, list[dict[str, np.ndarray]]] = {}
    for part in ("train", "val", "test"):
        chosen = [row[i] for i in split.part(part, config.fold)]
        if part == "train" and config.max_train_cases:
            chosen = sorted(np.random.default_rng(0).permutation(chosen)[: config.max_train_cases].tolist())
        parts[part] = [
            {name: np.ascontiguousarray(arrays[name][i]) for name in ("image", "lung", "lesion")} for i in chosen
        ]
    return CtData(split.sha256, spacing, parts, key)


def preprocess(cases, spacing: tuple[float, float, float]) -> dict[str, np.ndarray]:
    """HU → lung window → [0, 1], resampled to ``spacing``, padded to one common shape (air / background)."""
    window = ScaleIntensityRange(a_min=HU_WINDOW[0], a_max=HU_WINDOW[1], b_min=0.0, b_max=1.0, clip=True)
    images, lungs, lesions = [], [], []
    for c in cases:
        hu = np.asarray(c.image, np.float32)
        lung = c.masks.get("lung")
        if lung is None:  # e.g. MSD Task06 has lesion labels only: derive the lungs from the HU values
            lung = lung_mask_from_hu(hu)
        lesion = c.masks.get("lesion", np.zeros(hu.shape, np.uint8))
        size = [max(1, round(n * s / t)) for n, s, t in zip(hu.shape, c.spacing, spacing)]
        image = window(hu[None])
        masks = torch.from_numpy(np.stack([lung > 0, lesion > 0]).astype(np.float32))
        if list(hu.shape) != size:
            image = Resize(size, mode="trilinear")(image)
            masks = Resize(size, mode="nearest")(masks)
        images.append(torch.as_tensor(image).float())
        lungs.append(torch.as_tensor(masks[:1]))
        lesions.append(torch.as_tensor(masks[1:]))
    shape = np.max([im.shape[1:] for im in images], axis=0).tolist()
    pad = SpatialPad(shape)
    return {
        "image": np.stack([pad(im).numpy()[0] for im in images]).astype(np.float32),
        "lung": np.stack([pad(m).numpy()[0] for m in lungs]).astype(np.uint8),
        "lesion": np.stack([pad(m).numpy()[0] for m in lesions]).astype(np.uint8),
        "case_id": np.array([c.id for c in cases]),
        "patient_id": np.array([c.patient_id for c in cases]),
        "label": np.array([str(c.labels.get("class", "")) for c in cases]),
    }


# --- generic patch training / sliding-window inference over lists of volumes ----------------------------
@dataclass
class Volumes:
    """Network inputs of one part, per case on the segmenter's grid (input channels (C,D,H,W), target and
    lung (1,D,H,W)), plus the guiding lung on the image grid for ``guide.outputs`` at inference."""

    guide: LesionGuidance
    inputs: list[np.ndarray]
    targets: list[np.ndarray]
    grid_lungs: list[np.ndarray]
    lungs: list[np.ndarray]


def make_volumes(cases, target: str, guide: LesionGuidance, lungs: list[np.ndarray] | None) -> Volumes:
    """``lungs`` guide each case (None: no lungs, e.g. for the lung stage itself with ``none`` guidance)."""
    lungs = lungs if lungs is not None else [np.zeros(c["image"].shape, np.uint8) for c in cases]
    guided = [to_segmenter_grid(guide, c["image"], c[target], lung) for c, lung in zip(cases, lungs)]
    return Volumes(guide, [v.inputs for v in guided], [v.target for v in guided], [v.lung for v in guided],
                   list(lungs))


def train_net(
    net: torch.nn.Module,
    vols: Volumes,
    loss_fn: Callable,
    *,
    patch: tuple[int, int, int],
    samples: int,
    pos_fraction: float,
    epochs: int,
    batch_size: int,
    lr: float,
    optimiser: str,
    seed: int,
    augment: bool,
    on_epoch: Callable[[int, float], None],
) -> None:
    """Patch training: each epoch draws ``samples`` lesion/background-balanced patches per volume."""
    dev = device()
    policy = runtime.current()
    runtime.prepare_model(net, policy, spatial_dims=3)
    step = runtime.TrainStep(net, make_optimiser(optimiser, net.parameters(), lr), policy)
    crop = RandCropByPosNegLabel(spatial_size=patch, pos=pos_fraction, neg=1.0 - pos_fraction, num_samples=samples)
    crop.set_random_state(seed)
    # Spatial augmentation moves every channel (image, lung, target, region) together; intensity
    # augmentation touches the CT channel only.
    flip = RandFlip(prob=0.5, spatial_axis=2)
    flip.set_random_state(seed + 1)
    intensity = Compose([RandScaleIntensity(factors=0.1, prob=0.5), RandGaussianNoise(prob=0.3, std=0.02)])
    intensity.set_random_state(seed + 2)
    pad = SpatialPad(patch)
    stacked, indices = [], []
    for x, y, r in zip(vols.inputs, vols.targets, vols.grid_lungs):
        parts = [x, y, r]
        # Plain tensors: MONAI's MetaTensor bookkeeping costs more than the tiny CPU convolutions.
        arr = convert_to_tensor(pad(torch.from_numpy(np.concatenate(parts))), track_meta=False)
        stacked.append(arr)
        label = arr[x.shape[0] : x.shape[0] + 1]
        indices.append(map_binary_to_indices(label))
    gen = torch.Generator().manual_seed(seed)
    n_in = vols.inputs[0].shape[0]
    for epoch in range(epochs):
        net.train()
        patches = []
        with warnings.catch_warnings():  # lesion-free volumes: MONAI warns and samples background only
            warnings.simplefilter("ignore")
            for arr, (fg, bg) in zip(stacked, indices):
                patches.extend(crop(arr, label=arr[n_in : n_in + 1], fg_indices=fg, bg_indices=bg))
        batch_all = torch.stack([convert_to_tensor(p, track_meta=False) for p in patches])
        order = torch.randperm(len(batch_all), generator=gen)
        total = torch.zeros((), dtype=torch.float64, device=dev)
        for start in range(0, len(order), batch_size):
            b = batch_all[order[start : start + batch_size]]
            if augment:
                b = torch.stack([convert_to_tensor(flip(bi), track_meta=False) for bi in b])
                ct = torch.stack([convert_to_tensor(intensity(bi[:1]), track_meta=False) for bi in b])
                b = torch.cat([ct, b[:, 1:]], dim=1)
            b = runtime.prepare_batch(b, policy)
            x = b[:, :n_in]
            total += step(lambda m, x=x, b=b: loss_fn(vols.guide.restrict(m(x), b[:, n_in + 1 : n_in + 2]),
                                                      b[:, n_in : n_in + 1])).double() * len(x)
        epoch_loss = float(total) / max(len(batch_all), 1)
        if not np.isfinite(epoch_loss):
            raise FloatingPointError(f"training loss became {epoch_loss} at epoch {epoch}")
        on_epoch(epoch, epoch_loss)


@torch.no_grad()
def infer(net: torch.nn.Module, vols: Volumes, patch: tuple[int, int, int], threshold: float = 0.0
          ) -> list[np.ndarray]:
    """Binary predictions (logit > ``threshold``) on whole volumes: sliding window, then ``guide.outputs``."""
    dev = device()
    net.to(dev).eval()
    out = []
    for x, lung in zip(vols.inputs, vols.lungs):
        xt = torch.from_numpy(x)[None].to(dev)
        # 2D windows are single slices: batch many per call.
        with runtime.autocast():
            logits = sliding_window_inference(xt, roi_size=patch, sw_batch_size=8 if patch[0] > 1 else 64,
                                              predictor=net, overlap=0.25)
        logits = to_image_grid(vols.guide, logits.float(), lung)
        out.append((logits[0, 0] > threshold).cpu().numpy().astype(np.uint8))
    return out


# --- the trial ----------------------------------------------------------------------------------------
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
    lesion_net = build_seg_net(config.seg_arch, 1 + guide.extra_channels, family, config.seg_encoder, width,
                               patch=patch)
    threshold = float(task_param(config, "threshold"))
    loss = SEG_LOSSES.create(config.seg_loss, **config.seg_loss_params)  # validate before any work
    data = prepare(config)
    history: list[dict] = []

    # --- stage 1: lungs (a fixed light 3D network, so trials differ only in what the search varies) ----
    lung_net, lung_pred = lung_stage(config, data, reporter, history)
    # Validation and test are always guided by predicted lungs; training by what ``train_mask`` says.
    guide_lungs = {p: [c["lung"] for c in data.parts[p]] if p == "train" and guide.train_mask == "ground_truth"
                   else lung_pred[p] for p in data.parts}

    # --- stage 2: lesions, guided by the lungs ---------------------------------------------------------
    vols = {p: make_volumes(cases, "lesion", guide, guide_lungs[p]) for p, cases in data.parts.items()}
    offset = int(task_param(config, "lung_epochs"))
    common = {"optimiser": config.optimiser, "augment": config.augment}

    latest_val: list[np.ndarray] = []  # the last epoch's validation predictions: the final ones too

    def lesion_epoch(epoch: int, value: float) -> None:
        preds = infer(lesion_net, vols["val"], roi, threshold)
        latest_val[:] = preds
        val_dice = mean_lesion_dice(preds, [c["lesion"] for c in data.parts["val"]])
        record = {"lesion_train_loss": value, "val_lesion_dice": val_dice}
        history.append({"stage": "lesion", "epoch": epoch, **record})
        reporter.log(record, step=offset + epoch)
        stop_if_asked(reporter, val_dice, epoch)

    train_net(lesion_net, vols["train"], loss, patch=patch, samples=samples,
              pos_fraction=float(task_param(config, "pos_fraction")), epochs=config.seg_epochs, lr=config.lr,
              batch_size=config.batch_size * slices,
              seed=config.seed, on_epoch=lesion_epoch, **common)

    # --- evaluation: validation is the objective, test is logged only -------------------------------
    metrics: dict[str, float] = {}
    tol = float(task_param(config, "tolerance_mm"))
    lesion_pred, rows = {}, {}
    for part in ("val", "test"):
        reuse = part == "val" and latest_val  # empty when no lesion epoch ran
        lesion_pred[part] = latest_val if reuse else infer(lesion_net, vols[part], roi, threshold)
        rows[part] = [case_metrics(p, c["lesion"], lp, c["lung"], data.spacing, tol)
                      for p, lp, c in zip(lesion_pred[part], lung_pred[part], data.parts[part])]
        metrics.update({f"{part}_{k}": v for k, v in summarise(rows[part]).items()})
    # Per-case lesion Dice of the cases the objective averages (lesion-bearing ones), for the case bootstrap
    # of `bench leaderboard --seeds`; their plain mean is the objective.
    val_cases = [r["lesion_dice"] for r in rows["val"] if r["_lesions"] > 0]
    return TrialResult(
        config=config.replace(split_hash=data.split_hash),
        objective_name=SPEC.objective,
        objective=metrics[SPEC.objective],
        metrics=metrics,
        history=history,
        state_dicts={"lung_segmenter": lung_net.state_dict(), "lesion_segmenter": lesion_net.state_dict()},
        previews={"overlay.png": overlay(data.parts["val"], lesion_pred["val"]),
                  CASE_FILE: case_file(SPEC.objective, "mean", values=val_cases)},
    )


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


def lung_stage(config: TrialConfig, data: CtData, reporter: Reporter, history: list[dict]
               ) -> tuple[torch.nn.Module, dict[str, list[np.ndarray]]]:
    """Train the lung segmenter and predict every part's lungs, or load both from the stage cache.

    The lung stage depends on the data, the fold, the lung settings and the seed, never on what a search
    varies, so all trials of a search share one; deterministic training makes the cached stage equal to a
    retrained one (the key includes torch's version, the thread count and the runtime policy — device,
    precision, … — which could change bits).
    """
    patch3d = tuple(int(p) for p in task_param(config, "patch"))
    roi3d = tuple(int(p) for p in task_param(config, "infer_roi"))
    width = int(task_param(config, "width"))
    settings = {k: task_param(config, k) for k in ("lung_epochs", "lung_samples_per_volume", "lung_lr", "patch",
                                                    "infer_roi", "width")}
    key = "lung-" + fingerprint({
        "stage": "ct-lung-lung-v1", "data": data.key, "split": data.split_hash, "fold": config.fold,
        "max_train_cases": config.max_train_cases, "seed": config.seed, "settings": settings,
        "batch_size": config.batch_size, "optimiser": config.optimiser, "augment": config.augment,
        "torch": torch.__version__, "threads": torch.get_num_threads(), "runtime": runtime.current().as_dict(),
    })
    lung_net = build_seg_net("monai_unet", 1, "3d", width=width, patch=patch3d)
    unguided = LESION_GUIDANCE.create("none")

    def train() -> dict[str, np.ndarray]:
        vols = {p: make_volumes(cases, "lung", unguided, None) for p, cases in data.parts.items()}
        losses: list[float] = []

        def on_epoch(epoch: int, value: float) -> None:
            losses.append(value)
            reporter.log({"lung_train_loss": value}, step=epoch)  # only the trial that trains it reports it

        # Dice + CE: the CE term gets the easy lung/non-lung contrast right within a couple of epochs.
        train_net(lung_net, vols["train"], SEG_LOSSES.create("dice_ce"), patch=patch3d,
                  samples=int(task_param(config, "lung_samples_per_volume")), pos_fraction=0.5,
                  epochs=int(task_param(config, "lung_epochs")), lr=float(task_param(config, "lung_lr")),
                  seed=config.seed + 7, batch_size=config.batch_size, optimiser=config.optimiser,
                  augment=config.augment, on_epoch=on_epoch)
        arrays = {f"weight.{name}": t.detach().cpu().numpy() for name, t in lung_net.state_dict().items()}
        arrays["losses"] = np.array(losses, np.float64)
        for part, v in vols.items():
            arrays[f"pred.{part}"] = np.stack(infer(lung_net, v, roi3d)) if v.inputs else np.zeros((0,), np.uint8)
        return arrays

    stored = cached_arrays(key, train)
    lung_net.load_state_dict({name[len("weight."):]: torch.from_numpy(np.array(a)) for name, a in stored.items()
                              if name.startswith("weight.")})
    # The learning curve shows the lung stage either way; MLflow's per-epoch metrics (and epochs_trained)
    # only count epochs this trial trained.
    history.extend({"stage": "lung", "epoch": epoch, "lung_train_loss": value}
                   for epoch, value in enumerate(stored["losses"].tolist()))
    preds = {part: [np.array(p) for p in stored[f"pred.{part}"]] for part in data.parts}
    return lung_net, preds


def make_phantom(out: str | Path, data_format: str = "nifti", cases: int | None = None, seed: int = 0) -> Path:
    """Write the ct-lung phantom in a real layout: ``dicom`` (series + labels.csv), ``nifti`` (MSD Task06
    layout), ``mhd`` (LUNA16 layout); the reader names ``ct_dicom``/``msd``/``luna16``/``nifti`` work too.

    ``cases`` truncates the default phantom to its first N volumes (whole follow-up series stay together
    only if N falls on a patient boundary); ``seed`` changes every volume.
    """
    from bench.data.ct_inspect import CT_FORMAT_ALIASES
    from bench.data.formats import FORMATS

    fmt = CT_FORMAT_ALIASES.get(data_format, data_format)
    if fmt not in ("ct_dicom", "msd", "nifti", "luna16"):
        raise ConfigError(f"--format for ct-lung must be one of dicom, nifti, mhd, {list(SPEC.formats)}, "
                          f"but got '{data_format}'.")
    spec = CtPhantomSpec(seed=seed)
    if cases is not None and cases < 1:
        raise ConfigError(f"--cases must be >= 1, but got {cases}.")
    if cases is not None and cases > 0:
        spec = CtPhantomSpec(n_patients=max(spec.n_patients, cases), seed=seed)
    volumes = generate(spec)[: cases or None]
    return FORMATS.create(fmt).write(volumes, out)


def inspect(path: str | Path, data_format: str) -> dict:
    """`bench datasets inspect PATH --task ct-lung --format F`: see ``bench.data.ct_inspect.inspect_ct``."""
    from bench.data.ct_inspect import inspect_ct

    return inspect_ct(path, data_format)


# The phantom keeps its 24 patients: the committed phantom split names them all.
SMOKE_PARAMS = {"phantom_shape": [16, 32, 32], "spacing": [10.0, 8.0, 8.0],
                "patch": [16, 32, 32], "patch_2d": 32, "infer_roi": [16, 32, 32], "lung_epochs": 1,
                "lung_samples_per_volume": 4, "samples_per_volume": 1, "width": 8}

SPEC = register_task(
    TaskSpec(
        name=TASK,
        description="Chest CT: lung segmentation + lung-guided lesion segmentation (nodules, GGO)",
        classes=CLASSES,
        objective="val_lesion_dice",
        metrics=LESION_METRICS,
        formats=("ct_dicom", "msd", "nifti", "luna16"),
        presets={
            "smoke": Preset(
                config={"seg_arch": "monai_unet", "seg_epochs": 1, "batch_size": 4, "max_train_cases": 6,
                        "task_params": SMOKE_PARAMS},
                trials=2, space="ct-lung-smoke.yaml", description="seconds; tiny volumes, used by the tests",
            ),
            "cpu": Preset(
                # Lesions are 1-7 voxels across at 5x4x4 mm: many small patches (12 of 16x32x32 per volume
                # and epoch, ~70 % centred on lesions), a loss with a voxel-wise or recall term and a lesion
                # threshold of logit -1 (plain Dice with 2 large patches flooded the lungs). The 2D family
                # runs on 32x32 in-plane windows, like the 3D patches, with the light mobilenet_v2 encoder.
                # Measured costs and scores: datasets/ct-lung-phantom/README.md.
                config={"seg_arch": "monai_unet", "seg_encoder": "mobilenet_v2", "seg_epochs": 10, "batch_size": 4,
                        "seg_loss": "dice_ce", "lr": 3e-3,
                        "task_params": {"lung_epochs": 8, "samples_per_volume": 12, "pos_fraction": 0.7,
                                        "patch": [16, 32, 32], "patch_2d": 32, "threshold": -1.0}},
                trials=8, space="ct-lung-cpu.yaml",
                description="8 trials, about 15 min on a 2-core CPU (both network families)",
            ),
            "gpu": Preset(
                config={"seg_arch": "monai_unet", "seg_epochs": 60, "batch_size": 8,
                        "task_params": {"lung_epochs": 10, "phantom_shape": [64, 128, 128],
                                        "spacing": [2.5, 2.0, 2.0],
                                        "patch": [32, 96, 96], "patch_2d": 128, "width": 16,
                                        "infer_roi": [64, 128, 128],
                                        "samples_per_volume": 4}},
                # The phantom's 24 patients at 2.5x2x2 mm (the committed split names them); not yet timed on a GPU.
                trials=50, space="ct-lung.yaml", description="one GPU, 50 trials (not yet timed)",
            ),
        },
        run=run,
        prepare=prepare,
        make_phantom=make_phantom,
        inspect=inspect,
        headline=("val_lung_dice", "val_fp_outside_lung_ml", "test_lesion_dice", "test_fp_outside_lung_ml"),
        extra={"guidance": LESION_GUIDANCE.names(),
               "space_registries": {"guidance": ["bench.guidance", "LESION_GUIDANCE"]}},
    )
)

