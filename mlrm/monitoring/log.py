"""The prediction log: logged predictions as partitioned Parquet in the volume, written in the background.

:meth:`PredictionLog.record` never blocks: it puts the entry on a bounded queue and returns;
when the queue is full the entry is dropped and counted (``stats()["dropped"]``), so a slow
volume slows nothing but the log. A writer thread turns entries into rows and writes one part
per model and day when ``max_rows`` rows are pending or ``interval`` seconds have passed.
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
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlrm.monitoring.paths import part_key, part_time, predictions_prefix
from mlrm.volume import Volume

log = logging.getLogger(__name__)

FEATURE = "feature."
OUTPUT = "output."
META = ["request_id", "row_id", "row", "model", "version", "source", "at"]


@dataclass
class LogEntry:
    """One logged request: its rows' features (what the model saw) and outputs, row for row."""

    model: str
    version: int
    request_id: str
    source: str
    at: float
    features: pd.DataFrame
    outputs: pd.DataFrame
    row_ids: list[str] | None = None


def rows_of(entry: LogEntry) -> pd.DataFrame:
    """The log rows of an entry (done by the writer thread, not the request)."""
    n = len(entry.outputs)
    features = entry.features.reset_index(drop=True).iloc[:n]
    outputs = entry.outputs.reset_index(drop=True)
    if len(features) != n:  # a model that answers fewer rows than it was given: keep what pairs up
        outputs = outputs.iloc[: len(features)]
        n = len(features)
    ids = entry.row_ids[:n] if entry.row_ids is not None and len(entry.row_ids) >= n else None
    frame = pd.DataFrame({
        "request_id": entry.request_id,
        "row_id": ids if ids is not None else [f"{entry.request_id}/{i}" for i in range(n)],
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


def write_part(volume: Volume, prefix: str, frame: pd.DataFrame) -> str:
    """Write ``frame`` (with an ``at`` column) as one new Parquet part under ``prefix``; returns its key."""
    key = part_key(prefix, float(frame["at"].max()))
    sink = io.BytesIO()
    pq.write_table(_table(frame), sink)
    volume.put_bytes(key, sink.getvalue())
    return key


class _Flush:
    def __init__(self) -> None:
        self.done = threading.Event()


class PredictionLog:
    """The background writer of the prediction log (see the module's docstring)."""

    def __init__(
        self, volume: Volume, *, max_queue: int = 10_000, max_rows: int = 50_000, interval: float = 1.0
    ) -> None:
        self.volume = volume
        self.max_rows, self.interval = max_rows, interval
        self._queue: queue.Queue[LogEntry | _Flush | None] = queue.Queue(max_queue)
        self._counts = {"logged": 0, "dropped": 0, "written": 0, "failed": 0, "parts": 0}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- the request side: never blocks -----------------------------------------------
    def record(self, entry: LogEntry) -> bool:
        """Queue an entry; False (and counted as dropped) when the queue is full or the log closed."""
        if self._closed:
            self._count("dropped")
            return False
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self._count("dropped")
            return False
        self._count("logged")
        return True

    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self._counts[what] += n

    def stats(self) -> dict[str, int]:
        """Entries ``logged`` (queued) and ``dropped``; rows ``written`` and ``failed``; ``parts`` written."""
        with self._lock:
            return {**self._counts, "queued": self._queue.qsize()}

    # -- the writer -----------------------------------------------------------------------
    def start(self) -> PredictionLog:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mlrm-prediction-log", daemon=True)
            self._thread.start()
        return self

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Block until every entry queued before this call is on disk (or failed); False on timeout."""
        if self._thread is None:
            self._drain_inline()
            return True
        marker = _Flush()
        self._queue.put(marker, timeout=timeout)
        return marker.done.wait(timeout)

    def close(self, timeout: float | None = 30.0) -> None:
        """Write everything queued, then stop the writer. Entries recorded afterwards are dropped."""
        if self._closed:
            return
        self.flush(timeout)
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def _drain_inline(self) -> None:
        pending: list[LogEntry] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, LogEntry):
                pending.append(item)
            elif isinstance(item, _Flush):
                item.done.set()
        self._write(pending)

    def _run(self) -> None:
        pending: list[LogEntry] = []
        rows, since = 0, time.monotonic()
        while True:
            wait = max(0.0, self.interval - (time.monotonic() - since)) if pending else self.interval
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = _TIMEOUT
            if isinstance(item, LogEntry):
                if not pending:
                    since = time.monotonic()
                pending.append(item)
                rows += len(item.outputs)
                if rows < self.max_rows:
                    continue
            elif item is _TIMEOUT and pending and time.monotonic() - since < self.interval:
                continue
            self._write(pending)
            pending, rows = [], 0
            if isinstance(item, _Flush):
                item.done.set()
            elif item is None:
                return

    def _write(self, entries: list[LogEntry]) -> None:
        if not entries:
            return
        for model, frames in _by_model(entries):
            frame = pd.concat(frames, ignore_index=True)
            try:
                write_part(self.volume, predictions_prefix(model), frame)
            except Exception:  # a volume outage must not kill the writer: count the rows as lost
                log.exception("could not write %d logged prediction(s) of %s", len(frame), model)
                self._count("failed", len(frame))
                continue
            self._count("written", len(frame))
            self._count("parts")


_TIMEOUT = _Flush()  # a sentinel: the queue was empty for the whole wait


def _by_model(entries: Iterable[LogEntry]) -> Iterator[tuple[str, list[pd.DataFrame]]]:
    groups: dict[str, list[pd.DataFrame]] = {}
    for entry in entries:
        try:
            groups.setdefault(entry.model, []).append(rows_of(entry))
        except Exception:
            log.exception("could not log request %s of %s", entry.request_id, entry.model)
    yield from groups.items()


# -- reading ---------------------------------------------------------------------------------
def read_part(volume: Volume, key: str) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(volume.get_bytes(key))).to_pandas()


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
