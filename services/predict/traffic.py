"""Traffic policies of a deployment, applied to each direct request: canary, shadow, and the counts
promotion reads.

- **canary**: a share of a deployment's requests is answered by another version. The side a request
  falls on is a hash of its routing key (the caller's ``routing_key``; else its request id), so a
  caller that gives one key always meets the same version while the share stays the same.
- **shadow**: every request is mirrored, after it was answered, to another version on a background
  thread; the answer is logged through ``on_predict`` (``source`` ``shadow``) and thrown away. A
  shadow that is slow or fails never delays or fails a request: mirrors beyond a small backlog are
  dropped and counted.
- **counts**: each replica keeps running totals of requests answered and failed (server-side
  failures, not bad requests) per version, which its watcher reports to the volume for promotion.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)


def bucket(model: str, key: str) -> float:
    """Where ``key`` falls in [0, 1) for ``model``: the same key, the same place, on every replica."""
    digest = hashlib.blake2b(f"{model}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def in_canary(model: str, key: str, share: float) -> bool:
    return bucket(model, key) < share


class TrafficCounts:
    """Running totals per (model, version): requests answered and failed."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], list[int]] = {}
        self._lock = threading.Lock()

    def add(self, model: str, version: int, *, failed: bool = False) -> None:
        with self._lock:
            slot = self._counts.setdefault((model, version), [0, 0])
            slot[0] += 1
            slot[1] += failed

    def models(self) -> list[str]:
        with self._lock:
            return sorted({m for m, _ in self._counts})

    def of(self, model: str) -> dict[int, dict[str, int]]:
        with self._lock:
            return {v: {"requests": c[0], "errors": c[1]} for (m, v), c in self._counts.items() if m == model}


class Mirror:
    """Runs shadow requests on one background thread, a bounded backlog of them."""

    def __init__(self, backlog: int = 64) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pending = threading.BoundedSemaphore(backlog)
        self._lock = threading.Lock()
        self.dropped = 0

    def submit(self, fn: Callable[[], object]) -> bool:
        """Run ``fn`` later; False (and dropped) when the backlog is full."""
        if not self._pending.acquire(blocking=False):
            self.dropped += 1
            return False
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(1, thread_name_prefix="shadow")

        def run() -> None:
            try:
                fn()
            except Exception as exc:  # a shadow's failure is its own: logged, never the caller's
                log.warning("shadow request failed: %s", exc)
            finally:
                self._pending.release()

        self._pool.submit(run)
        return True

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until every mirrored request has run (tests, shutdown)."""
        pool = self._pool
        if pool is not None:
            pool.submit(lambda: None).result(timeout=timeout)
