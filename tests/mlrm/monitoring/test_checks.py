"""Drift checks on a real model's prediction log: they fire on a shifted stream and not on an unshifted one."""

from __future__ import annotations

import time

import pytest

from mlrm.bus import open_bus
from mlrm.config import parse_document
from mlrm.errors import ConfigErrors
from mlrm.monitoring import EVENT, FeedbackItem, MonitorConfig, history, run_checks, write_feedback
from mlrm.yamlio import Document
from tests.mlrm.monitoring.conftest import IRIS, iris_rows

DISTRIBUTIONS = [
    {"type": "psi", "features": ["petal_length", "sepal_width"]},
    {"type": "ks", "features": ["petal_length", "sepal_width"]},
    {"type": "wasserstein", "features": ["petal_length", "sepal_width"]},
    {"type": "chi2", "features": ["petal_length", "sepal_width"]},
    {"type": "chi2", "on": "predictions", "features": ["prediction"]},
    {"type": "psi", "on": "predictions", "features": ["prediction"]},
]


def config(**fields) -> MonitorConfig:
    return MonitorConfig.model_validate({"model": "iris-classifier", "detectors": DISTRIBUTIONS,
                                         "window": {"count": 300}, "min_samples": 100, **fields})  # fmt: skip


def verdicts(checks) -> dict[tuple[str, str], bool]:
    return {(c.detector, c.target): c.drifted for c in checks}


def test_no_drift_on_the_unshifted_stream(iris, logged):
    logged(iris_rows(300, seed=1))
    checks = run_checks(iris.volume, config())
    assert len(checks) == 10
    assert not any(c.drifted for c in checks), [c for c in checks if c.drifted]
    assert all(c.samples == 300 and c.statistic is not None and c.reason is None for c in checks)
    assert all(c.version == 1 and c.model == "iris-classifier" for c in checks)


def test_every_detector_fires_on_the_shifted_feature(iris, logged):
    logged(iris_rows(300, seed=2))
    logged(iris_rows(300, seed=3, shift=1.5))  # petal length: +1.5 cm from now on
    checks = run_checks(iris.volume, config())  # the newest 300 rows: all shifted
    found = verdicts(checks)
    for detector in ("psi", "ks", "wasserstein", "chi2"):
        assert found[(detector, "petal_length")], detector
        assert not found[(detector, "sepal_width")], detector  # the untouched feature stays quiet
    assert found[("chi2", "prediction")]  # longer petals: fewer setosa predicted
    ks = next(c for c in checks if c.detector == "ks" and c.target == "petal_length")
    assert ks.p_value < ks.threshold == 0.01 and 0 < ks.statistic <= 1
    assert ks.window_start <= ks.window_end <= ks.at


def test_too_few_samples_is_a_reason_not_a_verdict(iris, logged):
    logged(iris_rows(40, seed=4, shift=3.0))
    checks = run_checks(iris.volume, config(min_samples=100))
    assert checks and all(not c.drifted and c.samples == 40 and "at least 100" in c.reason for c in checks)


def test_a_time_window_sees_only_recent_rows(iris, logged):
    logged(iris_rows(300, seed=5, shift=1.5))
    time.sleep(0.05)
    now = time.time()
    logged(iris_rows(300, seed=6))
    recent = config(window={"seconds": time.time() - now + 0.01})
    found = run_checks(iris.volume, recent)
    assert not any(c.drifted for c in found), [c for c in found if c.drifted]
    everything = config(window={"seconds": 3600}, detectors=[{"type": "psi", "features": ["petal_length"]}])
    [check] = run_checks(iris.volume, everything)
    assert check.samples == 600 and check.drifted  # half of it shifted


def test_metric_decay_on_labelled_feedback(iris, logged):
    rows = iris_rows(200, seed=7)
    ids = [f"req-{i}" for i in range(len(rows))]
    logged(rows, ids=ids)  # one row per request, feedback by request id
    decay = config(detectors=[{"type": "metric_decay", "metric": "accuracy", "tolerance": 0.1},
                              {"type": "chi2", "on": "labels"}])  # fmt: skip
    [waiting, _] = run_checks(iris.volume, decay)
    assert not waiting.drifted and waiting.samples == 0 and "labelled" in waiting.reason

    wrong = rows["species"].map({"setosa": "virginica", "versicolor": "setosa", "virginica": "versicolor"})
    half = len(rows) // 2  # the label relation changes halfway: the model is now wrong on those rows
    labels = [*rows["species"][:half], *wrong[half:]]
    items = [FeedbackItem(request_id=r, label=y) for r, y in zip(ids, labels, strict=True)]
    items.append(FeedbackItem(request_id="never-logged", label="setosa"))
    write_feedback(iris.volume, "iris-classifier", items)
    [accuracy, labels_check] = run_checks(iris.volume, decay)
    assert accuracy.drifted and accuracy.samples == 200 and accuracy.statistic < 0.6
    assert accuracy.threshold == pytest.approx(accuracy.details["holdout"] * 0.9)
    assert accuracy.details["feedback"] == {"received": 201, "matched": 200, "unmatched": 1}
    assert labels_check.on == "labels" and labels_check.samples == 200 and not labels_check.drifted


def test_checks_are_kept_in_history_and_published(iris, logged):
    logged(iris_rows(150, seed=8))
    before = len(history(iris.volume, "iris-classifier"))
    bus = open_bus("memory://")
    events = []
    bus.subscribe_events("test", lambda d: (events.append(d.envelope.body), d.ack()))
    bus.start()
    try:
        checks = run_checks(iris.volume, config(), bus=bus)
        deadline = time.time() + 5
        while len(events) < len(checks) and time.time() < deadline:
            time.sleep(0.01)
    finally:
        bus.close()
    kept = history(iris.volume, "iris-classifier")
    assert kept[before:] == checks
    assert len(events) == len(checks) and all(e["event"] == EVENT for e in events)
    assert {(e["detector"], e["target"]) for e in events} == {(c.detector, c.target) for c in checks}


def test_a_monitor_config_names_its_mistakes():
    doc = Document(data={"kind": "MonitorConfig", "model": "iris-classifier", "window": {"count": 0},
                         "detectors": [{"type": "pis"}, {"type": "metric_decay"}]}, file="monitor.yaml")  # fmt: skip
    with pytest.raises(ConfigErrors) as err:
        parse_document(doc)
    text = str(err.value)
    assert "did you mean 'psi'" in text and "needs 'metric'" in text and "greater than or equal to 1" in text


def test_check_events_on_the_orchestrators_bus_leave_runs_alone(iris, logged):
    logged(iris_rows(120, seed=9))
    run_checks(iris.volume, config(), bus=iris.bus)  # the embedded orchestrator follows these events too
    run = iris.run(IRIS / "predict.yaml", timeout=120)
    assert run.status == "succeeded", run.error
