"""What a comparison returns (:class:`ComparisonResult`): the driver builds it, export writes it out.

Its own module so that the driver (which calls export) and export (which reads results) import it, not
each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from bench.compare.analysis import Analysis
    from bench.compare.collect import CaseData


@dataclass
class ComparisonResult:
    name: str
    task: str
    parent_run_id: str
    metric: str
    baseline: str
    arms: list[str]
    settings: dict[str, Any]
    analysis: Analysis
    runs: pd.DataFrame  # every nested run (state, seconds, metrics)
    cases: CaseData
    n_ran: int
    n_skipped: int
    n_failed: int
    killed_closed: int
    dropped_cells: list[tuple[int, int]]
    seconds: float
    hours: dict[str, float] = field(default_factory=dict)
    exported: list[Path] = field(default_factory=list)
    stages_trained: int = 0  # stage trainings in the comparison's runs (bench.stage.* = trained)
    stages_loaded: int = 0  # stage trainings saved: stages its runs loaded from the stage cache

    @property
    def table(self) -> pd.DataFrame:
        return self.analysis.table

    @property
    def verdicts(self) -> list[str]:
        return self.analysis.verdicts

    @property
    def trial_hours_total(self) -> float:
        return float(sum(self.hours.values()))
