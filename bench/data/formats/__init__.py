"""Registry of on-disk data formats. Each reader turns a folder into Case records; writers export them.

A format knows how to read a folder, not which tasks read it: a task lists its formats in ``TaskSpec.formats``
and hands that list in (``TaskSpec.resolve_format``), so a new format is one decorated class plus its import
line below, and a task that reads it names it in its spec. A format that looks usable but serves no task can
say why in ``why_not="reason"`` (ChestX-ray14 and CheXpert alone have no heart masks: their CheXmask-joined
form, ``chexmask``, has), and :func:`resolve_format` gives that reason when it refuses the name.
A task declares the short names its users type on the command line in ``TaskSpec.format_aliases``
(``--format dicom`` on ct-lung means the CT series reader ``ct_dicom``) and hands them in as ``aliases``;
:func:`resolve_format` applies them and is the one place an unknown name is refused. A reader class may also say how to recognise its folder
(``recognise(root) -> bool``, cheap: file names and a few header bytes); :func:`detect_format` picks the
one format of a task that recognises a folder when ``--format`` is left out, and otherwise names the
formats to choose from.

Importing this package does not import torch; heavy readers' libraries (pydicom, SimpleITK, scikit-learn
for the LUNA16 official split) load with the module that needs them.

Example:
    >>> resolve_format("ct-lung", ("ct_dicom", "luna16"), "mhd", aliases={"mhd": "luna16"})
    'luna16'
"""

import difflib
from collections.abc import Mapping, Sequence

from bench.errors import DataError, RegistryError
from bench.registry import CLOSE_MATCH_CUTOFF, Registry

FORMATS: Registry = Registry("data format")

def _choices(formats: Sequence[str], aliases: Mapping[str, str]) -> str:
    names = [n for n in sorted(formats) if n not in aliases] + list(aliases)
    return ", ".join(f"{n} (= {aliases[n]})" if n in aliases else n for n in names)


def detect_format(task: str, formats: Sequence[str], path, aliases: Mapping[str, str] | None = None) -> str:
    """The one format of ``formats`` (``task``'s ``TaskSpec.formats``) that recognises the folder ``path``
    (``aliases``, the task's ``TaskSpec.format_aliases``, only name the choices in the error).

    Raises:
        DataError: ``path`` does not exist.
        RegistryError: no format of the task, or more than one, recognises the folder; the message names
            the formats to choose from with ``--format``.
    """
    from pathlib import Path

    root = Path(path)
    if not root.exists():
        raise DataError(f"{root}: the data path must exist, but it does not.")
    if not root.is_dir():
        raise RegistryError(f"--format can be left out only for a data folder bench recognises, but {root} is not "
                            f"a folder. Give --format, one of {_choices(formats, aliases or {})}.")
    formats = sorted(formats)
    if not formats:
        raise RegistryError(f"--format can be left out only for a task that lists its formats, but {task} "
                            "lists none here (TaskSpec.formats). Give --format.")
    found = [n for n in formats if getattr(FORMATS.get(n), "recognise", lambda _: False)(root)]
    if len(found) == 1:
        return found[0]
    what = (f"it fits several ({', '.join(found)})" if found
            else "none of them recognises it (" + "; ".join(
                getattr(FORMATS.get(n), "LOOKS_LIKE", n) for n in formats) + ")")
    raise RegistryError(f"{root}: the data format of a folder must be recognisable to leave --format out, but {what}. "
                        f"Give --format, one of {_choices(formats, aliases or {})}.")


def resolve_format(task: str, formats: Sequence[str], name: str | None, path=None,
                   aliases: Mapping[str, str] | None = None, readers: Mapping[str, Sequence[str]] | None = None
                   ) -> str:
    """The format of ``formats`` (``task``'s ``TaskSpec.formats``) that ``--format name`` means (``aliases``,
    the task's ``TaskSpec.format_aliases``, applied); with no name, the format :func:`detect_format`
    recognises in the folder ``path``. ``readers`` (format -> the tasks that list it) only words the error
    for another task's format.

    Raises:
        RegistryError: ``name`` is neither an alias nor a format of ``task``, or no name and no single format
            recognises ``path``; the message lists the names to choose from.
    """
    if not name:
        if path is None:
            raise RegistryError(f"--format for {task} must be given, but got none. "
                                f"Give one of {_choices(formats, aliases or {})}.")
        return detect_format(task, formats, path, aliases)
    aliases = aliases or {}
    fmt = aliases.get(name, name)
    valid = sorted(formats)
    if fmt in valid:
        return fmt
    names = [n for n in valid if n not in aliases] + list(aliases)
    shown = [f"{n} (= {aliases[n]})" if n in aliases else n for n in names]
    reason = FORMATS.entry(fmt).tags.get("why_not") if fmt in FORMATS else None
    if reason:
        why = f": {reason}"
    elif fmt in FORMATS:
        why = f" ('{fmt}' reads data for {', '.join((readers or {}).get(fmt, ())) or 'no task yet'})"
    else:
        close = difflib.get_close_matches(name, names, n=2, cutoff=CLOSE_MATCH_CUTOFF)
        why = f". Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise RegistryError(f"--format for {task} must be one of {', '.join(shown)}, but got '{name}'{why}"
                        + ("" if why.endswith("?") else "."))


from bench.data.formats import (  # noqa: F401  (registration side effects)
    chestxray14,
    chexmask,
    chexpert,
    ct_dicom,
    dicom,
    jsrt,
    luna16,
    msd,
    nifti,
    png,
    seg,
)

__all__ = ["FORMATS", "detect_format", "resolve_format"]
