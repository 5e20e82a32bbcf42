"""Registry of on-disk data formats. Each reader turns a folder into Case records; writers export them.

A format declares the tasks it serves in its registry tags (``@FORMATS.register("jsrt", tasks=("xray-heart",))``);
:func:`formats_for` reads them, so a new format is one decorated class plus its import line below. A format
that looks usable but serves no task can say why in ``why_not="reason"`` (ChestX-ray14 and CheXpert
alone have no heart masks: their CheXmask-joined form, ``chexmask``, has), and :func:`resolve_format`
gives that reason when it refuses the name.
A task declares the short names its users type on the command line in ``TaskSpec.format_aliases``
(``--format dicom`` on ct-lung means the CT series reader ``ct_dicom``) and hands them in as ``aliases``;
:func:`resolve_format` applies them and is the one place an unknown name is refused. A reader class may also say how to recognise its folder
(``recognise(root) -> bool``, cheap: file names and a few header bytes); :func:`detect_format` picks the
one format of a task that recognises a folder when ``--format`` is left out, and otherwise names the
formats to choose from.

Importing this package does not import torch; heavy readers' libraries (pydicom, SimpleITK, scikit-learn
for the LUNA16 official split) load with the module that needs them.

Example:
    >>> formats_for("ct-lung")
    ['ct_dicom', 'luna16', 'msd', 'nifti']
    >>> resolve_format("ct-lung", "mhd", aliases={"mhd": "luna16"})
    'luna16'
"""

import difflib
from collections.abc import Mapping

from bench.errors import DataError, RegistryError
from bench.registry import CLOSE_MATCH_CUTOFF, Registry

FORMATS: Registry = Registry("data format")

def formats_for(task: str) -> list[str]:
    """Names of the registered formats whose ``tasks`` tag lists ``task``, sorted."""
    return [e.name for e in FORMATS.entries() if task in e.tags.get("tasks", ())]


def _choices(task: str, aliases: Mapping[str, str]) -> str:
    names = [n for n in formats_for(task) if n not in aliases] + list(aliases)
    return ", ".join(f"{n} (= {aliases[n]})" if n in aliases else n for n in names)


def detect_format(task: str, path, aliases: Mapping[str, str] | None = None) -> str:
    """The one registered format of ``task`` that recognises the folder ``path`` (``aliases``, the task's
    ``TaskSpec.format_aliases``, only name the choices in the error).

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
                            f"a folder. Give --format, one of {_choices(task, aliases or {})}.")
    found = [n for n in formats_for(task) if getattr(FORMATS.get(n), "recognise", lambda _: False)(root)]
    if len(found) == 1:
        return found[0]
    what = (f"it fits several ({', '.join(found)})" if found
            else "none of them recognises it (" + "; ".join(
                getattr(FORMATS.get(n), "LOOKS_LIKE", n) for n in formats_for(task)) + ")")
    raise RegistryError(f"{root}: the data format of a folder must be recognisable to leave --format out, but {what}. "
                        f"Give --format, one of {_choices(task, aliases or {})}.")


def resolve_format(task: str, name: str | None, path=None, aliases: Mapping[str, str] | None = None) -> str:
    """The registered format that ``--format name`` means for ``task`` (``aliases``, the task's
    ``TaskSpec.format_aliases``, applied); with no name, the format :func:`detect_format` recognises in the
    folder ``path``.

    Raises:
        RegistryError: ``name`` is neither an alias nor a format of ``task``, or no name and no single format
            recognises ``path``; the message lists the names to choose from.
    """
    if not name:
        if path is None:
            raise RegistryError(f"--format for {task} must be given, but got none. "
                                f"Give one of {_choices(task, aliases or {})}.")
        return detect_format(task, path, aliases)
    aliases = aliases or {}
    fmt = aliases.get(name, name)
    valid = formats_for(task)
    if fmt in valid:
        return fmt
    names = [n for n in valid if n not in aliases] + list(aliases)
    shown = [f"{n} (= {aliases[n]})" if n in aliases else n for n in names]
    reason = FORMATS.entry(fmt).tags.get("why_not") if fmt in FORMATS else None
    if reason:
        why = f": {reason}"
    elif fmt in FORMATS:
        why = f" ('{fmt}' reads data for {', '.join(FORMATS.entry(fmt).tags.get('tasks', ())) or 'no task yet'})"
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

__all__ = ["FORMATS", "detect_format", "formats_for", "resolve_format"]
