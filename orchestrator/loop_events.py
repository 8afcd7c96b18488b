"""The closed loop's history: every step it takes for a model (a trigger, a retraining, the gate, staging,
the canary, a promotion, a rollback) as one event, kept in the volume and published on the bus.

Events are objects ``loop/<model>/events/<time>-<n>.json`` (one object per event: no read-modify-write,
so concurrent writers never lose one), read back in order by :func:`history` and ``mlrm loop history``,
and logged. (They are not published on the bus's event exchange: the orchestrator's group reads step
events there.)
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

from mlrm.volume import Volume

log = logging.getLogger(__name__)

_seq = itertools.count()


def events_prefix(model: str) -> str:
    return f"loop/{model}/events/"


def record(volume: Volume, model: str, step: str, **fields: Any) -> dict[str, Any]:
    """Record one step of the loop for ``model``; returns the event."""
    now = time.time()
    event = {"model": model, "step": step, "at": now, **fields}
    volume.put_json(f"{events_prefix(model)}{now:017.6f}-{next(_seq) % 1_000_000:06d}.json", event)
    log.info("loop %s: %s %s", model, step, {k: v for k, v in fields.items() if k != "details"})
    return event


def history(volume: Volume, model: str, *, limit: int | None = None) -> list[dict[str, Any]]:
    """The loop's events for ``model``, oldest first (the newest ``limit`` of them)."""
    keys = sorted(obj.key for obj in volume.list(events_prefix(model)) if obj.key.endswith(".json"))
    if limit is not None:
        keys = keys[-limit:] if limit > 0 else []
    return [volume.get_json(k) for k in keys]
