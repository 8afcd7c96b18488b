"""Leases: who owns a piece of work, and whether that owner is still alive.

Some work must be done by one process at a time, and taken over if that process dies:
handling a gathered stream (a sink writing its output, a scaler fitting), a training
job, a run as a whole. A lease is one JSON object in the volume naming its holder
(worker name, machine, pid, and the bus it reports to) and a heartbeat the holder
renews while it works. It is taken with an exclusive create; a holder that stops
renewing (or whose process is gone, which a process on the same machine sees at
once) has lost it, and exactly one other process may take it over: the taker creates
a marker named after the lease's current token, so a second taker fails.

Liveness is only ever decided here, so every part of mlrm agrees on it: a redelivered
message waits for a live holder instead of redoing its work; ``mlrm gc`` never
collects a run that holds a live lease; a dead embedded run is recognised as
abandoned; a training job is adopted only when its holder is dead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from mlrm.errors import MlrmError, NotFoundError

if TYPE_CHECKING:
    from mlrm.volume import Volume

log = logging.getLogger(__name__)

TTL = 30.0  # seconds without a heartbeat after which a holder on another machine counts as dead


@cache
def machine() -> str:
    """This machine and pid namespace: where a pid names the same process."""
    parts = [socket.gethostname()]
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        parts.append(os.readlink("/proc/self/ns/pid"))
    except OSError:  # not Linux: holders on this machine are judged by their heartbeats
        pass
    return "/".join(parts)


def process_start(pid: int) -> int | None:
    """When a process started (clock ticks since boot); None where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat.rsplit(b")", 1)[1].split()[19])  # field 22; the name (field 2) may hold spaces


def process_alive(pid: int, started: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    if started is None:
        return True
    now = process_start(pid)
    return now is None or now == started  # another start time: the pid was reused


def process_tag() -> str:
    """This process, in a form fit for a file name: machine hash, pid, start time."""
    pid = os.getpid()
    digest = hashlib.sha256(machine().encode()).hexdigest()[:8]
    return f"{digest}-{pid}-{process_start(pid) or 0}"


def tagged_process_gone(tag: str) -> bool:
    """Whether the process a :func:`process_tag` names is known to be gone (False if unsure)."""
    try:
        digest, pid, started = tag.split("-")
        if digest != hashlib.sha256(machine().encode()).hexdigest()[:8]:
            return False
        return not process_alive(int(pid), int(started) or None)
    except ValueError:
        return False


def shared_bus(url: str) -> str:
    """The identity of a bus other processes can share (scheme, host and vhost), or "" for an in-process one."""
    parts = urlsplit(url)
    if parts.scheme in ("", "memory"):
        return ""
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path or "/", "", ""))


@dataclass(frozen=True)
class Holder:
    """Who holds a lease: a worker in one process, reporting to one bus."""

    name: str
    machine: str
    pid: int
    started: int | None
    bus: str = ""  # "" : an in-process bus, so nobody else can finish (or adopt) its work

    @classmethod
    def here(cls, name: str, bus: str = "") -> Holder:
        pid = os.getpid()
        return cls(name, machine(), pid, process_start(pid), shared_bus(bus))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Holder:
        return cls(str(data.get("name", "?")), str(data.get("machine", "?")), int(data.get("pid", 0)),
                   data.get("started"), str(data.get("bus", "")))  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def alive(self) -> bool | None:
        """Whether the holder's process runs; None when it is on another machine (go by heartbeats)."""
        if self.machine != machine():
            return None
        return process_alive(self.pid, self.started)

    def __str__(self) -> str:
        return f"{self.name} (pid {self.pid} on {self.machine.split('/')[0]})"


def live(record: dict[str, Any] | None, now: float | None = None) -> bool:
    """Whether a lease record is held by someone alive: held, renewed within its ttl, process not gone."""
    if not record or not record.get("held"):
        return False
    now = time.time() if now is None else now
    if now - float(record.get("heartbeat", 0)) > float(record.get("ttl", TTL)):
        return False
    return Holder.from_dict(record.get("holder", {})).alive() is not False


