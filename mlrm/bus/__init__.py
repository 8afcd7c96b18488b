"""Buses chosen by URL: ``memory://`` (embedded, the default); RabbitMQ's ``amqp://`` follows."""

from __future__ import annotations

from mlrm.bus.base import EVENTS_QUEUE, Bus, Delivery, dead_letter_queue, service_queue
from mlrm.bus.envelope import Envelope, Hop, message_id
from mlrm.errors import ConfigError

__all__ = [
    "EVENTS_QUEUE",
    "Bus",
    "Delivery",
    "Envelope",
    "Hop",
    "dead_letter_queue",
    "message_id",
    "open_bus",
    "service_queue",
]


def open_bus(url: str) -> Bus:
    scheme = url.split("://", 1)[0]
    if scheme == "memory":
        from mlrm.bus.memory import MemoryBus

        return MemoryBus(url)
    raise ConfigError(f"unsupported bus URL {url!r}; use memory://")
