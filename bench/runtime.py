"""Runtime policy: how a trial runs on this machine (precision, memory format, compile, determinism).

The policy is about speed, not science: it is kept out of :class:`~bench.config.TrialConfig` (and its hash)
but recorded on every run as ``bench.runtime.*`` tags, and ``bench replay`` applies the recorded policy, so
a replay runs the way the original did. :meth:`Runtime.choose` picks it from what the machine offers:

======================  ===========================  =============================================
choice                  CPU                          CUDA GPU
======================  ===========================  =============================================
precision               fp32                         bf16 autocast if supported, else fp16 + GradScaler
channels_last           off (measured: no gain)      on, for 2D convnets
compile                 off unless ``--compile``     off unless ``--compile`` (falls back on failure)
deterministic           yes                          no (``--deterministic``: yes, fp32, no benchmark)
cudnn_benchmark         no                           yes unless deterministic
resident_data           no                           yes: small 2D sets stay on the device
data_placement          auto: a part set (by its measured size) of at most
                        :data:`HOST_RESIDENT_MAX_BYTES` is held in memory (on the device when
                        resident_data and at most :data:`RESIDENT_MAX_BYTES`), a larger one is
                        streamed from the cache in batches; ``resident``/``stream`` force one
loader_workers          0 (the batch read is a few     4 (at most cores - 1): worker processes,
                        preads; workers would take     pinned memory and prefetch
                        cores from the model)
======================  ===========================  =============================================

What was chosen for a trial's data is noted as ``bench.runtime.data`` (``device``, ``host`` or
``stream``) with ``bench.runtime.data_bytes``, the measured size it was chosen by.

One policy is active per process (:func:`activate`, :func:`using`); the generic loops in
:mod:`bench.train` and the tasks read it with :func:`current`. Search workers and Ray trials choose it
in their own process from the requested settings, after their GPU is pinned.

Example:
    >>> policy = Runtime.choose(Capabilities(device="cuda", name="A100", bf16=True))
    >>> policy.precision, policy.channels_last, policy.deterministic
    ('bf16', True, False)
    >>> Runtime.choose(Capabilities()).precision
    'fp32'
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch

from bench.errors import ConfigError

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")
TAG_PREFIX = "bench.runtime."
#: Data sets up to this size (all tensors of one ``fit`` call) are kept on the GPU instead of copied per batch.
RESIDENT_MAX_BYTES = 2 * 1024**3
#: A trial's data up to this size (all parts' images and masks) is held in host memory on a machine without a
#: GPU (or when it is larger than RESIDENT_MAX_BYTES); anything larger is streamed from the cache in batches,
#: so the memory a trial needs is bounded by this, not by the data set.
HOST_RESIDENT_MAX_BYTES = 256 * 1024**2
PLACEMENTS = ("auto", "resident", "stream")


@dataclass(frozen=True)
class Capabilities:
    """What the machine offers; a plain description so the choice can be tested without a GPU.

    Attributes:
        device: ``"cpu"`` or ``"cuda"``.
        name: device name (``torch.cuda.get_device_name``), ``"cpu"`` on CPU.
        bf16: the GPU supports bfloat16 (``torch.cuda.is_bf16_supported()``); ignored on CPU.
    """

    device: str = "cpu"
    name: str = "cpu"
    bf16: bool = False

    @classmethod
    def detect(cls) -> Capabilities:
        """This process's device (the visible GPU 0 when there is one)."""
        if torch.cuda.is_available():
            return cls("cuda", torch.cuda.get_device_name(0), bool(torch.cuda.is_bf16_supported()))
        return cls()


