"""Queue names: one work queue per service (and per node label), dead letters beside each; events are
published to one exchange, and every subscriber group reads them from its own queue."""

from __future__ import annotations

import re

from mlrm.errors import ConfigError

SERVICE_QUEUE = "mlrm.{service}"
EVENTS_EXCHANGE = "mlrm.events"  # step events fan out from here to every group's queue
_GROUP = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\Z")


def service_queue(service: str, node: str | None = None) -> str:
    """A service's queue; ``node`` names the queue only replicas with that node label consume."""
    queue = SERVICE_QUEUE.format(service=service)
    return f"{queue}@{node}" if node else queue


def events_queue(group: str) -> str:
    """The queue a subscriber group reads events from: each group gets every event once."""
    if not isinstance(group, str) or not _GROUP.match(group):
        raise ConfigError(
            f"an event subscriber group is lower-case letters, digits, '_' and '-' (at most 64), not {group!r}"
        )
    return f"{EVENTS_EXCHANGE}.{group}"


def dead_letter_queue(queue: str) -> str:
    return f"{queue}.dlq"
