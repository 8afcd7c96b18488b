"""The bus interface. The embedded bus is in-process (:mod:`mlrm.bus.memory`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from mlrm.bus.envelope import Envelope
from mlrm.bus.queues import EVENTS_EXCHANGE, dead_letter_queue, events_queue, service_queue

__all__ = [
    "EVENTS_EXCHANGE", "Bus", "Delivery", "Handler", "dead_letter_queue", "events_queue", "service_queue",
]  # fmt: skip


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
    """Durable, at-least-once queues, and events any number of subscriber groups follow.

    Work goes to one queue whose consumers compete (replicas of a service share its work).
    Step and run events are different: the orchestrator records them, and monitoring, a
    dashboard or a second orchestrator may want every one of them too. So events are
    published once (:meth:`publish_event`) and every *group* (:meth:`subscribe_events`)
    receives each of them once; consumers within a group compete, like replicas.
    Implementations are chosen by URL (:func:`mlrm.bus.open_bus`).
    """

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
    def publish_event(self, envelope: Envelope) -> None:
        """Publish an event to every subscriber group; returns once the bus has it (confirmed).

        A group receives the events published after its first subscription (its queue keeps
        them while its consumers are away); with no group at all, the event reaches nobody.
        """

    @abstractmethod
    def subscribe_events(self, group: str, handler: Handler, *, prefetch: int = 1) -> None:
        """Call ``handler`` for every event once :meth:`start` runs; subscriptions with the same
        ``group`` (in this process or others) share the events, each group gets all of them."""

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
