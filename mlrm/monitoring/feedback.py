"""Feedback: ground truth for logged predictions, keyed by request id (and row) or by row id.

Feedback arrives over REST, gRPC, the bus or a collector's ``feedback`` sink; every path ends
in :func:`write_feedback`, which validates the items and writes them as one Parquet part
(``monitoring/<model>/feedback/...``) before it returns: acknowledged feedback is on disk.

An item names the rows it labels in one of three ways::

    {"request_id": "r-17", "label": "setosa"}              # row 0 of request r-17
    {"request_id": "r-17", "row": 3, "label": "virginica"}
    {"request_id": "r-17", "labels": ["setosa", "versicolor"]}   # rows 0, 1, ...
    {"row_id": "order-991", "label": 12.5}                 # a row id (see LogSettings.row_id)

:func:`labelled` joins feedback to the logged predictions (the newest label of a row wins).
Feedback whose row was never logged (unknown ids, sampled-out requests, or labels that arrive
before the log is written) is not an error: it is counted as ``unmatched`` and joins later if
its row appears.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlrm.errors import DataError, MlrmError
from mlrm.monitoring.log import FEATURE, OUTPUT, read_log, read_predictions, write_part
from mlrm.monitoring.paths import feedback_prefix
from mlrm.volume import Volume

log = logging.getLogger(__name__)

Label = str | int | float | bool
MAX_ITEMS = 100_000
FEEDBACK_QUEUE = "mlrm.feedback"
"""The bus queue predict replicas consume feedback from: ``{"model": ..., "feedback": [items]}`` bodies."""


class FeedbackItem(BaseModel):
    """The true label of one logged row, or of each row of a request (``labels``)."""

    model_config = ConfigDict(extra="forbid")
    request_id: str | None = Field(None, min_length=1, max_length=512)
    row: int | None = Field(None, ge=0)
    row_id: str | None = Field(None, min_length=1, max_length=512)
    label: Label | None = None
    labels: list[Label] | None = None

    @model_validator(mode="after")
    def _addressed(self) -> FeedbackItem:
        if (self.request_id is None) == (self.row_id is None):
            raise ValueError("name the row by 'request_id' (and 'row') or by 'row_id', one of them")
        if (self.label is None) == (self.labels is None):
            raise ValueError("give 'label' (one row) or 'labels' (every row of the request), one of them")
        if self.labels is not None and (self.row_id is not None or self.row is not None):
            raise ValueError("'labels' labels every row of a request: give it with 'request_id' only")
        return self


def parse_feedback(data: Any) -> list[FeedbackItem]:
    """Items from a decoded body: ``{"feedback": [...]}``, a list of items, or one item; DataError if malformed."""
    if isinstance(data, dict) and "feedback" in data:
        data = data["feedback"]
    items = data if isinstance(data, list) else [data]
    if not items:
        raise DataError('no feedback: give a list of items like {"request_id": ..., "label": ...}')
    if len(items) > MAX_ITEMS:
        raise DataError(f"{len(items)} feedback items in one call; the limit is {MAX_ITEMS}")
    out = []
    for i, item in enumerate(items):
        try:
            out.append(FeedbackItem.model_validate(item))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(map(str, first["loc"]))
            msg = first["msg"].removeprefix("Value error, ")
            raise DataError(f"feedback item {i}{f' {where}' if where else ''}: {msg}") from None
    return out


def _rows(items: list[FeedbackItem], at: float) -> pd.DataFrame:
    request_ids, rows, row_ids, labels = [], [], [], []
    for item in items:
        if item.labels is not None:
            for i, label in enumerate(item.labels):
                request_ids.append(item.request_id)
                rows.append(i)
                row_ids.append(None)
                labels.append(label)
        else:
            request_ids.append(item.request_id)
            rows.append(item.row if item.row is not None else (0 if item.request_id is not None else None))
            row_ids.append(item.row_id)
            labels.append(item.label)
    values = pd.Series(labels, dtype=object)
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in labels)
    return pd.DataFrame({
        "request_id": pd.Series(request_ids, dtype=object), "row": pd.array(rows, dtype="Int64"),
        "row_id": pd.Series(row_ids, dtype=object),
        "label": values.astype(float) if numeric else values.map(str), "at": at,
    })  # fmt: skip


def write_feedback(volume: Volume, model: str, items: list[FeedbackItem], *, at: float | None = None) -> int:
    """Store feedback for ``model`` (on disk when this returns); returns how many rows it labels."""
    if not items:
        return 0
    frame = _rows(items, time.time() if at is None else at)
    write_part(volume, feedback_prefix(model), frame)
    return len(frame)


def feedback_from_frame(
    volume: Volume, model: str, frame: pd.DataFrame, *, label: str, request_id: str | None = None,
    row_id: str | None = None, row: str | None = None,
) -> int:  # fmt: skip
    """Bulk labels from a table (a collector's batches): ``label`` names the label column, and ``row_id``
    or ``request_id`` (with ``row``, else row 0) the column that names the logged row."""
    if (request_id is None) == (row_id is None):
        raise DataError("name the rows by a row id column or by a request id column, one of them")
    missing = [c for c in (label, request_id, row_id, row) if c is not None and c not in frame.columns]
    if missing:
        raise DataError(
            f"column(s) {', '.join(missing)} not in the feedback data (columns: {', '.join(frame.columns)})"
        )
    records = []
    for data in frame.to_dict("records"):
        item: dict[str, Any] = {"label": _plain(data[label])}
        if row_id is not None:
            item["row_id"] = str(data[row_id])
        else:
            item["request_id"] = str(data[str(request_id)])
            if row is not None:
                item["row"] = int(data[row])
        records.append(item)
    return sum(write_feedback(volume, model, parse_feedback(records[i : i + MAX_ITEMS]))
               for i in range(0, len(records), MAX_ITEMS))  # fmt: skip


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def read_feedback(volume: Volume, model: str) -> pd.DataFrame:
    frame = read_log(volume, feedback_prefix(model))
    return frame if len(frame) else pd.DataFrame(columns=["request_id", "row", "row_id", "label", "at"])


def join(predictions: pd.DataFrame, feedback: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Logged rows with their newest label (unlabelled rows left out), and counts of the feedback:
    ``received`` rows, ``matched`` to a logged row, ``unmatched`` (unknown, late or sampled out)."""
    counts = {"received": len(feedback), "matched": 0, "unmatched": len(feedback)}
    if not len(feedback) or not len(predictions):
        return predictions.iloc[0:0].assign(label=pd.Series(dtype=object)), counts
    feedback = feedback.sort_values("at", kind="stable")
    by_row_id = feedback[feedback["row_id"].notna()].drop_duplicates("row_id", keep="last")
    by_request = feedback[feedback["row_id"].isna()].copy()
    by_request["row"] = by_request["row"].astype("int64")
    by_request = by_request.drop_duplicates(["request_id", "row"], keep="last")
    preds = predictions.reset_index(drop=True).assign(_pos=lambda f: np.arange(len(f)))
    a = preds.merge(by_row_id[["row_id", "label", "at"]].rename(columns={"at": "_fat"}), on="row_id")
    b = preds.merge(by_request[["request_id", "row", "label", "at"]].rename(columns={"at": "_fat"}),
                    on=["request_id", "row"])  # fmt: skip
    joined = pd.concat([a, b], ignore_index=True).sort_values(["_pos", "_fat"], kind="stable")
    joined = joined.drop_duplicates("_pos", keep="last")  # a row labelled both ways: the newest label
    named = feedback[feedback["row_id"].notna()]  # every feedback row counts, corrections too
    matched = int(named["row_id"].isin(preds["row_id"]).sum())
    keys = pd.MultiIndex.from_frame(preds[["request_id", "row"]].astype({"row": "int64"}))
    requested = feedback[feedback["row_id"].isna()][["request_id", "row"]].astype({"row": "int64"})
    matched += int(pd.MultiIndex.from_frame(requested).isin(keys).sum())
    counts.update(matched=matched, unmatched=len(feedback) - matched)
    out = joined.sort_values("_pos", kind="stable").drop(columns=["_pos", "_fat"]).reset_index(drop=True)
    return out, counts


def labelled(
    volume: Volume, model: str, *, version: int | None = None, since: float | None = None,
    until: float | None = None, limit: int | None = None,
) -> tuple[pd.DataFrame, dict[str, int]]:  # fmt: skip
    """Logged rows (of ``version``, logged in ``[since, until]``) joined to their labels, the newest
    ``limit`` of them, as stored (``feature.*``, ``output.*``, ``label``), and the feedback counts."""
    where = {"version": version} if version is not None else None
    predictions = read_predictions(volume, model, since=since, until=until, where=where)
    joined, counts = join(predictions, read_feedback(volume, model))
    if limit is not None:
        joined = joined.iloc[-limit:].reset_index(drop=True)
    return joined, counts


def labelled_window(
    volume: Volume, model: str, *, version: int | None = None, since: float | None = None,
    until: float | None = None, limit: int | None = None, label: str = "label",
) -> pd.DataFrame:  # fmt: skip
    """Recent labelled feedback joined to its logged rows, ready to train or evaluate on.

    Columns: the pipeline-output features under their own names (what the model saw), the
    outputs as ``output.<name>``, the label as ``label`` (or the name given), and ``request_id``,
    ``row_id``, ``version``, ``at``. Oldest first; ``limit`` keeps the newest rows. The feedback
    counts are in ``frame.attrs["feedback"]``.
    """
    joined, counts = labelled(volume, model, version=version, since=since, until=until, limit=limit)
    features = {c: c[len(FEATURE) :] for c in joined.columns if c.startswith(FEATURE)}
    outputs = [c for c in joined.columns if c.startswith(OUTPUT)]
    frame = joined[list(features)].rename(columns=features).copy()
    frame[label] = joined["label"].to_numpy()
    for c in outputs:
        frame[c] = joined[c].to_numpy()
    for c in ("request_id", "row_id", "version", "at"):
        frame[c] = joined[c].to_numpy() if c in joined else pd.Series(dtype=object)
    frame.attrs["feedback"] = counts
    return frame


# -- over the bus -----------------------------------------------------------------------------
def send_feedback(
    bus: Any, model: str, items: list[FeedbackItem] | list[dict[str, Any]], *, queue: str = FEEDBACK_QUEUE
) -> str:
    """Publish feedback for a predict replica to store (on :data:`FEEDBACK_QUEUE`); returns the message id."""
    body = [i.model_dump(exclude_none=True) if isinstance(i, FeedbackItem) else i for i in items]
    from mlrm.bus import Envelope

    envelope = Envelope(id=f"feedback/{uuid.uuid4().hex}", run_id="feedback", body={"model": model, "feedback": body})
    bus.publish(queue, envelope)
    return envelope.id


def consume_feedback(volume: Volume, delivery: Any) -> None:
    """Store one feedback message, then acknowledge it. A malformed message is dropped with a warning
    (retrying cannot fix it); a volume that fails gives it back to be retried."""
    body = delivery.envelope.body or {}
    try:
        model = body.get("model")
        if not isinstance(model, str):
            raise DataError("a feedback message needs 'model': the model's registry name")
        write_feedback(volume, model, parse_feedback(body.get("feedback")))
    except DataError as exc:
        log.warning("dropped feedback message %s: %s", delivery.envelope.id, exc.message)
        delivery.reject(requeue=False)
        return
    except MlrmError as exc:
        if exc.http_status < 500:
            log.warning("dropped feedback message %s: %s", delivery.envelope.id, exc.message)
            delivery.reject(requeue=False)
            return
        log.warning("feedback message %s not stored, retried: %s", delivery.envelope.id, exc.message)
        delivery.reject(requeue=True)
        return
    delivery.ack()
