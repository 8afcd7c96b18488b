"""Training as durable jobs: the message is acked once the job is recorded, not after training.

A broker cancels a consumer that holds a delivery past its consumer timeout (30 min by
default), and an hour-long fit must not be redelivered half-way. So when the training
data is complete, the train service records a job in the volume
(``runs/<run>/jobs/<step>.json``), acks the message, and trains in a background thread
that refreshes the job's heartbeat. If the replica dies, another one (or the same one
restarted) sees the heartbeat go stale and takes the job over — one taker only, by an
exclusive create — so the run still completes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from mlrm.bus import Envelope, Hop
from mlrm.errors import CorruptRecordError
from mlrm.volume import Volume

log = logging.getLogger(__name__)


def job_key(run_id: str, step: str) -> str:
    return f"runs/{run_id}/jobs/{step}.json"


def to_record(env: Envelope, owner: str) -> dict[str, Any]:
    return {
        "id": env.id, "run_id": env.run_id, "route": [h.to_dict() for h in env.route], "hop": env.hop,
        "seq": env.seq, "last": env.last, "context": env.context, "created": env.created,
        "status": "running", "owner": owner, "heartbeat": time.time(), "started": time.time(),
        "rows_in": 0 if env.payload is None else len(env.payload),  # of the message that completed the data
    }  # fmt: skip


def to_envelope(record: dict[str, Any]) -> Envelope:
    return Envelope(
        id=record["id"], run_id=record["run_id"], route=[Hop(**h) for h in record["route"]], hop=record["hop"],
        seq=record["seq"], last=record["last"], context=record["context"], created=record["created"],
        body={"rows_in": record.get("rows_in", 0)},
    )  # fmt: skip


class JobRunner:
    """Runs jobs in background threads, keeps their heartbeats fresh, adopts orphans."""

    def __init__(self, volume: Volume, owner: str, work: Callable[[Envelope], None], *, lease: float = 60.0) -> None:
        self.volume, self.owner, self.work, self.lease = volume, owner, work, lease
        self._stop = threading.Event()
        self._running: set[str] = set()
        self._lock = threading.Lock()

    def submit(self, env: Envelope) -> None:
        """Record the job durably, then start it; the caller may ack its message after this returns."""
        key = job_key(env.run_id, env.current.name)
        record = to_record(env, self.owner)
        self.volume.put_json(key, record)
        self._start(key, to_envelope(record))

    def _start(self, key: str, env: Envelope) -> None:
        with self._lock:
            if key in self._running:
                return
            self._running.add(key)
        threading.Thread(target=self._run, args=(key, env), name=f"job:{key}", daemon=True).start()

    def _run(self, key: str, env: Envelope) -> None:
        beating = threading.Event()

        def beat() -> None:
            while not beating.wait(max(0.5, self.lease / 6)):
                try:
                    record = self.volume.get_json(key)
                    if record.get("owner") != self.owner or record.get("status") != "running":
                        return
                    record["heartbeat"] = time.time()
                    self.volume.put_json(key, record)
                except Exception:  # a missed beat is retried; a stale one lets another replica adopt the job
                    log.warning("%s: could not refresh the heartbeat of %s", self.owner, key, exc_info=True)

        threading.Thread(target=beat, daemon=True).start()
        status = "failed"
        try:
            self.work(env)  # reports the step's outcome itself (event or dead letter)
            status = "done"
        finally:
            beating.set()
            try:
                record = self.volume.get_json(key)
                record.update(status=status, finished=time.time())
                self.volume.put_json(key, record)
            finally:
                with self._lock:
                    self._running.discard(key)

    def adopt_orphans(self) -> list[str]:
        """Take over running jobs whose owner stopped beating; returns the keys adopted."""
        adopted = []
        for obj in self.volume.list("runs/"):
            if "/jobs/" not in obj.key or not obj.key.endswith(".json"):
                continue
            try:
                record = self.volume.get_json(obj.key)
            except CorruptRecordError as exc:  # one bad record must not stop the others (or the service)
                log.warning("%s: skipped: %s", self.owner, exc)
                continue
            if record.get("status") != "running" or time.time() - record.get("heartbeat", 0) < self.lease:
                continue
            if not self.volume.create(f"{obj.key}.adopted-{record['heartbeat']}", self.owner.encode()):
                continue  # another replica adopted it first
            log.warning("%s: adopting %s from %s (no heartbeat for %.0fs)", self.owner, obj.key, record["owner"],
                        time.time() - record["heartbeat"])  # fmt: skip
            record.update(owner=self.owner, heartbeat=time.time())
            self.volume.put_json(obj.key, record)
            self._start(obj.key, to_envelope(record))
            adopted.append(obj.key)
        return adopted

    def watch(self, interval: float) -> None:
        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.adopt_orphans()
                except Exception:
                    log.exception("%s: looking for orphaned jobs failed", self.owner)

        threading.Thread(target=loop, name=f"{self.owner}:jobs", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
