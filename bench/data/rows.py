"""Rows of a data set part, drawn a batch at a time: from the cache's ``.npy`` files or from memory.

A :class:`Rows` is a torch map-style ``Dataset`` whose item is a *batch*: ``rows[[3, 0, 7]]`` returns a
dict of tensors with those three rows of every column. The training loops hand it to a ``DataLoader``
with a batch-order sampler (``batch_size=None``), so a batch is one read per column, whether the loader
runs in the trial's process or in worker processes.

A column is either

* an :class:`NpyColumn`: rows of an ``.npy`` file (the cache's arrays, or masks a trial wrote to its
  scratch space), read with ``os.pread`` at the row's offset. The process holds the rows of the batch,
  never the file: reading through a memory map would count every page touched in the process's resident
  memory (one epoch touches them all), while ``pread`` leaves them in the OS page cache, which the kernel
  reclaims as it needs; or
* a tensor or array in memory (the resident path for sets the runtime policy says fit, and per-case
  values such as labels: one number per case).

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.npy"
    >>> np.save(path, np.arange(12, dtype=np.float32).reshape(4, 3))
    >>> rows = Rows({"x": NpyColumn(path), "y": np.array([0, 1, 0, 1])})
    >>> batch = rows[[2, 0]]
    >>> batch["x"].tolist(), batch["y"].tolist()
    ([[6.0, 7.0, 8.0], [0.0, 1.0, 2.0]], [0, 1])
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.errors import DataError


class NpyColumn:
    """Rows ``rows`` (default all) of the ``.npy`` file at ``path``, read by offset; picklable (worker processes
    open the file themselves)."""

    def __init__(self, path: str | Path, rows: Sequence[int] | np.ndarray | None = None):
        self.path = Path(path)
        header = np.load(self.path, mmap_mode="r", allow_pickle=False)  # header only; the map is dropped
        if header.dtype.hasobject or not header.flags.c_contiguous:
            raise DataError(f"{self.path}: a row column must be a C-ordered array of plain values, but it is "
                            f"{header.dtype} {'' if header.flags.c_contiguous else 'Fortran-ordered'}.")
        self.dtype, self.row_shape = header.dtype, tuple(header.shape[1:])
        self.offset, self.total = int(header.offset), int(header.shape[0])
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        del header
        self.rows = np.arange(self.total) if rows is None else np.asarray(rows, np.int64)
        if len(self.rows) and (self.rows.min() < 0 or self.rows.max() >= self.total):
            raise DataError(f"{self.path}: row indices must lie in [0, {self.total}), but got "
                            f"{int(self.rows.min())}..{int(self.rows.max())}.")
        self._fd: int | None = None
        self._pid = -1

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None, "_pid": -1}  # a worker opens its own descriptor

    def __del__(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # forked: the parent's offset state is not ours
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def take(self, idx: Sequence[int] | np.ndarray) -> np.ndarray:
        """Rows ``idx`` (positions in this column) as one new array (batch, *row_shape)."""
        rows = self.rows[np.asarray(idx, np.int64)]
        out = np.empty((len(rows), *self.row_shape), self.dtype)
        flat = out.reshape(len(rows), -1).view(np.uint8)
        fd = self._file()
        for k, r in enumerate(rows):
            got = os.preadv(fd, [flat[k]], self.offset + int(r) * self.row_bytes)
            if got != self.row_bytes:
                raise DataError(f"{self.path}: row {int(r)} must hold {self.row_bytes} bytes, but the file "
                                f"gave {got}. The cache is truncated; delete it to rebuild.")
        return out


Column = NpyColumn | torch.Tensor | np.ndarray


class Rows(torch.utils.data.Dataset):
    """Aligned columns of one part; ``rows[idx]`` is the batch of rows ``idx`` as tensors.

    Args:
        columns: name -> :class:`NpyColumn`, tensor or array, all of the same length.
        dtypes: name -> torch dtype a column is converted to when drawn (e.g. uint8 masks to float32).
    """

    def __init__(self, columns: Mapping[str, Column], dtypes: Mapping[str, torch.dtype] | None = None):
        lengths = {name: len(col) for name, col in columns.items()}
        if len(set(lengths.values())) > 1:
            raise DataError(f"the columns of a part must have one length, but got {lengths}.")
        self.columns = dict(columns)
        self.dtypes = dict(dtypes or {})
        self.n = next(iter(lengths.values()), 0)

    def __len__(self) -> int:
        return self.n

    @property
    def streamed(self) -> bool:
        """True when some column is read from disk (the loader may then use worker processes)."""
        return any(isinstance(c, NpyColumn) for c in self.columns.values())

    def nbytes(self) -> int:
        """Bytes the columns hold (or would hold in memory), the size the runtime policy decides on."""
        total = 0
        for col in self.columns.values():
            if isinstance(col, NpyColumn):
                total += col.row_bytes * len(col)
            elif isinstance(col, torch.Tensor):
                total += col.numel() * col.element_size()
            else:
                total += np.asarray(col).nbytes
        return total

    def row_shape(self, name: str) -> tuple[int, ...]:
        col = self.columns[name]
        return col.row_shape if isinstance(col, NpyColumn) else tuple(col.shape[1:])

    def per_case(self, name: str) -> np.ndarray:
        """A column of one value per case (labels, widths) as an array; refused for image columns."""
        col = self.columns[name]
        if isinstance(col, NpyColumn) or (len(col) and np.prod(self.row_shape(name), dtype=np.int64) > 1):
            raise DataError(f"per_case reads columns of one value per case, but '{name}' has rows of shape "
                            f"{self.row_shape(name)}. Draw it in batches.")
        return col.cpu().numpy() if isinstance(col, torch.Tensor) else np.asarray(col)

    def with_columns(self, dtypes: Mapping[str, torch.dtype] | None = None, **columns: Column) -> Rows:
        """These rows plus (or with replaced) ``columns``."""
        return Rows({**self.columns, **columns}, {**self.dtypes, **(dtypes or {})})

    def select(self, *names: str) -> Rows:
        return Rows({n: self.columns[n] for n in names}, {n: d for n, d in self.dtypes.items() if n in names})

    def in_memory(self, device: torch.device | str | None = None) -> Rows:
        """Every column gathered into tensors (on ``device`` if given): the resident form of these rows."""
        out: dict[str, torch.Tensor] = {}
        for name, col in self.columns.items():
            t = torch.from_numpy(col.take(np.arange(len(col)))) if isinstance(col, NpyColumn) else torch.as_tensor(col)
            if name in self.dtypes:
                t = t.to(self.dtypes[name])
            out[name] = t.to(device, non_blocking=True) if device is not None else t
        return Rows(out)

    def __getitem__(self, idx: Sequence[int] | np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        for name, col in self.columns.items():
            if isinstance(col, NpyColumn):
                t = torch.from_numpy(col.take(np.asarray(idx)))
            elif isinstance(col, torch.Tensor):
                t = col[torch.as_tensor(idx, dtype=torch.long, device=col.device)]
            else:
                t = torch.from_numpy(np.ascontiguousarray(np.asarray(col)[np.asarray(idx, np.int64)]))
            batch[name] = t.to(self.dtypes[name]) if name in self.dtypes else t
        return batch
