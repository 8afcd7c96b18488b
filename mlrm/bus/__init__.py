"""Buses chosen by URL: ``memory://`` (embedded, the default) and RabbitMQ's ``amqp://`` / ``amqps://``."""

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
    if scheme in ("amqp", "amqps"):
        from mlrm.bus.amqp import AmqpBus

        return AmqpBus(url)
    from mlrm.amqp import redact  # here, not at the top: the memory bus never loads pika

    raise ConfigError(f"unsupported bus URL {redact(url)!r}; use memory:// or amqp://")
