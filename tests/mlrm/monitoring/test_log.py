"""The prediction log and feedback on both volumes (a folder, a real S3 server), and feedback over RabbitMQ."""

from __future__ import annotations

import contextlib
import time
import uuid

import pandas as pd
import pytest

from mlrm.bus import dead_letter_queue, open_bus
from mlrm.monitoring import (
    FEEDBACK_QUEUE,
    LogEntry,
    PredictionLog,
    consume_feedback,
    labelled_window,
    read_predictions,
    send_feedback,
)
from mlrm.monitoring.feedback import read_feedback
from tests.support import BROKER_URL, broker_up


def entries(model: str, n: int) -> list[LogEntry]:
    features = pd.DataFrame({"x": [1.0, 2.0], "colour": ["red", "blue"]})
    outputs = pd.DataFrame({"prediction": [0.5, 1.5]})
    return [LogEntry(model, 3, f"req-{i}", "grpc", 1_700_000_000.0 + i, features, outputs) for i in range(n)]


def test_log_and_feedback_on_any_volume(any_volume):
    plog = PredictionLog(any_volume, interval=0.05).start()
    for entry in entries("m", 20):
        assert plog.record(entry)
    plog.record(LogEntry("other", 1, "o-1", "rest", 1_700_000_100.0, pd.DataFrame({"y": [1]}),
                         pd.DataFrame({"prediction": [2]}), row_ids=["order-7"]))  # fmt: skip
    plog.close()
    assert plog.stats()["written"] == 41 and plog.stats()["dropped"] == 0
    rows = read_predictions(any_volume, "m")
    assert len(rows) == 40 and rows["request_id"].iloc[-1] == "req-19" and rows["row_id"].iloc[-1] == "req-19/1"
    assert rows["feature.colour"].tolist()[:2] == ["red", "blue"] and (rows["version"] == 3).all()
    assert read_predictions(any_volume, "m", newest=3)["row_id"].tolist() == ["req-18/1", "req-19/0", "req-19/1"]
    since = read_predictions(any_volume, "m", since=1_700_000_018.0)
    assert sorted(set(since["request_id"])) == ["req-18", "req-19"]
    assert read_predictions(any_volume, "other")["row_id"].tolist() == ["order-7"]

    from mlrm.monitoring import FeedbackItem, write_feedback

    write_feedback(any_volume, "m", [FeedbackItem(request_id="req-5", labels=[0.0, 2.0])])
    window = labelled_window(any_volume, "m", label="target")
    assert window[["x", "colour", "target", "output.prediction"]].values.tolist() == [
        [1.0, "red", 0.0, 0.5], [2.0, "blue", 2.0, 1.5]]  # fmt: skip


@pytest.mark.amqp
@pytest.mark.skipif(not broker_up(), reason="needs RabbitMQ on 127.0.0.1:5672")
def test_feedback_over_rabbitmq(volume):
    bus = open_bus(BROKER_URL)
    queue = f"{FEEDBACK_QUEUE}.test-{uuid.uuid4().hex[:8]}"  # predict replicas consume FEEDBACK_QUEUE itself
    bus.subscribe(queue, lambda delivery: consume_feedback(volume, delivery))
    bus.start()
    try:
        send_feedback(bus, "m", [{"request_id": "r-1", "label": "x"}, {"nonsense": 1}], queue=queue)  # dropped
        send_feedback(bus, "m", [{"row_id": "order-1", "label": 4.5}], queue=queue)
        deadline = time.time() + 20
        while time.time() < deadline and len(read_feedback(volume, "m")) < 1:
            time.sleep(0.1)
    finally:
        for name in (queue, dead_letter_queue(queue)):
            with contextlib.suppress(Exception):  # a transport that made no dead-letter queue
                bus.delete_queue(name)
        bus.close()
    stored = read_feedback(volume, "m")
    assert stored["row_id"].tolist() == ["order-1"] and stored["label"].tolist() == [4.5]


def test_recording_wakes_no_writer_until_its_tick_or_enough_rows(volume):
    """A wake-up per request would cost a small request more than logging it: entries wait for the tick."""
    plog = PredictionLog(volume, interval=60, max_rows=10).start()
    try:
        for entry in entries("m", 4):  # 8 rows: fewer than max_rows, and the tick is a minute away
            assert plog.record(entry)
        time.sleep(0.3)
        assert plog.stats()["written"] == 0 and plog.stats()["queued"] == 4
        plog.record(entries("m", 1)[0])  # 10 rows: the writer is woken at once
        deadline = time.time() + 10
        while plog.stats()["written"] < 10 and time.time() < deadline:
            time.sleep(0.05)
        assert plog.stats()["written"] == 10 and plog.stats()["queued"] == 0
    finally:
        plog.close()


def test_a_queued_entry_holds_arrays_not_dataframes(volume):
    entry = entries("m", 1)[0]
    assert entry.features._frame is None and entry.outputs._frame is None
    assert entry.features.arrays["colour"].tolist() == ["red", "blue"]


def test_logged_columns_keep_their_types_and_odd_objects_become_text(volume):
    features = pd.DataFrame({
        "n": pd.Series([1, None], dtype="Int64"), "s": pd.Series(["a", None], dtype="string"),
        "c": pd.Series(["x", "y"], dtype="category"), "o": pd.Series([{"k": 1}, 2.5], dtype=object),
    })  # fmt: skip
    outputs = pd.DataFrame({"prediction": ["p", "q"]})
    plog = PredictionLog(volume)
    for i in range(3):  # several requests: the batched writer, one concatenation per column
        plog.record(LogEntry("m", 1, f"r{i}", "rest", 1_700_000_000.0 + i, features, outputs))
    plog.close()
    rows = read_predictions(volume, "m")
    assert len(rows) == 6 and plog.stats()["failed"] == 0
    assert pd.isna(rows["feature.n"].iloc[1])
    assert rows["feature.n"].iloc[0] == 1 and rows["feature.s"].iloc[0] == "a" and pd.isna(rows["feature.s"].iloc[1])
    assert rows["feature.c"].astype(str).tolist()[:2] == ["x", "y"]
    assert rows["feature.o"].tolist()[:2] == ["{'k': 1}", "2.5"]
    assert rows["output.prediction"].tolist() == ["p", "q"] * 3 and rows["row"].tolist() == [0, 1] * 3
