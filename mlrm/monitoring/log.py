"""The prediction log: logged predictions as partitioned Parquet in the volume, written in the background.

:meth:`PredictionLog.record` never blocks: it appends the entry to a bounded list and returns;
when ``max_queue`` entries are waiting the entry is dropped and counted (``stats()["dropped"]``),
so a slow volume slows nothing but the log. Recording wakes no thread (a wake-up per request
would cost a small request more than logging it): a writer thread takes every waiting entry
each ``interval`` seconds, or as soon as ``max_rows`` rows wait, turns them into rows column by
column and writes one part per model and day.
A part appears whole or not at all (the volume's writes are atomic), so a crash loses at most
the entries not yet written and never leaves a broken file; what :meth:`flush` (or
:meth:`close`) acknowledged is on disk.

Each logged row has ``request_id``, ``row_id``, ``row`` (its position in the request),
``model``, ``version``, ``source``, ``at`` (epoch seconds), the pipeline's output features
as ``feature.<name>`` and the outputs as ``output.<name>``.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlrm.columns import Columns
from mlrm.monitoring.paths import part_key, part_time, predictions_prefix
from mlrm.volume import Volume

log = logging.getLogger(__name__)

FEATURE = "feature."
OUTPUT = "output."
META = ["request_id", "row_id", "row", "model", "version", "source", "at"]


@dataclass
class LogEntry:
    """One logged request: its rows' features (what the model saw) and outputs, row for row.

    ``features`` and ``outputs`` may be DataFrames or :class:`~mlrm.columns.Columns` (the data plane
    gives Columns, so logging a request builds no DataFrame on the request thread or the writer's);
    the entry keeps their arrays only."""

    model: str
    version: int
    request_id: str
    source: str
    at: float
    features: Columns | pd.DataFrame
    outputs: Columns | pd.DataFrame
    row_ids: list[str] | None = None

    def __post_init__(self) -> None:
        # only the arrays are kept: a queued DataFrame is dozens of objects the garbage collector scans
        # again and again until the writer takes it, which costs a small request more than logging it
        self.features, self.outputs = Columns.bare(self.features), Columns.bare(self.outputs)


def rows_of(entry: LogEntry) -> pd.DataFrame:
    """The log rows of one entry, through pandas (the writer's path for an entry that cannot be batched)."""
    n = len(entry.outputs)
    features = Columns.of(entry.features).frame.reset_index(drop=True).iloc[:n]
    outputs = Columns.of(entry.outputs).frame.reset_index(drop=True)
    if len(features) != n:  # a model that answers fewer rows than it was given: keep what pairs up
        outputs = outputs.iloc[: len(features)]
        n = len(features)
    ids = entry.row_ids[:n] if entry.row_ids is not None and len(entry.row_ids) >= n else None
    frame = pd.DataFrame({
        "request_id": entry.request_id,
        "row_id": pd.Series(ids if ids is not None else [None] * n, dtype=object),
        "row": np.arange(n, dtype="int64"),
        "model": entry.model, "version": entry.version, "source": entry.source, "at": entry.at,
    })  # fmt: skip
    parts = [frame, features.add_prefix(FEATURE), outputs.add_prefix(OUTPUT)]
    return pd.concat(parts, axis=1)


def _table(frame: pd.DataFrame) -> pa.Table:
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a column of mixed Python objects: store it as text
        mixed = {c: frame[c].astype(str) for c in frame.columns if frame[c].dtype == object}
        return pa.Table.from_pandas(frame.assign(**mixed), preserve_index=False)


def write_part(volume: Volume, prefix: str, frame: pd.DataFrame | pa.Table) -> str:
    """Write ``frame`` (with an ``at`` column) as one new Parquet part under ``prefix``; returns its key."""
    table = frame if isinstance(frame, pa.Table) else _table(frame)
    key = part_key(prefix, float(pc.max(table.column("at")).as_py()))
    sink = io.BytesIO()
    # dictionaries for text only (trying one for every column of numbers and giving it up costs more than the
    # rest of the write) and statistics for the timestamps only
    text = [f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_dictionary(f.type)]
    pq.write_table(table, sink, use_dictionary=text, write_statistics=["at"])
    volume.put_bytes(key, sink.getvalue())
    return key


class PredictionLog:
    """The background writer of the prediction log (see the module's docstring)."""

    def __init__(
        self, volume: Volume, *, max_queue: int = 10_000, max_rows: int = 50_000, interval: float = 1.0
    ) -> None:
        self.volume = volume
        self.max_queue, self.max_rows, self.interval = max_queue, max_rows, interval
        self._pending: list[LogEntry] = []  # appended by requests, taken whole by the writer
        self._rows = 0
        self._flushes: list[threading.Event] = []  # flush() calls waiting for the next write
        self._wake = threading.Event()  # set only when the writer must not wait for its tick
        self._counts = {"logged": 0, "dropped": 0, "written": 0, "failed": 0, "parts": 0}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- the request side: never blocks -----------------------------------------------
    def record(self, entry: LogEntry) -> bool:
        """Queue an entry; False (and counted as dropped) when the queue is full or the log closed."""
        with self._lock:
            if self._closed or len(self._pending) >= self.max_queue:
                self._counts["dropped"] += 1
                return False
            self._pending.append(entry)
            self._rows += len(entry.outputs)
            self._counts["logged"] += 1
            full = self._rows >= self.max_rows
        if full:
            self._wake.set()
        return True

    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self._counts[what] += n

    def stats(self) -> dict[str, int]:
        """Entries ``logged`` (queued) and ``dropped``; rows ``written`` and ``failed``; ``parts`` written."""
        with self._lock:
            return {**self._counts, "queued": len(self._pending)}

    # -- the writer -----------------------------------------------------------------------
    def start(self) -> PredictionLog:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mlrm-prediction-log", daemon=True)
            self._thread.start()
        return self

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Block until every entry queued before this call is on disk (or failed); False on timeout."""
        if self._thread is None:
            self._write_pending()
            return True
        done = threading.Event()
        with self._lock:
            self._flushes.append(done)
        self._wake.set()
        return done.wait(timeout)

    def close(self, timeout: float | None = 30.0) -> None:
        """Write everything queued, then stop the writer. Entries recorded afterwards are dropped."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        thread, self._thread = self._thread, None
        if thread is None:
            self._write_pending()
            return
        self._wake.set()
        thread.join(timeout)

    def _take(self) -> tuple[list[LogEntry], list[threading.Event]]:
        with self._lock:
            taken, self._pending, self._rows = self._pending, [], 0
            flushes, self._flushes = self._flushes, []
        return taken, flushes

    def _write_pending(self) -> None:
        entries, flushes = self._take()
        try:
            self._write(entries)
        except Exception:  # a bug in building the rows must not stop the writer (or hang a flush)
            log.exception("could not write %d logged request(s)", len(entries))
            self._count("failed", sum(len(e.outputs) for e in entries))
        for done in flushes:
            done.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            stopping = self._closed
            self._write_pending()
            if stopping:
                return

    def _write(self, entries: list[LogEntry]) -> None:
        if not entries:
            return
        for model, frames in _by_model(entries):
            for frame in frames:
                rows = len(frame)
                try:
                    write_part(self.volume, predictions_prefix(model), frame)
                except Exception:  # a volume outage must not kill the writer: count the rows as lost
                    log.exception("could not write %d logged prediction(s) of %s", rows, model)
                    self._count("failed", rows)
                    continue
                self._count("written", rows)
                self._count("parts")


def _by_model(entries: Iterable[LogEntry]) -> Iterator[tuple[str, list[pd.DataFrame | pa.Table]]]:
    groups: dict[str, list[LogEntry]] = {}
    for entry in entries:
        groups.setdefault(entry.model, []).append(entry)
    for model, group in groups.items():
        try:
            yield model, [_batch_table(group)]
            continue
        except Exception:  # one odd request (columns of mixed types, ...): build its rows on their own
            log.debug("logging %d request(s) of %s one by one", len(group), model, exc_info=True)
        frames: list[pd.DataFrame | pa.Table] = []
        for entry in group:
            try:
                frames.append(rows_of(entry))
            except Exception:
                log.exception("could not log request %s of %s", entry.request_id, entry.model)
        yield model, frames


def _aligned(entry: LogEntry) -> bool:
    n = len(entry.outputs)
    return len(entry.features) == n and (entry.row_ids is None or len(entry.row_ids) == n)


def _batch_table(entries: list[LogEntry]) -> pa.Table | pd.DataFrame:
    """The rows of many requests at once, column by column from the entries' arrays: one concatenation
    per column, no DataFrame (request ids, model and source dictionary-encoded). The writer's CPU is
    what the server shares."""
    features = [Columns.of(e.features) for e in entries]
    outputs = [Columns.of(e.outputs) for e in entries]
    same = len({(tuple(f.names), tuple(o.names)) for f, o in zip(features, outputs, strict=True)}) == 1
    if not same or not all(_aligned(e) for e in entries):
        return pd.concat([rows_of(e) for e in entries], ignore_index=True)
    sizes = np.array([len(o) for o in outputs])
    total = int(sizes.sum())
    owner = pa.array(np.repeat(np.arange(len(entries), dtype="int32"), sizes))

    def shared(values: list[str]) -> pa.Array:
        return pa.DictionaryArray.from_arrays(owner, pa.array(values, pa.string()))

    if any(e.row_ids is not None for e in entries):
        row_ids = pa.array([r for e in entries for r in (e.row_ids or [None] * len(e.outputs))], pa.string())
    else:
        row_ids = pa.nulls(total, pa.string())
    columns: dict[str, pa.Array] = {
        "request_id": shared([e.request_id for e in entries]),
        "row_id": row_ids,
        "row": pa.array(np.arange(total, dtype="int64") - np.repeat(np.cumsum(sizes) - sizes, sizes)),
        "model": shared([e.model for e in entries]),
        "version": pa.array(np.repeat(np.array([e.version for e in entries], dtype="int64"), sizes)),
        "source": shared([e.source for e in entries]),
        "at": pa.array(np.repeat(np.array([e.at for e in entries], dtype=float), sizes)),
    }
    for prefix, parts in ((FEATURE, features), (OUTPUT, outputs)):
        for name in parts[0].names:
            columns[f"{prefix}{name}"] = _arrow([p.arrays[name] for p in parts])
    return pa.table(columns)


def _arrow(chunks: list[Any]) -> pa.Array:
    """One Arrow array of a column's chunks (numpy arrays, or pandas extension arrays)."""
    if all(isinstance(c, np.ndarray) for c in chunks):
        values = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        return pa.array(values, from_pandas=True) if values.dtype.kind != "O" else _objects(values)
    return pa.Array.from_pandas(pd.concat([pd.Series(c, copy=False) for c in chunks], ignore_index=True))


def _objects(values: np.ndarray) -> pa.Array:
    try:
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed Python objects: store them as text
        return pa.array([None if v is None else str(v) for v in values], pa.string())


# -- reading ---------------------------------------------------------------------------------
def read_part(volume: Volume, key: str) -> pd.DataFrame:
    frame = pq.read_table(io.BytesIO(volume.get_bytes(key))).to_pandas()
    for column in frame.columns[frame.dtypes == "category"]:  # dictionary-encoded text: plain text again
        frame[column] = frame[column].astype(object)
    return frame


def read_predictions(volume: Volume, model: str, **window: Any) -> pd.DataFrame:
    """Logged rows of ``model`` (see :func:`read_log` for ``since``, ``until``, ``newest``, ``where``); rows
    logged without a row id get ``<request id>/<row>``."""
    frame = read_log(volume, predictions_prefix(model), **window)
    if len(frame) and frame["row_id"].isna().any():
        missing = frame["row_id"].isna()
        derived = frame.loc[missing, "request_id"].astype(str) + "/" + frame.loc[missing, "row"].astype(str)
        frame["row_id"] = frame["row_id"].astype(object)
        frame.loc[missing, "row_id"] = derived
    return frame


def part_keys(volume: Volume, prefix: str) -> list[tuple[float, str]]:
    """Every part under ``prefix`` with its newest timestamp, oldest first."""
    found = [(t, o.key) for o in volume.list(prefix) if (t := part_time(o.key)) is not None]
    return sorted(found)


def read_log(
    volume: Volume,
    prefix: str,
    *,
    since: float | None = None,
    until: float | None = None,
    newest: int | None = None,
    where: dict[str, object] | None = None,
) -> pd.DataFrame:
    """Rows of the parts under ``prefix`` with ``since <= at <= until``, matching ``where`` (column
    equals value), the ``newest`` of them when given (read newest part first, stopping when enough)."""
    frames: list[pd.DataFrame] = []
    have = 0
    for stamp, key in reversed(part_keys(volume, prefix)):
        if since is not None and stamp < since:
            break  # every older part's rows are older too
        frame = read_part(volume, key)
        mask = pd.Series(True, index=frame.index)
        if since is not None:
            mask &= frame["at"] >= since
        if until is not None:
            mask &= frame["at"] <= until
        for column, value in (where or {}).items():
            mask &= frame[column] == value if column in frame else False
        frame = frame[mask]
        if len(frame):
            frames.append(frame)
            have += len(frame)
        if newest is not None and have >= newest:
            break
    if not frames:
        return pd.DataFrame(columns=META)
    out = pd.concat(frames[::-1], ignore_index=True).sort_values("at", kind="stable", ignore_index=True)
    return out.iloc[-newest:].reset_index(drop=True) if newest is not None else out
