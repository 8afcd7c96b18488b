"""The prediction log: sampled per model, written in the background, on disk once acknowledged."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from mlrm.deployments import Deployments, DeployRequest
from mlrm.monitoring import (
    FEATURE,
    OUTPUT,
    LogEntry,
    PredictionLog,
    labelled_window,
    read_log,
    read_predictions,
    write_feedback,
)
from mlrm.monitoring.feedback import parse_feedback
from mlrm.monitoring.paths import predictions_prefix
from mlrm.settings import Settings
from mlrm.volume.local import LocalVolume
from orchestrator.embedded import Embedded
from tests.conftest import CONFIGS

IRIS = CONFIGS / "iris"
FLOWERS = pd.read_csv(IRIS / "new_flowers.csv")
MODEL = "iris-classifier"


@pytest.fixture(scope="module")
def iris(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("logger")
    settings = Settings(volume=str(tmp / "volume"), state=str(tmp / "runs.sqlite"), retries=1)
    with Embedded(settings) as mlrm:
        assert mlrm.run(IRIS / "train.yaml", timeout=300).status == "succeeded"
        yield mlrm


@pytest.fixture
def predict(iris):
    service = iris.service("predict")
    yield service
    for dep in Deployments(iris.volume).active():
        Deployments(iris.volume).unload(dep.id)
    service.prediction_log.reload()
    iris.volume.delete_prefix("monitoring/")


def deploy(iris, predict, **log) -> None:
    Deployments(iris.volume).create(DeployRequest(model=MODEL, alias="production", log=log or None))
    predict.prediction_log.reload()


def logged(iris) -> pd.DataFrame:
    return read_predictions(iris.volume, MODEL)


def test_a_deployment_logs_its_direct_requests(iris, predict):
    deploy(iris, predict, sample=1.0, row_id="id")
    out, ref = predict.infer(MODEL, FLOWERS.head(5), alias="production", keep=["id"], id="req-1")
    assert predict.prediction_log.flush()
    rows = logged(iris)
    assert len(rows) == 5
    assert rows["request_id"].unique().tolist() == ["req-1"]
    assert rows["row_id"].tolist() == ["1", "2", "3", "4", "5"]  # the request's own id column
    assert rows["row"].tolist() == [0, 1, 2, 3, 4]
    assert (rows["version"] == ref.version).all() and (rows["source"] == "direct").all()
    assert {f"{FEATURE}petal_length", f"{OUTPUT}prediction", f"{OUTPUT}proba_setosa"} <= set(rows.columns)
    assert rows[f"{OUTPUT}prediction"].tolist() == out["prediction"].tolist()
    assert abs(rows[f"{FEATURE}sepal_length"].mean()) < 2  # what the model saw: scaled, not raw (~5.8)


def test_nothing_is_logged_unless_a_deployment_asks(iris, predict):
    predict.infer(MODEL, FLOWERS.head(3), alias="production")
    deploy(iris, predict)  # a deployment without `log`
    predict.infer(MODEL, FLOWERS.head(3), alias="production")
    assert predict.prediction_log.flush()
    assert len(logged(iris)) == 0


def test_a_sample_rate_logs_whole_requests_some_of_the_time(iris, predict):
    deploy(iris, predict, sample=0.5)
    for i in range(100):
        predict.infer(MODEL, FLOWERS.head(2), alias="production", id=f"r{i}")
    assert predict.prediction_log.flush()
    rows = logged(iris)
    requests = rows.groupby("request_id").size()
    assert 15 < len(requests) < 85 and (requests == 2).all()
    assert (rows["row_id"] == rows["request_id"] + "/" + rows["row"].astype(str)).all()  # no id column: derived


def test_a_batch_workflow_logs_when_its_predict_config_says_so(iris, predict, tmp_path):
    assert iris.run(IRIS / "predict.yaml", timeout=120).status == "succeeded"
    assert predict.prediction_log.flush() and len(logged(iris)) == 0  # off by default for batches
    serve = (IRIS / "serve.yaml").read_text() + "log: {sample: 1.0, row_id: id}\n"
    (tmp_path / "serve.yaml").write_text(serve)
    workflow = (IRIS / "predict.yaml").read_text().replace("config: serve.yaml", f"config: {tmp_path / 'serve.yaml'}")
    workflow = workflow.replace("config: collect-new.yaml", f"config: {IRIS / 'collect-new.yaml'}")
    (tmp_path / "predict.yaml").write_text(workflow)
    assert iris.run(tmp_path / "predict.yaml", timeout=120).status == "succeeded"
    assert predict.prediction_log.flush()
    rows = logged(iris)
    assert len(rows) == len(FLOWERS) and (rows["source"] == "bus").all()
    assert sorted(rows["row_id"].astype(int)) == FLOWERS["id"].tolist()


def test_feedback_joins_the_logged_rows_by_request_or_row_id(iris, predict):
    deploy(iris, predict, sample=1.0, row_id="id")
    predict.infer(MODEL, FLOWERS.head(3), alias="production", id="a")
    predict.infer(MODEL, FLOWERS.iloc[3:5], alias="production", id="b")
    assert predict.prediction_log.flush()
    items = parse_feedback({"feedback": [
        {"request_id": "a", "labels": ["setosa", "versicolor", "virginica"]},
        {"row_id": "5", "label": "setosa"},
        {"row_id": "5", "label": "virginica"},  # a correction: the newest label wins
        {"request_id": "nobody", "label": "setosa"},
        {"row_id": "404", "label": "setosa"},
    ]})  # fmt: skip
    assert write_feedback(iris.volume, MODEL, items) == 7
    window = labelled_window(iris.volume, MODEL)
    assert window["row_id"].tolist() == ["1", "2", "3", "5"]
    assert window["label"].tolist() == ["setosa", "versicolor", "virginica", "virginica"]
    assert {"petal_length", "output.prediction", "version", "at"} <= set(window.columns)
    assert window.attrs["feedback"] == {"received": 7, "matched": 5, "unmatched": 2}
    assert len(labelled_window(iris.volume, MODEL, limit=2)) == 2


def entry(i: int, rows: int = 2) -> LogEntry:
    frame = pd.DataFrame({"x": [float(i)] * rows})
    return LogEntry(MODEL, 1, f"r{i}", "direct", 1_700_000_000.0 + i, frame, frame.rename(columns={"x": "prediction"}))


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path):
    plog = PredictionLog(LocalVolume(tmp_path), max_queue=3)  # not started: nothing drains the queue
    accepted = [plog.record(entry(i)) for i in range(5)]
    assert accepted == [True, True, True, False, False]
    assert plog.stats()["dropped"] == 2
    plog.close()  # writes what it accepted
    assert len(read_log(LocalVolume(tmp_path), predictions_prefix(MODEL))) == 6
    assert not plog.record(entry(9))  # closed: dropped, never an error


def test_what_was_flushed_survives_a_crash(tmp_path):
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(CONFIGS.parent)!r})
        from mlrm.monitoring import PredictionLog
        from mlrm.volume.local import LocalVolume
        from tests.services.predict.test_logger import entry
        plog = PredictionLog(LocalVolume({str(tmp_path)!r}), interval=60).start()
        for i in range(10):
            plog.record(entry(i))
        assert plog.flush()
        print("acknowledged", flush=True)
        for i in range(10, 20):
            plog.record(entry(i))
        os._exit(9)  # killed: no close, no flush
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 9 and "acknowledged" in done.stdout, done.stderr
    rows = read_log(LocalVolume(tmp_path), predictions_prefix(MODEL))  # every part readable: none half-written
    assert set(rows["request_id"]) >= {f"r{i}" for i in range(10)}
    assert len(rows) % 2 == 0 and not list(tmp_path.rglob("*.tmp*"))
