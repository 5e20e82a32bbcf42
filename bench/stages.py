"""The stage cache: a stage a task declares is trained once and loaded by every trial that needs it again.

A task's pipeline is a chain of stages (xray-heart: heart segmenter → guided classifier; ct-lung: lung
segmenter → lesion segmenter). When a later stage is what a search or comparison varies, every trial
would train the earlier one again with the very same inputs. A task declares such a stage (:class:`Stage`:
name, version, the config fields and task parameters it depends on) and runs it through
:func:`run_stage`; the first trial trains it and stores what it produced, later ones load it.

What an entry holds (``.bench/cache/stages/<task>/<stage>/<key>/``):

* ``weights.pt``: the stage's state dicts ({model name: state dict}), loaded with ``weights_only=True``;
* ``arrays/<name>.npy``: its per-part outputs (predicted masks, ...) and the torch/NumPy random state after
  the stage, loaded with ``allow_pickle=False`` (outputs memory-mapped, so a large data set's predictions
  are read as they are used, not held in memory);
* ``meta.json``: the key's descriptor, the per-epoch metrics the stage reported (replayed into the run on
  load, so the MLflow run is the same either way), Python's random state, the checksum of each file;
* ``used``: its modification time is the entry's last use (least recently used entries are evicted first).

The key is a hash of: task, stage name and version, the data fingerprint, the split hash, fold, seed, the
declared fields' values, torch/MONAI/smp versions, torch's thread count, the runtime policy (device,
precision, determinism, ...) and the random state the stage starts from. The last one makes a loaded stage
exact by construction: a stage whose network is initialised from the global stream is shared only by trials
that reach it in the same random state (a task keeps that state independent of what a search varies by
doing the varying work after the stage, or on a forked stream). After a load, the random state is set to
the one recorded after training, so later stages draw exactly the numbers they would have drawn.

Faults: an entry is written to a temporary folder and renamed, so a writer killed mid-write leaves nothing
that loads; a checksum or format failure on load is one ``bench: warning:`` line and the stage is trained
again (never a crash, never a wrong value). Two processes that need one stage at once take an exclusive
``fcntl.flock`` on ``<key>.lock`` beside the entry: one trains, the other waits and then loads. While it
trains, the trainer also holds ``<share key>.training.lock`` (:func:`being_trained`), so a comparison's
scheduler (:class:`bench.compare.plan.StageQueue`) hands a worker other work instead of that wait.

Control: ``BENCH_STAGE_CACHE`` = ``on`` (default) or ``off`` (every stage trains, nothing is stored);
``bench search``/``bench compare`` use it on, ``bench replay`` off unless ``--stage-cache on``. The cache is
bounded by ``BENCH_STAGE_CACHE_GB`` (default 20). Each run records ``bench.stage.<stage>`` = ``trained`` or
``loaded``.

This module imports neither torch nor numpy at import time (``bench cache ls`` stays light); it sits just
under the tasks in the layer contract because the tasks call it, and :mod:`bench.trial` collects its tags.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.diskspace import disk_full, is_disk_full
from bench.errors import BenchWarning, ConfigError

if TYPE_CHECKING:
    from bench.config import TrialConfig

ENABLE_ENV = "BENCH_STAGE_CACHE"  # on | off
SIZE_ENV = "BENCH_STAGE_CACHE_GB"
DEFAULT_GB = 20.0
TAG_PREFIX = "bench.stage."
TRAINED, LOADED = "trained", "loaded"
FORMAT = 2  # 2: arrays as memory-mapped .npy files
_RNG = "__rng__."  # prefix of the random-state arrays among arrays/*.npy
_LIBRARIES = ("torch", "monai", "segmentation-models-pytorch")


# --- declarations -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    """A stage a task declares: what it depends on (besides data, split, fold, seed and the environment).

    Attributes:
        task: the task's name.
        name: the stage's name (tag ``bench.stage.<name>``, folder name).
        version: bump when the stage's code changes what it produces (old entries then never match).
        fields: the ``TrialConfig`` fields the stage depends on.
        task_params: the task parameters (``config.task_params`` keys) it depends on.
        produces: what an entry holds, for people (``bench tasks``): weights, predictions, history, rng.
        description: one line for people.

    Example:
        >>> lungs = Stage("ct-lung", "lung", "1", fields=("batch_size",), task_params=("lung_epochs",))
        >>> lungs.tag
        'bench.stage.lung'
    """

    task: str
    name: str
    version: str
    fields: tuple[str, ...] = ()
    task_params: tuple[str, ...] = ()
    produces: tuple[str, ...] = ("weights", "predictions", "history", "rng")
    description: str = ""

    @property
    def tag(self) -> str:
        return TAG_PREFIX + self.name

    def declared(self, config: TrialConfig, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The values of the declared fields in ``config``; ``params`` gives the task parameters with the
        task's defaults resolved (default: as written in ``config.task_params``)."""
        values: dict[str, Any] = {f: _plain(getattr(config, f)) for f in self.fields}
        source = config.task_params if params is None else params
        values["task_params"] = {k: _plain(source.get(k)) for k in self.task_params}
        return values

    def share_key(self, config: TrialConfig) -> str:
        """What two jobs must agree on to share this stage, as far as their configs tell (fold, seed, the
        declared values); a comparison orders its jobs by it. The cache's own key adds the data, the split,
        the environment and the random state at the stage's start."""
        return digest({"stage": self.name, "version": self.version, "fold": config.fold, "seed": config.seed,
                       "declared": self.declared(config)})


