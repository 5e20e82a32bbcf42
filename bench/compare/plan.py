"""What a comparison runs: the dimension and its arms, each arm's configuration, the metrics, the jobs.

A comparison varies one categorical dimension D of a task (``guidance``, ``seg_loss``, ``seg_arch``,
``classifier``, ...) and keeps everything else fixed: the preset's budget, then a base configuration (the
task's reference for the preset, a config file, an MLflow run or the best trial of a study), then the arm.
Every arm is trained on every fold x seed of the standard split (:class:`Job`).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from bench.config import TrialConfig
from bench.errors import ConfigError

if TYPE_CHECKING:
    from bench.search.space import SearchSpace
    from bench.tasks import TaskSpec

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "search_spaces" / "reference"
# The params mapping that belongs to a dimension's value: dropped when the arm replaces the value.
PARAMS_OF = {"seg_loss": "seg_loss_params", "guidance": "guidance_params"}
# Baselines chosen by default when they are arms: the "do nothing special" value of the dimension.
NATURAL_BASELINES = ("none", "dice")
# Fields a base configuration never fixes: they come from the comparison (data, fold, seed, split).
RUN_FIELDS = ("task", "data", "data_format", "split_hash", "fold", "seed")


@dataclass(frozen=True)
class MetricPlan:
    """The metrics of a comparison: the primary one (verdicts, ranks) and the others reported beside it.

    A task declares them per dimension in ``TaskSpec.compare_metrics`` ("*": any other dimension), primary
    first. Per-case and set-level metrics come from the runs' val_cases.json (pooled over folds, paired on
    the same validation cases); the rest are per-run values (paired on the same fold x seed);
    "<metric>@run" asks for the runs' own values of a pooled metric, "<metric>@fold" for a set-level metric
    computed within each fold x seed on its own cases and averaged by cases (stratified bootstrap; see
    bench.compare.analysis).
    """

    primary: str
    others: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        return (self.primary, *[m for m in self.others if m != self.primary])


def metric_plan(spec: TaskSpec, dimension: str, metric: str | None = None) -> MetricPlan:
    """The declared metrics of ``dimension`` on the task (the task's objective alone when undeclared);
    ``metric`` (``--metric``) becomes the primary one."""
    declared = spec.compare_metrics
    names = declared.get(dimension) or declared.get("*") or (spec.objective,)
    primary = metric or names[0]
    return MetricPlan(primary, tuple(n for n in names if n != primary))


@dataclass(frozen=True)
class Dimension:
    """The compared dimension, its arms (values) and baseline."""

    name: str  # as the user names it (tags, tables): a task parameter without its "task_params."
    arms: tuple[Any, ...]
    baseline: Any
    flat_key: str = ""  # its flat config key (TaskSpec.flat_key); empty: the name

    @property
    def key(self) -> str:
        return self.flat_key or self.name

    def label(self, arm: Any) -> str:
        """The arm as it appears in tags and tables (YAML spelling for booleans and numbers)."""
        return arm if isinstance(arm, str) else yaml.safe_dump(arm).strip().removesuffix("...").strip()

    @property
    def labels(self) -> list[str]:
        return [self.label(a) for a in self.arms]


def _registry_of(spec: TaskSpec, name: str):
    from bench.search.space import registries_for

    location = registries_for(spec).get(name)
    if not isinstance(location, tuple):
        return location  # a Registry, or None
    module, attr = location
    return getattr(importlib.import_module(module), attr)


def resolve_dimension(spec: TaskSpec, space: SearchSpace, dimension: str, arms: Sequence[str] | None = None,
                      baseline: str | None = None) -> Dimension:
    """Check D, the arms and the baseline against the task's space and registries.

    D must be a categorical parameter of the space, or a registry-backed field (``seg_arch``, ``seg_loss``,
    ``guidance``, ``classifier``; ct-lung's ``guidance`` names lung-guidance strategies). Arms default to
    every choice of D in the space; given ones must be registered names (registry fields) or choices of
    the space. The baseline defaults to ``none`` or ``dice`` when that is an arm, else the first arm.

    Raises:
        ConfigError: naming the unknown dimension, arm or baseline and what is allowed.
    """
    categorical = {p.name: p for p in space.params if p.type == "categorical"}
    dimension = dimension.removeprefix("task_params.")
    key = spec.flat_key(dimension)
    registry = _registry_of(spec, key)
    if key not in categorical and registry is None:
        from bench.search.space import registries_for

        named = sorted(k.removeprefix("task_params.") for k in categorical)
        fields = ", ".join(k.removeprefix("task_params.") for k in registries_for(spec))
        close = difflib.get_close_matches(dimension, named, n=2)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"--dimension must be a categorical parameter of {space.source} ({named}) "
                          f"or a registry field ({fields}), but got '{dimension}'.{hint}")
    choices = categorical[key].choices if key in categorical else ()
    if not arms:
        if not choices:
            raise ConfigError(f"--dimension {dimension} is not searched in {space.source}, so its arms must be "
                              f"given, but got no --arms. Pass e.g. --arms {','.join(registry.names()[:2])}.")
        values: tuple[Any, ...] = tuple(choices)
    else:
        values = tuple(_parse_arm(a, choices, registry, dimension, space.source) for a in arms)
    if len(set(map(str, values))) != len(values):
        raise ConfigError(f"--arms must name each arm once, but got {list(arms or values)}. Drop the repeats.")
    if len(values) < 2:
        raise ConfigError(f"a comparison needs at least 2 arms, but got {list(values)}. Add arms with --arms.")
    dim = Dimension(dimension, values, values[0], key)
    if baseline is None:
        natural = [a for a in values if a in NATURAL_BASELINES]
        return Dimension(dimension, values, natural[0] if natural else values[0], key)
    chosen = [a for a in values if dim.label(a) == baseline]
    if not chosen:
        raise ConfigError(f"--baseline must be one of the arms {dim.labels}, but got '{baseline}'. "
                          "Add it to --arms or pick another.")
    return Dimension(dimension, values, chosen[0], key)


def _parse_arm(text: str, choices: tuple, registry, dimension: str, source: str) -> Any:
    for choice in choices:  # the space's own spelling (booleans, numbers) wins
        if str(choice) == text or (not isinstance(choice, str) and yaml.safe_load(text) == choice):
            return choice
    if registry is not None and text in registry:
        return text
    known = registry.names() if registry is not None else list(choices)
    close = difflib.get_close_matches(text, [str(k) for k in known], n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    what = f"registered {registry.plural}" if registry is not None else f"choices of {dimension} in {source}"
    raise ConfigError(f"--arms must be {what} ({known}), but got '{text}'.{hint}")


# --- base configurations ----------------------------------------------------------------------------
@dataclass(frozen=True)
class BaseConfig:
    """Fixed TrialConfig values shared by the arms, where they came from, and per-arm extra params."""

    values: dict[str, Any]
    source: str
    arm_params: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    description: str = ""  # a reference file's own words (shown by `bench tasks`)


def reference_path(task: str, preset: str) -> Path:
    return REFERENCE_DIR / f"{task}-{preset}.yaml"


def load_reference(task: str, preset: str, path: str | Path | None = None) -> BaseConfig:
    """The reference configuration ``search_spaces/reference/<task>-<preset>.yaml`` (or ``path``).

    Raises:
        ConfigError: a missing or malformed file, or keys that are not TrialConfig fields.
    """
    path = Path(path) if path else reference_path(task, preset)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: the reference configuration of {task} at preset {preset} must be readable, "
                          f"but {exc.strerror}. Add it to search_spaces/reference/ or pass --config.") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: a reference configuration must be valid YAML, but parsing failed: {exc}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("config"), Mapping):
        raise ConfigError(f"{path}: a reference configuration must have a 'config' mapping of TrialConfig "
                          f"fields, but it has none. See search_spaces/reference/README.md.")
    values = _checked_values(data["config"], str(path))
    arm_params = data.get("arm_params") or {}
    if not isinstance(arm_params, Mapping) or not all(isinstance(v, Mapping) for v in arm_params.values()):
        raise ConfigError(f"{path}: 'arm_params' must map dimension -> arm -> params, but got {arm_params!r}.")
    return BaseConfig(values, f"reference {path.name}", {k: dict(v) for k, v in arm_params.items()},
                      str(data.get("description") or ""))


def config_file(path: str | Path) -> BaseConfig:
    """A base configuration from a YAML file of TrialConfig fields (a run's config.yaml works as it is)."""
    from bench.config import read_yaml

    path = Path(path)
    data = read_yaml(path, "--config")
    if isinstance(data, Mapping) and isinstance(data.get("config"), Mapping):  # a reference-format file
        return load_reference("", "", path)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: --config must be a mapping of TrialConfig fields, but got {type(data).__name__}.")
    return BaseConfig(_checked_values(data, str(path)), f"config {path.name}")


def from_config(config: TrialConfig, source: str) -> BaseConfig:
    """A base configuration from a logged trial's config (``--from-run`` / ``--study``), every task parameter
    in it (a run logged before a parameter was recorded trained with its default, not the preset's)."""
    from bench.tasks import TASKS

    config = TASKS.get(config.task).complete(config)
    return BaseConfig({k: v for k, v in config.to_dict().items() if k not in RUN_FIELDS}, source)


def _checked_values(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    out = {k: v for k, v in values.items() if k not in RUN_FIELDS}
    try:
        TrialConfig.from_dict({"task": "check", **out})
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return out


def arm_config(template: TrialConfig, dimension: Dimension, arm: Any, base: BaseConfig) -> TrialConfig:
    """``template`` with D set to ``arm``; D's own params mapping is dropped unless the arm is the value it
    belongs to, and the arm's ``arm_params`` (reference files) are applied."""
    name = dimension.key
    flat = template.flat()
    own = flat.get(name)
    params_key = PARAMS_OF.get(name)
    if params_key and own != arm:
        flat = {k: v for k, v in flat.items() if not k.startswith(params_key + ".")}
    flat[name] = arm
    extra = base.arm_params.get(name, {}).get(dimension.label(arm), {})
    if extra and not params_key:
        raise ConfigError(f"arm_params apply to {sorted(PARAMS_OF)}, but got them for dimension '{name}'.")
    flat.update({f"{params_key}.{k}": v for k, v in extra.items()})
    return TrialConfig.from_flat(flat)


def template_config(task: str, preset_config: Mapping[str, Any], base: BaseConfig, data: str,
                    data_format: str, task_params: Mapping[str, Any] | None = None) -> TrialConfig:
    """Preset budget, then the base configuration, then the task parameters given on the command line
    (``TaskSpec.cli_params``); ``task_params`` merged key by key (``TaskSpec.layered``)."""
    from bench.tasks import TASKS

    return TASKS.get(task).config(preset_config, base.values, {"task_params": dict(task_params or {})}, data=data,
                                  data_format=data_format)


@dataclass(frozen=True)
class Job:
    """One arm x fold x seed training run of a comparison."""

    arm: str
    fold: int
    seed: int

    @property
    def key(self) -> tuple[str, int, int]:
        return self.arm, self.fold, self.seed

    def name(self, comparison: str) -> str:
        return f"{comparison} {self.arm} f{self.fold} s{self.seed}"


def plan_jobs(arms: Sequence[str], folds: int, seeds: Sequence[int]) -> list[Job]:
    """Seed, then fold, then arm: an interrupted comparison leaves whole (fold, seed) cells for every arm."""
    return [Job(arm, fold, seed) for seed in seeds for fold in range(folds) for arm in arms]


def stage_order(jobs: Sequence[Job], config_of: Any, stages: Sequence[Any]) -> tuple[list[Job], int]:
    """``jobs`` with the first job of each shared stage first, and how many stage trainings sharing saves.

    Two jobs share a stage (``bench.stages.Stage``) when their configs agree on its fold, seed and declared
    fields (``Stage.share_key``); every arm of a guidance comparison shares the segmenter, every arm of a
    ct-lung comparison the lung stage. The first job of each such group trains the stage and the others
    load it, so the order is: those first jobs (in plan order), then the rest (in plan order, so the reusers of
    the stages trained first come first). In parallel, :class:`StageQueue` hands the jobs out in this order,
    skipping those whose stage is being trained while another job can run.

    Args:
        jobs: in plan order (:func:`plan_jobs`).
        config_of: job -> its TrialConfig.
        stages: the task's declared stages (``TaskSpec.stages``).
    """
    seen: set[tuple[str, str]] = set()
    first, rest = [], []
    saved = 0
    for job in jobs:
        config = config_of(job)
        keys = {(stage.name, stage.share_key(config)) for stage in stages}
        new = keys - seen
        saved += len(keys) - len(new)
        seen |= keys
        (first if new else rest).append(job)
    return first + rest, saved


StageKey = tuple[str, str, str]  # (task, stage name, Stage.share_key)


def shared_stages(config: TrialConfig, stages: Sequence[Any]) -> set[StageKey]:
    """The stages a job with ``config`` trains or loads, as the keys jobs that share them have in common."""
    return {(stage.task, stage.name, stage.share_key(config)) for stage in stages}


class StageQueue:
    """The jobs left, handed out so that no worker waits on a stage while another job could run.

    A job is *blocked* while one of its shared stages is being trained: by a job this queue handed out and
    that has not finished yet, or (``busy``) by another process, as the stage's training marker lock says
    (:func:`bench.stages.being_trained`: other comparisons, searches, machines on the same cache).
    :meth:`take` hands out the first job that is not blocked, in the order given (:func:`stage_order`'s, so
    the first job of each shared stage still comes first); a blocked job keeps its place and goes out once
    its stage is stored (its job finished), so it loads the stage. Only when every job left is blocked does
    :meth:`take` hand out the first of them anyway (``wait=True``: that worker then waits on the stage's lock,
    as there is nothing else to do) or nothing (``wait=False``: Ray submits it when a job finishes).

    Example:
        >>> from bench.config import TrialConfig
        >>> from bench.stages import Stage
        >>> seg = Stage("t", "seg", "1")
        >>> base = TrialConfig(task="t")
        >>> cfg = {"a": base.replace(fold=0), "b": base.replace(fold=0), "c": base.replace(fold=1)}
        >>> q = StageQueue([Job("a", 0, 0), Job("b", 0, 0), Job("c", 1, 0)], lambda j: cfg[j.arm], [seg])
        >>> [q.take().arm, q.take().arm]  # "b" needs the segmenter "a" is training: "c" goes first
        ['a', 'c']
    """

    def __init__(self, jobs: Sequence[Job], config_of: Any, stages: Sequence[Any],
                 busy: Any = None) -> None:
        """``busy(key) -> bool``: whether another process is training that stage now (default: never)."""
        self._pending = list(jobs)
        self._keys = {job: shared_stages(config_of(job), stages) for job in jobs}
        self._running: dict[Job, set[StageKey]] = {}
        self._busy = busy or (lambda key: False)

    def __len__(self) -> int:
        """How many jobs are still to be handed out."""
        return len(self._pending)

    def blocked(self, job: Job) -> bool:
        """Whether one of ``job``'s shared stages is being trained now (here or, per ``busy``, elsewhere)."""
        keys = self._keys[job]
        training = set().union(*self._running.values()) if self._running else set()
        return bool(keys & training) or any(self._busy(key) for key in keys)

    def take(self, wait: bool = True) -> Job | None:
        """The next job to run (marked running until :meth:`done`); None when none is left, or when every
        job left is blocked and ``wait`` is False."""
        if not self._pending:
            return None
        job = next((j for j in self._pending if not self.blocked(j)), None)
        if job is None:
            if not wait:
                return None
            job = self._pending[0]
        self._pending.remove(job)
        self._running[job] = self._keys[job]
        return job

    def done(self, job: Job) -> None:
        """``job`` finished (or failed): its stages are stored, or free for the next job to train."""
        self._running.pop(job, None)

    @property
    def running(self) -> int:
        return len(self._running)
