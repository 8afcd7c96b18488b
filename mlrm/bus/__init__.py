"""Buses chosen by URL scheme from :data:`transports`: ``memory://`` (embedded, the default) and
RabbitMQ's ``amqp://`` / ``amqps://``. A new transport implements :class:`Bus` and registers
its scheme (a ``"package.module:Class"`` string is imported on first use)."""

from __future__ import annotations

from mlrm.bus.base import EVENTS_EXCHANGE, Bus, Delivery, dead_letter_queue, events_queue, service_queue
from mlrm.bus.envelope import Envelope, Hop, message_id
from mlrm.errors import ConfigError
from mlrm.extensions import Registry

__all__ = [
    "EVENTS_EXCHANGE",
    "Bus",
    "Delivery",
    "Envelope",
    "Hop",
    "dead_letter_queue",
    "events_queue",
    "message_id",
    "open_bus",
    "service_queue",
    "transports",
]

transports: Registry[type[Bus]] = Registry("bus transport")
transports.register("memory", "mlrm.bus.memory:MemoryBus")
transports.register("amqp", "mlrm.bus.amqp:AmqpBus")
transports.register("amqps", "mlrm.bus.amqp:AmqpBus")


def open_bus(url: str) -> Bus:
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in transports:
        from mlrm.amqp import redact  # here, not at the top: the memory bus never loads pika

        known = ", ".join(f"{s}://" for s in transports.names())
        raise ConfigError(f"unsupported bus URL {redact(url)!r}; use one of {known}")
    return transports.get(scheme)(url)

