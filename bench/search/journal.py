"""The Optuna journal file: never append to a torn record; a corrupt one is one error with its repair.

Optuna's ``JournalFileBackend`` appends one JSON record per line. A process that dies (kill -9, power loss)
or a disk that fills during an append leaves the last record without its newline. Optuna's reader skips
such a tail, but its next append writes right after it, so two records become one line that no reader can
parse, and every later load of any study in the file fails. Here:

* :class:`SafeJournalBackend` appends only after a whole record (a torn tail is cut first, see below) and,
  when its own write fails (ENOSPC, an interrupt), cuts the file back to where it started: it never leaves
  half a record behind.
* :func:`check_journal` runs before a search opens the journal: a torn last record is moved aside
  (``<journal>.torn-<UTC time>`` keeps its bytes), the file is cut back to its last whole record and one
  warning names the trial that lost it (``--resume`` then closes that trial and runs it again, as it does a
  killed one). A record that does not parse in the middle of the file (what older versions left) is one
  :class:`JournalCorrupt` error naming the file and line, unless ``repair``: then the bad bytes go to the
  ``.torn-`` file and every whole record is kept, the record a later append wrote onto a torn one included.

Every check and repair holds Optuna's own journal lock, so no other process is halfway through an append.
"""

from __future__ import annotations

import json
import os
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import get_lock_file  # the lock Optuna's own appends hold

from bench.diskspace import DiskFull, is_disk_full
from bench.errors import BenchWarning, DataError

TORN_SUFFIX = ".torn-"
_CHUNK = 1 << 16
_RECORD_START = re.compile(rb'\{"op_code":')
_OPERATIONS = {0: "the study's creation", 1: "the study's deletion", 2: "a study attribute",
               3: "a study attribute", 4: "its creation", 5: "a parameter", 6: "its end state",
               7: "an epoch's value", 8: "an attribute", 9: "an attribute", 10: "a discard"}


class JournalCorrupt(DataError):
    """A record in the middle of the journal does not parse (names the file, the line and the repair)."""


@dataclass(frozen=True)
class Lost:
    """Bytes moved out of the journal: from line ``line`` (1-based), and what they were."""

    line: int
    data: bytes
    what: str


class SafeJournalBackend(JournalFileBackend):
    """Optuna's journal file backend, but an append never follows a torn record and never leaves one."""

    def append_logs(self, logs: list[dict]) -> None:
        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode()
        with get_lock_file(self._lock):
            cut_torn_tail(self._file_path)
            fd = os.open(self._file_path, os.O_WRONLY | os.O_APPEND)
            try:
                start = os.fstat(fd).st_size
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fsync(fd)
                except BaseException:
                    os.ftruncate(fd, start)  # no half record for the next append to write onto
                    raise
            finally:
                os.close(fd)


def cut_torn_tail(path: str | os.PathLike) -> Lost | None:
    """Cut a last record without its newline off the journal (the caller holds the journal's lock).

    A tail that parses is a whole record that lost only its newline: the newline is added. Otherwise the
    bytes go to ``<path>.torn-<UTC time>``, the file is cut back to its last newline and one warning names
    the trial whose record was lost.

    Returns:
        What was moved aside, or None when the file ended with a whole record.

    Raises:
        DiskFull: no room to keep the torn bytes (the journal is left as it was).
    """
    path = Path(path)
    with open(path, "r+b") as f:
        end = f.seek(0, os.SEEK_END)
        if end == 0 or _read_at(f, end - 1, 1) == b"\n":
            return None
        start = _last_line_start(f, end)
        tail = _read_at(f, start, end - start)
        if _parses(tail):  # a whole record that lost only its newline
            f.seek(0, os.SEEK_END)
            f.write(b"\n")
            f.flush()
            os.fsync(f.fileno())
            return None
        f.seek(0)
        lines = f.read(start).count(b"\n")
        lost = Lost(lines + 1, tail, describe(tail, _trials(path, start)))
        kept = _keep_aside(path, [lost])
        f.truncate(start)
        f.flush()
        os.fsync(f.fileno())
    warnings.warn(f"{path}: its last record (line {lost.line}) was cut short, {lost.what}; its {len(tail)} bytes "
                  f"are kept in {kept.name} and the journal ends at its last whole record. `--resume` of that "
                  "study closes the trial as killed and runs it again.", BenchWarning, stacklevel=2)
    return lost


def check_journal(path: str | os.PathLike, repair: bool = False, command: str = "bench search") -> list[Lost]:
    """Make the journal at ``path`` safe to append to before a search opens it (module docstring).

    Args:
        path: the journal file (absent: nothing to do).
        repair: move records that do not parse aside instead of refusing the file.
        command: the command the repair hint names.

    Returns:
        What was moved aside (a torn tail, or with ``repair`` the bad lines).

    Raises:
        JournalCorrupt: a line other than a torn last one does not parse and ``repair`` is off.
        DiskFull: no room to keep the moved bytes aside (nothing is changed).
    """
    path = Path(path)
    if not path.is_file():
        return []
    with get_lock_file(JournalFileBackend(str(path))._lock):
        lost = cut_torn_tail(path)
        bad = _bad_lines(path)
        if not bad:
            return [lost] if lost else []
        if not repair:
            first, _ = bad[0]
            more = f" (and {len(bad) - 1} more: lines {', '.join(str(n) for n, _ in bad[1:4])}...)" if len(bad) > 1 else ""
            raise JournalCorrupt(
                f"every record of the Optuna journal {path} must be one JSON line, but line {first} is not"
                f"{more}: a record written onto a torn one. Repair it: add --repair-journal to this `{command}` "
                f"command (the bad bytes move to {path.name}{TORN_SUFFIX}<time>, every whole record is kept).")
        return ([lost] if lost else []) + _repair(path, bad)


