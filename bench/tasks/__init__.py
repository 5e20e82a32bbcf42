"""Task registry: what a benchmark task trains, measures and optimises, and its budget presets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import ConfigError
from bench.registry import Registry

TASKS: Registry = Registry("task")
SEARCH_SPACES_DIR = Path(__file__).resolve().parents[2] / "search_spaces"


@dataclass(frozen=True)
class Preset:
    """A budget: fixed config values plus how many trials and which search space file."""

    config: dict[str, Any]
    trials: int
    space: str
    description: str = ""


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    classes: tuple[str, ...]
    objective: str
    metrics: tuple[str, ...]
    formats: tuple[str, ...]
    presets: dict[str, Preset]
    run: Callable[..., Any]
    prepare: Callable[..., Any]
    phantom_cases: Callable[[], list] | None = None  # the standard phantom's cases (to remake its split)
    make_phantom: Callable[..., Any] | None = None  # (out, fmt, cases, seed) -> Path
    inspect: Callable[..., Any] | None = None  # (path, fmt) -> JSON-able report
    headline: tuple[str, ...] = ()  # metric columns a terminal leaderboard shows besides the objective
    default_preset: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)

    def preset(self, name: str | None) -> Preset:
        name = name or self.default_preset
        if name not in self.presets:
            raise ConfigError(f"preset must be one of {sorted(self.presets)} for {self.name}, but got '{name}'.")
        return self.presets[name]

    def space_path(self, preset: str | None) -> Path:
        return SEARCH_SPACES_DIR / self.preset(preset).space


def register_task(spec: TaskSpec) -> TaskSpec:
    TASKS.register(spec.name, spec.description)(spec)
    return spec


from bench.tasks import ct_lung, xray_heart  # noqa: F401  (registration side effects)

__all__ = ["TASKS", "Preset", "TaskSpec", "register_task"]
