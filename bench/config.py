"""The trial config: one frozen, validated, hashable record that fully describes a trial.

Everything a trial does is decided here, so the logged config is all replay needs. It flattens to
``{"seg_loss_params.alpha": 0.5, ...}`` for MLflow params and search spaces, and back.

Fields added after configs were first logged (``ADDED_FIELDS``) leave the canonical JSON while they hold
their default, so every config written before them keeps its ``config_hash``. Fields that left the shared
record for one task's own parameters (``MOVED_TO_TASK_PARAMS``) still load from configs written before
(:meth:`TrialConfig.from_dict` moves them into ``task_params``) and keep their old place in the hash.

What a task's parameters mean, their types and defaults, the task declares (``TaskSpec.params``); this
record only carries them.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import ConfigError

PARAM_DICTS = ("seg_loss_params", "guidance_params", "task_params", "reader_options")
# Field -> default of fields added later; at the default they are left out of the hash (see the docstring).
ADDED_FIELDS: dict[str, Any] = {"classes": (), "reader_options": {}}
# Former shared fields that one task alone used (now its task parameters), with the default they had. A
# logged config that holds one at its old default drops it (the task's default is the same value, and
# other tasks never read it); another value moves into ``task_params``.
MOVED_TO_TASK_PARAMS: dict[str, Any] = {"image_size": 64, "classifier": "resnet10", "cls_epochs": 4, "cls_lr": 1e-3}


@dataclass(frozen=True)
class TrialConfig:
    """What one trial trains and evaluates.

    Example:
        >>> cfg = TrialConfig(task="xray-heart", seg_arch="fpn", lr=3e-3)
        >>> TrialConfig.from_flat(cfg.flat()) == cfg
        True
    """

    task: str
    data: str = "phantom"
    data_format: str = "phantom"
    # The class list in label-index order; () = the data's own (bench.data.labels.resolve_classes: the phantom's
    # four CHD classes, cardiomegaly for ChestX-ray14/CheXpert/CheXmask, a folder's labels). A trial's logged
    # config holds the resolved list, so replays and comparisons train and score the same outputs.
    classes: tuple[str, ...] = ()
    # The data format reader's options, e.g. {"min_dice": 0.8} (chexmask), {"uncertain": "ones"} (chexpert).
    reader_options: dict[str, Any] = field(default_factory=dict)
    split_hash: str = ""
    fold: int = 0
    seed: int = 0
    max_train_cases: int = 0
    seg_arch: str = "unet"
    seg_encoder: str = "resnet18"
    seg_loss: str = "dice"
    seg_loss_params: dict[str, Any] = field(default_factory=dict)
    seg_epochs: int = 4
    guidance: str = "none"
    guidance_params: dict[str, Any] = field(default_factory=dict)
    optimiser: str = "adam"
    lr: float = 1e-3
    batch_size: int = 16
    augment: bool = False
    # The task's own parameters (``TaskSpec.params`` declares their names, types and defaults): e.g.
    # xray-heart's classifier and image_size, ct-lung's patch and lung_epochs.
    task_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", _class_list(self.classes))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "classes":
                continue
            if f.name in PARAM_DICTS:
                if not isinstance(value, Mapping):
                    raise ConfigError(f"'{f.name}' must be a mapping, but got {value!r}.")
                object.__setattr__(self, f.name, {k: value[k] for k in sorted(value)})
                continue
            expected = _FIELD_TYPES[f.name]
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))
            elif expected is int and isinstance(value, float) and value.is_integer():
                object.__setattr__(self, f.name, int(value))
            elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise ConfigError(
                    f"'{f.name}' must be {expected.__name__}, but got {value!r}. Fix the config or search space."
                )
        for name in ("seg_epochs", "batch_size"):
            if getattr(self, name) < (0 if name.endswith("epochs") else 1):
                raise ConfigError(f"'{name}' must be positive, but got {getattr(self, name)}.")
        if not self.lr > 0:
            raise ConfigError(f"'lr' must be > 0, but got {self.lr}.")

    # --- conversions -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialConfig:
        data = _moved_into_task_params(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            hints = {k: difflib.get_close_matches(k, known, n=1) for k in unknown}
            hint = "; ".join(f"'{k}' (did you mean {v[0]}?)" if v else f"'{k}'" for k, v in hints.items())
            raise ConfigError(f"trial config keys must be TrialConfig fields, but got {hint}.")
        if "task" not in data:
            raise ConfigError("a trial config must name its 'task', but it has none.")
        return cls(**dict(data))

    def flat(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.to_dict().items():
            if key in PARAM_DICTS:
                out.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                out[key] = value
        return out

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any]) -> TrialConfig:
        nested: dict[str, Any] = {name: {} for name in PARAM_DICTS}
        for key, value in flat.items():
            head, dot, tail = key.partition(".")
            if dot:
                if head not in PARAM_DICTS:
                    raise ConfigError(
                        f"dotted keys must start with one of {list(PARAM_DICTS)}, but got '{key}'."
                    )
                nested[head][tail] = value
            else:
                nested[key] = value
        return cls.from_dict(nested)

    def replace(self, **changes: Any) -> TrialConfig:
        return dataclasses.replace(self, **changes)

    def canonical_json(self) -> str:
        data = self.to_dict()
        for name, default in ADDED_FIELDS.items():
            if data[name] == default:
                del data[name]
        own = dict(data["task_params"])
        for name, default in MOVED_TO_TASK_PARAMS.items():  # where they were before they moved
            data[name] = as_type_of(default, own.pop(name, default))
        data["task_params"] = own
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def config_hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        import yaml  # here, not at the top: reading task specs (bench --help, bench tasks) needs no YAML

        return yaml.safe_dump(self.to_dict(), sort_keys=True)

    @classmethod
    def from_yaml(cls, text: str, source: str = "<string>") -> TrialConfig:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: a trial config must be valid YAML, but parsing failed: {exc}") from exc
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: a trial config must be a mapping, but got {type(data).__name__}.")
        return cls.from_dict(data)


def _moved_into_task_params(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """``data`` with the fields of :data:`MOVED_TO_TASK_PARAMS` moved into ``task_params`` (dropped at
    their old default), as configs logged before the move hold them."""
    moved = [name for name in MOVED_TO_TASK_PARAMS if name in data]
    if not moved:
        return data
    out = {k: v for k, v in data.items() if k not in moved}
    if not isinstance(out.get("task_params") or {}, Mapping):
        raise ConfigError(f"'task_params' must be a mapping, but got {out['task_params']!r}.")
    own = dict(out.get("task_params") or {})
    for name in moved:
        if data[name] == MOVED_TO_TASK_PARAMS[name]:
            continue
        if name in own and own[name] != data[name]:
            raise ConfigError(f"'{name}' is a task parameter: give it once, as task_params.{name}, but got "
                              f"{data[name]!r} and task_params.{name}: {own[name]!r}.")
        own[name] = data[name]
    if own or "task_params" in out:
        out["task_params"] = own
    return out


def as_type_of(default: Any, value: Any) -> Any:
    """``value`` as the number type of ``default`` where it is one in another spelling (1 -> 1.0, 64.0 -> 64),
    as the shared fields were stored."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if isinstance(default, float):
        return float(value)
    if isinstance(default, int) and not isinstance(default, bool) and float(value).is_integer():
        return int(value)
    return value


def _class_list(value: Any) -> tuple[str, ...]:
    """``classes`` as a tuple: empty, or two or more distinct non-empty names (a list from YAML/JSON, or "a,b")."""
    if isinstance(value, str):
        value = value.split(",") if value.strip() else ()
    if isinstance(value, (list, tuple)) and all(isinstance(n, str) for n in value):
        names = tuple(n.strip() for n in value)
        if not names or (len(names) >= 2 and "" not in names and len(set(names)) == len(names)):
            return names
    raise ConfigError(f"'classes' must be empty (the data's own) or two or more distinct non-empty names, but got "
                      f"{value!r}. Give them as --classes a,b,c.")


_FIELD_TYPES: dict[str, type] = {
    f.name: {"str": str, "int": int, "float": float, "bool": bool}.get(str(f.type).split("[")[0], object)
    for f in dataclasses.fields(TrialConfig)
}


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write via a temp file in the same folder and rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the result is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_yaml(path: str | Path, what: str) -> Any:
    """The YAML document at ``path``; one ConfigError naming the file and ``what`` it must be otherwise."""
    import yaml

    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: {what} must be a readable YAML file, but {exc.strerror}.") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {what} must be valid YAML, but parsing failed: {exc}") from None
