"""Run records in SQLite: one row per run, one per step, one per processed batch (for exactly-once counting)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlrm.bus import Hop
from mlrm.errors import ConfigError, NotFoundError
from mlrm.lease import Holder

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, workflow TEXT NOT NULL, path TEXT, mode TEXT, status TEXT NOT NULL,
    created REAL NOT NULL, finished REAL, error TEXT, context TEXT, owner TEXT, reopened REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL, idx INTEGER NOT NULL, name TEXT NOT NULL, service TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending', started REAL, finished REAL, busy REAL NOT NULL DEFAULT 0,
    batches_in INTEGER NOT NULL DEFAULT 0, batches_out INTEGER NOT NULL DEFAULT 0,
    rows_in INTEGER NOT NULL DEFAULT 0, rows_out INTEGER NOT NULL DEFAULT 0,
    last_seq INTEGER, error TEXT, result TEXT, workers TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (run_id, idx)
);
CREATE TABLE IF NOT EXISTS batches (
    run_id TEXT NOT NULL, idx INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (run_id, idx, seq)
);
"""

# abandoned: its owner (an embedded `mlrm run`) died, and nobody else can finish it; cancelled: asked to stop
FINISHED = ("succeeded", "failed", "abandoned", "cancelled")
_NOT_FINISHED = f"status NOT IN ({', '.join(repr(s) for s in FINISHED)})"
# Columns added after the first release: (name, definition), added to older databases on open.
_ADDED_COLUMNS = (("runs", "owner", "TEXT"), ("runs", "reopened", "REAL NOT NULL DEFAULT 0"))


def abandoned_reason(owner: dict[str, Any] | None) -> str | None:
    """Why a running run can never finish, if its owner is gone and no one else can take it over.

    A run owned by an orchestrator on a shared bus is not abandoned when that process dies:
    a restarted orchestrator picks it up. A run of an embedded `mlrm run` lives on that
    process's private bus: once the process is gone, nothing will ever finish it.
    """
    if not owner:
        return None
    holder = Holder.from_dict(owner)
    if holder.bus or holder.alive() is not False:
        return None
    return f"abandoned: its owner {holder} stopped before the run finished"


@dataclass
class StepRecord:
    idx: int
    name: str
    service: str
    status: str
    started: float | None
    finished: float | None
    busy: float
    batches_in: int
    batches_out: int
    rows_in: int
    rows_out: int
    error: str | None
    result: dict[str, Any] | None
    workers: dict[str, int]

    @property
    def seconds(self) -> float | None:
        return None if self.started is None or self.finished is None else self.finished - self.started


@dataclass
class RunRecord:
    id: str
    workflow: str
    path: str | None
    mode: str
    status: str
    created: float
    finished: float | None
    error: str | None
    steps: list[StepRecord] = field(default_factory=list)
    owner: dict[str, Any] | None = None  # the lease holder that runs it (see orchestrator.store.abandoned_reason)

    @property
    def done(self) -> bool:
        return self.status in FINISHED

    @property
    def seconds(self) -> float | None:
        return None if self.finished is None else self.finished - self.created

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        steps = [StepRecord(**s) for s in data.pop("steps", [])]
        return cls(**data, steps=steps)

    def result(self, service: str) -> dict[str, Any] | None:
        for step in self.steps:
            if step.service == service and step.result:
                return step.result
        return None


