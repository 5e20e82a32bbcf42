"""The one record every reader and phantom produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Case:
    """One image (2D radiograph or 3D volume) with its masks and labels.

    ``patient_id`` is a pseudonym used only for grouping splits; it never leaves the data layer.
    ``meta`` must hold no patient-identifying information.
    """

    id: str
    patient_id: str
    image: np.ndarray
    site: str = ""
    spacing: tuple[float, ...] = (1.0, 1.0)
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
