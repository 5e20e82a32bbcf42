"""Search space files (YAML) → one Optuna define-by-run function, shared by every backend.

Format::

    description: what this space is for
    task: xray-heart          # optional; lets the task name other registries for a field (see below)
    params:
      seg_arch: {type: categorical, choices: [unet, fpn]}
      lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      guidance_params.floor: {type: float, low: 0.0, high: 0.5, when: {guidance: [soft_mask]}}

Names are TrialConfig fields or ``<x>_params.<keyword>``; the task's own parameters (``TaskSpec.params``)
may leave out their ``task_params.`` (xray-heart: ``cls_lr`` is ``task_params.cls_lr``). ``when`` makes a parameter conditional on
values sampled before it (file order), so Tversky's α is only sampled for Tversky.
Categorical choices of registry-backed fields are checked against their registry; a task may point a field
at another registry through ``TaskSpec.guidance`` and ``TaskSpec.space_registries`` (ct-lung: ``guidance`` →
lung guidance).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.config import MOVED_TO_TASK_PARAMS, PARAM_DICTS, TrialConfig
from bench.errors import ConfigError
from bench.registry import Registry

if TYPE_CHECKING:
    from bench.tasks import TaskSpec

TYPES = ("categorical", "float", "int")
# Categorical fields whose choices must be registered names, and where to look them up. A task's own
# (TaskSpec.guidance, TaskSpec.space_registries) replace these: see registries_for.
REGISTRY_FIELDS = {
    "seg_arch": ("bench.models", "SEG_MODELS"),
    "seg_loss": ("bench.losses", "SEG_LOSSES"),
    "guidance": ("bench.guidance", "GUIDANCE"),
}


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    when: tuple[tuple[str, tuple], ...] = ()

    def active(self, sampled: Mapping[str, Any]) -> bool:
        return all(sampled.get(key) in values for key, values in self.when)


@dataclass(frozen=True)
class SearchSpace:
    params: tuple[Param, ...]
    description: str = ""
    source: str = "<memory>"

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def __call__(self, trial) -> dict[str, Any]:
        """Define-by-run: sample every active parameter on an Optuna-like trial, return the flat values."""
        sampled: dict[str, Any] = {}
        for p in self.params:
            if not p.active(sampled):
                continue
            if p.type == "categorical":
                sampled[p.name] = trial.suggest_categorical(p.name, list(p.choices))
            elif p.type == "float":
                sampled[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log, step=p.step)
            else:
                sampled[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), log=p.log,
                                                    step=int(p.step or 1))
        return sampled

    def fix(self, values: Mapping[str, Any]) -> SearchSpace:
        """This space with the fields of ``values`` fixed by the data (not searched): their parameters are
        dropped, a parameter conditional on a fixed field stays (unconditionally) where the fixed value meets
        its ``when`` and goes where it cannot (``guidance: none`` drops every ``guidance_params.*`` that
        holds for other strategies only), and so on down the chain of conditions."""
        kept: list[Param] = []
        gone = set(values)
        for p in self.params:
            if p.name in gone:
                continue
            when = []
            for key, allowed in p.when:
                if key in values and values[key] not in allowed or key in gone and key not in values:
                    gone.add(p.name)
                    break
                if key not in values:
                    when.append((key, allowed))
            else:
                kept.append(dataclasses.replace(p, when=tuple(when)))
        return SearchSpace(tuple(kept), self.description, self.source)


def fixed_config(config: TrialConfig, values: Mapping[str, Any]) -> TrialConfig:
    """``config`` with the fields of ``values`` set; a field's params mapping (``guidance_params`` of
    ``guidance``) is emptied where the value changes, since it belonged to the value replaced."""
    flat = config.flat()
    for name, value in values.items():
        if flat.get(name) != value:
            flat = {k: v for k, v in flat.items() if not k.startswith(f"{name}_params.")}
        flat[name] = value
    return TrialConfig.from_flat(flat)


def registries_for(spec: TaskSpec | None) -> dict[str, tuple[str, str] | Registry]:
    """Field -> its registry (or where to import it from): the shared ones, then the task's own; a task
    without guidance (``TaskSpec.guidance`` None) has no registry for ``guidance``."""
    registries: dict[str, tuple[str, str] | Registry] = dict(REGISTRY_FIELDS)
    if spec is not None:
        registries.pop("guidance")
        registries.update(spec.registries())
    return registries


def load_space(path: str | Path, task: str | None = None) -> SearchSpace:
    """The space file ``path``; registry-backed choices are checked against ``task``'s registries (or those
    of the file's own ``task:``)."""
    from bench.config import read_yaml

    return parse_space(read_yaml(path, "a search space"), source=str(path), task=task)


