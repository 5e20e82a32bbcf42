"""ct-lung data: read the source, clip HU to a lung window, resample to the target spacing and scale to
[0, 1] (cached), cut by the patient-grouped split; plus the phantom writer and the folder inspector."""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from monai.transforms import Resize, ScaleIntensityRange, SpatialPad

from bench.config import TrialConfig
from bench.data.cache import RowStream, cache_root, cached_arrays, fingerprint
from bench.data.case import Case, CaseRef
from bench.data.ct_io import lung_mask_from_hu
from bench.data.phantoms.ct import CLASSES, CtPhantomSpec, generate, iter_cases
from bench.data.sources import PHANTOM, resolve_split, source_descriptor, source_name
from bench.errors import ConfigError, DataError, SplitError
from bench.tasks.ct_lung.spec import SPEC, TASK, phantom_spec, task_param

PREPROCESSING_VERSION = "ct-prep-v1"
HU_WINDOW = (-1000.0, 400.0)  # lung window wide enough to keep solid nodules and vessels distinct


@dataclass
class CtData:
    split_hash: str
    spacing: tuple[float, float, float]
    parts: dict[str, list[dict[str, np.ndarray]]]  # part -> cases: image (D,H,W) float32, lung, lesion uint8
    key: str = ""  # fingerprint of source + preprocessing (the volume cache's key)
    groups: dict[str, np.ndarray] = field(default_factory=dict)  # issue 21: part -> anonymous patient numbers


def prepare(config: TrialConfig) -> CtData:
    """Load (or build once) the preprocessed volumes and cut them by the split; no patient ids leave here."""
    # The make-phantom export names → this task's readers (SPEC.format_aliases); "nifti" stays: its reader reads
    # the MSD layout too, and earlier runs' cache keys and split names carry "nifti".
    if config.data_format in SPEC.format_aliases and config.data_format != "nifti":
        config = config.replace(data_format=SPEC.format_aliases[config.data_format])
    spec = phantom_spec(config)
    spacing = tuple(float(s) for s in task_param(config, "spacing"))
    descriptor = source_descriptor(config.data, config.data_format, spec.name())
    source = source_name(config.data, descriptor)
    key = fingerprint({"data": descriptor, "prep": PREPROCESSING_VERSION, "spacing": spacing})
    built_cases: list[CaseRef] = []  # the cases' ids, labels and meta (no pixels) when the cache is built now

    def build() -> RowStream:
        return volume_rows(source_cases(config.data, config.data_format, lambda: iter_cases(spec)), spacing,
                           built_cases)

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
        # The cache's memory-mapped volumes themselves (C-contiguous rows, no copy): a volume is read from disk
        # where it is used, and only the runtime policy's "host" placement gathers them into memory.
        parts[part] = [{name: arrays[name][i] for name in ("image", "lung", "lesion")} for i in chosen]
    from bench.cases import (
        patient_numbers,  # issue 21: anonymous patient numbers (no id leaves the data layer)
    )

    groups = {"val": patient_numbers(arrays["patient_id"][[row[i] for i in split.part("val", config.fold)]])}
    return CtData(split.sha256, spacing, parts, key, groups)


def source_cases(data: str, data_format: str, make_phantom: Callable[[], Iterable[Case]]) -> Iterator[Case]:
    """The source's cases one volume at a time (a reader's ``iter_cases``, or the phantom's)."""
    if data == PHANTOM:
        yield from make_phantom()
        return
    from bench.data.formats import FORMATS

    count = 0
    for count, case in enumerate(FORMATS.create(data_format).iter_cases(data, CLASSES), 1):
        yield case
    if not count:
        raise DataError(f"{data}: a data set must hold at least one case, but the reader found none.")


def preprocess_volume(case: Case, spacing: tuple[float, float, float]) -> dict[str, torch.Tensor]:
    """One case: HU → lung window → [0, 1], resampled to ``spacing``; image (1,D,H,W) float32 and lung and
    lesion (1,D,H,W) uint8, not yet padded to the data set's common shape."""
    window = ScaleIntensityRange(a_min=HU_WINDOW[0], a_max=HU_WINDOW[1], b_min=0.0, b_max=1.0, clip=True)
    hu = np.asarray(case.image, np.float32)
    lung = case.masks.get("lung")
    if lung is None:  # e.g. MSD Task06 has lesion labels only: derive the lungs from the HU values
        lung = lung_mask_from_hu(hu)
    lesion = case.masks.get("lesion", np.zeros(hu.shape, np.uint8))
    size = [max(1, round(n * s / t)) for n, s, t in zip(hu.shape, case.spacing, spacing)]
    image = window(hu[None])
    masks = torch.from_numpy(np.stack([lung > 0, lesion > 0]).astype(np.float32))
    if list(hu.shape) != size:
        image = Resize(size, mode="trilinear")(image)
        masks = Resize(size, mode="nearest")(masks)
    masks = torch.as_tensor(masks).to(torch.uint8)  # nearest-resampled 0/1: exact in uint8
    return {"image": torch.as_tensor(image).float(), "lung": masks[:1], "lesion": masks[1:]}


