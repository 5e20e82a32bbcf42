"""nnU-Net's ``splits_final.json``: read it as a data set's folds, write a bench split in its format.

The file is a list with one entry per fold, ``[{"train": [case ids], "val": [case ids]}, ...]``, as
``nnunetv2.utilities.file_path_utilities`` / ``nnUNetTrainer.do_split`` write it. When it sits beside
dataset.json, its folds are the folds: :func:`fold_of_cases` gives each training case the fold whose val
part holds it, which ``bench.data.splits.make_split`` honours (``meta["split_fold"]``), so fold k of a bench
run is fold k of nnU-Net's, case for case. bench needs the folds to partition the training cases (every
case in exactly one val part, train = the rest), which is what nnU-Net's default 5-fold split is.

Example:
    >>> write_splits_final([{"train": ["a", "b"], "val": ["c"]}], "splits_final.json")  # doctest: +SKIP
    >>> read_splits_final(".")                                                         # doctest: +SKIP
    [{'train': ['a', 'b'], 'val': ['c']}]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from bench.config import atomic_write_text
from bench.errors import SplitError

SPLITS_FINAL = "splits_final.json"


def read_splits_final(root: str | Path) -> list[dict[str, list[str]]] | None:
    """The folds of ``root/splits_final.json`` (``root`` a folder or the file itself), None when absent.

    Raises:
        SplitError: the file is not a non-empty list of {"train": [...], "val": [...]} with string ids.
    """
    path = Path(root)
    if path.is_dir():
        path = path / SPLITS_FINAL
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SplitError(f"{path}: splits_final.json must be readable JSON, but reading failed: {exc}.") from exc
    shape = 'a list of folds [{"train": [case ids], "val": [case ids]}, ...]'
    if not isinstance(data, list) or not data:
        raise SplitError(f"{path}: splits_final.json must be {shape}, but got {type(data).__name__} "
                         f"{'(empty)' if data == [] else ''}".rstrip() + ".")
    folds = []
    for k, fold in enumerate(data):
        if not (isinstance(fold, dict) and all(isinstance(fold.get(p), list) for p in ("train", "val"))
                and all(isinstance(i, str) for p in ("train", "val") for i in fold[p])):
            raise SplitError(f"{path}: splits_final.json must be {shape}, but fold {k} is not.")
        folds.append({"train": list(fold["train"]), "val": list(fold["val"])})
    return folds


def write_splits_final(folds: Sequence[dict[str, Sequence[str]]], path: str | Path) -> Path:
    """Write ``folds`` as nnU-Net's splits_final.json (atomically); ``path`` a file or a folder to put it in."""
    path = Path(path)
    if path.is_dir():
        path = path / SPLITS_FINAL
    data = [{"train": sorted(map(str, f["train"])), "val": sorted(map(str, f["val"]))} for f in folds]
    if not data:
        raise SplitError(f"{path}: a split must have at least one fold to write, but got none.")
    return atomic_write_text(path, json.dumps(data, indent=4) + "\n")


def fold_of_cases(root: str | Path, case_ids: Sequence[str]) -> dict[str, int]:
    """Case id -> the fold of ``root/splits_final.json`` whose val part holds it; {} without the file.

    Training cases the file does not name are the held-out test part (what :func:`nnunet_folds` leaves
    out of an exported bench split), so an exported split read back is the same split.

    Raises:
        SplitError: the file names cases the data set lacks, or its folds do not partition the cases it
            names (a case in no or two val parts, or a train part that is not the rest).
    """
    folds = read_splits_final(root)
    if folds is None:
        return {}
    path = Path(root) / SPLITS_FINAL if Path(root).is_dir() else Path(root)
    cases = set(case_ids)
    named = {i for f in folds for part in ("train", "val") for i in f[part]}
    unknown = sorted(named - cases)
    if unknown:
        raise SplitError(f"{path}: every case id in splits_final.json must be a labelled training case, but "
                         f"{len(unknown)} are not (e.g. {unknown[:3]}). Remove them or restore their files.")
    fold_of: dict[str, int] = {}
    for k, fold in enumerate(folds):
        for case in fold["val"]:
            if case in fold_of:
                raise SplitError(f"{path}: each case must be in one val part only (bench uses the folds as a "
                                 f"partition), but '{case}' is in folds {fold_of[case]} and {k}.")
            fold_of[case] = k
        if set(fold["train"]) != named - set(fold["val"]):
            raise SplitError(f"{path}: fold {k}'s train part must be every case of the folds outside its val "
                             f"part, but it holds {len(fold['train'])} of {len(named) - len(set(fold['val']))}.")
    missing = sorted(named - set(fold_of))
    if missing:
        raise SplitError(f"{path}: every case of the folds must be in one fold's val part, but {len(missing)} "
                         f"are in none (e.g. {missing[:3]}).")
    return fold_of


def nnunet_folds(split) -> list[dict[str, list[str]]]:
    """A ``bench.data.splits.Split``'s folds in splits_final.json's form (its test part stays out: nnU-Net
    holds test cases in imagesTs/, not in the folds)."""
    return [{"train": sorted(f["train"]), "val": sorted(f["val"])} for f in split.folds]


def split_from_splits_final(ds, task: str, source: str):
    """The project's ``Split`` of a data set (``bench.data.seg_dataset.SegDataset``) whose folder holds
    splits_final.json: its folds, case for case, and the training cases it leaves out (plus labelled imagesTs
    cases) as the test part; None without the file. Without it, ``make_split(ds.refs(), ...)`` (what
    ``bench.data.sources.resolve_split`` does) draws a patient-grouped split instead."""
    from bench.data.splits import make_split

    folds = read_splits_final(ds.root)
    if folds is None:
        return None
    return make_split(ds.refs(), task=task, source=source, n_folds=max(2, len(folds)))