class RunStore:
    """The run records in one SQLite file.

    ``read_only`` (for commands that only look, like ``mlrm runs``): nothing is created or
    written; a store that does not exist yet reads as one with no runs.
    """

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        file = Path(self.path)
        if self.path != ":memory:" and file.is_dir():
            raise ConfigError(f"run store {self.path}: is a folder, not a SQLite file (set --state or MLRM_STATE)")
        if read_only and self.path != ":memory:" and not file.exists():
            self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            self._db.executescript(SCHEMA)
            return
        try:
            if read_only:
                uri = f"file:{urllib.parse.quote(str(file.resolve()))}?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
                self._db.execute("SELECT COUNT(*) FROM runs JOIN steps ON 0").fetchone()  # the tables are there
                if not self._missing_columns():
                    return
                self._db.close()  # a store from an older mlrm: add its new columns, as a writer does
            if self.path != ":memory:":
                file.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL never corrupts the database; a power cut may lose the last commits,
            # which the services' events (redelivered until acked) make good again.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            for table, column, definition in self._missing_columns():
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
        except sqlite3.DatabaseError as exc:
            raise ConfigError(
                f"run store {self.path}: not an mlrm run store (SQLite says: {exc}); "
                "point --state or MLRM_STATE at another file"
            ) from None
        except OSError as exc:
            raise ConfigError(f"run store {self.path}: cannot create it: {exc.strerror or exc}") from None

    def _missing_columns(self) -> list[tuple[str, str, str]]:
        """Columns added since a store was created (an older mlrm wrote it)."""
        missing = []
        for table, column, definition in _ADDED_COLUMNS:
            have = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                missing.append((table, column, definition))
        return missing

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create(
        self, run_id: str, workflow: str, path: str, mode: str, route: list[Hop], context: dict,
        owner: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO runs (id, workflow, path, mode, status, created, context, owner) VALUES (?,?,?,?,?,?,?,?)",
                (run_id, workflow, path, mode, "running", time.time(), json.dumps(context),
                 json.dumps(owner) if owner else None),
            )  # fmt: skip
            self._db.executemany(
                "INSERT INTO steps (run_id, idx, name, service) VALUES (?,?,?,?)",
                [(run_id, i, h.name, h.service) for i, h in enumerate(route)],
            )

    def record_batch(self, run_id: str, idx: int, body: dict[str, Any]) -> bool:
        """Count one processed batch; False if it was counted before (a redelivery)."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            cur = self._db.execute("INSERT OR IGNORE INTO batches VALUES (?,?,?)", (run_id, idx, body["seq"]))
            if cur.rowcount == 0:
                return False
            row = self._db.execute("SELECT workers FROM steps WHERE run_id=? AND idx=?", (run_id, idx)).fetchone()
            workers = json.loads(row[0]) if row else {}
            workers[body["worker"]] = workers.get(body["worker"], 0) + 1
            self._db.execute(
                """UPDATE steps SET status = CASE WHEN status = 'pending' THEN 'running' ELSE status END,
                   started = MIN(COALESCE(started, ?), ?), finished = MAX(COALESCE(finished, ?), ?),
                   busy = busy + ?, batches_in = batches_in + 1, batches_out = batches_out + ?,
                   rows_in = rows_in + ?, rows_out = rows_out + ?,
                   last_seq = CASE WHEN ? THEN ? ELSE last_seq END,
                   result = COALESCE(?, result), workers = ?
                   WHERE run_id = ? AND idx = ?""",
                (
                    body["started"], body["started"], body["finished"], body["finished"],
                    body["finished"] - body["started"], body["batches_out"], body["rows_in"], body["rows_out"],
                    body["last"], body["seq"], json.dumps(body["result"]) if body.get("result") else None,
                    json.dumps(workers), run_id, idx,
                ),
            )  # fmt: skip
            return True

    def step_complete(self, run_id: str, idx: int) -> bool:
        """Mark the step succeeded if every batch up to the last one was processed."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            last = self._db.execute("SELECT last_seq FROM steps WHERE run_id=? AND idx=?", (run_id, idx)).fetchone()
            if last is None or last[0] is None:
                return False
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM batches WHERE run_id=? AND idx=? AND seq<=?", (run_id, idx, last[0])
            ).fetchone()
            if count != last[0] + 1:
                return False
            self._db.execute(
                "UPDATE steps SET status='succeeded' WHERE run_id=? AND idx=? "
                "AND status NOT IN ('failed', 'cancelled')",
                (run_id, idx),
            )
            return True

    def fail_step(self, run_id: str, idx: int, error: str) -> None:
        with self._lock, self._db:
            self._db.execute(
                "UPDATE steps SET status='failed', error=COALESCE(error, ?), finished=? "
                "WHERE run_id=? AND idx=? AND status!='cancelled'",
                (error, time.time(), run_id, idx),
            )

    def finish(self, run_id: str, status: str, error: str | None = None) -> bool:
        """Finish a run once; False if it had already finished."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            cur = self._db.execute(
                f"UPDATE runs SET status=?, error=?, finished=? WHERE id=? AND {_NOT_FINISHED}",
                (status, error, time.time(), run_id),
            )
            if cur.rowcount == 1 and status == "cancelled":  # its unfinished steps will not finish either
                self._db.execute(
                    "UPDATE steps SET status='cancelled' WHERE run_id=? AND status IN ('pending', 'running')", (run_id,)
                )
            return cur.rowcount == 1

    def running(self) -> list[tuple[str, dict[str, Any] | None]]:
        """(id, owner) of every run not finished yet."""
        with self._lock:
            rows = self._db.execute(f"SELECT id, owner FROM runs WHERE {_NOT_FINISHED}").fetchall()
        return [(r[0], json.loads(r[1]) if r[1] else None) for r in rows]

    def set_owner(self, run_id: str, owner: dict[str, Any]) -> None:
        with self._lock, self._db:
            self._db.execute("UPDATE runs SET owner=? WHERE id=?", (json.dumps(owner), run_id))

    def reap(self) -> list[str]:
        """Mark ``abandoned`` the running runs whose owner is gone for good; returns their ids."""
        out = []
        for run_id, owner in self.running():
            reason = abandoned_reason(owner)
            if reason is not None and self.finish(run_id, "abandoned", reason):
                out.append(run_id)
        return out

    def get(self, run_id: str) -> RunRecord:
        with self._lock:
            row = self._db.execute(
                "SELECT id, workflow, path, mode, status, created, finished, error, owner FROM runs WHERE id=?",
                (run_id,),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no run with id '{run_id}'")
            run = RunRecord(*row[:8], owner=json.loads(row[8]) if row[8] else None)
            for s in self._db.execute(
                """SELECT idx, name, service, status, started, finished, busy, batches_in, batches_out,
                   rows_in, rows_out, error, result, workers FROM steps WHERE run_id=? ORDER BY idx""",
                (run_id,),
            ):
                run.steps.append(
                    StepRecord(*s[:12], json.loads(s[12]) if s[12] else None, json.loads(s[13]))  # type: ignore[misc]
                )
            return run

    def list(self, limit: int = 20) -> list[RunRecord]:
        limit = max(0, min(limit, 2**63 - 1))  # SQLite's integers are 64-bit: more than that is "all"
        with self._lock:
            ids = [r[0] for r in self._db.execute("SELECT id FROM runs ORDER BY created DESC LIMIT ?", (limit,))]
        return [self.get(i) for i in ids]

    def page(
        self, *, status: str | None = None, workflow: str | None = None, limit: int = 20,
        after: tuple[float, str] | None = None,
    ) -> list[RunRecord]:  # fmt: skip
        """Runs newest first, filtered by status and workflow, after the run ``after`` = (created, id) of a
        previous page's last run: a stable cursor, whatever runs start meanwhile."""
        where, args = [], []
        if status is not None:
            where.append("status=?")
            args.append(status)
        if workflow is not None:
            where.append("workflow=?")
            args.append(workflow)
        if after is not None:
            where.append("(created < ? OR (created = ? AND id < ?))")
            args += [after[0], after[0], after[1]]
        sql = "SELECT id FROM runs" + (f" WHERE {' AND '.join(where)}" if where else "")
        sql += " ORDER BY created DESC, id DESC LIMIT ?"
        with self._lock:
            ids = [r[0] for r in self._db.execute(sql, (*args, max(0, min(limit, 2**63 - 1))))]
        return [self.get(i) for i in ids]

    def context(self, run_id: str) -> dict[str, Any]:
        """What the run was started with: its mode and pinned model."""
        with self._lock:
            row = self._db.execute("SELECT context FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no run with id '{run_id}'")
        return json.loads(row[0] or "{}")

    def exists(self, run_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM runs WHERE id=?", (run_id,)).fetchone() is not None

    def reopen(self, run_id: str, epoch: float) -> bool:
        """A failed run whose dead-lettered messages are replayed runs again.

        ``epoch`` names the replay (its time): a run is reopened once per replay, by
        whichever comes first of the replay's reopen message and the events of the
        replayed messages; False if it already was, or is not failed (a run that
        succeeded although a stray message was dead-lettered stays succeeded).
        """
        with self._lock, self._db:
            self._db.execute("BEGIN")
            cur = self._db.execute(
                """UPDATE runs SET status='running', error=NULL, finished=NULL, reopened=?
                   WHERE id=? AND reopened < ? AND status='failed'""",
                (epoch, run_id, epoch),
            )
            if cur.rowcount == 0:
                return False
            self._db.execute(
                "UPDATE steps SET status='running', error=NULL WHERE run_id=? AND status='failed'", (run_id,)
            )
            return True

    def finished_at(self, run_id: str) -> float | str | None:
        """When a run finished; None while it runs; "unknown" if this store never saw it."""
        with self._lock:
            row = self._db.execute("SELECT status, finished FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            return "unknown"
        return row[1] if row[0] in FINISHED else None

    def find(self, prefix: str | None = None) -> RunRecord:
        """A run by id or unique id prefix; the newest run when no prefix is given."""
        with self._lock:
            if prefix is None:
                ids = [r[0] for r in self._db.execute("SELECT id FROM runs ORDER BY created DESC LIMIT 1")]
                if not ids:
                    raise NotFoundError("no runs yet: start one with `mlrm run WORKFLOW.yaml`")
                prefix = ids[0]
            # A plain prefix comparison: LIKE would read '_' and '%' in an id as wildcards (and ignore case).
            ids = [r[0] for r in self._db.execute("SELECT id FROM runs WHERE id=?", (prefix,))] or [
                r[0] for r in self._db.execute("SELECT id FROM runs WHERE substr(id, 1, ?)=?", (len(prefix), prefix))
            ]
        if not ids:
            raise NotFoundError(f"no run with id '{prefix}'")
        if len(ids) > 1:
            shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
            raise NotFoundError(f"run id '{prefix}' is ambiguous: it starts {len(ids)} runs ({shown})")
        return self.get(ids[0])
