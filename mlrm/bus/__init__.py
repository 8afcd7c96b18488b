"""Buses chosen by URL scheme from :data:`transports`: ``memory://`` (embedded, the default) and
RabbitMQ's ``amqp://`` / ``amqps://``. A new transport implements :class:`Bus` and registers
its scheme (a ``"package.module:Class"`` string is imported on first use)."""

from __future__ import annotations

from mlrm.bus.base import EVENTS_QUEUE, Bus, Delivery, dead_letter_queue, service_queue
from mlrm.bus.envelope import Envelope, Hop, message_id
from mlrm.errors import ConfigError
from mlrm.extensions import Registry

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
    "transports",
]

transports: Registry[type[Bus]] = Registry("bus transport")
transports.register("memory", "mlrm.bus.memory:MemoryBus")
transports.register("amqp", "mlrm.bus.amqp:AmqpBus")
transports.register("amqps", "mlrm.bus.amqp:AmqpBus")


def open_bus(url: str) -> Bus:
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in transports:
        known = ", ".join(f"{s}://" for s in transports.names())
        raise ConfigError(f"unsupported bus URL {_redact(url)!r}; use one of {known}")
    return transports.get(scheme)(url)


def _redact(url: str) -> str:
    """The URL without any ``user:password@`` part, fit for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, tail = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rsplit("@", 1)[1]
    return f"{scheme}{sep}{authority}{slash}{tail}"
