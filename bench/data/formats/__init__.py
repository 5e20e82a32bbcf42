"""Registry of on-disk data formats. Each reader turns a folder into Case records; writers export them.

A format declares the tasks it serves in its registry tags (``@FORMATS.register("jsrt", tasks=("xray-heart",))``);
:func:`formats_for` reads them, so a new format is one decorated class plus its import line below. A format
that looks usable for a task but is not can say why in ``not_for={task: reason}`` (ChestX-ray14 and
CheXpert alone have no heart masks for xray-heart: their CheXmask-joined form, ``chexmask``, has), and
:func:`resolve_format` gives that reason when it refuses the name.
``FORMAT_ALIASES`` is the one table of the short names users type on the command line (``--format dicom``
on ct-lung means the CT series reader ``ct_dicom``), together with the ``alias`` a format may declare in its
tags (:func:`aliases_for`); :func:`resolve_format` applies them and is the one place an unknown name is
refused. A reader class may also say how to recognise its folder
(``recognise(root) -> bool``, cheap: file names and a few header bytes); :func:`detect_format` picks the
one format of a task that recognises a folder when ``--format`` is left out, and otherwise names the
formats to choose from.

Importing this package does not import torch; heavy readers' libraries (pydicom, SimpleITK, scikit-learn
for the LUNA16 official split) load with the module that needs them.

Example:
    >>> formats_for("ct-lung")
    ['ct_dicom', 'luna16', 'msd', 'nifti']
    >>> resolve_format("ct-lung", "mhd")
    'luna16'
"""

import difflib

from bench.errors import DataError, RegistryError
from bench.registry import CLOSE_MATCH_CUTOFF, Registry

FORMATS: Registry = Registry("data format")

# Per task: command-line name -> registered format. On ct-lung ``nifti`` means the MSD Task06 layout
# (imagesTr/ + labelsTr/ + dataset.json), which is how public NIfTI lung data ships and what
# `bench datasets make-phantom --task ct-lung --format nifti` writes; so inspect, split, search and
# make-phantom all read or write that layout for ``--format nifti``. (The plain images/ + masks/ folder
# reader is still registered as ``nifti`` and reachable through ``FORMATS`` directly.)
FORMAT_ALIASES: dict[str, dict[str, str]] = {
    "ct-lung": {"dicom": "ct_dicom", "nifti": "msd", "mhd": "luna16"},
}


def formats_for(task: str) -> list[str]:
    """Names of the registered formats whose ``tasks`` tag lists ``task``, sorted."""
    return [e.name for e in FORMATS.entries() if task in e.tags.get("tasks", ())]


def aliases_for(task: str) -> dict[str, str]:
    """Command-line names of ``task``'s formats: ``FORMAT_ALIASES`` plus each format's own ``alias`` tag
    (``@FORMATS.register("msd_seg", tasks=("segmentation",), alias="msd")``: on the tasks it serves,
    ``--format msd`` means it)."""
    declared = {e.tags["alias"]: e.name for e in FORMATS.entries()
                if e.tags.get("alias") and task in e.tags.get("tasks", ())}
    return {**FORMAT_ALIASES.get(task, {}), **declared}


def _choices(task: str) -> str:
    aliases = aliases_for(task)
    names = [n for n in formats_for(task) if n not in aliases] + list(aliases)
    return ", ".join(f"{n} (= {aliases[n]})" if n in aliases else n for n in names)


def detect_format(task: str, path) -> str:
    """The one registered format of ``task`` that recognises the folder ``path`` (no alias applied).

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
                            f"a folder. Give --format, one of {_choices(task)}.")
    found = [n for n in formats_for(task) if getattr(FORMATS.get(n), "recognise", lambda _: False)(root)]
    if len(found) == 1:
        return found[0]
    what = (f"it fits several ({', '.join(found)})" if found
            else "none of them recognises it (" + "; ".join(
                getattr(FORMATS.get(n), "LOOKS_LIKE", n) for n in formats_for(task)) + ")")
    raise RegistryError(f"{root}: the data format of a folder must be recognisable to leave --format out, but {what}. "
                        f"Give --format, one of {_choices(task)}.")


def default_format(task: str, data: str | None) -> str:
    """The format a command uses when ``--format`` is left out: the phantom without ``--data``, else the one
    format of the task that recognises the folder (:func:`detect_format`)."""
    return detect_format(task, data) if data else "phantom"


def resolve_format(task: str, name: str | None, path=None) -> str:
    """The registered format that ``--format name`` means for ``task`` (aliases applied); with no name, the
    format :func:`detect_format` recognises in the folder ``path``.

    Raises:
        RegistryError: ``name`` is neither an alias nor a format of ``task``, or no name and no single format
            recognises ``path``; the message lists the names to choose from.
    """
    if not name:
        if path is None:
            raise RegistryError(f"--format for {task} must be given, but got none. Give one of {_choices(task)}.")
        return detect_format(task, path)
    aliases = aliases_for(task)
    fmt = aliases.get(name, name)
    valid = formats_for(task)
    if fmt in valid:
        return fmt
    names = [n for n in valid if n not in aliases] + list(aliases)
    shown = [f"{n} (= {aliases[n]})" if n in aliases else n for n in names]
    reason = FORMATS.entry(fmt).tags.get("not_for", {}).get(task) if fmt in FORMATS else None
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

__all__ = ["FORMATS", "FORMAT_ALIASES", "aliases_for", "detect_format", "formats_for", "resolve_format"]
