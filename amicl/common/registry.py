"""One registry per kind of plug-in (policies, scorers, tasks, streams, similarities, separations).

A registry maps a name to a ``"module:attribute"`` path and imports it on first use, so the CLI can
offer the names as choices without importing torch, and the contract tests can parametrise over every
entry: a new plug-in is offered and tested by being registered (the pattern of kvpress and evosax).
``register`` adds one at run time (a user's own policy, say), which the CLI then offers (``RegistryChoice``
in amicl.common.cli reads the registry when it parses).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping


class Registry(Mapping):
    """name -> object, imported lazily from ``entries`` (name -> "module:attribute")."""

    def __init__(self, kind: str, entries: dict[str, str]):
        self.kind = kind
        self._paths = dict(entries)
        self._loaded: dict[str, object] = {}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._paths)

    def check(self, name: str) -> str:
        """``name`` if registered, else a one-line ``ValueError`` listing the choices."""
        if name not in self._paths:
            raise ValueError(f"unknown {self.kind} {name!r}; choose from {', '.join(self._paths)}")
        return name

    def register(self, name: str, target):
        """Add ``name``: ``target`` is a "module:attribute" path or the object itself. Refuses a taken name."""
        if not isinstance(name, str) or not name or name in self._paths:
            raise ValueError(f"{self.kind} name {name!r} is taken or empty")
        if isinstance(target, str):
            self._paths[name] = target
        else:
            self._paths[name] = f"<registered {type(target).__name__}>"
            self._loaded[name] = target
        return target

    def unregister(self, name: str) -> None:
        """Remove ``name`` (e.g. a test's dummy)."""
        self.check(name)
        del self._paths[name]
        self._loaded.pop(name, None)

    def __getitem__(self, name: str):
        self.check(name)
        if name not in self._loaded:
            module, attr = self._paths[name].split(":")
            self._loaded[name] = getattr(importlib.import_module(module), attr)
        return self._loaded[name]

    def __iter__(self):
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._paths)})"
