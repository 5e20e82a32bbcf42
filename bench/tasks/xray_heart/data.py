"""xray-heart data: resolve the class list, preprocess once into the cache (streamed, one image at a time),
cut by the patient-grouped split.

Class lists come from the data (bench.data.labels): the phantom -> its four CHD classes; ChestX-ray14,
CheXpert and CheXmask -> cardiomegaly (binary, positive class last); a DICOM/PNG folder -> the labels in
its labels.csv in a stable order, or ``config.classes`` to fix the order (labels outside it are refused).

The cache holds the data, not an interpretation of it: label indices in the data's own class order, which
it stores beside them (``classes.npy``); a trial's class list maps them to its own indices when it loads.
So the arrays are exact for every class list (no index can be read with another list's meaning) and a
different ``--classes`` order reuses the cache instead of decoding every image again. The trial's list is
recorded in the split file (so the split hash pins the label order; another order gets a split file of its
own) and comes back in ``XrayData.classes`` for the trial's logged config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from bench.config import TrialConfig
from bench.data.cache import cache_root, cached_arrays, fingerprint
from bench.data.case import CaseRef
from bench.data.labels import CHD_CLASSES, FORMAT_SCHEMES, check_explicit, order_classes, resolve_classes
from bench.data.radiograph import radiograph_rows
from bench.data.rows import NpyColumn, Rows
from bench.data.sources import kept_split_path, source_descriptor, source_name
from bench.data.splits import Split, load_split, make_split, save_split, standard_split_path
from bench.data.stream import PHANTOM, scan_cases
from bench.errors import ConfigError, DataError, SplitError
from bench.tasks.xray_heart.spec import PHANTOM_SPEC, SPEC, TASK, phantom_cases

PREPROCESSING_VERSION = "xray-prep-v3"  # v3: streamed rows (same arrays as v2) + the data's class order


@dataclass
class XrayData:
    split_hash: str
    # part -> Rows of image (N,1,S,S) float32, heart (N,1,S,S) drawn as float32, label (N,) int64 and
    # thorax_width (N,) in pixels (NaN if unknown). As ``prepare`` returns them, image and heart are read from
    # the cache's files a batch at a time; label and thorax_width (one value per case) are in memory. Parts
    # are train, val, test and any extra held-out part of the split (test_shifted).
    parts: dict[str, Rows]
    # label index -> class name; a binary list has its positive class last (bench.data.labels.positive_class)
    classes: tuple[str, ...] = field(default=CHD_CLASSES)
    # part -> each case's patient as an anonymous number within the part (bench.cases.patient_numbers; issue 21)
    groups: dict[str, np.ndarray] = field(default_factory=dict)
    key: str = ""  # fingerprint of source + preprocessing (the data cache's key; the stage cache's data key)


def data_format(config: TrialConfig) -> str:
    """The registered reader ``config.data_format`` names for this task (``phantom`` for the built-in data).

    Raises:
        RegistryError: a format that is not one of the task's; for ChestX-ray14 or CheXpert alone it says
            why (no heart masks) and what to use instead (their CheXmask-joined form, ``chexmask``).
    """
    if config.data == PHANTOM:
        if config.reader_options:
            raise ConfigError(f"reader options apply to a data folder's reader, but the built-in phantom has "
                              f"none and got {config.reader_options}. Drop them or pass --data.")
        return PHANTOM
    return SPEC.resolve_format(config.data_format)


def config_classes(config: TrialConfig) -> tuple[str, ...]:
    """The class list a config trains on, without the cache: its own, or resolved from the data."""
    return resolve_classes(config.data, data_format(config), config.classes or None, CHD_CLASSES,
                           **config.reader_options)


def prepare(config: TrialConfig) -> XrayData:
    """Load (or build once) the preprocessed arrays and cut them by the split; no patient ids leave here.

    Nothing of an image is read here: each part is a :class:`~bench.data.rows.Rows` over the cache's
    ``image.npy`` and ``heart.npy`` at the part's row numbers (the pipeline gathers it into memory when
    the runtime policy says the data fits, see ``bench.runtime.place_data``).
    """
    fmt = data_format(config)
    descriptor = source_descriptor(config.data, fmt, PHANTOM_SPEC.name(), config.reader_options)
    source = source_name(config.data, descriptor)
    key = fingerprint({"data": descriptor, "prep": PREPROCESSING_VERSION, "size": SPEC.param(config, "image_size")})
    scanned: list[CaseRef] = []

    def scan() -> list[CaseRef]:
        if not scanned:
            scanned.extend(scan_cases(config.data, fmt, None, phantom_cases, **config.reader_options))
        return scanned

    def build():
        refs = scan()
        own = _own_classes(config, fmt, refs)
        labels = {str(r.labels.get("class", "")) for r in refs}
        trial_classes(config, fmt, own, labels)  # a class list the data does not fit: refused before decoding
        stream = radiograph_rows(refs, SPEC.param(config, "image_size"), own)
        stream.whole = {**stream.whole, "classes": np.array(own)}
        return stream

    arrays = cached_arrays(key, build)
    own = tuple(str(c) for c in arrays["classes"].tolist())
    classes = trial_classes(config, fmt, own, {own[k] for k in np.unique(arrays["label"])})
    if classes != own:  # another order (or more classes) than the data's own: a split of its own, kept beside
        source = f"{source}-classes-{fingerprint({'classes': list(classes)})[:8]}"
    ids = [str(i) for i in arrays["case_id"]]
    split = _split(source, dict(zip(ids, map(str, arrays["patient_id"]))), classes, scan)
    if config.split_hash and config.split_hash != split.sha256:
        raise SplitError(
            f"the trial's split_hash must match the data's split, but got {config.split_hash[:12]}… vs "
            f"{split.sha256[:12]}…. The split file or data changed since this trial was configured."
        )
    to_trial = np.array([classes.index(name) for name in own], np.int64)  # the data's index -> the trial's
    row = {case_id: i for i, case_id in enumerate(ids)}
    folder = cache_root() / key
    parts = {}
    for part in split.part_names:
        chosen = [row[i] for i in split.part(part, config.fold)]
        if part == "train" and config.max_train_cases:
            # Fixed (seed-independent) subset, so budget presets compare like with like.
            chosen = sorted(np.random.default_rng(0).permutation(chosen)[: config.max_train_cases].tolist())
        chosen = np.asarray(chosen, np.int64)
        parts[part] = Rows({
            "image": NpyColumn(folder / "image.npy", chosen),
            "heart": NpyColumn(folder / "heart.npy", chosen),
            "label": to_trial[np.asarray(arrays["label"][chosen], np.int64)],
            "thorax_width": np.asarray(arrays["thorax_width"][chosen], np.float32),
        }, dtypes={"heart": torch.float32})
    # issue 21: anonymous patient numbers per part (no id leaves the data layer)
    from bench.cases import patient_numbers

    groups = {part: patient_numbers(arrays["patient_id"][[row[i] for i in split.part(part, config.fold)]])
              for part in ("val",)}
    return XrayData(split.sha256, parts, classes, groups, key)


def _own_classes(config: TrialConfig, fmt: str, refs: Sequence[CaseRef]) -> tuple[str, ...]:
    """The data's own class list: the phantom's or the format's scheme, else its labels in a stable order."""
    if config.data == PHANTOM or fmt in FORMAT_SCHEMES:
        return resolve_classes(config.data, fmt, None, CHD_CLASSES, **config.reader_options)
    return order_classes(str(r.labels.get("class", "")) for r in refs)