def volume_rows(cases: Iterable[Case], spacing: tuple[float, float, float], refs: list[CaseRef] | None = None
                ) -> RowStream:
    """The cache's rows, one volume in memory at a time: each case is preprocessed and staged on disk
    unpadded (its resampled size is known only then), and the rows pad each staged volume to the largest
    size. ``refs`` (if given) receives each case's ids, labels and meta, without pixels, for the split.

    Raises:
        DataError: the source holds no case.
    """
    staging = Path(tempfile.mkdtemp(dir=_staging_root(), prefix="ct-prep-"))
    shapes, ids, patients, labels = [], [], [], []
    try:
        for k, case in enumerate(cases):
            volume = preprocess_volume(case, spacing)
            for name, value in volume.items():
                np.save(staging / f"{k}.{name}.npy", value.numpy()[0], allow_pickle=False)
            shapes.append(volume["image"].shape[1:])
            ids.append(case.id)
            patients.append(case.patient_id)
            labels.append(str(case.labels.get("class", "")))
            if refs is not None:
                refs.append(CaseRef(case.id, case.patient_id, _no_pixels, case.site, dict(case.labels),
                                    dict(case.meta)))
            del case, volume
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not ids:
        shutil.rmtree(staging, ignore_errors=True)
        raise DataError("a ct-lung data set must hold at least one case, but the reader found none.")
    pad = SpatialPad(np.max(shapes, axis=0).tolist())

    def rows() -> Iterator[dict[str, np.ndarray]]:
        for k in range(len(ids)):
            row = {}
            for name in ("image", "lung", "lesion"):
                staged = staging / f"{k}.{name}.npy"
                row[name] = np.asarray(pad(torch.from_numpy(np.load(staged))[None]))[0]
                staged.unlink()  # the staging copy shrinks as the cache grows
            yield row
        shutil.rmtree(staging, ignore_errors=True)

    stream = RowStream(len(ids), rows(), {"case_id": np.array(ids), "patient_id": np.array(patients),
                                          "label": np.array(labels)})
    weakref.finalize(stream, shutil.rmtree, staging, ignore_errors=True)  # an unfinished build leaves nothing
    return stream


def preprocess(cases, spacing: tuple[float, float, float]) -> dict[str, np.ndarray]:
    """HU → lung window → [0, 1], resampled to ``spacing``, padded to one common shape (air / background):
    the cache's arrays in memory, for small case lists (the cache itself is written by ``volume_rows``)."""
    stream = volume_rows(cases, spacing)
    rows = list(stream.rows)
    return {**{name: np.stack([r[name] for r in rows]) for name in rows[0]}, **stream.whole}


def _staging_root() -> Path:
    root = cache_root() / ".scratch"  # on the cache's disk, not /tmp (which may be memory)
    root.mkdir(parents=True, exist_ok=True)
    return root


def _no_pixels() -> Case:
    raise DataError("a ct-lung case reference made for the split holds no pixels; read the cache instead.")


def make_phantom(out: str | Path, data_format: str = "msd", cases: int | None = None, seed: int = 0) -> Path:
    """Write the ct-lung phantom in a real layout, one of ``SPEC.phantom_formats`` (aliases applied): ``msd``
    (MSD Task06 layout), ``ct_dicom`` (series + labels.csv), ``nifti`` (images/ + masks/ + labels.csv),
    ``luna16`` (.mhd + annotations.csv), ``nnunet`` (nnU-Net v2 raw folder for --task segmentation: labels
    background/lung/lesion, with this task's folds).

    ``cases`` truncates the default phantom to its first N volumes (whole follow-up series stay together
    only if N falls on a patient boundary); ``seed`` changes every volume.
    """
    from bench.data.formats import FORMATS

    fmt = SPEC.phantom_format(data_format)
    spec = CtPhantomSpec(seed=seed)
    if cases is not None and cases < 1:
        raise ConfigError(f"--cases must be >= 1, but got {cases}.")
    if cases is not None:
        spec = CtPhantomSpec(n_patients=max(spec.n_patients, cases), seed=seed)
    volumes = generate(spec)[: cases or None]
    if fmt == "nnunet":
        return export_nnunet(volumes, out)
    return FORMATS.create(fmt).write(volumes, out)


NNUNET_LABELS = {"background": 0, "lung": 1, "lesion": 2}  # later overwrites earlier: lesions inside the lung


def export_nnunet(volumes, out: str | Path) -> Path:
    """The phantom as an nnU-Net v2 raw folder for ``--task segmentation``, with this task's folds as
    splits_final.json (the committed phantom split when it covers exactly these volumes, else one made for
    them; none when they are too few to split), so both tasks see the same cases in the same folds; cases
    outside the folds are the test part."""
    from bench.data.seg_splits import nnunet_folds
    from bench.data.seg_write import merge_masks, write_nnunet
    from bench.data.sources import PHANTOM, load_split, make_split, standard_split_path

    ids = {c.id for c in volumes}
    standard = standard_split_path(TASK, PHANTOM)
    split = load_split(standard) if standard.is_file() else None
    if split is None or set(split.test).union(*(set(f["train"]) | set(f["val"]) for f in split.folds)) != ids:
        try:
            split = make_split(volumes, task=TASK, source=PHANTOM)
        except SplitError:  # too few patients for folds (a small --cases): the folder goes without them
            split = None
    return write_nnunet((merge_masks(c, NNUNET_LABELS) for c in volumes), out, ("CT",), NNUNET_LABELS,
                        description="bench ct-lung phantom (not real patients)",
                        splits=nnunet_folds(split) if split else None)


def inspect(path: str | Path, data_format: str | None = None) -> dict:
    """`bench datasets inspect PATH --task ct-lung [--format F]`: see ``bench.data.ct_inspect.inspect_ct``;
    PATH "phantom" is the task's default phantom."""
    from bench.data.ct_inspect import inspect_ct

    if str(path) == "phantom":
        spec = phantom_spec(TrialConfig(task=TASK))
        return inspect_ct(path, "phantom", iter_cases(spec))
    return inspect_ct(path, SPEC.resolve_format(data_format, path))
