"""What a task is (``TaskSpec``), its budget presets, and ``lazy``: task code that loads on first call.

A spec is plain data plus callables; the callables that train or read data are ``lazy`` references, so
reading a spec (``bench tasks``, the leaderboard, the search space) never imports torch or MONAI.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config import as_type_of
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
    """Everything shared code knows about a task: shared code looks these up, never a task's name."""

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
    # `bench datasets make-phantom`: the formats make_phantom writes, the first its default, each named as the
    # format that reads it back (``format_aliases`` apply), and what ``--cases N`` writes, in words.
    phantom_formats: tuple[str, ...] = ()
    phantom_cases_help: str = ""
    inspect: Callable[..., Any] | None = None  # (path, fmt, **data_options) -> JSON-able report
    headline: tuple[str, ...] = ()  # metric columns a terminal leaderboard shows besides the objective
    default_preset: str = "cpu"
    # Stages whose results the stage cache keeps (bench.stages.Stage): trained once, loaded by later trials.
    stages: tuple[Any, ...] = ()
    # `bench compare`: per comparable dimension ("*": any other), the metrics reported, primary first (the
    # verdicts and ranks use it). Undeclared: the objective alone. Spelling: bench.compare.plan.MetricPlan.
    compare_metrics: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # The command-line data options the task's prepare/inspect accept (bench.cli._common.DATA_OPTIONS:
    # "classes", "min_dice", "uncertain", "missing", "sample"); any other given is refused with one line.
    data_options: frozenset[str] = frozenset()
    # `--format NAME` -> registered format, for this task only (ct-lung: "dicom" means "ct_dicom").
    format_aliases: Mapping[str, str] = field(default_factory=dict)
    # The registry whose strategies the config field ``guidance`` names; None: guidance is no dimension.
    guidance: Registry | None = None
    # What the data fixes, so a search or comparison never varies it: (prepared data) -> {flat config key:
    # (value, reason)}; segmentation without a guide organ: {"guidance": ("none", "no label encloses `spleen`")}.
    # The search drops those fields (and the parameters conditional on them) from its space and says why once;
    # a comparison of such a field is refused. None: the data fixes nothing.
    fixed_by_data: Callable[..., Any] | None = None
    # Other config fields whose values name entries of a registry (checked in search spaces and --arms),
    # besides the shared ones (bench.search.space.REGISTRY_FIELDS) and ``guidance``.
    space_registries: Mapping[str, Registry] = field(default_factory=dict)
    # `bench replay`: (config, state_dicts) -> metrics, re-scoring stored weights; None: replay only retrains.
    evaluate: Callable[..., Any] | None = None
    # `bench replay --checkpoint`: (config) -> {name: module} as in checkpoint.pt.
    build_models: Callable[..., Any] | None = None
    # `bench predict` / `bench register`: (list of bench.model_file.FoldModel) -> the task's predictor over
    # new images (bench.predict.run says what it offers); None: the task cannot predict.
    predictor: Callable[..., Any] | None = None
    # Task parameters a user sets on the command line (`bench search/compare --NAME VALUE`): name -> help.
    # Given values are merged key by key into the preset's ``task_params``; another task's refuses them.
    cli_params: Mapping[str, str] = field(default_factory=dict)
    # The task's own configuration fields (``TrialConfig.task_params``): name -> default. The default's
    # type is the parameter's type (an int takes ints; a float ints and floats; a list lists; None anything).
    params: Mapping[str, Any] = field(default_factory=dict)
    # The config fields and task parameters whose largest value is the number of epochs a trial reports its
    # objective at (the pruners' and Tune's budget): the last stage's epochs.
    reported_epochs_from: tuple[str, ...] = ("seg_epochs",)
    # Lower bounds of numeric task parameters: name -> (">" or ">=", bound), checked with their types.
    param_bounds: Mapping[str, tuple[str, float]] = field(default_factory=dict)

    def param(self, config, key: str) -> Any:
        """Task parameter ``key`` of ``config``: its value, else the declared default (every given one
        checked first: one ConfigError naming an unknown parameter or a value of the wrong type)."""
        return self.params_of(config)[key]

    def params_of(self, config) -> dict[str, Any]:
        """Every declared task parameter of ``config``, given or default, checked (see :meth:`param`)."""
        given = config.task_params
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            close = {k: difflib.get_close_matches(k, list(self.params), n=1) for k in unknown}
            hint = "; ".join(f"'{k}' (did you mean {v[0]}?)" if v else f"'{k}'" for k, v in close.items())
            raise ConfigError(f"{self.name} task_params must be among {sorted(self.params)}, but got {hint}.")
        values = {key: _typed(self.name, key, default, given[key]) if key in given else default
                  for key, default in self.params.items()}
        for key, (op, bound) in self.param_bounds.items():
            if not (values[key] > bound if op == ">" else values[key] >= bound):
                raise ConfigError(f"{self.name} task_params.{key} must be {op} {bound:g}, but got {values[key]!r}.")
        return values

    def complete(self, config):
        """``config`` with every declared task parameter in its ``task_params`` (given or default)."""
        return config.replace(task_params=self.params_of(config)) if self.params else config

    def layered(self, *layers: Mapping[str, Any]) -> dict[str, Any]:
        """Config values from ``layers`` (preset budget, base configuration, overrides), later ones winning,
        ``task_params`` merged key by key (a preset's budget keys stay unless overridden). A task parameter
        given by its own name, as configs from before it left the shared fields hold it, counts as
        ``task_params.<name>`` (a former shared field the task does not read is left to
        ``TrialConfig.from_dict``, which drops it at its old default)."""
        out: dict[str, Any] = {}
        own: dict[str, Any] = {}
        for layer in layers:
            for key, value in layer.items():
                if key == "task_params":
                    if not isinstance(value, Mapping):
                        raise ConfigError(f"'task_params' must be a mapping, but got {value!r}.")
                    own.update(value)
                elif key in self.params:
                    own[key] = value
                else:
                    out[key] = value
        return {**out, "task_params": own} if own else out

    def config(self, *layers: Mapping[str, Any], **fields: Any):
        """The TrialConfig of ``layers`` (:meth:`layered`) and ``fields`` (data, fold, seed, ...), its task
        parameters complete (every declared one, given or default), so a run logs and replays all of them."""
        from bench.config import TrialConfig

        return self.complete(TrialConfig.from_dict({**self.layered(*layers), **fields, "task": self.name}))

    def flat_key(self, name: str) -> str:
        """The flat config key (MLflow param, search-space name) of ``name``: ``task_params.<name>`` for one
        of the task's parameters, else ``name``."""
        return f"task_params.{name}" if name in self.params else name

    def reported_epochs(self, config) -> int:
        """Epochs at which a trial of ``config`` reports its objective (see ``reported_epochs_from``)."""
        own = self.params_of(config)
        return max(int(own[n]) if n in own else int(getattr(config, n)) for n in self.reported_epochs_from)

    def registries(self) -> dict[str, Registry]:
        """Config field -> the registry its values are names of, for fields this task declares."""
        return {**({"guidance": self.guidance} if self.guidance is not None else {}), **self.space_registries}

    def resolve_format(self, name: str | None, path=None) -> str:
        """The registered format ``--format name`` means for this task (its aliases applied); with no name,
        the one format of the task that recognises the folder ``path`` (bench.data.formats.resolve_format)."""
        from bench.data.formats import resolve_format

        readers: dict[str, list[str]] = {}  # format -> the tasks that list it (words the error for another's)
        for task in TASKS.names():
            for fmt in TASKS.get(task).formats:
                readers.setdefault(fmt, []).append(task)
        return resolve_format(self.name, self.formats, name, path, aliases=self.format_aliases, readers=readers)

    def phantom_format(self, name: str | None) -> str:
        """The format ``make-phantom --format name`` writes (aliases applied; no name: the task's default).

        Raises:
            RegistryError: the task writes no such format; the message lists those it writes.
        """
        from bench.errors import RegistryError
        from bench.registry import CLOSE_MATCH_CUTOFF

        if not self.phantom_formats:
            raise RegistryError(f"make-phantom needs a task that writes a phantom, but {self.name} writes none.")
        if name is None:
            return self.phantom_formats[0]
        fmt = self.format_aliases.get(name, name)
        if fmt in self.phantom_formats:
            return fmt
        names = [*self.phantom_formats, *(a for a, f in self.format_aliases.items() if f in self.phantom_formats)]
        close = difflib.get_close_matches(name, names, n=1, cutoff=CLOSE_MATCH_CUTOFF)
        raise RegistryError(f"--format for {self.name} must be one of {self.phantom_format_names()}, but got "
                            f"'{name}'." + (f" Did you mean {close[0]}?" if close else ""))

    def phantom_format_names(self) -> str:
        """``"msd (default), ct_dicom (or dicom), ..."``: the formats make-phantom writes, as help and errors
        list them."""
        def shown(fmt: str) -> str:
            aliases = [a for a, f in self.format_aliases.items() if f == fmt]
            return fmt + (f" (or {', '.join(aliases)})" if aliases else "")

        return ", ".join(shown(f) + (" (default)" if i == 0 else "") for i, f in enumerate(self.phantom_formats))

    def default_format(self, data: str | None) -> str:
        """The format a command uses when ``--format`` is left out: the phantom without ``--data``, else the
        one format of the task that recognises the folder."""
        return self.resolve_format(None, data) if data else "phantom"

    def preset(self, name: str | None) -> Preset:
        name = name or self.default_preset
        if name not in self.presets:
            raise ConfigError(f"preset must be one of {sorted(self.presets)} for {self.name}, but got '{name}'.")
        return self.presets[name]

    def space_path(self, preset: str | None) -> Path:
        return SEARCH_SPACES_DIR / self.preset(preset).space


def _typed(task: str, key: str, default: Any, value: Any) -> Any:
    """``value`` of task parameter ``key`` if it has the default's type (ints taken for floats); else one
    ConfigError."""
    if default is None:
        return value
    kind = type(default)
    value = as_type_of(default, value)  # a number in the other spelling (1 for 1.0, 64.0 for 64)
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, kind) and not (isinstance(value, bool) and not isinstance(default, bool)):
        return value
    raise ConfigError(f"{task} task_params.{key} must be {kind.__name__} (like its default {default!r}), but got "
                      f"{value!r}. Fix the config or search space.")


def register_task(spec: TaskSpec) -> TaskSpec:
    TASKS.register(spec.name, spec.description)(spec)
    return spec

