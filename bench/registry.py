"""A small generic registry: one instance per extension point (losses, guidance, models, tasks, formats, metrics).

Adding a thing is one decorated function or class; duplicate names raise and unknown names raise with the
closest registered names (only when one is close), unlike timm's warn-only behaviour.

Registries describe without importing: an entry's name, description (first docstring line), parameters
(the factory's keyword defaults) and tags are plain data read from the decorated object, so listing them
needs neither torch nor MONAI. Entries whose implementation is heavy register a light factory whose body
imports the library (``def dice(smooth=1e-5): from monai.losses import DiceLoss; return DiceLoss(...)``):
the import happens when :meth:`Registry.create` calls it.

Example:
    >>> widgets = Registry("widget")
    >>> @widgets.register("square", sides=4)
    ... def square(side: float = 2.0):
    ...     '''A square widget.'''
    ...     return side * side
    >>> widgets.entry("square").describe()["parameters"], widgets.create("square", side=3.0)
    ({'side': 2.0}, 9.0)
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from bench.errors import RegistryError

T = TypeVar("T")

# difflib ratio above which a registered name counts as a likely typo of the one asked for.
CLOSE_MATCH_CUTOFF = 0.6


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    description: str
    tags: dict[str, Any] = field(default_factory=dict)

    def parameters(self) -> dict[str, Any]:
        """Keyword parameters of the registered factory with their defaults (what a search may set).

        A registered value that is not callable (e.g. a metric's declaration) has none.
        """
        if not callable(self.obj):
            return {}
        target = self.obj.__init__ if inspect.isclass(self.obj) else self.obj
        params = {}
        for p in inspect.signature(target).parameters.values():
            if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if p.default is inspect.Parameter.empty:
                continue
            params[p.name] = p.default
        return params

    def describe(self) -> dict[str, Any]:
        """Name, description, parameters and tags as plain data (what ``bench list --json`` prints)."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters(),
                "tags": dict(self.tags)}


class Registry(Generic[T]):
    def __init__(self, kind: str, plural: str | None = None):
        self.kind = kind
        self.plural = plural or f"{kind}s"  # "guidance strategies", not a generated "strategys"
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, description: str | None = None, **tags: Any) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self.add(name, obj, description, **tags)
            return obj

        return decorator

    def add(self, name: str, obj: T, description: str | None = None, **tags: Any) -> Entry[T]:
        """Register ``obj`` under ``name`` (what the decorator does; for values that are not functions)."""
        if name in self._entries:
            raise RegistryError(
                f"{self.kind} names must be unique, but got a second '{name}'. Rename one of them."
            )
        if description is None and callable(obj):
            description = (inspect.getdoc(obj) or "").split("\n")[0]
        self._entries[name] = Entry(name, obj, description or "", dict(tags))
        return self._entries[name]

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise RegistryError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        """``<kind> must be ..., but got '<name>'.`` with close matches when there are any, else every name."""
        close = difflib.get_close_matches(str(name), list(self._entries), n=3, cutoff=CLOSE_MATCH_CUTOFF)
        if close:
            return (f"{self.kind} must be one of the registered names, but got '{name}'. "
                    f"Did you mean {' or '.join(repr(c) for c in close)}?")
        return f"{self.kind} must be one of {self.names()}, but got '{name}'."

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def create(self, name: str, **params: Any) -> Any:
        entry = self.entry(name)
        accepted = entry.parameters()
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise RegistryError(
                f"{self.kind} '{name}' takes parameters {sorted(accepted)}, but got {unknown}. "
                f"Remove them or pick another {self.kind}."
            )
        return entry.obj(**params)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
