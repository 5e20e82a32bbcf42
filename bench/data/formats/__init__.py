"""Registry of on-disk data formats. Each reader turns a folder into Case records; writers export them.

A format declares the tasks it serves in its registry tags (``@FORMATS.register("jsrt", tasks=("xray-heart",))``);
:func:`formats_for` reads them, so a new format is one decorated class plus its import line below. A format
that looks usable for a task but is not can say why in ``not_for={task: reason}`` (ChestX-ray14 and
CheXpert alone have no heart masks for xray-heart: their CheXmask-joined form, ``chexmask``, has), and
:func:`resolve_format` gives that reason when it refuses the name.
``FORMAT_ALIASES`` is the one table of the short names users type on the command line (``--format dicom``
on ct-lung means the CT series reader ``ct_dicom``); :func:`resolve_format` applies it and is the one
place an unknown name is refused.

Importing this package does not import torch; heavy readers' libraries (pydicom, SimpleITK, scikit-learn
for the LUNA16 official split) load with the module that needs them.

Example:
    >>> formats_for("ct-lung")
    ['ct_dicom', 'luna16', 'msd', 'nifti']
    >>> resolve_format("ct-lung", "mhd")
    'luna16'
"""

import difflib

from bench.errors import RegistryError
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


def resolve_format(task: str, name: str) -> str:
    """The registered format that ``--format name`` means for ``task`` (aliases applied).

    Raises:
        RegistryError: ``name`` is neither an alias nor a format of ``task``; the message lists both.
    """
    aliases = FORMAT_ALIASES.get(task, {})
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
)

__all__ = ["FORMATS", "FORMAT_ALIASES", "formats_for", "resolve_format"]
