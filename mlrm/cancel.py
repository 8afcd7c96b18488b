"""Cancelling a run: a marker in the volume that every service checks before it does a run's work.

The orchestrator writes ``runs/<id>/cancelled.json`` (:func:`mark_cancelled`) and ends the run
``cancelled``; a service drops the run's messages before processing them and before forwarding
their outputs, and training checks it once more right before publishing a version. A volume is
what every replica of every service already shares, in both modes, so nothing else is needed to
reach them; :class:`Cancellations` caches the answer so a message costs no volume read in the
common case (a positive answer is kept for good, a negative one for ``ttl`` seconds).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

from mlrm.errors import MlrmError

MAX_CACHED = 4096


def cancel_key(run_id: str) -> str:
    return f"runs/{run_id}/cancelled.json"


def mark_cancelled(volume: Any, run_id: str, reason: str = "cancelled") -> None:
    volume.put_json(cancel_key(run_id), {"cancelled": time.time(), "reason": reason})


def is_cancelled(volume: Any, run_id: str) -> bool:
    return bool(volume.exists(cancel_key(run_id)))


class RunCancelled(MlrmError):
    """The run was cancelled: its remaining work is dropped (not an error of the step)."""

    http_status = 409
    grpc_status = "CANCELLED"


class Cancellations:
    """Which runs are cancelled, as a service sees them (cached; see the module docstring)."""

    def __init__(self, volume: Any, ttl: float = 0.5) -> None:
        self.volume, self.ttl = volume, ttl
        self._seen: OrderedDict[str, tuple[bool, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, run_id: str, *, fresh: bool = False) -> bool:
        """Whether ``run_id`` is cancelled; ``fresh``: ask the volume now (right before publishing)."""
        now = time.monotonic()
        with self._lock:
            known = self._seen.get(run_id)
        if known is not None and (known[0] or (not fresh and now - known[1] < self.ttl)):
            return known[0]
        try:
            cancelled = is_cancelled(self.volume, run_id)
        except MlrmError:  # the volume is in trouble: carry on; the work itself will notice if it must
            cancelled = False
        with self._lock:
            self._seen[run_id] = (cancelled, now)
            self._seen.move_to_end(run_id)
            while len(self._seen) > MAX_CACHED:
                self._seen.popitem(last=False)
        return cancelled

    def check(self, run_id: str, *, fresh: bool = False) -> None:
        """Raise :class:`RunCancelled` if the run is cancelled."""
        if self(run_id, fresh=fresh):
            raise RunCancelled(f"run {run_id} was cancelled")
