"""Patient-grouped, stratified splits: K folds plus a held-out test part, stored as hashed JSON.

A split file is the contract between a data set and every trial run on it: its sha256 is logged with
each run, and loading it re-checks that no patient sits in two parts and that every id exists.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from bench.config import atomic_write_text
from bench.data.case import Case
from bench.errors import SplitError

SPLIT_VERSION = 1


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

    def content(self) -> dict:
        return {
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

    def part(self, name: str, fold: int = 0) -> tuple[str, ...]:
        if name == "test":
            return self.test
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
) -> Split:
    """Hold out ~test_fraction of patients, then K folds over the rest; patients never straddle parts."""
    ids = np.array([c.id for c in cases])
    groups = np.array([c.patient_id for c in cases])
    strata = np.array([str(c.labels.get(stratify, "")) for c in cases])
    n_test_splits = max(2, round(1 / test_fraction))
    outer = StratifiedGroupKFold(n_splits=n_test_splits, shuffle=True, random_state=seed)
    rest_idx, test_idx = next(outer.split(ids, strata, groups))
    inner = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = []
    for train_idx, val_idx in inner.split(ids[rest_idx], strata[rest_idx], groups[rest_idx]):
        folds.append(
            {"train": tuple(sorted(ids[rest_idx][train_idx])), "val": tuple(sorted(ids[rest_idx][val_idx]))}
        )
    split = Split(task, source, seed, stratify, tuple(sorted(ids[test_idx])), tuple(folds))
    check_split(split, {c.id: c.patient_id for c in cases})
    return split


def check_split(split: Split, patient_of: Mapping[str, str], origin: str = "split") -> None:
    """Raise SplitError if an id is unknown, or a patient appears in two parts (train/val/test)."""
    all_ids = set(split.test).union(*(set(f["train"]) | set(f["val"]) for f in split.folds))
    missing = sorted(all_ids - set(patient_of))
    if missing:
        raise SplitError(
            f"{origin}: every case id must exist in the data, but {len(missing)} do not (e.g. {missing[:3]}). "
            "Regenerate the split for this data with `bench datasets split`."
        )
    test_patients = {patient_of[i] for i in split.test}
    for k, fold in enumerate(split.folds):
        train_p = {patient_of[i] for i in fold["train"]}
        val_p = {patient_of[i] for i in fold["val"]}
        for (a, pa), (b, pb) in (
            (("train", train_p), ("val", val_p)),
            (("train", train_p), ("test", test_patients)),
            (("val", val_p), ("test", test_patients)),
        ):
            shared = pa & pb
            if shared:
                # Count only: patient pseudonyms stay inside the data layer.
                raise SplitError(
                    f"{origin}: a patient must sit in one part only, but fold {k} shares {len(shared)} "
                    f"patient(s) between {a} and {b}. Rebuild the split grouped by patient_id."
                )


def save_split(split: Split, path: str | Path) -> Path:
    payload = dict(split.content(), sha256=split.sha256)
    return atomic_write_text(path, json.dumps(payload, indent=1, sort_keys=True) + "\n")


def load_split(path: str | Path, patient_of: Mapping[str, str] | None = None) -> Split:
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
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SplitError(f"{path}: a split file must be JSON with task/source/seed/test/folds, but {exc!r}.") from exc
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
        part: dict(Counter(label[i] for i in split.part(part, fold))) for part in ("train", "val", "test")
    }