def parse_space(data: Any, source: str = "<memory>", task: str | None = None) -> SearchSpace:
    if not isinstance(data, Mapping) or not isinstance(data.get("params"), Mapping) or not data["params"]:
        raise ConfigError(f"{source}: a search space must have a non-empty 'params' mapping, but it has none.")
    fields = {f.name for f in dataclasses.fields(TrialConfig)} - set(PARAM_DICTS)
    task = task or data.get("task")
    task_spec = None
    if task:
        from bench.tasks import TASKS

        task_spec = TASKS.get(task)
    registries = registries_for(task_spec)
    own = set(task_spec.params) if task_spec is not None else set(MOVED_TO_TASK_PARAMS)

    def flat_name(name: str) -> str:  # a task parameter may be named without its "task_params." prefix
        return f"task_params.{name}" if name in own else name

    params: list[Param] = []
    for given, spec in data["params"].items():
        name = flat_name(str(given))
        where = f"{source}: parameter '{given}'"
        head, dot, tail = name.partition(".")
        if head == "task_params" and task_spec is not None and tail not in own:
            close = difflib.get_close_matches(tail, sorted(own), n=2)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"{where} must name one of {task}'s task parameters {sorted(own)}, but it does "
                              f"not.{hint}")
        if (dot and head not in PARAM_DICTS) or (not dot and name not in fields):
            close = difflib.get_close_matches(str(name), sorted(fields), n=2)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(
                f"{where} must be a TrialConfig field or <{'|'.join(PARAM_DICTS)}>.<keyword>, but it is not.{hint}"
            )
        if not isinstance(spec, Mapping) or spec.get("type") not in TYPES:
            raise ConfigError(f"{where} must have type one of {list(TYPES)}, but got {spec!r}.")
        when = {flat_name(str(k)): v for k, v in (spec.get("when") or {}).items()}
        seen = {p.name for p in params}
        for key in when:
            if key not in seen:
                raise ConfigError(f"{where} is conditional on '{key}', which must be declared above it, but is not.")
        when_pairs = tuple(
            (k, tuple(v if isinstance(v, (list, tuple)) else [v])) for k, v in when.items()
        )
        if spec["type"] == "categorical":
            choices = tuple(spec.get("choices") or ())
            if not choices:
                raise ConfigError(f"{where} is categorical and must list 'choices', but lists none.")
            _check_registered(registries.get(name), choices, where)
            params.append(Param(name, "categorical", choices=choices, when=when_pairs))
        else:
            try:
                low, high = float(spec["low"]), float(spec["high"])
            except (KeyError, TypeError, ValueError):
                raise ConfigError(f"{where} must give numeric 'low' and 'high', but got {spec!r}.") from None
            if not low < high or (spec.get("log") and low <= 0):
                raise ConfigError(f"{where} must have 0 < low < high for log and low < high, but got {low}, {high}.")
            params.append(Param(name, spec["type"], low=low, high=high, log=bool(spec.get("log", False)),
                                step=spec.get("step"), when=when_pairs))
    return SearchSpace(tuple(params), str(data.get("description", "")), source)


def _check_registered(location: tuple[str, str] | Registry | None, choices: tuple, where: str) -> None:
    """``location``: a registry, or where to import it from (``REGISTRY_FIELDS``); None: no check."""
    if location is None:
        return
    import importlib

    if isinstance(location, tuple):
        module, attr = location
        registry = getattr(importlib.import_module(module), attr)
    else:
        registry = location
    for choice in choices:
        if choice not in registry:
            close = difflib.get_close_matches(str(choice), registry.names(), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else f" Known: {registry.names()}."
            raise ConfigError(f"{where} choices must be registered {registry.plural}, but got '{choice}'.{hint}")
