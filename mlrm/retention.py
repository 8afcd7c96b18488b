"""Garbage collection of what finished runs leave in the volume.

Runs use ``runs/<run id>/`` for scratch (gathered batches, sink parts) and for the
statistics they learn. Once a run has finished (or was abandoned by its dead owner)
and its retention has passed, that prefix is deleted. A run that holds a live lease
(:mod:`mlrm.lease`: its orchestrator, a training job, a sink being written) is never
collected, whatever the run store says: gc may read another store than the run's.
Model versions are never collected: everything a version needs was copied under
``models/`` when it was registered. A version whose trainer died
before writing its card (a reservation with no card) is collected after the same
retention, and so are temporary files of writers killed mid-write. Predictions and other
outputs are left alone: they are results, not payloads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mlrm.lease import Holder, Lease, live
from mlrm.volume import Volume

# Given a run id, when it finished (seconds since the epoch), None while it runs,
# or "unknown" if the run store never heard of it.
FinishedAt = Callable[[str], float | str | None]


@dataclass
class Collected:
    runs: list[str] = field(default_factory=list)
    abandoned_versions: list[str] = field(default_factory=list)
    objects: int = 0
    live: list[str] = field(default_factory=list)  # runs left alone: something alive still works on them
    temporary: int = 0


def collect(volume: Volume, finished_at: FinishedAt, *, older_than: float, now: float | None = None) -> Collected:
    """Delete payloads of runs finished more than ``older_than`` seconds ago; return what went."""
    now = time.time() if now is None else now
    out = Collected()
    newest: dict[str, float] = {}
    leases: dict[str, list[str]] = {}
    for obj in volume.list("runs/"):
        run_id = obj.key.split("/")[1]
        newest[run_id] = max(newest.get(run_id, 0.0), obj.modified)
        if obj.key.startswith(f"runs/{run_id}/leases/") and obj.key.endswith(".json"):
            leases.setdefault(run_id, []).append(obj.key)
    for run_id, touched in sorted(newest.items()):
        if any(live(Lease(volume, key, Holder.here("gc")).read()) for key in leases.get(run_id, [])):
            out.live.append(run_id)  # its owner, a job or a claim is alive: what it holds is in use
            continue
        finished = finished_at(run_id)
        if finished is None:
            continue  # still running: its payloads are in use
        # A run the store does not know (another store, or deleted records) goes by its last write.
        when = touched if finished == "unknown" else float(finished)
        if now - when >= older_than:
            out.objects += volume.delete_prefix(f"runs/{run_id}/")
            out.runs.append(run_id)

    reserved: dict[str, float] = {}
    carded: set[str] = set()
    for obj in volume.list("models/"):
        parts = obj.key.split("/")
        if len(parts) == 4 and parts[2].isdigit():
            prefix = "/".join(parts[:3]) + "/"
            if parts[3] == "card.json":
                carded.add(prefix)
            elif parts[3] == ".reserved":
                reserved[prefix] = obj.modified
    for prefix, when in sorted(reserved.items()):
        if prefix not in carded and now - when >= older_than:
            out.objects += volume.delete_prefix(prefix)
            out.abandoned_versions.append(prefix.rstrip("/"))
    out.temporary = volume.collect_temporary(older_than)
    return out
