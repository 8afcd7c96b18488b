"""The bus interface. The embedded bus is in-process (:mod:`mlrm.bus.memory`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from mlrm.bus.envelope import Envelope
from mlrm.bus.queues import EVENTS_QUEUE, dead_letter_queue, service_queue

__all__ = ["EVENTS_QUEUE", "Bus", "Delivery", "Handler", "dead_letter_queue", "service_queue"]


class Delivery(ABC):
    """A message handed to a consumer. Exactly one of ack/reject must be called."""

    envelope: Envelope
    delivery_count: int  # 1 on first delivery, +1 for each redelivery

    @abstractmethod
    def ack(self) -> None:
        """The message is fully handled (outputs published); forget it."""

    @abstractmethod
    def reject(self, requeue: bool) -> None:
        """Give the message back (requeue=True, counts as a redelivery) or drop it."""


Handler = Callable[[Delivery], None]


class Bus(ABC):
    """Durable, at-least-once queues. Implementations are chosen by URL (:func:`mlrm.bus.open_bus`)."""

    url: str
    # Payloads larger than this (bytes, in memory) travel by claim check: written to the
    # volume, the message carrying only their key. None: everything travels inline.
    inline_limit: int | None = None

    @abstractmethod
    def publish(self, queue: str, envelope: Envelope) -> None:
        """Put a message on a queue; returns once the bus has it (confirmed)."""

    @abstractmethod
    def subscribe(self, queue: str, handler: Handler, *, prefetch: int = 1) -> None:
        """Call ``handler`` for each message on ``queue`` once :meth:`start` runs."""

    @abstractmethod
    def start(self) -> None:
        """Start delivering to subscribers (in the background)."""

    @abstractmethod
    def close(self) -> None:
        """Stop delivering and release resources; unacknowledged messages stay queued."""

    # -- operator extras (inspecting queues, reading dead letters); optional per implementation --
    def depth(self, queue: str) -> int:
        """How many messages wait on ``queue`` (not counting ones being handled)."""
        raise NotImplementedError(f"{type(self).__name__} cannot report queue depth")

    def peek(self, queue: str, limit: int = 100) -> list[Envelope]:
        """Up to ``limit`` messages from the head of ``queue``, leaving them queued."""
        raise NotImplementedError(f"{type(self).__name__} cannot peek at queues")

    def drain(self, queue: str) -> list[Envelope]:
        """Take every message off ``queue`` (used to read dead-letter queues)."""
        raise NotImplementedError(f"{type(self).__name__} cannot drain queues")

    def purge(self, queue: str) -> None:
        """Drop every waiting message of ``queue``."""
        raise NotImplementedError(f"{type(self).__name__} cannot purge queues")

    def delete_queue(self, queue: str) -> None:
        """Remove ``queue`` and its messages."""
        raise NotImplementedError(f"{type(self).__name__} cannot delete queues")

    def __enter__(self) -> Bus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
