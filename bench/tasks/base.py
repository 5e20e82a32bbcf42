"""What a task is (``TaskSpec``), its budget presets, and ``lazy``: task code that loads on first call.

A spec is plain data plus callables; the callables that train or read data are ``lazy`` references, so
reading a spec (``bench tasks``, the leaderboard, the search space) never imports torch or MONAI.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import ConfigError
from bench.registry import Registry

TASKS: Registry = Registry("task")
SEARCH_SPACES_DIR = Path(__file__).resolve().parents[2] / "search_spaces"


class lazy:  # lower case: used like a function, ``run=lazy("bench.tasks.x.pipeline:run")``
    """A function named ``"module:attribute"``, imported on its first call and then called directly.

    Example:
        >>> join = lazy("os.path:join")
        >>> join("a", "b")
        'a/b'
    """

    def __init__(self, target: str):
        module, sep, attribute = target.partition(":")
        if not (module and sep and attribute):
            raise ValueError(f"a lazy target must read 'module:attribute', but got '{target}'.")
        self.target = target
        self._function: Callable[..., Any] | None = None

    def resolve(self) -> Callable[..., Any]:
        if self._function is None:
            module, _, attribute = self.target.partition(":")
            self._function = getattr(importlib.import_module(module), attribute)
        return self._function

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __reduce__(self):  # pickles as its name, never as the imported function
        return (lazy, (self.target,))

    def __repr__(self) -> str:
        return f"lazy({self.target!r})"


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
    run: Callable[..., Any]  # (config, reporter) -> TrialResult
    prepare: Callable[..., Any]  # (config) -> the task's prepared data, with .split_hash
    phantom_cases: Callable[[], list] | None = None  # the standard phantom's cases (to remake its split)
    make_phantom: Callable[..., Any] | None = None  # (out, fmt, cases, seed) -> Path
    inspect: Callable[..., Any] | None = None  # (path, fmt) -> JSON-able report
    headline: tuple[str, ...] = ()  # metric columns a terminal leaderboard shows besides the objective
    default_preset: str = "cpu"
    # Stages whose results the stage cache keeps (bench.stages.Stage): trained once, loaded by later trials.
    stages: tuple[Any, ...] = ()
    # evaluate: (config, state_dicts) -> metrics; build_models: (config) -> {name: module} as in
    # checkpoint.pt (both for ``bench replay``); space_registries: search-space fields looked up elsewhere.
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
