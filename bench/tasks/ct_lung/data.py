"""ct-lung data: read the source, clip HU to a lung window, resample to the target spacing and scale to
[0, 1] (cached), cut by the patient-grouped split; plus the phantom writer and the folder inspector."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from monai.transforms import Resize, ScaleIntensityRange, SpatialPad

from bench.config import TrialConfig
from bench.data.cache import cached_arrays, fingerprint
from bench.data.ct_io import lung_mask_from_hu
from bench.data.phantoms.ct import CLASSES, CtPhantomSpec, generate
from bench.data.sources import read_cases, resolve_split, source_descriptor, source_name
from bench.errors import ConfigError, SplitError
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
    from bench.cases import (
        patient_numbers,  # issue 21: anonymous patient numbers (no id leaves the data layer)
    )

    groups = {"val": patient_numbers(arrays["patient_id"][[row[i] for i in split.part("val", config.fold)]])}
    return CtData(split.sha256, spacing, parts, key, groups)


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


def make_phantom(out: str | Path, data_format: str = "nifti", cases: int | None = None, seed: int = 0) -> Path:
    """Write the ct-lung phantom in a real layout: ``dicom`` (series + labels.csv), ``nifti`` (MSD Task06
    layout), ``mhd`` (LUNA16 layout); the reader names ``ct_dicom``/``msd``/``luna16``/``nifti`` work too.

    ``cases`` truncates the default phantom to its first N volumes (whole follow-up series stay together
    only if N falls on a patient boundary); ``seed`` changes every volume.
    """
    from bench.data.formats import FORMATS

    fmt = SPEC.format_aliases.get(data_format, data_format)
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


def inspect(path: str | Path, data_format: str | None = None) -> dict:
    """`bench datasets inspect PATH --task ct-lung [--format F]`: see ``bench.data.ct_inspect.inspect_ct``;
    PATH "phantom" is the task's default phantom."""
    from bench.data.ct_inspect import inspect_ct

    if str(path) == "phantom":
        spec = phantom_spec(TrialConfig(task=TASK))
        return inspect_ct(path, "phantom", (case for case in generate(spec)))
    return inspect_ct(path, SPEC.resolve_format(data_format, path))
