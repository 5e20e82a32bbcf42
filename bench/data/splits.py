"""Patient-grouped, stratified splits: K folds plus a held-out test part, stored as hashed JSON.

A split file is the contract between a data set and every trial run on it: its sha256 is logged with
each run, and loading it re-checks that no patient sits in two parts and that every id exists.

Besides ``test`` a split may hold extra held-out parts (``EXTRA_PARTS``, e.g. ``test_shifted``: cases
whose site/class association differs from training, so a classifier that learned the site is caught).
They are stored as top-level keys and enter the hash only when present, so older split files keep theirs.

A split may also record its data's class list (``classes``, in label-index order: bench.data.labels), so a
trial's split hash pins the order its classifier outputs use. It too enters the hash only when present:
split files made before it (the committed phantom split) keep their sha256.

Readers that know a source's *official* split say so per case, and ``make_split`` honours it:
``case.meta["split_part"]`` in {"test", "test_shifted", "trainval"} pins a case to that part, and
``case.meta["split_fold"] = k`` makes the case part of fold k's validation set (JSRT's odd/even folds).

``make_split`` takes Case records or bench.data.stream.CaseRef (it reads only id, patient_id, labels and
meta), so a real archive is split without decoding its images.

Classes too small for the folds stop with one SplitError naming each and its patient and image counts
(every class with fewer images than folds: what scikit-learn cannot stratify, formerly its traceback);
a class with fewer patients than folds gets one warning naming it: some validation folds will lack it.
"""


from __future__ import annotations

import hashlib
import json
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from bench.config import atomic_write_text
from bench.data.case import Case
from bench.errors import BenchWarning, SplitError, describe_error

SPLIT_VERSION = 1
EXTRA_PARTS = ("test_shifted",)