def _plain(value: Any) -> Any:
    """Tuples as lists, mappings as sorted dicts: the JSON form the hash reads."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def digest(descriptor: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(descriptor, sort_keys=True, default=str).encode()).hexdigest()[:24]


# --- control ------------------------------------------------------------------------------------------
def enabled() -> bool:
    """Whether stages are loaded and stored (``BENCH_STAGE_CACHE``, default on)."""
    return parse_switch(os.environ.get(ENABLE_ENV, "on"), ENABLE_ENV)


def parse_switch(value: str, what: str = "--stage-cache") -> bool:
    """``on``/``off`` → True/False.

    Raises:
        ConfigError: any other value.
    """
    text = str(value).strip().lower()
    if text not in ("on", "off"):
        raise ConfigError(f"{what} must be 'on' or 'off', but got '{value}'.")
    return text == "on"


@contextlib.contextmanager
def switched(on: bool) -> Iterator[None]:
    """Turn the stage cache on or off for a ``with`` block (in this process and the workers it spawns,
    which inherit the environment), then restore the previous setting."""
    previous = os.environ.get(ENABLE_ENV)
    os.environ[ENABLE_ENV] = "on" if on else "off"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(ENABLE_ENV, None)
        else:
            os.environ[ENABLE_ENV] = previous


def limit_bytes() -> int:
    """The cache's bound (``BENCH_STAGE_CACHE_GB``, default 20) in bytes.

    Raises:
        ConfigError: not a number >= 0.
    """
    raw = os.environ.get(SIZE_ENV, "")
    try:
        gb = float(raw) if raw.strip() else DEFAULT_GB
    except ValueError:
        gb = -1.0
    if not gb >= 0:
        raise ConfigError(f"{SIZE_ENV} must be a size in GB >= 0, but got '{raw}'. Unset it for {DEFAULT_GB:g} GB.")
    return int(gb * 1e9)


def root() -> Path:
    return Path(os.environ.get("BENCH_CACHE", ".bench/cache")) / "stages"


# --- what happened in this trial (bench.trial adds it to the run's tags) -------------------------------
_OUTCOMES: dict[str, str] = {}


def take_outcomes() -> dict[str, str]:
    """``bench.stage.<stage>`` → trained | loaded for the stages run since the last call; clears them."""
    out = dict(_OUTCOMES)
    _OUTCOMES.clear()
    return out


# --- running a stage ----------------------------------------------------------------------------------
@dataclass
class StageResult:
    """What a stage produced, trained or loaded.

    Attributes:
        weights: {model name: state dict} (CPU tensors when loaded).
        arrays: {name: NumPy array}: per-part outputs.
        epochs: the per-epoch metrics the stage reported, as (step, {metric: value}).
        loaded: whether it came from the cache.
        key: the entry's key ("" with the cache off).
    """

    weights: dict[str, dict[str, Any]]
    arrays: dict[str, Any]
    epochs: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    loaded: bool = False
    key: str = ""


TrainFn = Callable[[Callable[[dict[str, float], int], None]], tuple[Mapping[str, Mapping[str, Any]], Mapping[str, Any]]]


def run_stage(stage: Stage, config: TrialConfig, *, data_key: str, split_hash: str, reporter: Any,
              train: TrainFn, params: Mapping[str, Any] | None = None) -> StageResult:
    """Train ``stage`` (``train(log) -> (weights, arrays)``) or load it from the cache.

    ``train`` reports each epoch through ``log(metrics, step)``, which goes to ``reporter`` and is recorded;
    a loaded stage replays the recorded epochs into ``reporter``, so the run gets the same curves (and
    ``epochs_trained``) either way. Arrays must be NumPy arrays of plain dtypes (no objects).

    Args:
        stage: the declaration.
        config: the trial's config (fold, seed, the declared fields).
        data_key: fingerprint of the prepared data (source + preprocessing).
        split_hash: the split's sha256.
        reporter: the trial's reporter (``log(metrics, step)``).
        train: the stage's training and prediction.
        params: the task parameters with defaults resolved (default: ``config.task_params`` as written).
    """
    epochs: list[tuple[int, dict[str, float]]] = []

    def log(metrics: dict[str, float], step: int) -> None:
        epochs.append((int(step), {k: float(v) for k, v in metrics.items()}))
        reporter.log(metrics, step)

    if not enabled():
        weights, arrays = train(log)
        _OUTCOMES[stage.tag] = TRAINED
        return StageResult(_detached(weights), dict(arrays), epochs, False, "")
    key, descriptor = entry_key(stage, config, data_key, split_hash, params)
    folder = root() / stage.task / stage.name
    entry = folder / key
    found = _load_quietly(entry)
    if found is None:
        folder.mkdir(parents=True, exist_ok=True)
        with _locked(folder / f"{key}.lock"):
            try:
                found = _load(entry)
            except _Corrupt as exc:
                warnings.warn(f"stage cache entry {stage.task}/{stage.name}/{key} is unreadable ({exc}); "
                              "training the stage again", BenchWarning, stacklevel=2)
                _remove(entry)
            if found is None:
                with _locked(training_marker(stage.task, stage.name, stage.share_key(config))):
                    weights, arrays = train(log)
                weights = _detached(weights)
                _write(entry, descriptor, weights, dict(arrays), epochs)
                _OUTCOMES[stage.tag] = TRAINED
                _evict(keep=entry)
                return StageResult(weights, dict(arrays), epochs, False, key)
    weights, arrays, recorded = found
    for step, metrics in recorded:
        reporter.log(dict(metrics), step)
    _OUTCOMES[stage.tag] = LOADED
    return StageResult(weights, arrays, recorded, True, key)


def training_marker(task: str, stage: str, share_key: str) -> Path:
    """The lock file a process holds while it trains a stage for configs with this :meth:`Stage.share_key`:
    a scheduler tries it without blocking (:func:`being_trained`) to hand out other work meanwhile. The
    entry's own ``<key>.lock`` cannot serve: its key needs the data and the random state, which only the
    trial knows."""
    return root() / task / stage / f"{share_key}.training.lock"


def being_trained(task: str, stage: str, share_key: str) -> bool:
    """Whether some process (this machine or another on the same file system) is training that stage now."""
    marker = training_marker(task, stage, share_key)
    if not marker.exists():
        return False
    with _locked(marker, blocking=False) as got:
        return not got


def entry_key(stage: Stage, config: TrialConfig, data_key: str, split_hash: str,
              params: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """The entry's key and the descriptor it hashes (stored in ``meta.json``)."""
    import torch

    from bench import runtime

    descriptor = {
        "task": stage.task, "stage": stage.name, "version": stage.version, "data": data_key, "split": split_hash,
        "fold": config.fold, "seed": config.seed, "declared": stage.declared(config, params),
        "libraries": {name: _version(name) for name in _LIBRARIES}, "threads": torch.get_num_threads(),
        "runtime": runtime.current().as_dict(), "entry_rng": _rng_digest(),
    }
    return digest(descriptor), descriptor


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def _detached(weights: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """State dicts as CPU copies: what is stored is what a loading trial gets."""
    return {name: {k: v.detach().cpu().clone() for k, v in sd.items()} for name, sd in weights.items()}


# --- random state -------------------------------------------------------------------------------------
def _rng_arrays() -> tuple[dict[str, Any], dict[str, Any]]:
    """The global random states: arrays (torch CPU/CUDA, NumPy's key) and JSON (the rest)."""
    import numpy as np
    import torch

    from bench import runtime

    arrays = {f"{_RNG}torch": torch.get_rng_state().numpy().copy()}
    if runtime.current().device == "cuda" and torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            arrays[f"{_RNG}cuda{i}"] = state.numpy().copy()
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    arrays[f"{_RNG}numpy"] = np.asarray(keys, np.uint32).copy()
    version, state, gauss_next = random.getstate()
    meta = {"numpy": [kind, int(pos), int(has_gauss), float(gauss)],
            "python": [version, list(state), gauss_next]}
    return arrays, meta


def _rng_digest() -> str:
    arrays, meta = _rng_arrays()
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for name in sorted(arrays):
        h.update(name.encode())
        h.update(arrays[name].tobytes())
    return h.hexdigest()[:24]


def _set_rng(arrays: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(torch.from_numpy(np.array(arrays[f"{_RNG}torch"], np.uint8)))
    cuda = sorted(k for k in arrays if k.startswith(f"{_RNG}cuda"))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.from_numpy(np.array(arrays[k], np.uint8)) for k in cuda])
    kind, pos, has_gauss, gauss = meta["numpy"]
    np.random.set_state((kind, np.array(arrays[f"{_RNG}numpy"], np.uint32), int(pos), int(has_gauss), float(gauss)))
    version, state, gauss_next = meta["python"]
    random.setstate((int(version), tuple(int(s) for s in state), gauss_next))


