"""A small generic registry: one instance per extension point (losses, guidance, models, tasks, formats).

Adding a thing is one decorated function or class; duplicate names raise and unknown names raise with the
closest registered names, unlike timm's warn-only behaviour.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from bench.errors import RegistryError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    description: str
    tags: dict[str, Any] = field(default_factory=dict)

    def parameters(self) -> dict[str, Any]:
        """Keyword parameters of the registered factory with their defaults (what a search may set)."""
        target = self.obj.__init__ if inspect.isclass(self.obj) else self.obj
        params = {}
        for p in inspect.signature(target).parameters.values():
            if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if p.default is inspect.Parameter.empty:
                continue
            params[p.name] = p.default
        return params


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, description: str | None = None, **tags: Any) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries:
                raise RegistryError(
                    f"{self.kind} names must be unique, but got a second '{name}'. Rename one of them."
                )
            doc = description or (inspect.getdoc(obj) or "").split("\n")[0]
            self._entries[name] = Entry(name, obj, doc, dict(tags))
            return obj

        return decorator

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.4)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise RegistryError(
                f"{self.kind} must be one of {sorted(self._entries)}, but got '{name}'.{hint}"
            ) from None

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
