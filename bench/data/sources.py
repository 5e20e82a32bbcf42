"""Where a task's cases come from (built-in phantom or a reader over a folder) and which split applies."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.data.cache import cache_root, fingerprint
from bench.data.case import Case
from bench.data.splits import (  # noqa: F401  (datasets_dir, standard_split_path re-exported)
    Split,
    datasets_dir,
    load_split,
    make_split,
    save_split,
    standard_split_path,
)
from bench.errors import DataError

PHANTOM = "phantom"


def source_descriptor(data: str, data_format: str, phantom_name: str,
                      reader_options: Mapping[str, Any] | None = None) -> dict:
    """What identifies the input bytes: the phantom's spec, or every file's name, size and mtime, plus the
    reader options (they choose which cases are read, e.g. chexmask ``min_dice``, so a split or cache made
    without them is not theirs)."""
    if reader_options:
        return {**source_descriptor(data, data_format, phantom_name), "reader": reader_options}
    if data == PHANTOM:
        return {"source": phantom_name}
    root = Path(data)
    if not root.exists():
        raise DataError(f"{root}: the data path must exist, but it does not.")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    if not files:
        raise DataError(f"{root}: the data folder must contain files, but it is empty.")
    listing = [(str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return {"source": str(root.resolve()), "format": data_format, "files": fingerprint({"l": listing})}


def source_name(data: str, descriptor: dict) -> str:
    return PHANTOM if data == PHANTOM else f"{Path(data).name}-{fingerprint(descriptor)[:8]}"


def read_cases(
    data: str, data_format: str, classes: Sequence[str] | None, make_phantom: Callable[[], list[Case]],
    **reader_options,
) -> list[Case]:
    """Every case with its pixels in memory (small sources). ``classes=None``: the labels the data has.

    For real archives use ``bench.data.stream.scan_cases`` + ``bench.data.radiograph.radiograph_rows``,
    which decode one image at a time; ``bench.data.labels.resolve_classes`` gives the class list.
    """
    if data == PHANTOM:
        return make_phantom()
    from bench.data.formats import FORMATS

    cases = FORMATS.create(data_format, **reader_options).read(data, classes)
    if not cases:
        raise DataError(f"{data}: a data set must hold at least one case, but the reader found none.")
    return cases


def resolve_split(task: str, source: str, patient_of: Mapping[str, str], cases: Sequence[Case] | None) -> Split:
    """The committed standard split for the source if there is one, else one made once and kept in the cache."""
    standard = standard_split_path(task, source)
    if standard.is_file():
        return load_split(standard, patient_of)
    kept = kept_split_path(task, source)
    if kept.is_file():
        return load_split(kept, patient_of)
    if cases is None:
        raise DataError(f"{kept}: no split exists for source '{source}' yet; run `bench datasets split` first.")
    split = make_split(cases, task=task, source=source)
    save_split(split, kept)
    return split


def kept_split_path(task: str, source: str) -> Path:
    """Where a split made for a folder (not committed with the project) is kept and found again."""
    return cache_root().parent / "splits" / f"{task}-{source}.json"


def write_split(
    data: str,
    task: str,
    data_format: str,
    n_folds: int = 5,
    seed: int = 0,
    test_fraction: float = 0.2,
    out: str | Path | None = None,
    classes: Sequence[str] | None = None,
    phantom_cases: Callable[[], list] | None = None,
    **reader_options,
) -> tuple[Split, Path]:
    """Make the patient-grouped split for a data set and write it where trials will find it.

    The reader's official split (if the source has one) is honoured; see bench.data.splits. Without
    ``out`` the file goes to the kept-splits folder under the cache root, named by the data's
    fingerprint, which is exactly where ``resolve_split`` looks. For the phantom, pass ``out`` to write
    a standard split file (datasets/splits/<task>-phantom.json).

    A folder is scanned, not decoded (bench.data.stream.scan_cases): only ids, patients, labels and
    official parts are read. ``classes`` (explicit list) refuses labels outside it; None takes the data's.
    ``phantom_cases`` (the task's ``TaskSpec.phantom_cases``) makes the phantom's cases when ``data`` is it.

    Returns:
        The split and the path written (the split's sha256 is in the file and in ``split.sha256``).
    """
    if data == PHANTOM:
        if phantom_cases is None:
            raise DataError(f"task {task} must provide phantom_cases to split its phantom, but has none. "
                            f"Its standard split is committed as datasets/splits/{task}-phantom.json.")
        cases = phantom_cases()
        source = PHANTOM
    else:
        descriptor = source_descriptor(data, data_format, "", reader_options)
        source = source_name(data, descriptor)
        from bench.data.stream import scan_cases

        cases = scan_cases(data, data_format, classes, **reader_options)
    split = make_split(cases, task=task, source=source, n_folds=n_folds, test_fraction=test_fraction, seed=seed)
    path = Path(out) if out is not None else kept_split_path(task, source)
    return split, save_split(split, path)