# --- entries on disk ----------------------------------------------------------------------------------
class _Corrupt(Exception):
    """An entry that exists but does not load (truncated, altered, another format)."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write(entry: Path, descriptor: Mapping[str, Any], weights: Mapping[str, Mapping[str, Any]],
           arrays: Mapping[str, Any], epochs: Sequence[tuple[int, Mapping[str, float]]]) -> None:
    """Write the entry under a temporary name and rename it into place (nothing half-written is ever
    visible under the key)."""
    import numpy as np
    import torch

    rng, rng_meta = _rng_arrays()
    tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}.tmp-"))
    try:
        torch.save({name: dict(sd) for name, sd in weights.items()}, tmp / "weights.pt")
        bad = [k for k, v in arrays.items() if np.asarray(v).dtype.hasobject or k.startswith((_RNG, "."))
               or "/" in k]
        if bad:
            raise ValueError(f"stage arrays must be plain NumPy arrays named without '/', a leading '.' or "
                             f"{_RNG}, but got {bad}")
        (tmp / "arrays").mkdir()
        for name, value in {**arrays, **rng}.items():
            np.save(tmp / "arrays" / f"{name}.npy", np.asarray(value), allow_pickle=False)
        files = ["weights.pt", *(f"arrays/{name}.npy" for name in sorted({**arrays, **rng}))]
        meta = {"format": FORMAT, "task": descriptor["task"], "stage": descriptor["stage"],
                "key": entry.name, "created": time.time(), "descriptor": descriptor,
                "epochs": [[step, dict(m)] for step, m in epochs], "rng": rng_meta,
                "files": {name: {"sha256": _sha256(tmp / name), "bytes": (tmp / name).stat().st_size}
                          for name in files}}
        (tmp / "meta.json").write_text(json.dumps(meta))
        (tmp / "used").touch()
        os.replace(tmp, entry)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(exc):  # torch says "unexpected pos": name the folder and the free space instead
            raise disk_full(exc, entry.parent) from None
        raise


def _load_quietly(entry: Path):
    """The entry, or None when it is missing or does not load (the locked path then says why once)."""
    try:
        return _load(entry)
    except _Corrupt:
        return None


def _load(entry: Path):
    """(weights, arrays, epochs) of an entry, with the random state set; None when there is none.

    Raises:
        _Corrupt: the entry exists but a file is missing, truncated, altered or not loadable without pickle.
    """
    import numpy as np
    import torch

    if not entry.is_dir():
        return None
    try:
        meta = json.loads((entry / "meta.json").read_text())
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise _Corrupt(f"format {meta.get('format') if isinstance(meta, dict) else '?'}, expected {FORMAT}")
        files = meta["files"]
        if "weights.pt" not in files or not all(n.startswith("arrays/") for n in files if n != "weights.pt"):
            raise _Corrupt("its file list is not an entry's")
        for name, expected in files.items():
            path = entry / name
            if path.stat().st_size != expected["bytes"] or _sha256(path) != expected["sha256"]:
                raise _Corrupt(f"{name} does not match its checksum")
        weights = torch.load(entry / "weights.pt", map_location="cpu", weights_only=True)
        stored = {}
        for name in files:
            if name != "weights.pt":
                key = name[len("arrays/"):-len(".npy")]
                # outputs memory-mapped (read as used); the random state is small and read whole
                stored[key] = np.load(entry / name, mmap_mode=None if key.startswith(_RNG) else "r",
                                      allow_pickle=False)
        epochs = [(int(step), {str(k): float(v) for k, v in m.items()}) for step, m in meta["epochs"]]
        rng_meta = meta["rng"]
    except _Corrupt:
        raise
    except FileNotFoundError as exc:
        if not entry.is_dir():  # evicted or pruned while we read it: a miss, not a fault
            return None
        raise _Corrupt(f"{Path(exc.filename or '?').name} is missing") from None
    except Exception as exc:  # noqa: BLE001  any decoding failure is a corrupt entry, never a crash
        raise _Corrupt(f"{type(exc).__name__}: {str(exc)[:200]}") from None
    _set_rng(stored, rng_meta)
    with contextlib.suppress(OSError):
        os.utime(entry / "used")
    arrays = {k: v for k, v in stored.items() if not k.startswith(_RNG)}
    return weights, arrays, epochs


@contextlib.contextmanager
def _locked(path: Path, blocking: bool = True) -> Iterator[bool]:
    """An exclusive ``flock`` on ``path`` for the block (yields False when ``blocking`` is off and another
    process holds it). The lock is released by the kernel if the holder dies."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _remove(entry: Path) -> None:
    """Move the entry out of its key's place at once (rename), then delete it."""
    if not entry.exists():
        return
    trash = entry.parent / f".{entry.name}.trash-{os.getpid()}-{time.monotonic_ns()}"
    try:
        os.replace(entry, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)