@dataclass(frozen=True)
class Split:
    task: str
    source: str
    seed: int
    stratify: str
    test: tuple[str, ...]
    folds: tuple[dict[str, tuple[str, ...]], ...]
    version: int = SPLIT_VERSION
    grouping: str = "patient_id"
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)
    classes: tuple[str, ...] = ()  # label-index order of the data's classes; () in files made before it

    def content(self) -> dict:
        return {
            **{name: list(ids) for name, ids in sorted(self.extra.items())},
            **({"classes": list(self.classes)} if self.classes else {}),
            "task": self.task,
            "source": self.source,
            "version": self.version,
            "grouping": self.grouping,
            "stratify": self.stratify,
            "seed": self.seed,
            "test": list(self.test),
            "folds": [{"train": list(f["train"]), "val": list(f["val"])} for f in self.folds],
        }

    @property
    def sha256(self) -> str:
        canonical = json.dumps(self.content(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def part_names(self) -> tuple[str, ...]:
        """Every part a trial can draw from: train, val, test, then the extra parts present."""
        return ("train", "val", "test", *sorted(self.extra))

    def part(self, name: str, fold: int = 0) -> tuple[str, ...]:
        if name == "test":
            return self.test
        if name in self.extra:
            return self.extra[name]
        if name not in ("train", "val"):
            raise SplitError(f"split part must be one of {list(self.part_names)}, but got '{name}'.")
        if not 0 <= fold < len(self.folds):
            raise SplitError(f"fold must be in 0..{len(self.folds) - 1}, but got {fold}.")
        return self.folds[fold][name]


def make_split(
    cases: Sequence[Case],
    task: str,
    source: str,
    n_folds: int = 5,
    test_fraction: float = 0.2,
    seed: int = 0,
    stratify: str = "class",
    classes: Sequence[str] = (),
) -> Split:
    """Hold out ~test_fraction of patients, then K folds over the rest; patients never straddle parts.

    Official parts named by the reader (``meta["split_part"]`` / ``meta["split_fold"]``, see the module
    docstring) replace the random choice for the cases that carry them. ``classes`` (the resolved class
    list, bench.data.labels.resolve_classes) is recorded in the split; every case's label must be in it.

    Example:
        >>> from bench.data.phantoms.xray import XrayPhantomSpec, generate
        >>> split = make_split(generate(XrayPhantomSpec(n_patients=30, size=64)), "xray-heart", "phantom")
        >>> split.part_names
        ('train', 'val', 'test', 'test_shifted')
    """
    if n_folds < 2:
        raise SplitError(f"a split needs at least 2 folds, but got n_folds={n_folds}.")
    outside = sorted({str(c.labels.get(stratify, "")) for c in cases} - set(classes)) if classes else []
    if outside:
        raise SplitError(f"every case's {stratify} must be one of the split's classes {list(classes)}, but the "
                         f"data also has {outside}. Resolve the classes from the data (bench.data.labels).")
    extra: dict[str, list[str]] = {}
    official_test: list[int] = []
    pool: list[int] = []
    for i, c in enumerate(cases):
        part = c.meta.get("split_part", "")
        if part in EXTRA_PARTS:
            extra.setdefault(part, []).append(c.id)
        elif part == "test":
            official_test.append(i)
        elif part in ("", "trainval"):
            pool.append(i)
        else:
            raise SplitError(
                f"case {c.id}: meta['split_part'] must be one of test, trainval, {', '.join(EXTRA_PARTS)}, "
                f"but got '{part}'. Fix the reader that set it."
            )
    ids = np.array([c.id for c in cases])
    groups = np.array([c.patient_id for c in cases])
    strata = np.array([str(c.labels.get(stratify, "")) for c in cases])
    if official_test or any(c.meta.get("split_part") == "trainval" for c in cases):
        rest_idx, test_idx = np.array(pool, int), np.array(official_test, int)
    else:
        pool_idx = np.array(pool, int)
        n_test_splits = max(2, round(1 / test_fraction))
        _need_groups(groups[pool_idx], n_test_splits, "splitting off the held-out test part needs")
        _need_class_patients(groups[pool_idx], strata[pool_idx], n_test_splits, stratify,
                             "the data (before the held-out test part is drawn)", warn=False)
        outer = StratifiedGroupKFold(n_splits=n_test_splits, shuffle=True, random_state=seed)
        with _quiet_sklearn():
            rest, test = next(outer.split(ids[pool_idx], strata[pool_idx], groups[pool_idx]))
        rest_idx, test_idx = pool_idx[rest], pool_idx[test]
    official_folds = [cases[i].meta.get("split_fold") for i in rest_idx]
    if any(f is not None for f in official_folds):
        if any(f is None for f in official_folds):
            raise SplitError("every train/val case must carry meta['split_fold'] when any does, but some do not.")
        val_sets = [rest_idx[np.array(official_folds) == k] for k in sorted(set(official_folds))]
        index_pairs = [(np.setdiff1d(rest_idx, v), v) for v in val_sets]
    else:
        _need_groups(groups[rest_idx], n_folds, "the folds need")
        _need_class_patients(groups[rest_idx], strata[rest_idx], n_folds, stratify,
                             "the train/val pool" + (" (after the held-out test part)" if len(test_idx) else ""))
        inner = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        with _quiet_sklearn():
            index_pairs = [(rest_idx[a], rest_idx[b]) for a, b in
                           inner.split(ids[rest_idx], strata[rest_idx], groups[rest_idx])]
    folds = tuple({"train": _ids(ids[a]), "val": _ids(ids[b])} for a, b in index_pairs)
    split = Split(task, source, seed, stratify, _ids(ids[test_idx]), folds,
                  extra={k: tuple(sorted(v)) for k, v in extra.items()}, classes=tuple(classes))
    check_split(split, {c.id: c.patient_id for c in cases})
    return split


def _ids(values) -> tuple[str, ...]:
    return tuple(sorted(str(v) for v in values))


def _need_groups(groups: np.ndarray, n: int, what: str) -> None:
    found = len(set(groups.tolist()))
    if found < n:
        raise SplitError(
            f"{what} at least {n} patients to split {n} ways, but the data has {found}. "
            "Add data or lower --folds."
        )


@contextmanager
def _quiet_sklearn() -> Iterator[None]:
    """scikit-learn's small-class warning counts images, not patients; ours (_need_class_patients) says it right."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        yield


def _need_class_patients(groups: np.ndarray, strata: np.ndarray, n_folds: int, stratify: str, where: str,
                         warn: bool = True) -> None:
    """One clear error, or one warning, for classes too small to stratify ``n_folds`` ways.

    Error: every class has fewer images than folds (scikit-learn's StratifiedGroupKFold cannot split
    that and used to surface as its traceback). Warning: some class has fewer *patients* than folds, so
    some validation folds will lack it.
    """
    patients: dict[str, set] = {}
    images: Counter = Counter(strata.tolist())
    for group, label in zip(groups.tolist(), strata.tolist()):
        patients.setdefault(label, set()).add(group)
    counts = {label: len(p) for label, p in sorted(patients.items())}
    short = {label: n for label, n in counts.items() if n < n_folds}
    listed = ", ".join(f"{k} has {v} patient{'s' * (v != 1)} ({images[k]} image{'s' * (images[k] != 1)})"
                       for k, v in short.items())
    per_class = ", ".join(f"{k} {v}" for k, v in counts.items())
    if counts and all(n < n_folds for n in images.values()):
        raise SplitError(
            f"some {stratify} must have at least {n_folds} images in {where} to stratify {n_folds} folds, but "
            f"{listed} (patients per {stratify}: {per_class}). Add data, merge classes, or lower --folds."
        )
    if short and warn:
        warnings.warn(f"{where}: {listed}, fewer than the {n_folds} folds, so some validation folds will lack "
                      f"it (patients per {stratify}: {per_class}).", category=BenchWarning, stacklevel=3)


def check_split(split: Split, patient_of: Mapping[str, str], origin: str = "split") -> None:
    """Raise SplitError if an id is unknown, or a patient appears in two parts (train/val/test)."""
    all_ids = set(split.test).union(*(set(f["train"]) | set(f["val"]) for f in split.folds),
                                    *(set(v) for v in split.extra.values()))
    missing = sorted(all_ids - set(patient_of))
    if missing:
        raise SplitError(
            f"{origin}: every case id must exist in the data, but {len(missing)} do not (e.g. {missing[:3]}). "
            "Regenerate the split for this data with `bench datasets split`."
        )
    test_patients = {patient_of[i] for i in split.test}
    held_out = {"test": test_patients, **{k: {patient_of[i] for i in v} for k, v in split.extra.items()}}
    names = sorted(held_out)
    for a_i, a in enumerate(names):
        for b in names[a_i + 1 :]:
            if held_out[a] & held_out[b]:
                raise SplitError(
                    f"{origin}: a patient must sit in one part only, but {len(held_out[a] & held_out[b])} "
                    f"patient(s) are in both {a} and {b}. Rebuild the split grouped by patient_id."
                )
    for k, fold in enumerate(split.folds):
        train_p = {patient_of[i] for i in fold["train"]}
        val_p = {patient_of[i] for i in fold["val"]}
        pairs = [(("train", train_p), ("val", val_p))] + [
            ((a, pa), (b, held_out[b])) for (a, pa) in (("train", train_p), ("val", val_p)) for b in names
        ]
        for (a, pa), (b, pb) in pairs:
            shared = pa & pb
            if shared:
                # Count only: patient pseudonyms stay inside the data layer.
                raise SplitError(
                    f"{origin}: a patient must sit in one part only, but fold {k} shares {len(shared)} "
                    f"patient(s) between {a} and {b}. Rebuild the split grouped by patient_id."
                )


def save_split(split: Split, path: str | Path) -> Path:
    """Write the split as sorted, indented JSON with its sha256 (atomically: no half-written file)."""
    payload = dict(split.content(), sha256=split.sha256)
    return atomic_write_text(path, json.dumps(payload, indent=1, sort_keys=True) + "\n")


def load_split(path: str | Path, patient_of: Mapping[str, str] | None = None) -> Split:
    """Read a split file, verify its sha256 and, given ``patient_of`` (case id -> patient), re-check leakage."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        split = Split(
            task=data["task"],
            source=data["source"],
            seed=int(data["seed"]),
            stratify=data["stratify"],
            test=tuple(data["test"]),
            folds=tuple({"train": tuple(f["train"]), "val": tuple(f["val"])} for f in data["folds"]),
            version=int(data.get("version", SPLIT_VERSION)),
            grouping=data.get("grouping", "patient_id"),
            extra={k: tuple(data[k]) for k in EXTRA_PARTS if k in data},
            classes=tuple(str(c) for c in data.get("classes", ())),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SplitError(f"{path}: a split file must be JSON with task/source/seed/test/folds, but {describe_error(exc)}.") from exc
    if data.get("sha256") and data["sha256"] != split.sha256:
        raise SplitError(
            f"{path}: the stored sha256 must match the content, but got {data['sha256'][:12]}… vs "
            f"{split.sha256[:12]}…. The file was edited by hand; regenerate it."
        )
    if patient_of is not None:
        check_split(split, patient_of, origin=str(path))
    return split


def class_counts(split: Split, cases: Sequence[Case], fold: int = 0, stratify: str = "class") -> dict:
    label = {c.id: c.labels.get(stratify) for c in cases}
    return {
        part: dict(Counter(label[i] for i in split.part(part, fold))) for part in split.part_names
    }


def datasets_dir() -> Path:
    """The project's datasets/ folder (dataset cards and the committed standard split files)."""
    return Path(__file__).resolve().parents[2] / "datasets"


def standard_split_path(task: str, source: str) -> Path:
    return datasets_dir() / "splits" / f"{task}-{source}.json"
