"""Extension registries: one per kind of extension, keyed by the name written in YAML or a URL.

Services, config kinds, bus transports, volumes, steps (sources, handler and features
steps, sinks) and model flavours each have one :class:`Registry`. Extensions announce
themselves: a module registers what it defines when it is imported, and a package
names its modules under the ``mlrm.plugins`` entry-point group of its ``pyproject.toml``
(mlrm's own services and orchestrator do; so can yours)::

    [project.entry-points."mlrm.plugins"]
    collector = "services.collector"

A registry imports every plug-in the first time it is asked for a name it does not
hold, so the kernel never names a service, and built-ins cost nothing until used.
A registered value may be the object itself or a ``"package.module:Name"`` string,
imported on first use (bus transports and volumes are registered that way).
"""

from __future__ import annotations

import difflib
import logging
import threading
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from mlrm.errors import ConfigError
from mlrm.imports import import_string

log = logging.getLogger(__name__)

GROUP = "mlrm.plugins"
T = TypeVar("T")

_loaded = False
_loading = threading.RLock()


def load_plugins() -> None:
    """Import every module listed under the ``mlrm.plugins`` entry points (once per process)."""
    global _loaded
    if _loaded:
        return
    with _loading:
        if _loaded:
            return
        _loaded = True  # set first: a plug-in that asks a registry while it is imported must not recurse
        for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
            try:
                ep.load()
            except Exception as exc:  # a broken plug-in is named, not a traceback from deep inside
                _loaded = False
                raise ConfigError(f"plug-in {ep.name!r} ({ep.value}) failed to import: {exc}") from exc


class Registry(Generic[T]):
    """Named extensions of one kind; duplicates are refused; an unknown name lists the known ones."""

    def __init__(self, what: str, *, dotted: bool = False) -> None:
        self.what = what  # for messages: "service", "bus", "handler step", ...
        self.dotted = dotted  # whether a "package.module:Name" path may stand for an unregistered extension
        self._items: dict[str, T | str] = {}
        self._lock = threading.Lock()

    def register(self, name: str, obj: T | str | None = None) -> Any:
        """``registry.register("x", Thing)``, or as a decorator: ``@registry.register("x")``."""
        if obj is None:

            def decorator(value: T) -> T:
                self.register(name, value)
                return value

            return decorator
        with self._lock:
            known = self._items.get(name)
            if known is not None and known is not obj and known != obj:
                raise ValueError(f"{self.what} {name!r} is already registered ({_label(known)})")
            self._items[name] = obj
        return obj

    def get(self, name: str) -> T:
        """The extension registered as ``name`` (or named by a dotted path, where allowed)."""
        if name not in self._items:
            if self.dotted and ":" in name:
                return import_string(name, what=self.what)
            load_plugins()
        try:
            value = self._items[name]
        except KeyError:
            raise ConfigError(self.unknown(name)) from None
        if isinstance(value, str):  # registered lazily by dotted path: import on first use
            resolved: T = import_string(value, what=f"{self.what} {name!r}")
            with self._lock:
                self._items[name] = resolved
            return resolved
        return value

    def unknown(self, name: str) -> str:
        known = self.names()
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown {self.what} {name!r}; {hint}known: {', '.join(known) or 'none'}"

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(name, self.get(name)) for name in self.names()]


def _label(value: Any) -> str:
    if isinstance(value, str):
        return value
    return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', type(value).__name__)}"

