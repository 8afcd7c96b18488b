"""Queue names: one work queue per service (and per node label), one for events, dead letters beside each."""

from __future__ import annotations

SERVICE_QUEUE = "mlrm.{service}"
EVENTS_QUEUE = "mlrm.events"


def service_queue(service: str, node: str | None = None) -> str:
    """A service's queue; ``node`` names the queue only replicas with that node label consume."""
    queue = SERVICE_QUEUE.format(service=service)
    return f"{queue}@{node}" if node else queue


def dead_letter_queue(queue: str) -> str:
    return f"{queue}.dlq"
