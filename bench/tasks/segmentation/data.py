"""Segmentation data: any nnU-Net v2 / MSD folder (``bench.data.seg_dataset``), normalised per channel,
resampled to one spacing, padded to one shape, cached row by row and cut by the split.

Preprocessing (nnU-Net's rules, Isensee et al., Nature Methods 2021): a channel named CT is clipped to the
0.5-99.5 percentiles of the foreground voxels of the data set and z-scored with their mean and standard
deviation; every other channel is z-scored per case. Images are resampled (trilinear) and label maps
(nearest) to the target spacing (default: the data's median), then padded to the largest shape with 0.

Two passes over the cases, one case in memory at a time: the survey (spacings, shapes, CT foreground
samples, which label borders which) and the rows written to the cache (``bench.data.cache.RowStream``).
The label map is cached whole, so target and guide are chosen after the cache, from its border table (the
surface between each pair of labels, ``bench.data.seg_inspect.border_areas``).

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
from bench.tasks.segmentation.spec import AUTO, NO_GUIDE, SPEC, TASK, task_param

PREPROCESSING_VERSION = "seg-prep-v3"  # v2: the border table (mm² between labels) replaces containment; v3: CT stats kept
CT_CHANNELS = ("ct",)  # channel names (lower case) normalised as CT
CT_PERCENTILES = (0.5, 99.5)
SAMPLES_PER_CASE = 10_000  # foreground voxels per case and CT channel kept for the data set's statistics


class SegCase(Mapping):
    """One preprocessed case as the training code reads it: ``image`` (C,D,H,W) float32, ``target`` and
    ``guide`` (D,H,W) uint8 derived from the cached label map when read. ``target`` is k where the k-th
    target label is (one target: its mask); the guide region is the guide label together with the targets on
    it (the whole organ, as nnU-Net's region ``kidney`` = kidney + tumour)."""

    def __init__(self, image: np.ndarray, label: np.ndarray, targets: tuple[int, ...], guide: int | None,
                 regions: bool = False):
        self._image, self._label, self._targets, self._guide = image, label, tuple(targets), guide
        self._regions = regions  # targets are the raw values that nnU-Net regions unite: kept as they are

    def __getitem__(self, key: str) -> np.ndarray:
        if key == "image":
            return self._image
        if key == "target":
            if self._regions:
                return np.where(np.isin(self._label, self._targets), self._label, 0).astype(np.uint8)
            if len(self._targets) == 1:
                return (self._label == self._targets[0]).astype(np.uint8)
            out = np.zeros(self._label.shape, np.uint8)
            for k, value in enumerate(self._targets, start=1):
                out[self._label == value] = k
            return out
        if key == "guide":
            if self._guide is None:
                return np.zeros(self._label.shape, np.uint8)
            return np.isin(self._label, (self._guide, *self._targets)).astype(np.uint8)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(("image", "target", "guide"))

    def __len__(self) -> int:
        return 3

    @property
    def nbytes(self) -> int:
        return int(self._image.nbytes + self._label.nbytes)

    def in_memory(self) -> SegCase:
        return SegCase(np.array(self._image), np.array(self._label), self._targets, self._guide, self._regions)


@dataclass
class SegData:
    split_hash: str
    spacing: tuple[float, ...]  # (z, y, x) mm of the cached grid (2D without spacing: 1 pixel)
    parts: dict[str, list[SegCase]]
    key: str = ""  # fingerprint of source + preprocessing (the volume cache's key)
    groups: dict[str, np.ndarray] = field(default_factory=dict)  # part -> anonymous patient numbers
    channels: tuple[str, ...] = ()
    dims: int = 3
    target: str = ""  # label names chosen (no patient information): the targets, comma-separated
    guide: str | None = None
    targets: tuple[str, ...] = ()  # one per network output (target value k in SegCase["target"])
    organ_share: float = float("nan")  # the guide's share of the target's surface
    guide_reason: str = ""  # without a guide: why (said once by a search)
    # per network output, the values of SegCase["target"] it stands for: (k,) for the k-th target label;
    # nnU-Net regions: the raw values each region unites, and the value each region writes back, in order
    channel_values: tuple[tuple[int, ...], ...] = ((1,),)
    class_order: tuple[int, ...] = ()
    patch: tuple[int, ...] = (16, 48, 48)  # the 3D training patch: task_params.patch, or planned from the data
    plan: str = ""  # how the patch was planned (task_params.patch empty), said once by a search
    labels: dict[str, int] = field(default_factory=dict)  # dataset.json's label name -> value
    # CT channels' (channel, low, high, mean, std) clip and z-score statistics of the data set (None: a cache
    # written before they were kept; ``bench predict`` then reads them again from the data)
    ct_stats: list[list[float]] | None = None

    def preprocessing(self) -> dict:
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
    choice = choose_regions(config, ds.regions) if ds.regions else choose_labels(config, ds.labels,
                                                                                  arrays["borders"], root)
    guide = choice.guide
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
    if ds.regions:  # each output a region: the raw values it unites
        channel_values = tuple(ds.regions[t] for t in choice.targets)
        target_values = tuple(sorted({v for values in channel_values for v in values}))
    else:  # each output one label: value k of SegCase["target"]
        target_values = tuple(ds.labels[t] for t in choice.targets)
        channel_values = tuple((k,) for k in range(1, len(target_values) + 1))
    parts: dict[str, list[SegCase]] = {}
    for part in ("train", "val", "test"):
        chosen = [row[i] for i in split.part(part, config.fold)]
        if part == "train" and config.max_train_cases:
            chosen = sorted(np.random.default_rng(0).permutation(chosen)[: config.max_train_cases].tolist())
        parts[part] = [SegCase(arrays["image"][i], arrays["label"][i], target_values, guide_value, bool(ds.regions))
                       for i in chosen]
    from bench.cases import (
        patient_numbers,  # issue 21: anonymous patient numbers (no id leaves the data layer)
    )

    groups = {"val": patient_numbers(arrays["patient_id"][[row[i] for i in split.part("val", config.fold)]])}
    patch, plan = planned_patch(config, arrays, int(ds.dims))
    class_order = (tuple(ds.regions_class_order[list(ds.regions).index(t)] for t in choice.targets)
                   if ds.regions else ())
    ct_stats = np.asarray(arrays["ct_stats"]).tolist() if "ct_stats" in arrays else None
    return SegData(split.sha256, tuple(float(s) for s in arrays["spacing"]), parts, key, groups,
                   tuple(ds.channels), int(ds.dims), ",".join(choice.targets), guide, choice.targets, choice.share,
                   choice.reason, channel_values, class_order, patch, plan, labels=dict(ds.labels),
                   ct_stats=ct_stats)


# --- labels ----------------------------------------------------------------------------------------------
ALL = "all"


@dataclass(frozen=True)
class LabelChoice:
    """The targets, their guide organ (or None) and why: the organ's share of the target's surface
    (``bench.data.seg_inspect.organs``; several targets: the smallest), and the line a search says when
    there is no guide."""

    targets: tuple[str, ...]
    guide: str | None
    share: float
    reason: str = ""


def choose_labels(config: TrialConfig, labels: Mapping[str, int], areas: np.ndarray, root: Path) -> LabelChoice:
    """Targets and guide from the task parameters and the cached border table (``areas[i, j]``: surface in mm²
    between the i-th and j-th label of ``labels``, ``bench.data.seg_inspect.border_areas``).

    Targets: ``task_params.target`` (a label, ``A,B`` or ``all``: one network output each), else the last
    foreground label that has a guiding organ (a tumour on or in its kidney), else every foreground label (as
    nnU-Net). Guide: ``task_params.guide`` (a label, or ``none``), else (``auto``) the organ of every target
    when they share one that guides them (``bench.data.seg_inspect.organs``: share >= ``guide_min_border``,
    target smaller than the organ), else none."""
    from bench.data.seg_inspect import organs

    by_value = {int(v): n for n, v in labels.items()}
    foreground = [by_value[v] for v in sorted(by_value) if v != 0]
    if not foreground:
        raise DataError(f"{root}: dataset.json must name at least one foreground label, but names only background.")
    min_border = float(task_param(config, "guide_min_border"))
    table = organs(areas, dict(labels), min_border)
    targets = _targets(str(task_param(config, "target")), foreground, table, root)
    wanted = str(task_param(config, "guide"))
    names = list(labels)

    def share(target: str, name: str) -> float:
        row = areas[names.index(target)]
        return float(row[names.index(name)] / row.sum()) if row.sum() > 0 else 0.0

    if wanted == NO_GUIDE:
        return LabelChoice(targets, None, float("nan"), "task_params.guide is 'none'")
    if wanted != AUTO:
        if wanted not in labels or labels[wanted] == 0 or wanted in targets:
            raise ConfigError(f"task_params.guide must be 'auto', 'none' or a foreground label of {root} other than "
                              f"the targets {[n for n in foreground if n not in targets]}, but got '{wanted}'.")
        return LabelChoice(targets, wanted, min(share(t, wanted) for t in targets))
    found = [table[t] for t in targets]
    organ = found[0]["organ"]
    if all(f["guide"] and f["organ"] == organ for f in found) and organ not in targets:
        return LabelChoice(targets, organ, min(f["share"] for f in found))
    named = ", ".join(f"`{t}`" for t in targets)
    if len(targets) > 1:
        reason = f"no label outside the targets is the organ of every one of {named}"
    elif found[0]["organ"] is None:
        reason = f"no label encloses {named}"
    else:
        reason = (f"no label is {named}'s organ (it borders `{organ}` most, on {found[0]['share']:.0%} of its "
                  f"surface; a guide needs >= {min_border:.0%} and a larger organ)")
    return LabelChoice(targets, None, found[0]["share"] if len(targets) == 1 and organ else float("nan"), reason)


def choose_regions(config: TrialConfig, regions: Mapping[str, tuple[int, ...]]) -> LabelChoice:
    """Targets of a region-based data set (nnU-Net v2 ``labels`` as lists): ``task_params.target`` among the
    regions (default and ``all``: every region, one sigmoid output each, as nnU-Net trains them). Regions
    overlap by design, so none guides another: no guide."""
    names = list(regions)
    targets = _targets(str(task_param(config, "target")) or ALL, names, {}, "the regions")
    if str(task_param(config, "guide")) not in (AUTO, NO_GUIDE):
        raise ConfigError(f"task_params.guide must be 'auto' or 'none' on a region-based data set (regions "
                          f"{names} overlap: none is another's organ), but got '{task_param(config, 'guide')}'.")
    return LabelChoice(targets, None, float("nan"), f"the targets are nnU-Net regions ({', '.join(names)})")


def _targets(given: str, foreground: list[str], table: Mapping[str, dict], root: Path) -> tuple[str, ...]:
    """``task_params.target`` as label names (see :func:`choose_labels`)."""
    if not given:
        guided = [n for n in foreground if table[n]["guide"]]
        return (guided[-1],) if guided else tuple(foreground)
    if given == ALL:
        return tuple(foreground)
    wanted = [t.strip() for t in given.split(",")]
    wrong = [t for t in wanted if t not in foreground]
    if wrong or len(set(wanted)) != len(wanted):
        raise ConfigError(f"task_params.target must be 'all', a foreground label of {root} or several joined by "
                          f"commas {foreground}, but got '{given}'.")
    return tuple(wanted)


def fixed_by_data(data: SegData) -> dict[str, tuple]:
    """What the data fixes for a search or comparison (``TaskSpec.fixed_by_data``): without a guide organ the
    organ-guidance strategies have nothing to use, so guidance is ``none`` and no dimension; a patch planned
    from the data goes into every trial's config (logged, replayed as it ran)."""
    fixed: dict[str, tuple] = {}
    if data.guide is None:
        fixed["guidance"] = (NO_GUIDE, data.guide_reason)
    if data.plan:
        fixed["task_params.patch"] = (list(data.patch), data.plan)
    return fixed


def planned_patch(config: TrialConfig, arrays: Mapping[str, np.ndarray], dims: int) -> tuple[tuple[int, ...], str]:
    """(3D training patch, how it was planned): ``task_params.patch`` when given; empty, planned from the data's
    median shape at the cached spacing within ``task_params.patch_budget`` voxels (``bench.data.seg_plan``).
    2D data sets train on ``patch_2d`` slices: nothing to plan."""
    from bench.data.seg_plan import plan_patch

    given = [int(p) for p in task_param(config, "patch")]
    if given:
        if len(given) != 3 or min(given) < 1:
            raise ConfigError(f"task_params.patch must be 3 positive (z, y, x) voxel counts or empty (planned from "
                              f"the data), but got {given}.")
        return tuple(given), ""
    budget = int(task_param(config, "patch_budget"))
    if dims == 2:
        return plan_patch((16, 48, 48), (1.0, 1.0, 1.0), budget), ""
    spacing = [float(s) for s in arrays["spacing"]]
    shape = [int(n) for n in arrays["median_shape"]]
    patch = plan_patch(shape, spacing, budget)
    return patch, (f"planned from the data: median shape {shape} voxels at {[round(s, 3) for s in spacing]} mm, "
                   f"at most {budget} voxels")


# --- cache rows ------------------------------------------------------------------------------------------
def build_rows(ds, ids: tuple[str, ...], spacing_param: list[float]) -> RowStream:
    """The survey pass, then a stream of rows: image (C,D,H,W) float32 and label (D,H,W) uint8 per case."""
    from bench.data.seg_inspect import border_areas
    from bench.data.seg_plan import median_shape

    if not ids:
        raise DataError(f"{ds.root}: a data set must hold at least one labelled case, but it has none.")
    values = sorted(int(v) for v in ds.labels.values())
    ct = [i for i, name in enumerate(ds.channels) if name.lower() in CT_CHANNELS]
    spacings, shapes, samples = [], [], {i: [] for i in ct}
    areas = np.zeros((len(values), len(values)), np.float64)
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
        areas += border_areas(label, values, spacings[-1])
    target_spacing = _target_spacing(spacings, spacing_param)
    sizes = [_resampled_size(shape, sp, target_spacing) for shape, sp in zip(shapes, spacings)]
    shape = tuple(int(s) for s in np.max(sizes, axis=0))
    stats = {i: _ct_stats(np.concatenate(samples[i]) if samples[i] else np.zeros(1, np.float32)) for i in ct}

    def rows():
        for case_id, sp, size in zip(ids, spacings, sizes):
            image, label = _arrays(ds.load(case_id), ds.root)
            image, label = _resample(_normalise(image, stats), label, size)
            yield {"image": _pad(image, shape), "label": _pad(label[None], shape)[0].astype(np.uint8)}

    whole = {"case_id": np.array(ids), "patient_id": np.array(patients), "label_values": np.array(values),
             "borders": areas, "spacing": np.array(target_spacing, np.float64),
             "median_shape": np.array(median_shape(shapes, spacings, target_spacing), np.int64),
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
PHANTOM_FORMATS = {"nnunet": ("nnunet", 3), "msd_seg": ("msd", 3), "nnunet_2d": ("nnunet", 2)}


def make_phantom(out: str | Path, data_format: str = "nnunet", cases: int | None = None, seed: int = 0,
                 channels: int = 1) -> Path:
    """Write the organ phantom (an organ with 0-3 enclosed lesions, every fourth case lesion-free, look-alike
    blobs outside the organ): ``nnunet`` (3D NIfTI), ``msd_seg`` (alias ``msd``: Decathlon task folder) or
    ``nnunet_2d`` (nnU-Net's 2D PNG layout); ``channels`` input channels (1-3)."""
    from bench.data.phantoms.organ import OrganPhantomSpec
    data_format = SPEC.phantom_format(data_format)
    if cases is not None and cases < 1:
        raise ConfigError(f"--cases must be >= 1, but got {cases}.")
    layout, dims = PHANTOM_FORMATS[data_format]
    spec = OrganPhantomSpec(n_patients=cases or 20, dims=dims, channels=channels, seed=seed)
    return _write_phantom(spec, Path(out), layout)


def inspect(path: str | Path, data_format: str | None = None) -> dict:
    """`bench datasets inspect PATH --task segmentation`: ``bench.data.seg_inspect.inspect_seg``'s report, every
    problem listed (none raised); PATH "phantom" is the task's default phantom. ``data_format`` (the task's
    names: nnunet, msd_seg or msd) must be the folder's layout."""
    from bench.data.formats import FORMATS
    from bench.data.seg_inspect import inspect_seg

    if str(path) == PHANTOM:
        path = phantom_folder(TrialConfig(task=TASK))
    report = inspect_seg(path, strict=False)
    if data_format:
        fmt = SPEC.resolve_format(data_format)
        layout = FORMATS.get(fmt).LAYOUT
        if report["layout"] != layout:
            raise DataError(f"{report['path']}: --format {data_format} reads the {layout} layout, but this folder "
                            f"is {report['layout']}'s. Leave --format out, or give --format {report['layout']}.")
    return report