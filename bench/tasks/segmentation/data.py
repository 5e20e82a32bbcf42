"""Segmentation data: any nnU-Net v2 / MSD folder (``bench.data.seg_dataset``), normalised per channel,
resampled to one spacing, padded to one shape, cached row by row and cut by the split.

Preprocessing (nnU-Net's rules, Isensee et al., Nature Methods 2021): a channel named CT is clipped to the
0.5-99.5 percentiles of the foreground voxels of the data set and z-scored with their mean and standard
deviation; every other channel is z-scored per case. Images are resampled (trilinear) and label maps
(nearest) to the target spacing (default: the data's median), then padded to the largest shape with 0.

Two passes over the cases, one case in memory at a time: the survey (spacings, shapes, CT foreground
samples, which label lies inside which) and the rows written to the cache (``bench.data.cache.RowStream``).
The label map is cached whole, so target and guide are chosen after the cache, from its containment table.

Split: nnU-Net's ``splits_final.json`` in the data folder gives the folds (labelled ``imagesTs`` cases are the
test part); else a patient-grouped split with a held-out test part; either made once and kept
(``bench.data.sources.resolve_split``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.config import TrialConfig
from bench.data.cache import RowStream, cache_root, cached_arrays, fingerprint
from bench.data.sources import PHANTOM, resolve_split, source_descriptor, source_name
from bench.data.splits import Split
from bench.errors import ConfigError, DataError, SplitError
from bench.tasks.segmentation.spec import AUTO, NO_GUIDE, TASK, task_param

PREPROCESSING_VERSION = "seg-prep-v1"
CT_CHANNELS = ("ct",)  # channel names (lower case) normalised as CT
CT_PERCENTILES = (0.5, 99.5)
SAMPLES_PER_CASE = 10_000  # foreground voxels per case and CT channel kept for the data set's statistics


class SegCase(Mapping):
    """One preprocessed case as the training code reads it: ``image`` (C,D,H,W) float32, ``target`` and
    ``guide`` (D,H,W) uint8 derived from the cached label map when read. The guide region is the guide label
    together with the target it encloses (the whole organ, as nnU-Net's region ``liver`` = liver + tumour)."""

    def __init__(self, image: np.ndarray, label: np.ndarray, target: int, guide: int | None):
        self._image, self._label, self._target, self._guide = image, label, target, guide

    def __getitem__(self, key: str) -> np.ndarray:
        if key == "image":
            return self._image
        if key == "target":
            return (self._label == self._target).astype(np.uint8)
        if key == "guide":
            if self._guide is None:
                return np.zeros(self._label.shape, np.uint8)
            return np.isin(self._label, (self._guide, self._target)).astype(np.uint8)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(("image", "target", "guide"))

    def __len__(self) -> int:
        return 3

    @property
    def nbytes(self) -> int:
        return int(self._image.nbytes + self._label.nbytes)

    def in_memory(self) -> SegCase:
        return SegCase(np.array(self._image), np.array(self._label), self._target, self._guide)


@dataclass
class SegData:
    split_hash: str
    spacing: tuple[float, ...]  # (z, y, x) mm of the cached grid (2D without spacing: 1 pixel)
    parts: dict[str, list[SegCase]]
    key: str = ""  # fingerprint of source + preprocessing (the volume cache's key)
    groups: dict[str, np.ndarray] = field(default_factory=dict)  # part -> anonymous patient numbers
    channels: tuple[str, ...] = ()
    dims: int = 3
    target: str = ""  # label names chosen (no patient information)
    guide: str | None = None
    containment: float = float("nan")  # share of target voxels inside the guide's filled region
    labels: dict[str, int] = field(default_factory=dict)  # dataset.json's label name -> value
    # CT channels' (channel, low, high, mean, std) clip and z-score statistics of the data set (None: a cache
    # written before they were kept; ``bench predict`` then reads them again from the data)
    ct_stats: list[list[float]] | None = None

    def plan(self) -> dict:
        """How new images are brought onto this data's grid (``bench predict``; logged in model.json)."""
        return {"version": PREPROCESSING_VERSION, "dims": self.dims, "channels": list(self.channels),
                "spacing": list(self.spacing), "ct_stats": self.ct_stats, "ct_channels": list(CT_CHANNELS),
                "intensity": "CT channels clipped to the data set's foreground 0.5-99.5 percentiles and z-scored "
                             "with its statistics; other channels z-scored per case",
                "resample": "image trilinear to spacing; masks back to the input grid"}


def prepare(config: TrialConfig) -> SegData:
    """Load (or build once) the preprocessed volumes and cut them by the split; no patient ids leave here."""
    from bench.data.seg_dataset import open_seg_dataset

    root = phantom_folder(config) if config.data == PHANTOM else Path(config.data)
    ds = open_seg_dataset(root, patient_regex=task_param(config, "grouping_regex") or None)
    spacing_param = [float(s) for s in task_param(config, "spacing")]
    descriptor = source_descriptor(str(root), "seg", TASK)
    source = source_name(str(root), descriptor)
    key = fingerprint({"data": descriptor, "prep": PREPROCESSING_VERSION, "spacing": spacing_param,
                       "patients": task_param(config, "grouping_regex")})
    ids = (*ds.case_ids, *ds.test_ids)
    arrays = cached_arrays(key, lambda: build_rows(ds, ids, spacing_param))
    values = [int(v) for v in arrays["label_values"]]
    target, guide, share = choose_labels(config, ds.labels, values, arrays["containment"], root)
    cached_ids = [str(i) for i in arrays["case_id"]]
    patient_of = dict(zip(cached_ids, map(str, arrays["patient_id"])))
    split = data_split(source, ds, patient_of)
    if config.split_hash and config.split_hash != split.sha256:
        raise SplitError(
            f"the trial's split_hash must match the data's split, but got {config.split_hash[:12]}… vs "
            f"{split.sha256[:12]}…. The split file or data changed since this trial was configured."
        )
    row = {case_id: i for i, case_id in enumerate(cached_ids)}
    guide_value = None if guide is None else ds.labels[guide]
    parts: dict[str, list[SegCase]] = {}
    for part in ("train", "val", "test"):
        chosen = [row[i] for i in split.part(part, config.fold)]
        if part == "train" and config.max_train_cases:
            chosen = sorted(np.random.default_rng(0).permutation(chosen)[: config.max_train_cases].tolist())
        parts[part] = [SegCase(arrays["image"][i], arrays["label"][i], ds.labels[target], guide_value)
                       for i in chosen]
    from bench.cases import (
        patient_numbers,  # issue 21: anonymous patient numbers (no id leaves the data layer)
    )

    groups = {"val": patient_numbers(arrays["patient_id"][[row[i] for i in split.part("val", config.fold)]])}
    ct_stats = np.asarray(arrays["ct_stats"]).tolist() if "ct_stats" in arrays else None
    return SegData(split.sha256, tuple(float(s) for s in arrays["spacing"]), parts, key, groups,
                   tuple(ds.channels), int(ds.dims), target, guide, share, dict(ds.labels), ct_stats)


# --- labels ----------------------------------------------------------------------------------------------
def choose_labels(config: TrialConfig, labels: Mapping[str, int], values: list[int], containment: np.ndarray,
                  root: Path) -> tuple[str, str | None, float]:
    """(target, guide or None, containment share) from the task parameters and the cached containment table
    (``containment[i, j]``: share of label ``values[i]``'s voxels inside label ``values[j]``'s filled region,
    see :func:`containment_counts`)."""
    by_value = {int(v): n for n, v in labels.items()}
    foreground = sorted(v for v in by_value if v != 0)
    if not foreground:
        raise DataError(f"{root}: dataset.json must name at least one foreground label, but names only background.")
    target = str(task_param(config, "target")) or by_value[foreground[-1]]
    if target not in labels or labels[target] == 0:
        raise ConfigError(f"task_params.target must be a foreground label of {root} "
                          f"{[by_value[v] for v in foreground]}, but got '{target}'.")
    wanted = str(task_param(config, "guide"))
    index = {v: i for i, v in enumerate(values)}
    t = index[labels[target]]

    def share(name: str) -> float:
        return float(containment[t, index[labels[name]]])

    if wanted == NO_GUIDE:
        return target, None, float("nan")
    if wanted != AUTO:
        if wanted not in labels or labels[wanted] == 0 or wanted == target:
            raise ConfigError(f"task_params.guide must be 'auto', 'none' or a foreground label of {root} other than "
                              f"the target {[by_value[v] for v in foreground if by_value[v] != target]}, but got "
                              f"'{wanted}'.")
        return target, wanted, share(wanted)
    candidates = [(share(by_value[v]), by_value[v]) for v in foreground if by_value[v] != target]
    best = max(candidates, default=(0.0, None))
    if best[1] is None or best[0] < float(task_param(config, "guide_min_containment")):
        return target, None, best[0] if best[1] is not None else float("nan")
    return target, best[1], best[0]


def containment_counts(label: np.ndarray, values: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per label pair (inner, outer): inner's voxels inside outer's filled region
    (``bench.data.seg_inspect.filled_region``, the rule `bench datasets inspect` reports), and each label's
    voxel count. Summed over cases and divided, it is the share of the inner label inside the outer one."""
    from bench.data.seg_inspect import filled_region

    present = {v: label == v for v in values}
    counts = np.array([int(present[v].sum()) for v in values], np.int64)
    inside = np.zeros((len(values), len(values)), np.float64)
    for j, outer in enumerate(values):
        if outer == 0 or not counts[j]:
            continue
        filled = filled_region(present[outer])
        for i, inner in enumerate(values):
            if i != j and counts[i]:
                inside[i, j] = float((present[inner] & filled).sum())
    return inside, counts


# --- cache rows ------------------------------------------------------------------------------------------
def build_rows(ds, ids: tuple[str, ...], spacing_param: list[float]) -> RowStream:
    """The survey pass, then a stream of rows: image (C,D,H,W) float32 and label (D,H,W) uint8 per case."""
    if not ids:
        raise DataError(f"{ds.root}: a data set must hold at least one labelled case, but it has none.")
    values = sorted(int(v) for v in ds.labels.values())
    ct = [i for i, name in enumerate(ds.channels) if name.lower() in CT_CHANNELS]
    spacings, shapes, samples = [], [], {i: [] for i in ct}
    inside = np.zeros((len(values), len(values)), np.float64)
    totals = np.zeros(len(values), np.int64)
    rng = np.random.default_rng(0)
    patients = []
    for case_id in ids:  # survey: one case in memory at a time
        case = ds.load(case_id)
        image, label = _arrays(case, ds.root)
        spacings.append(_spacing(case, label.ndim))
        shapes.append(label.shape)
        patients.append(case.patient_id)
        del case
        fg = label > 0
        for i in ct:
            voxels = image[i][fg]
            if voxels.size:
                samples[i].append(rng.choice(voxels, min(SAMPLES_PER_CASE, voxels.size), replace=False))
        got, count = containment_counts(label, values)
        inside += got
        totals += count
    target_spacing = _target_spacing(spacings, spacing_param)
    sizes = [_resampled_size(shape, sp, target_spacing) for shape, sp in zip(shapes, spacings)]
    shape = tuple(int(s) for s in np.max(sizes, axis=0))
    stats = {i: _ct_stats(np.concatenate(samples[i]) if samples[i] else np.zeros(1, np.float32)) for i in ct}

    def rows():
        for case_id, sp, size in zip(ids, spacings, sizes):
            image, label = _arrays(ds.load(case_id), ds.root)
            image, label = _resample(_normalise(image, stats), label, size)
            yield {"image": _pad(image, shape), "label": _pad(label[None], shape)[0].astype(np.uint8)}

    share = np.where(totals[:, None] > 0, inside / np.maximum(totals[:, None], 1), 0.0)
    whole = {"case_id": np.array(ids), "patient_id": np.array(patients), "label_values": np.array(values),
             "containment": share.astype(np.float64), "spacing": np.array(target_spacing, np.float64),
             "ct_stats": np.array([[i, *stats[i]] for i in ct], np.float64).reshape(len(ct), 5)}
    return RowStream(len(ids), rows(), whole)


def _arrays(case, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """The case's image as (C, D, H, W) float32 and label map as (D, H, W) int16; a 2D image is a volume of
    depth 1."""
    label = np.asarray(case.masks["label"])
    image = np.asarray(case.image, np.float32)
    if label.ndim == 2:
        label, image = label[None], image[:, None]
    if image.shape[1:] != label.shape:
        raise DataError(f"{root}: case {case.id}'s image (C, *spatial) {image.shape} must match its label map "
                        f"{label.shape}, but does not.")
    return image, label.astype(np.int16)


def _spacing(case, ndim: int) -> tuple[float, ...]:
    if case.spacing is None:
        return (1.0,) * ndim
    sp = tuple(float(s) for s in case.spacing)
    return (1.0, *sp) if len(sp) == 2 else sp


def _target_spacing(spacings, given: list[float]) -> tuple[float, ...]:
    if given:
        if len(given) != 3 or min(given) <= 0:
            raise ConfigError(f"task_params.spacing must be 3 positive (z, y, x) mm values or empty, but got {given}.")
        return tuple(given)
    return tuple(float(s) for s in np.median(np.array(spacings), axis=0))


def _resampled_size(shape, spacing, target) -> tuple[int, ...]:
    return tuple(n if n == 1 else max(1, round(n * s / t)) for n, s, t in zip(shape, spacing, target))


def _ct_stats(voxels: np.ndarray) -> tuple[float, float, float, float]:
    lo, hi = np.percentile(voxels, CT_PERCENTILES)
    clipped = np.clip(voxels, lo, hi)
    return float(lo), float(hi), float(clipped.mean()), float(max(clipped.std(), 1e-8))


def _normalise(image: np.ndarray, ct_stats: Mapping[int, tuple[float, float, float, float]]) -> np.ndarray:
    """(C, D, H, W): CT channels clipped and z-scored with the data set's statistics, others per case."""
    out = np.empty(image.shape, np.float32)
    for c in range(image.shape[0]):
        if c in ct_stats:
            lo, hi, mean, std = ct_stats[c]
            out[c] = (np.clip(image[c], lo, hi) - mean) / std
        else:
            out[c] = (image[c] - image[c].mean()) / max(float(image[c].std()), 1e-8)
    return out


def _resample(image: np.ndarray, label: np.ndarray, size: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    if tuple(label.shape) == tuple(size):
        return image, label
    import torch
    from torch.nn.functional import interpolate

    img = interpolate(torch.from_numpy(image)[None], size=size, mode="trilinear", align_corners=False)[0]
    lab = interpolate(torch.from_numpy(label.astype(np.float32))[None, None], size=size, mode="nearest")[0, 0]
    return img.numpy(), lab.numpy().astype(np.int16)


def _pad(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(C, *spatial) padded with 0 to ``shape``, centred as MONAI's SpatialPad does."""
    extra = [t - s for s, t in zip(array.shape[1:], shape)]
    return np.pad(array, [(0, 0)] + [(e // 2, e - e // 2) for e in extra])


# --- split -----------------------------------------------------------------------------------------------
def data_split(source: str, ds, patient_of: Mapping[str, str]) -> Split:
    """With nnU-Net's splits_final.json beside dataset.json its folds are the folds (labelled imagesTs cases
    and training cases in no fold the test part), read afresh so the file decides; without it the kept
    patient-grouped split with a held-out test part (``bench.data.sources.resolve_split``)."""
    from bench.data.seg_splits import split_from_splits_final

    return split_from_splits_final(ds, TASK, source) or resolve_split(TASK, source, patient_of, ds.refs())


# --- phantom and inspection ------------------------------------------------------------------------------
def phantom_folder(config: TrialConfig) -> Path:
    """Data "phantom": the organ phantom (``bench.data.phantoms.organ``), written once in nnU-Net layout under
    the cache root and read back like any folder."""
    from bench.data.phantoms.organ import OrganPhantomSpec

    spec = OrganPhantomSpec(n_patients=int(task_param(config, "phantom_cases")),
                            dims=int(task_param(config, "phantom_dims")))
    folder = cache_root() / "phantoms" / spec.name()
    return folder if folder.is_dir() else _write_phantom(spec, folder, "nnunet")


def _write_phantom(spec, out: Path, layout: str) -> Path:
    from bench.data.phantoms.organ import ORGAN_LABELS, generate_organ
    from bench.data.seg_write import write_msd, write_nnunet

    if layout == "msd":
        return write_msd(generate_organ(spec), out, spec.channel_names, ORGAN_LABELS)
    ending = ".png" if spec.dims == 2 else ".nii.gz"
    return write_nnunet(generate_organ(spec), out, spec.channel_names, ORGAN_LABELS, ending)


# --format of make-phantom -> (layout, dims)
PHANTOM_FORMATS = {"nnunet": ("nnunet", 3), "msd": ("msd", 3), "nnunet_2d": ("nnunet", 2)}


def make_phantom(out: str | Path, data_format: str = "nnunet", cases: int | None = None, seed: int = 0,
                 channels: int = 1) -> Path:
    """Write the organ phantom (an organ with 0-3 enclosed lesions, every fourth case lesion-free, look-alike
    blobs outside the organ): ``nnunet`` (3D NIfTI), ``msd`` (Decathlon task folder) or ``nnunet_2d``
    (nnU-Net's 2D PNG layout); ``channels`` input channels (1-3)."""
    from bench.data.phantoms.organ import OrganPhantomSpec

    if data_format not in PHANTOM_FORMATS:
        raise ConfigError(f"--format for {TASK} must be one of {list(PHANTOM_FORMATS)}, but got '{data_format}'.")
    if cases is not None and cases < 1:
        raise ConfigError(f"--cases must be >= 1, but got {cases}.")
    layout, dims = PHANTOM_FORMATS[data_format]
    spec = OrganPhantomSpec(n_patients=cases or 20, dims=dims, channels=channels, seed=seed)
    return _write_phantom(spec, Path(out), layout)


def inspect(path: str | Path, data_format: str | None = None) -> dict:
    """`bench datasets inspect PATH --task segmentation`: ``bench.data.seg_inspect.inspect_seg``'s report;
    PATH "phantom" is the task's default phantom."""
    from bench.data.seg_inspect import inspect_seg

    if str(path) == PHANTOM:
        path = phantom_folder(TrialConfig(task=TASK))
    return inspect_seg(path)