class Lease:
    """One lease at ``key``, held (or wanted) by ``holder``.

    ``with lease:`` keeps a held lease renewed in the background and releases it at the
    end of the block (deletes it), whether the block succeeded or raised.
    """

    def __init__(self, volume: Volume, key: str, holder: Holder, *, ttl: float = TTL) -> None:
        self.volume, self.key, self.holder, self.ttl = volume, key, holder, ttl
        self.token: str | None = None  # set while this object holds the lease
        self.lost = False  # the lease was taken over while we held it: stop touching what it guards
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # a renewal never writes the record back after it was let go

    # -- reading ---------------------------------------------------------------------
    def read(self) -> dict[str, Any] | None:
        try:
            record = self.volume.get_json(self.key)
        except NotFoundError:
            return None
        except ValueError:  # half-written by a dead writer on a volume without atomic writes: treat as stale
            return {"held": True, "heartbeat": 0, "holder": {}}
        return record if isinstance(record, dict) else None

    def mine(self, record: dict[str, Any] | None) -> bool:
        return bool(record) and Holder.from_dict(record.get("holder", {})) == self.holder  # type: ignore[union-attr]

    # -- taking ----------------------------------------------------------------------
    def _record(self, fields: dict[str, Any]) -> dict[str, Any]:
        self.token = uuid.uuid4().hex
        return {**fields, "holder": self.holder.to_dict(), "heartbeat": time.time(), "ttl": self.ttl,
                "token": self.token, "held": True}  # fmt: skip

    def acquire(self, **fields: Any) -> bool:
        """Take the lease if nobody has it (it does not exist); True also if this holder holds it already."""
        record = self._record(fields)
        if self.volume.create(self.key, json.dumps(record, indent=2, sort_keys=True, default=str).encode()):
            return True
        current = self.read()
        if current is not None and current.get("held") and self.mine(current):
            self.token = current.get("token")
            return True
        self.token = None
        return False

    def take_over(self, current: dict[str, Any], **fields: Any) -> bool:
        """Take a lease whose holder is dead; only one taker succeeds. ``fields`` update the record."""
        if live(current):
            return False
        marker = f"{self.key}.taken-{current.get('token', 'none')}"
        if not self.volume.create(marker, str(self.holder).encode()):
            return False  # another process took it first
        previous = Holder.from_dict(current.get("holder", {}))
        record = self._record({**current, **fields})
        record["taken_over"] = [*current.get("taken_over", []),
                                {"from": str(previous), "by": str(self.holder), "at": record["heartbeat"]}]  # fmt: skip
        self.volume.put_json(self.key, record)
        log.warning("%s took over %s from %s (not alive)", self.holder, self.key, previous)
        return True

    # -- holding ---------------------------------------------------------------------
    def renew(self) -> bool:
        """Refresh the heartbeat; False (and ``lost``) if someone else holds the lease now."""
        with self._lock:
            if self.token is None:
                return False  # let go of
            current = self.read()
            if current is None or current.get("token") != self.token or not current.get("held"):
                self.lost = True
                return False
            current["heartbeat"] = time.time()
            self.volume.put_json(self.key, current)
            return True

    def still_held(self) -> bool:
        """Check (one read) that nobody took the lease over; call before touching what it guards."""
        current = self.read()
        self.lost = self.lost or current is None or current.get("token") != self.token
        return not self.lost

    def finish(self, **fields: Any) -> None:
        """Keep the record (a job's outcome) but let go of it: it is no longer held by anyone."""
        self._stop_renewing()
        with self._lock:
            current = self.read()
            if current is None or current.get("token") != self.token:
                return
            current.update(fields, held=False, heartbeat=time.time())
            self.volume.put_json(self.key, current)
            self.token = None

    def abandon(self) -> None:
        """Stop renewing and leave the record held: it goes stale, and a live peer may take it over."""
        self._stop_renewing()

    def release(self) -> None:
        """Drop the lease (delete its record) if it is still ours."""
        self._stop_renewing()
        with self._lock:
            try:
                current = self.read()
                if current is not None and current.get("token") == self.token:
                    self.volume.delete(self.key)
            except MlrmError as exc:  # it goes stale on its own; a waiter takes it over then
                log.warning("could not release %s: %s", self.key, exc)
            self.token = None

    def start_renewing(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease:{self.key}", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(max(0.2, self.ttl / 6)):
            try:
                if not self.renew():
                    log.warning("%s lost %s: another process took it over", self.holder, self.key)
                    return
            except Exception:  # a missed beat is retried; only a run of them lets another take over
                log.warning("%s could not renew %s", self.holder, self.key, exc_info=True)

    def _stop_renewing(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def __enter__(self) -> Lease:
        self.start_renewing()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Keeper:
    """Renews many leases from one thread (an orchestrator's runs)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._leases: dict[str, Lease] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, lease: Lease) -> None:
        with self._lock:
            self._leases[lease.key] = lease
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="lease-keeper", daemon=True)
                self._thread.start()

    def pop(self, key: str) -> Lease | None:
        with self._lock:
            return self._leases.pop(key, None)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                leases = list(self._leases.values())
            for lease in leases:
                try:
                    if not lease.renew():
                        log.warning("%s lost %s", lease.holder, lease.key)
                        self.pop(lease.key)
                except Exception:
                    log.warning("%s could not renew %s", lease.holder, lease.key, exc_info=True)

    def stop(self) -> None:
        self._stop.set()


def run_leases(volume: Volume, run_id: str) -> list[dict[str, Any]]:
    """Every lease record a run holds (its owner, its jobs, its gathered streams)."""
    out = []
    for obj in volume.list(f"runs/{run_id}/leases/"):
        if obj.key.endswith(".json"):
            record = Lease(volume, obj.key, Holder.here("reader")).read()
            if record is not None:
                out.append(record)
    return out


def run_is_live(volume: Volume, run_id: str) -> bool:
    """Whether something alive still works on the run: gc must leave it alone."""
    return any(live(record) for record in run_leases(volume, run_id))