# --- listing, pruning, the bound ----------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    task: str
    stage: str
    key: str
    path: Path
    bytes: int
    created: float
    used: float


def entries() -> list[Entry]:
    """Every entry of the stage cache (unreadable metadata still lists, with its size on disk)."""
    base = root()
    out = []
    if not base.is_dir():
        return out
    for entry in sorted(p for p in base.glob("*/*/*") if p.is_dir() and not p.name.startswith(".")):
        size = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())
        try:
            created = float(json.loads((entry / "meta.json").read_text())["created"])
        except Exception:  # noqa: BLE001
            created = entry.stat().st_mtime
        try:
            used = (entry / "used").stat().st_mtime
        except OSError:
            used = created
        out.append(Entry(entry.parent.parent.name, entry.parent.name, entry.name, entry, size, created, used))
    return out


def prune(older_than_days: float | None = None, stage: str | None = None, now: float | None = None
          ) -> tuple[list[Entry], list[Entry]]:
    """Remove the entries last used more than ``older_than_days`` ago (all when None) of ``stage`` (all when
    None), skipping any another process holds locked; returns (removed, kept). Leftovers of killed writers
    (temporary folders over an hour old) go too.

    Raises:
        ConfigError: a negative ``older_than_days``.
    """
    if older_than_days is not None and not older_than_days >= 0:
        raise ConfigError(f"--older-than must be a number of days >= 0, but got {older_than_days}.")
    now = time.time() if now is None else now
    removed, kept = [], []
    for e in entries():
        old = older_than_days is None or now - e.used > older_than_days * 86400
        if (stage is None or e.stage == stage) and old and _remove_unlocked(e):
            removed.append(e)
        else:
            kept.append(e)
    for tmp in root().glob("*/*/.*"):
        if tmp.is_dir() and now - tmp.stat().st_mtime > 3600:
            shutil.rmtree(tmp, ignore_errors=True)
    return removed, kept


def _remove_unlocked(e: Entry) -> bool:
    with _locked(e.path.parent / f"{e.key}.lock", blocking=False) as got:
        if got:
            _remove(e.path)
        return got


def _evict(keep: Path) -> list[Entry]:
    """Least recently used entries go until the cache fits ``BENCH_STAGE_CACHE_GB`` (``keep`` stays)."""
    limit = limit_bytes()
    listed = entries()
    total = sum(e.bytes for e in listed)
    removed = []
    for e in sorted(listed, key=lambda e: e.used):
        if total <= limit:
            break
        if e.path == keep:
            continue
        if _remove_unlocked(e):
            total -= e.bytes
            removed.append(e)
    return removed
