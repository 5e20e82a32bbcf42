"""xray-heart data: read the source, preprocess once (cached), cut by the patient-grouped split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bench.config import TrialConfig
from bench.data.cache import cached_arrays, fingerprint
from bench.data.phantoms.xray import CLASSES, generate
from bench.data.sources import read_cases, resolve_split, source_descriptor, source_name
from bench.errors import DataError, SplitError
from bench.tasks.xray_heart.spec import PHANTOM_SPEC, TASK

PREPROCESSING_VERSION = "xray-prep-v2"


@dataclass
class XrayData:
    split_hash: str
    # part -> image (N,1,S,S), heart (N,1,S,S), label (N,), thorax_width (N,) in pixels (NaN if unknown);
    # parts are train, val, test and any extra held-out part of the split (test_shifted).
    parts: dict[str, dict[str, torch.Tensor]]


def prepare(config: TrialConfig) -> XrayData:
    """Load (or build once) the preprocessed arrays and cut them by the split; no patient ids leave here."""
    descriptor = source_descriptor(config.data, config.data_format, PHANTOM_SPEC.name())
    source = source_name(config.data, descriptor)
    key = fingerprint({"data": descriptor, "prep": PREPROCESSING_VERSION, "size": config.image_size})
    built_cases: list = []

    def build() -> dict[str, np.ndarray]:
        cases = read_cases(config.data, config.data_format, CLASSES, lambda: generate(PHANTOM_SPEC))
        built_cases.extend(cases)
        return preprocess(cases, config.image_size)

    arrays = cached_arrays(key, build)
    ids = [str(i) for i in arrays["case_id"]]
    split = resolve_split(TASK, source, dict(zip(ids, map(str, arrays["patient_id"]))), built_cases or None)
    if config.split_hash and config.split_hash != split.sha256:
        raise SplitError(
            f"the trial's split_hash must match the data's split, but got {config.split_hash[:12]}… vs "
            f"{split.sha256[:12]}…. The split file or data changed since this trial was configured."
        )
    row = {case_id: i for i, case_id in enumerate(ids)}
    parts = {}
    for part in split.part_names:
        chosen = [row[i] for i in split.part(part, config.fold)]
        if part == "train" and config.max_train_cases:
            # Fixed (seed-independent) subset, so budget presets compare like with like.
            chosen = sorted(np.random.default_rng(0).permutation(chosen)[: config.max_train_cases].tolist())
        parts[part] = {
            "image": torch.from_numpy(np.ascontiguousarray(arrays["image"][chosen])),
            "heart": torch.from_numpy(np.ascontiguousarray(arrays["heart"][chosen])).float(),
            "label": torch.from_numpy(np.ascontiguousarray(arrays["label"][chosen])),
            "thorax_width": torch.from_numpy(np.ascontiguousarray(arrays["thorax_width"][chosen])),
        }
    return XrayData(split.sha256, parts)


def preprocess(cases, size: int) -> dict[str, np.ndarray]:
    """Resize every case to size² (area for images, nearest for masks) and standardise intensities.

    Cases may differ in size (real data); each is resized on its own. Validation happens here, when
    data loads, so a bad case fails the build before anything is cached.
    """
    images, hearts, thorax = [], [], []
    for c in cases:
        if "heart" not in c.masks:
            raise DataError(
                f"case {c.id}: xray-heart trains a heart segmenter, so every image needs a heart mask, but "
                f"this one has masks {sorted(c.masks)}. Add mask_heart to the labels file or pick a source with masks."
            )
        image = torch.from_numpy(np.asarray(c.image, np.float32))[None, None]
        heart = torch.from_numpy(np.asarray(c.masks["heart"], np.float32))[None, None]
        images.append(F.interpolate(image, size=(size, size), mode="area")[0])
        hearts.append(F.interpolate(heart, size=(size, size), mode="nearest")[0])
        lungs = [np.asarray(m) > 0 for n, m in c.masks.items() if n.startswith("lung")]
        # thoracic width = outer lung borders, rescaled to the resized image's pixels
        width = _outer_width(np.logical_or.reduce(lungs)) * size / c.image.shape[-1] if lungs else np.nan
        thorax.append(width if width else np.nan)
    images_t, hearts_t = torch.stack(images), torch.stack(hearts)
    mean = images_t.mean(dim=(2, 3), keepdim=True)
    std = images_t.std(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    return {
        "image": ((images_t - mean) / std).numpy().astype(np.float32),
        "heart": (hearts_t > 0.5).numpy().astype(np.uint8),
        "label": np.array([CLASSES.index(c.labels["class"]) for c in cases], np.int64),
        "thorax_width": np.array(thorax, np.float32),
        "case_id": np.array([c.id for c in cases]),
        "patient_id": np.array([c.patient_id for c in cases]),
    }


def _outer_width(mask: np.ndarray) -> float:
    cols = np.flatnonzero(mask.any(axis=0))
    return float(cols[-1] - cols[0] + 1) if len(cols) else 0.0