@dataclass(frozen=True)
class Runtime:
    """The runtime policy of one process. Build it with :meth:`choose`; record it with :meth:`tags`.

    Attributes:
        device: ``"cpu"`` or ``"cuda"``.
        device_name: for the record (tags), e.g. ``"NVIDIA H200"``.
        precision: ``"fp32"``, ``"bf16"`` (autocast) or ``"fp16"`` (autocast + GradScaler).
        channels_last: 2D convnets and their 4-D inputs use ``torch.channels_last``.
        compile: training steps run through ``torch.compile`` (eager fallback with a warning if it fails).
        deterministic: ``torch.use_deterministic_algorithms(True)``; replays match bit for bit.
        cudnn_benchmark: ``torch.backends.cudnn.benchmark`` (autotuned, non-deterministic kernels).
        resident_data: training tensors up to :data:`RESIDENT_MAX_BYTES` are moved to the device once.
        data_placement: ``auto`` (by measured size, see :func:`place_data`), ``resident`` or ``stream``.
        loader_workers: DataLoader worker processes for streamed data (0: batches are read in the trial).
    """

    device: str = "cpu"
    device_name: str = "cpu"
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = True
    cudnn_benchmark: bool = False
    resident_data: bool = False
    data_placement: str = "auto"
    loader_workers: int = 0

    def __post_init__(self) -> None:
        if self.data_placement not in PLACEMENTS:
            raise ConfigError(f"data placement must be one of {list(PLACEMENTS)}, but got '{self.data_placement}'.")
        if int(self.loader_workers) < 0:
            raise ConfigError(f"loader workers must be >= 0, but got {self.loader_workers}.")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {list(PRECISIONS)}, but got '{self.precision}'.")
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"runtime device must be cpu or cuda, but got '{self.device}'.")

    @classmethod
    def choose(cls, caps: Capabilities | None = None, *, precision: str = "auto", compile: bool = False,
               deterministic: bool | None = None, channels_last: bool | None = None,
               data_placement: str = "auto", loader_workers: int | None = None) -> Runtime:
        """The policy for a machine with ``caps`` (detected when None) and what the user asked for.

        Args:
            caps: the machine; :meth:`Capabilities.detect` when None.
            precision: ``"auto"`` (CPU fp32; GPU bf16 if supported, else fp16) or one of :data:`PRECISIONS`.
            compile: run training steps through ``torch.compile``.
            deterministic: True forces fp32, deterministic kernels and no cudnn benchmark; None (auto) is
                True on CPU unless a non-fp32 precision or compile is asked for, False on a GPU.
            channels_last: None (auto: on for CUDA, off on CPU) or a forced value.
            data_placement: ``auto``, ``resident`` or ``stream`` (see :func:`place_data`).
            loader_workers: None (auto: 0 on CPU, up to 4 on a GPU machine) or a forced count.

        Raises:
            ConfigError: an unknown precision, fp16 on CPU, bf16 on a GPU without it, or
                ``deterministic=True`` together with a non-fp32 precision or compile.
        """
        caps = caps or Capabilities.detect()
        gpu = caps.device == "cuda"
        if precision not in ("auto", *PRECISIONS):
            raise ConfigError(f"--precision must be one of {['auto', *PRECISIONS]}, but got '{precision}'.")
        if deterministic and (precision not in ("auto", "fp32") or compile):
            raise ConfigError(f"--deterministic runs fp32 without torch.compile, but got --precision {precision}"
                              f"{' and --compile' if compile else ''}. Drop --deterministic or the other flag.")
        if deterministic is None:
            deterministic = not gpu and precision in ("auto", "fp32") and not compile
        if deterministic:
            precision = "fp32"
        elif precision == "auto":
            precision = ("bf16" if caps.bf16 else "fp16") if gpu else "fp32"
        if precision == "fp16" and not gpu:
            raise ConfigError("--precision fp16 needs a CUDA GPU (GradScaler), but this machine has none. "
                              "Use bf16 or fp32 on CPU.")
        if precision == "bf16" and gpu and not caps.bf16:
            raise ConfigError(f"--precision bf16 needs a GPU that supports bfloat16, but {caps.name} does not. "
                              "Use fp16 or fp32.")
        return cls(device=caps.device, device_name=caps.name, precision=precision,
                   channels_last=gpu if channels_last is None else bool(channels_last),
                   compile=bool(compile), deterministic=bool(deterministic),
                   cudnn_benchmark=gpu and not deterministic, resident_data=gpu, data_placement=data_placement,
                   loader_workers=(min(4, max(_cores() - 1, 0)) if gpu else 0) if loader_workers is None
                   else int(loader_workers))

    @classmethod
    def deterministic_for(cls, caps: Capabilities | None = None) -> Runtime:
        """fp32, deterministic kernels, nothing autotuned: what replays of untagged (older) runs use."""
        return cls.choose(caps, deterministic=True)

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype, None for fp32."""
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def tags(self) -> dict[str, str]:
        """``bench.runtime.<field>`` tags for MLflow (values as strings; the device name is the ``device`` tag)."""
        return {TAG_PREFIX + k: str(v) for k, v in asdict(self).items() if k != "device_name"}

    def summary(self) -> str:
        """One line for people, e.g. ``cuda bf16, channels_last, cudnn benchmark, resident data``."""
        flags = [name for name, on in (("channels_last", self.channels_last), ("compile", self.compile),
                                       ("deterministic", self.deterministic),
                                       ("cudnn benchmark", self.cudnn_benchmark),
                                       ("resident data", self.resident_data)) if on]
        return ", ".join([f"{self.device} {self.precision}", *flags])

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> Runtime | None:
        """The policy recorded in a run's tags; None when the run has none (runs older than the policy)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = tags.get(TAG_PREFIX + f.name)
            if raw is None:
                continue
            values[f.name] = (raw == "True" if f.type in ("bool", bool) else
                              int(raw) if f.type in ("int", int) else raw)
        return cls(**values) if "precision" in values else None

    @classmethod
    def recorded(cls, tags: Mapping[str, str]) -> Runtime:
        """The policy a run used: its ``bench.runtime.*`` tags, or for runs older than the policy what every
        trial then ran with (fp32, deterministic kernels, no cudnn benchmark) on the device of its ``device`` tag.
        """
        found = cls.from_tags(tags)
        if found is not None:
            return found
        gpu = str(tags.get("device", "cpu")).startswith("cuda")
        return cls(device="cuda" if gpu else "cpu", device_name=str(tags.get("device", "cpu")))

    def for_machine(self, caps: Capabilities | None = None) -> Runtime:
        """This (recorded) policy applied on a machine with ``caps``: what it cannot do there is dropped.

        fp16 and bf16 on a GPU without them become fp32; cudnn benchmark and resident data need CUDA.
        Replay uses this; what changed shows in its environment difference.
        """
        caps = caps or Capabilities.detect()
        gpu = caps.device == "cuda"
        precision = self.precision
        if (precision == "fp16" and not gpu) or (precision == "bf16" and gpu and not caps.bf16):
            precision = "fp32"
        return replace(self, device=caps.device, device_name=caps.name, precision=precision,
                       cudnn_benchmark=self.cudnn_benchmark and gpu, resident_data=self.resident_data and gpu)


