"""Cases one at a time: a reader's scan lists every case's ids, labels and official part without decoding
any image, and each ``CaseRef.load()`` decodes one.

A real archive does not fit in memory (ChestX-ray14: 112,120 PNGs of 1024², 470 GB as float32), so
everything that needs all cases (label schemes, splits, class counts) works on the refs, and only the
cache build (bench.data.cache.RowStream) decodes images, one at a time. ``make_split`` accepts refs
as they are: it reads only ``id``, ``patient_id``, ``labels`` and ``meta``.

Example:
    >>> refs = scan_cases("datasets/x", "chestxray14")  # doctest: +SKIP
    >>> refs[0].labels["class"], refs[0].load().image.shape  # doctest: +SKIP
    ('no_cardiomegaly', (1024, 1024))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bench.data.case import Case, CaseRef
from bench.errors import DataError

PHANTOM = "phantom"


def data_path(value: str) -> str:
    """A data argument as commands read it: ``phantom`` is the built-in phantom unless a file or folder of
    that name is here (a path is a path: its absolute form, which no reader takes for the phantom)."""
    import os

    return os.path.abspath(value) if value == PHANTOM and os.path.exists(value) else value


def scan_cases(
    data: str,
    data_format: str,
    classes: Sequence[str] | None = None,
    make_phantom: Callable[[], list[Case]] | None = None,
    **reader_options: Any,
) -> list[CaseRef]:
    """Every case of a source as a ``CaseRef``, labels checked against ``classes`` (None: any label).

    Readers with a ``scan`` method stream; for the others (and the phantom) the cases are read once and
    wrapped, which is what they did before.

    Args:
        data: a folder, or "phantom".
        data_format: a name in ``bench.data.formats.FORMATS``.
        classes: the resolved class list (bench.data.labels.resolve_classes), or None to accept any label.
        make_phantom: builds the phantom's cases when ``data == "phantom"``.
        **reader_options: the reader's own settings, e.g. ``min_dice=0.8`` (chexmask),
            ``uncertain="ones"`` (chexpert), ``missing="skip"`` (chestxray14, chexpert).
    """
    if data == PHANTOM:
        if make_phantom is None:
            raise DataError("the phantom source needs its task's phantom generator, but none was given.")
        return [CaseRef.of(c) for c in make_phantom()]
    from bench.data.formats import FORMATS

    reader = FORMATS.create(data_format, **reader_options)
    refs = reader.scan(data, classes) if hasattr(reader, "scan") else [CaseRef.of(c) for c in
                                                                        reader.read(data, classes)]
    if not refs:
        raise DataError(f"{data}: a data set must hold at least one case, but the reader found none.")
    return refs
