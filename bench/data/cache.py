"""Preprocess once, memory-map after: arrays keyed by a fingerprint of source + preprocessing.

A build returns either whole arrays (small sources: the phantoms) or a ``RowStream``: one preprocessed
row per case, written to the ``.npy`` files as it comes, so a real archive (ChestX-ray14: 112,120 images
of 1024²) is cached with one full-size image in memory at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from bench.diskspace import DiskFull, check_free, is_disk_full
from bench.errors import DataError


def cache_root() -> Path:
    return Path(os.environ.get("BENCH_CACHE", ".bench/cache"))


@contextlib.contextmanager
def scratch(prefix: str = "trial-") -> Iterator[Path]:
    """A fresh scratch folder for one trial (predicted masks and the like), removed when the block ends, however.

    It lies under ``<cache root>/.scratch/``: on the cache's disk, which is sized for data, rather than in
    ``/tmp``, which may be memory (tmpfs).
    """
    root = cache_root() / ".scratch"
    root.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=root, prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def fingerprint(descriptor: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(descriptor, sort_keys=True, default=str).encode()).hexdigest()[:20]


@dataclass
class RowStream:
    """What a streaming build returns: ``count`` rows, each a dict of same-shaped arrays, plus whole arrays.

    Example:
        >>> stream = RowStream(2, ({"x": np.full(3, i, np.float32)} for i in range(2)), {"id": np.array(["a", "b"])})
        >>> arrays = cached_arrays("doc-example", lambda: stream)  # doctest: +SKIP
        >>> arrays["x"].shape  # doctest: +SKIP
        (2, 3)
    """

    count: int
    rows: Iterable[Mapping[str, np.ndarray]]
    whole: Mapping[str, np.ndarray] = field(default_factory=dict)


def cached_arrays(key: str, build: Callable[[], dict[str, np.ndarray] | RowStream]) -> dict[str, np.ndarray]:
    """Return the arrays stored under ``key`` (memory-mapped), building and storing them first if absent.

    The folder is written under a temporary name and renamed, so an interrupted build leaves nothing
    that a later run could mistake for a finished cache. The size is known before the first byte is written
    (whole arrays, or a row stream's first row times its count), so a disk that cannot hold it is refused at
    once (:class:`bench.diskspace.DiskFull`), and one that fills during the write is the same error.

    Raises:
        DiskFull: the cache's disk has no room for the arrays (nothing is left behind).
    """
    folder = cache_root() / key
    if not folder.is_dir():
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{key}."))
        try:
            built = build()
            if isinstance(built, RowStream):
                write_rows(tmp, built)
            else:
                check_free(folder.parent, sum(np.asarray(a).nbytes for a in built.values()))
                for name, array in built.items():
                    np.save(tmp / f"{name}.npy", array, allow_pickle=False)
            os.replace(tmp, folder)
        except (OSError, DiskFull) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if folder.is_dir():  # another worker may have won the race; theirs is as good
                pass
            elif is_disk_full(exc):  # named by the cache folder: the temporary one is gone
                raise DiskFull(folder.parent) from None
            else:
                raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return {p.stem: np.load(p, mmap_mode="r", allow_pickle=False) for p in sorted(folder.glob("*.npy"))}


def write_rows(folder: Path, stream: RowStream) -> None:
    """Write each row straight to ``<name>.npy`` (header sized for ``count`` rows), then the whole arrays.

    Rows go through buffered file writes, not a writable memory map, so the process holds one row at a
    time rather than accumulating dirty pages of the whole array.
    """
    files: dict[str, tuple[BinaryIO, np.dtype, tuple[int, ...]]] = {}
    written = 0
    try:
        for row in stream.rows:
            if written >= stream.count:
                raise DataError(f"a row stream must yield {stream.count} rows as it announced, but it yields more.")
            if not files:
                row_bytes = sum(np.asarray(v).nbytes for v in row.values())
                whole_bytes = sum(np.asarray(a).nbytes for a in stream.whole.values())
                check_free(folder.parent, row_bytes * stream.count + whole_bytes)
                for name, value in row.items():
                    value = np.asarray(value)
                    fh = (folder / f"{name}.npy").open("wb")
                    files[name] = (fh, value.dtype, value.shape)
                    header = {"descr": np.lib.format.dtype_to_descr(value.dtype), "fortran_order": False,
                              "shape": (stream.count, *value.shape)}
                    np.lib.format.write_array_header_2_0(fh, header)
            if set(row) != set(files):
                raise DataError(f"every row of a row stream must hold {sorted(files)}, but row {written} holds "
                                f"{sorted(row)}.")
            for name, (fh, dtype, shape) in files.items():
                value = np.asarray(row[name])
                if value.shape != shape:
                    raise DataError(f"every row's '{name}' must have shape {shape}, but row {written} has "
                                    f"{value.shape}.")
                fh.write(np.ascontiguousarray(value, dtype=dtype).tobytes())
            written += 1
    finally:
        for fh, _, _ in files.values():
            fh.close()
    if written != stream.count:
        raise DataError(f"a row stream must yield {stream.count} rows as it announced, but it yielded {written}.")
    for name, array in stream.whole.items():
        np.save(folder / f"{name}.npy", array, allow_pickle=False)