# --- the process-wide policy ------------------------------------------------------------------------------
_ACTIVE: Runtime | None = None
_NOTES: dict[str, str] = {}


def current() -> Runtime:
    """The active policy; the automatic choice for this machine when none was activated."""
    global _ACTIVE
    if _ACTIVE is None:
        _ACTIVE = Runtime.choose()
    return _ACTIVE


def activate(policy: Runtime | None) -> Runtime | None:
    """Make ``policy`` the process-wide policy (None: back to automatic); returns the previous one."""
    global _ACTIVE
    previous, _ACTIVE = _ACTIVE, policy
    return previous


@contextlib.contextmanager
def using(policy: Runtime) -> Iterator[Runtime]:
    """Activate ``policy`` for the duration of a ``with`` block, then restore the previous one."""
    previous = activate(policy)
    try:
        yield policy
    finally:
        activate(previous)


def apply_backend_flags(policy: Runtime | None = None) -> None:
    """Global torch switches of the policy: deterministic algorithms and cudnn benchmark."""
    policy = policy or current()
    torch.use_deterministic_algorithms(policy.deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = policy.cudnn_benchmark


def note(key: str, value: str) -> None:
    """Record something that happened at run time (e.g. a compile fallback); run_trial adds it to the run's tags."""
    _NOTES[TAG_PREFIX + key] = value


def take_notes() -> dict[str, str]:
    """The notes since the last call, as tags; clears them."""
    notes = dict(_NOTES)
    _NOTES.clear()
    return notes


# --- helpers the training loops call ------------------------------------------------------------------
def device(policy: Runtime | None = None) -> torch.device:
    return torch.device((policy or current()).device)


def autocast(policy: Runtime | None = None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for the policy's precision; a no-op context for fp32 (so fp32 runs are untouched)."""
    policy = policy or current()
    if policy.amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=policy.device, dtype=policy.amp_dtype)


def prepare_model(model: torch.nn.Module, policy: Runtime | None = None, spatial_dims: int = 2) -> torch.nn.Module:
    """Move ``model`` to the policy's device and, for 2D convnets, to channels_last; returns it (in place)."""
    policy = policy or current()
    model.to(device(policy))
    if policy.channels_last and spatial_dims == 2:
        model.to(memory_format=torch.channels_last)
    return model


def prepare_batch(x: torch.Tensor, policy: Runtime | None = None) -> torch.Tensor:
    """Move ``x`` to the device (no-op if there) and make a 4-D image batch channels_last if the policy says so."""
    policy = policy or current()
    x = x.to(device(policy), non_blocking=True)
    if policy.channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _cores() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def place_data(nbytes: int, policy: Runtime | None = None) -> str:
    """Where a trial's data of ``nbytes`` (measured: all its parts' images and masks) lives while it trains.

    ``device``: gathered once and moved to the GPU (resident_data and at most :data:`RESIDENT_MAX_BYTES`);
    ``host``: gathered into memory (at most :data:`HOST_RESIDENT_MAX_BYTES`, or ``data_placement`` is
    ``resident``); ``stream``: read from the cache a batch at a time. The choice is noted in the run's tags.

    Example:
        >>> place_data(10**6, Runtime()), place_data(10**10, Runtime())
        ('host', 'stream')
    """
    policy = policy or current()
    if policy.data_placement == "stream":
        where = "stream"
    elif policy.resident_data and nbytes <= RESIDENT_MAX_BYTES:
        where = "device"
    elif policy.data_placement == "resident" or nbytes <= HOST_RESIDENT_MAX_BYTES:
        where = "host"
    else:
        where = "stream"
    note("data", where)
    note("data_bytes", str(int(nbytes)))
    return where


def resident(tensors: Mapping[str, torch.Tensor], policy: Runtime | None = None) -> dict[str, torch.Tensor]:
    """``tensors`` moved to the device once when the policy keeps data resident and they are small enough.

    Otherwise returned as they are (batches are then copied as they are drawn).
    """
    policy = policy or current()
    if not policy.resident_data or sum(t.numel() * t.element_size() for t in tensors.values()) > RESIDENT_MAX_BYTES:
        return dict(tensors)
    dev = device(policy)
    return {k: v.to(dev, non_blocking=True) for k, v in tensors.items()}


class TrainStep:
    """One optimiser step under the policy: autocast around forward + loss, GradScaler for fp16, compile.

    ``step(compute)`` zeroes the gradients, runs ``loss = compute(net)`` under autocast (``net`` is the
    compiled module when the policy compiles, else ``model``), back-propagates, steps the optimiser and
    returns the detached float32 loss, still on the device (no host sync). If a compiled step raises, the
    step is redone eagerly, a warning is logged, and the fallback is noted (tag
    ``bench.runtime.compile_fallback``); later steps stay eager.

    Example:
        >>> model = torch.nn.Linear(2, 1)
        >>> step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.1), Runtime())
        >>> loss = step(lambda net: net(torch.ones(4, 2)).square().mean())
        >>> loss.dtype
        torch.float32
    """

    def __init__(self, model: torch.nn.Module, optimiser: torch.optim.Optimizer, policy: Runtime | None = None,
                 compiler: Callable[[torch.nn.Module], Callable] | None = None):
        self.policy = policy or current()
        self.model, self.optimiser = model, optimiser
        self.scaler = torch.amp.GradScaler(self.policy.device) if self.policy.precision == "fp16" else None
        self.net: Callable = model
        if self.policy.compile:
            try:
                self.net = (compiler or torch.compile)(model)
            except Exception as exc:  # noqa: BLE001  torch.compile itself may refuse (no compiler, platform)
                self._fall_back(exc)

    def _fall_back(self, exc: BaseException) -> None:
        log.warning("torch.compile failed (%s); training eagerly instead", str(exc).splitlines()[0][:300] if str(exc)
                    else type(exc).__name__)
        note("compile_fallback", f"{type(exc).__name__}: {str(exc)[:200]}")
        self.net = self.model

    def _run(self, compute: Callable[[Callable], torch.Tensor]) -> torch.Tensor:
        self.optimiser.zero_grad(set_to_none=True)
        with autocast(self.policy):
            loss = compute(self.net)
        if self.scaler is None:
            loss.backward()
            self.optimiser.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimiser)
            self.scaler.update()
        return loss

    def __call__(self, compute: Callable[[Callable], torch.Tensor]) -> torch.Tensor:
        if self.net is self.model:
            return self._run(compute).detach().float()
        try:
            return self._run(compute).detach().float()
        except Exception as exc:  # noqa: BLE001  e.g. double backward (attention_loss) is not compilable
            self._fall_back(exc)
            return self._run(compute).detach().float()
