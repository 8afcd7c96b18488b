"""Training as durable jobs: the message is acked once the job is recorded, not after training.

A broker cancels a consumer that holds a delivery past its consumer timeout (30 min by
default), and an hour-long fit must not be redelivered half-way. So when the training
data is complete, the train service records a job in the volume
(``runs/<run>/leases/job.<step>.json``), acks the message, and trains in a background
thread. The job record is a lease (:mod:`mlrm.lease`): its holder renews it while
training, and it is created exclusively, so a run's training job exists once however
often its message is delivered.

If the holder dies, the job is adopted — deliberately, visibly: only by a train replica
on the same shared bus (the one whose orchestrator follows the run), never by an
embedded ``mlrm run`` (its in-process bus reaches no other orchestrator, so its jobs are
left with their abandoned runs). The adoption is logged and recorded in the job and in
the step's result, so ``mlrm runs show`` says who finished whose training.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from mlrm.bus import Envelope, Hop
from mlrm.errors import BusError, CorruptRecordError
from mlrm.lease import Holder, Lease, live
from mlrm.volume import Volume

log = logging.getLogger(__name__)


def job_key(run_id: str, step: str) -> str:
    return f"runs/{run_id}/leases/job.{step}.json"


def to_record(env: Envelope) -> dict[str, Any]:
    return {
        "id": env.id, "run_id": env.run_id, "route": [h.to_dict() for h in env.route], "hop": env.hop,
        "seq": env.seq, "last": env.last, "context": env.context, "created": env.created, "status": "running",
        "rows_in": 0 if env.payload is None else len(env.payload),  # of the message that completed the data
    }  # fmt: skip


def to_envelope(record: dict[str, Any]) -> Envelope:
    body: dict[str, Any] = {"rows_in": record.get("rows_in", 0)}
    if record.get("taken_over"):
        body["adopted"] = record["taken_over"]
    return Envelope(
        id=record["id"], run_id=record["run_id"], route=[Hop(**h) for h in record["route"]], hop=record["hop"],
        seq=record["seq"], last=record["last"], context=record["context"], created=record["created"], body=body,
    )  # fmt: skip


class JobRunner:
    """Runs jobs in background threads, keeps their leases renewed, adopts orphans if allowed."""

    def __init__(
        self, volume: Volume, holder: Holder, work: Callable[[Envelope], None], *, lease: float = 60.0,
        adopt: bool | None = None,
    ) -> None:  # fmt: skip
        self.volume, self.holder, self.work, self.lease = volume, holder, work, lease
        # Adopting needs a shared bus: the adopted job reports to the run's orchestrator on it.
        self.adopt = bool(holder.bus) if adopt is None else adopt and bool(holder.bus)
        self._stop = threading.Event()
        self._running: set[str] = set()
        self._lock = threading.Lock()

    @property
    def owner(self) -> str:
        return self.holder.name

    def submit(self, env: Envelope) -> bool:
        """Record the job durably and start it; True if this message's job is recorded (now or before).

        The caller may ack its message then: the job reports the step's outcome. False if
        the run's job was recorded for another message, which the job reports instead.
        """
        key = job_key(env.run_id, env.current.name)
        lease = Lease(self.volume, key, self.holder, ttl=self.lease)
        if lease.acquire(**to_record(env)):
            self._start(lease, to_envelope(lease.read() or to_record(env)))
            return True
        existing = lease.read() or {}
        return existing.get("id") == env.id

    def _start(self, lease: Lease, env: Envelope) -> None:
        with self._lock:
            if lease.key in self._running:
                return
            self._running.add(lease.key)
        threading.Thread(target=self._run, args=(lease, env), name=f"job:{lease.key}", daemon=True).start()

    def _run(self, lease: Lease, env: Envelope) -> None:
        lease.start_renewing()
        status: str | None = "failed"
        try:
            self.work(env)  # reports the step's outcome itself (event or dead letter)
            status = "done"
        except BusError as exc:  # the outcome could not be reported (the service is stopping): not failed,
            # not done; the record stays held and goes stale, and a replica on the bus adopts the job
            log.warning("job %s: its outcome was not reported (%s); it is left for a replica to adopt", lease.key, exc)
            status = None
        finally:
            try:
                if status is None:
                    lease.abandon()
                else:
                    lease.finish(status=status)
            finally:
                with self._lock:
                    self._running.discard(lease.key)

    def adopt_orphans(self) -> list[str]:
        """Take over running jobs on this replica's bus whose holder died; returns the keys adopted."""
        if not self.adopt:
            return []
        adopted = []
        for obj in self.volume.list("runs/"):
            name = obj.key.rsplit("/", 1)[-1]
            if "/leases/" not in obj.key or not name.startswith("job.") or not name.endswith(".json"):
                continue
            lease = Lease(self.volume, obj.key, self.holder, ttl=self.lease)
            try:
                record = lease.read()
            except CorruptRecordError as exc:  # one bad record must not stop the others (or the service)
                log.warning("%s: skipped: %s", self.owner, exc)
                continue
            if not record or not record.get("held") or live(record):
                continue
            if record.get("holder", {}).get("bus") != self.holder.bus:
                continue  # another deployment's (or an embedded run's) job: its runs are not ours to finish
            if not lease.take_over(record):
                continue  # another replica adopted it first
            log.warning("%s: adopting training job %s of run %s (its holder %s is gone)", self.owner, obj.key,
                        record.get("run_id"), Holder.from_dict(record.get("holder", {})))  # fmt: skip
            self._start(lease, to_envelope(lease.read() or record))
            adopted.append(obj.key)
        return adopted

    def watch(self, interval: float) -> None:
        if not self.adopt:
            return

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.adopt_orphans()
                except Exception:
                    log.exception("%s: looking for orphaned jobs failed", self.owner)

        threading.Thread(target=loop, name=f"{self.owner}:jobs", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
