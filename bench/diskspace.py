"""A full disk is one error, not a library traceback: :class:`DiskFull` names the path and the free space.

Every writer bench drives (the data cache, checkpoints, artifacts, the Optuna journal, the MLflow store) can
meet ENOSPC. Those errors come in many shapes (``OSError`` errno 28, sqlite's "database or disk is full"
wrapped by SQLAlchemy and MLflow, torch's "unexpected pos"), so :func:`is_disk_full` reads the whole
exception chain, and :func:`disk_full` turns any of them into the one message. A run a full disk stopped is
closed with reason :data:`DISK_FULL`, which ``--resume`` re-runs as it re-runs a killed one
(``bench.tracking.RERUN_REASONS``): the trial did not end on its own.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from bench.errors import BenchError

DISK_FULL = "no space left on device"  # bench.reason of a run a full disk stopped (re-run on --resume)
DISK_FULL_EXIT = 28  # exit status of a worker process a full disk stopped (errno ENOSPC's number)
_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_MESSAGES = ("no space left on device", "database or disk is full", "disk quota exceeded")
_TORCH_WRITE = ("unexpected pos", "pytorchstreamwriter failed writing")  # torch.save on a full disk


class DiskFull(BenchError):
    """A write failed for lack of space. One line: the path, the free space and how to go on; exit 1."""

    exit_code = 1

    def __init__(self, path: str | os.PathLike, free: int | None = None, then: str | None = None):
        self.path = str(Path(path).absolute())
        self.free = free_bytes(path) if free is None else free
        self.then = then
        super().__init__(f"{DISK_FULL}: {self.path} ({self.free // 2**20} MB free); "
                         f"{then or 'free space and run the command again'}")

    def then_(self, then: str) -> DiskFull:
        """The same error, saying how to continue the interrupted work (``then``)."""
        return DiskFull(self.path, self.free, then)


def is_disk_full(exc: BaseException | None) -> bool:
    """True when ``exc`` or an exception in its chain (cause, context) says the disk or quota is full."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFull):
            return True
        if isinstance(exc, OSError) and exc.errno in _ERRNOS:
            return True
        text = str(exc).lower()
        if any(m in text for m in _MESSAGES) or (isinstance(exc, RuntimeError) and any(m in text for m in _TORCH_WRITE)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def full_path(exc: BaseException | None, default: str | os.PathLike) -> str:
    """The file the failed write named (an ``OSError``'s filename in the chain), else ``default``."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFull):
            return exc.path
        if isinstance(exc, OSError) and exc.filename:
            return str(exc.filename)
        exc = exc.__cause__ or exc.__context__
    return str(default)


def disk_full(exc: BaseException, default_path: str | os.PathLike, then: str | None = None) -> DiskFull:
    """The one-line error for a disk-full ``exc`` (see :func:`is_disk_full`), naming its path; ``then``: how
    to continue (kept when the error already says it)."""
    if isinstance(exc, DiskFull):
        return exc if then is None or exc.then else exc.then_(then)
    return DiskFull(full_path(exc, default_path), then=then)


def free_bytes(path: str | os.PathLike) -> int:
    """Free bytes for an unprivileged writer on the filesystem holding ``path`` (or its nearest existing
    parent); 0 when none can be asked."""
    here = Path(path).absolute()
    for candidate in (here, *here.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return 0


MARGIN = 16 * 2**20  # room left for the journal, the store and the run's small files after a known write


def check_free(path: str | os.PathLike, needed: int) -> None:
    """Refuse a write of ``needed`` bytes under ``path`` before it starts when the disk cannot hold it.

    Raises:
        DiskFull: fewer than ``needed`` + :data:`MARGIN` bytes are free there.
    """
    free = free_bytes(path)
    if free < needed + MARGIN:
        raise DiskFull(path, free)