def trial_classes(config: TrialConfig, fmt: str, own: tuple[str, ...], present: set[str]) -> tuple[str, ...]:
    """The trial's class list: ``config.classes`` if given (every label present must be in it), else ``own``.

    Raises:
        DataError: a label outside the given classes (the data layer's error, naming the labels file and every
            such label), or a data set with one class only and no class list given.
    """
    if config.classes:
        classes = check_explicit(config.classes)
        if not present <= set(classes):
            # the data layer's error names the labels file and every label outside the list
            resolve_classes(config.data, fmt, classes, CHD_CLASSES, **config.reader_options)
            raise DataError(f"{config.data}: every label must be one of the given classes {list(classes)}, "
                            f"but the data also has {sorted(present - set(classes))}. Add them to --classes.")
        return classes
    if len(own) < 2:
        raise DataError(f"{config.data}: xray-heart classifies, so the data needs labels of at least two "
                        f"classes, but it has only {list(own)}. Label the images in labels.csv (column "
                        "label), or give its classes with --classes a,b (JSRT has no cardiac grading).")
    return own


def _split(source: str, patient_of: dict[str, str], classes: tuple[str, ...], refs) -> Split:
    """The committed standard split, a split kept for this data, or one made now (recording ``classes``)."""
    for path in (standard_split_path(TASK, source), kept_split_path(TASK, source)):
        if path.is_file():
            split = load_split(path, patient_of)
            if split.classes and split.classes != classes:
                raise SplitError(
                    f"{path}: the split's classes must be the trial's, in the same order (they are the label "
                    f"indices), but the split has {list(split.classes)} and the trial {list(classes)}. Pass "
                    f"--classes {','.join(split.classes)}, or delete the file to split again.")
            return split
    split = make_split(refs(), task=TASK, source=source, classes=classes)
    save_split(split, kept_split_path(TASK, source))
    return split


def preprocess(cases, size: int, classes: Sequence[str] = CHD_CLASSES) -> dict[str, np.ndarray]:
    """Every case resized to size² and standardised, in memory: the arrays the cache holds (without
    ``classes``), for small case lists (``bench perf --suite data`` times exactly this step)."""
    stream = radiograph_rows(cases, size, classes)
    rows = list(stream.rows)
    return {**{name: np.stack([r[name] for r in rows]) for name in rows[0]}, **stream.whole}