def _repair(path: Path, bad: list[tuple[int, bytes]]) -> list[Lost]:
    """Rewrite the journal without the bad lines' torn bytes (a whole record at a bad line's end is kept)."""
    numbers = {n for n, _ in bad}
    records = _trials(path, path.stat().st_size)
    out, lost = [], []
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if number not in numbers:
                out.append(line)
                continue
            body = line.rstrip(b"\r\n")
            keep = _whole_suffix(body)
            torn = body[: len(body) - len(keep)] if keep else body
            lost.append(Lost(number, torn, describe(torn, records)))
            if keep:
                out.append(keep + b"\n")
    kept = _keep_aside(path, lost)
    _replace_with(path, out, path)
    salvaged = sum(1 for n, line in bad if _whole_suffix(line.rstrip(b"\r\n")))
    warnings.warn(f"{path}: repaired: {len(lost)} bad line(s) ({', '.join(str(x.line) for x in lost[:5])}) moved "
                  f"to {kept.name}" + (f", {salvaged} whole record(s) written onto them kept" if salvaged else "")
                  + "; records lost: " + "; ".join(x.what for x in lost[:5])
                  + ". `--resume` closes those trials as killed and runs them again.", BenchWarning, stacklevel=2)
    return lost


def describe(fragment: bytes, trials: dict[int, tuple[str, int]]) -> str:
    """What a torn record was, as far as its bytes tell: "trial 1 of study S lost its end state"."""
    op = re.search(rb'"op_code":(\d+)', fragment)
    trial = re.search(rb'"trial_id":(\d+)', fragment)
    what = _OPERATIONS.get(int(op.group(1)), "a record") if op else "a record"
    if trial and int(trial.group(1)) in trials:
        study, number = trials[int(trial.group(1))]
        return f"trial {number} of study {study} lost {what}"
    if op and int(op.group(1)) == 4:
        return "a new trial's creation was lost (it never ran)"
    return f"{what} was lost (which trial's cannot be told from its bytes)"


def _trials(path: Path, upto: int) -> dict[int, tuple[str, int]]:
    """Optuna's trial ids -> (study name, trial number), replayed from the records before byte ``upto``
    the way Optuna numbers them (ids over the whole file, numbers within a study)."""
    studies: dict[int, str] = {}
    names: set[str] = set()
    per_study: dict[int, int] = {}
    trials: dict[int, tuple[str, int]] = {}
    with open(path, "rb") as f:
        for line in f.read(upto).splitlines():
            try:
                log = json.loads(line)
            except ValueError:
                continue
            op = log.get("op_code")
            if op == 0 and log.get("study_name") not in names:
                names.add(log["study_name"])
                studies[len(studies)] = log["study_name"]
            elif op == 1:
                studies.pop(log.get("study_id"), None)
            elif op == 4 and log.get("study_id") in studies:
                sid = log["study_id"]
                trials[len(trials)] = (studies[sid], per_study.get(sid, 0))
                per_study[sid] = per_study.get(sid, 0) + 1
    return trials


def _bad_lines(path: Path) -> list[tuple[int, bytes]]:
    with open(path, "rb") as f:
        return [(n, line) for n, line in enumerate(f, start=1) if line.strip() and not _parses(line)]


def _whole_suffix(body: bytes) -> bytes | None:
    """The whole record a later append wrote onto a torn one: the first record start whose rest parses."""
    for match in _RECORD_START.finditer(body, 1):
        if _parses(body[match.start():]):
            return body[match.start():]
    return None


def _parses(data: bytes) -> bool:
    try:
        return isinstance(json.loads(data), dict)
    except ValueError:
        return False


def _keep_aside(path: Path, lost: list[Lost]) -> Path:
    """Write the moved bytes (one block per line they came from) to ``<path>.torn-<UTC time>``, whole or not
    at all."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}{TORN_SUFFIX}{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}{TORN_SUFFIX}{stamp}-{n}")
    _replace_with(target, (piece.data + b"\n" for piece in lost), path)
    return target


def _replace_with(out: Path, chunks, journal: Path) -> None:
    """Write ``chunks`` to ``out`` durably (fsync) through a temporary sibling that replaces it only when
    whole; a full disk is :class:`DiskFull` naming the ``journal``."""
    from bench.data.atomic import atomic_file

    try:
        with atomic_file(out) as tmp, open(tmp, "wb") as f:
            f.writelines(chunks)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as exc:
        if is_disk_full(exc):
            raise DiskFull(journal) from None
        raise


def _read_at(f, offset: int, size: int) -> bytes:
    f.seek(offset)
    return f.read(size)


def _last_line_start(f, end: int) -> int:
    """Offset just after the last newline before ``end`` (0 when there is none)."""
    pos = end
    while pos > 0:
        step = min(_CHUNK, pos)
        chunk = _read_at(f, pos - step, step)
        found = chunk.rfind(b"\n")
        if found >= 0:
            return pos - step + found + 1
        pos -= step
    return 0
