"""The one record every reader and phantom produces."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: reading specs and refs (bench tasks, --help) never imports numpy
    import numpy as np


@dataclass
class Case:
    """One image (2D radiograph or 3D volume) with its masks and labels.

    ``patient_id`` is a pseudonym used only for grouping splits; it never leaves the data layer.
    ``meta`` must hold no patient-identifying information. ``spacing`` is mm per pixel/voxel along the image
    axes, or None when the source does not say (CheXpert JPEGs, PNG folders, DICOM without a valid
    PixelSpacing/ImagerPixelSpacing): unknown is never written as 1 mm.
    """

    id: str
    patient_id: str
    image: np.ndarray
    site: str = ""
    spacing: tuple[float, ...] | None = (1.0, 1.0)
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class CaseRef:
    """A case before its pixels are read: what splits and label schemes need, plus how to load the rest."""

    id: str
    patient_id: str
    load: Callable[[], Case] = field(repr=False)
    site: str = ""
    labels: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, case: Case) -> CaseRef:
        """A ref to a case already in memory (phantoms, readers without ``scan``)."""
        return cls(case.id, case.patient_id, lambda: case, case.site, dict(case.labels), dict(case.meta))
