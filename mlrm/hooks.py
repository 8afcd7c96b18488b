"""Lifecycle hooks: lists of callables that any number of subscribers attach to.

``on_load``, ``on_unload`` and ``on_predict`` of the predict service's data plane, and the
orchestrator's run events, are :class:`Hook`\\ s: prediction logging, drift monitoring and
metrics attach here without subclassing anything. A subscriber that raises is logged and
skipped: it never fails the request or the run it watches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

E = TypeVar("E")


class Hook(Generic[E]):
    """``hook.append(fn)`` subscribes ``fn(event)``; ``hook.fire(event)`` calls every subscriber in order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._subscribers: list[Callable[[E], object]] = []

    def append(self, fn: Callable[[E], object]) -> Callable[[E], object]:
        """Subscribe ``fn`` (also usable as a decorator); returns it."""
        self._subscribers.append(fn)
        return fn

    def remove(self, fn: Callable[[E], object]) -> None:
        self._subscribers.remove(fn)

    def __iter__(self) -> Iterator[Callable[[E], object]]:
        return iter(list(self._subscribers))

    def __len__(self) -> int:
        return len(self._subscribers)

    def fire(self, event: E) -> None:
        for fn in list(self._subscribers):
            try:
                fn(event)
            except Exception:
                log.exception("a subscriber of %s failed; the others still run", self.name)
