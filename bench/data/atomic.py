"""Folders that appear whole or not at all: writers fill a temporary sibling, renamed only on success."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_folder(out: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling folder that replaces ``out`` only if the block finishes."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_file(out: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path (same suffixes, so writers that pick the format by the name work) that
    replaces ``out`` only if the block finishes; readers never see half a file."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(out.suffixes)
    fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name[: len(out.name) - len(suffix)]}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the result is an ordinary file
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
