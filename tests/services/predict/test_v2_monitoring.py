"""Feedback over REST, gRPC and the bus, joined to what the V2 servers logged; drift checks over both APIs."""

from __future__ import annotations

import time

import grpc
import httpx
import pandas as pd
import pytest

from mlrm.bus.memory import MemoryBus
from mlrm.deployments import Deployments, DeployRequest
from mlrm.monitoring import MonitorConfig, labelled_window, run_checks, send_feedback
from mlrm.monitoring.feedback import read_feedback
from mlrm.settings import Settings
from orchestrator.embedded import Embedded
from services.predict.service import PredictService
from services.predict.v2 import monitoring_pb2 as pb
from services.predict.v2 import monitoring_pb2_grpc as pb_grpc
from services.predict.v2.serve import V2Servers
from tests.conftest import CONFIGS

IRIS = CONFIGS / "iris"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
MODEL = "iris-classifier"
FLOWERS = pd.read_csv(IRIS / "new_flowers.csv")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Iris trained and deployed with every request logged, a predict replica on a bus, its V2 servers."""
    tmp = tmp_path_factory.mktemp("v2-monitoring")
    settings = Settings(volume=str(tmp / "volume"), state=str(tmp / "runs.sqlite"), retries=1)
    with Embedded(settings) as mlrm:
        assert mlrm.run(IRIS / "train.yaml", timeout=300).status == "succeeded"
        Deployments(mlrm.volume).create(DeployRequest(model=MODEL, alias="production", log={"sample": 1.0}))
        bus = MemoryBus()
        service = PredictService(bus, mlrm.volume, watch_interval=0.05, worker="predict-monitoring")
        service.start()
        bus.start()
        with V2Servers(service, http_port=0, grpc_port=0) as servers:
            yield {"servers": servers, "service": service, "volume": mlrm.volume, "bus": bus}
        service.stop()
        bus.close()


def infer(served, request_id: str, rows: pd.DataFrame) -> list[str]:
    body = {"id": request_id, "inputs": [
        {"name": c, "datatype": "FP64", "shape": [len(rows)], "data": rows[c].tolist()} for c in FEATURES
    ]}  # fmt: skip
    answer = httpx.post(f"http://127.0.0.1:{served['servers'].http_port}/v2/models/{MODEL}/infer", json=body)
    assert answer.status_code == 200, answer.text
    [prediction] = [o for o in answer.json()["outputs"] if o["name"] == "prediction"]
    return prediction["data"]


def rest(served, path: str) -> str:
    return f"http://127.0.0.1:{served['servers'].http_port}/v2/models/{path}"


def test_feedback_over_rest_joins_the_logged_request(served):
    predicted = infer(served, "rest-1", FLOWERS.head(2))
    assert served["service"].prediction_log.flush()
    body = {"feedback": [{"request_id": "rest-1", "labels": ["setosa", "virginica"]},
                         {"request_id": "nobody-asked", "label": "setosa"}]}  # fmt: skip
    answer = httpx.post(rest(served, f"{MODEL}/feedback"), json=body)
    assert answer.status_code == 200 and answer.json() == {"model_name": MODEL, "accepted": 3}
    window = labelled_window(served["volume"], MODEL)
    mine = window[window["request_id"] == "rest-1"]
    assert mine["label"].tolist() == ["setosa", "virginica"]
    assert mine["output.prediction"].tolist() == predicted
    assert window.attrs["feedback"]["unmatched"] >= 1  # the unknown id: counted, not refused


@pytest.mark.parametrize(
    ("path", "body", "status", "reason"),
    [
        (f"{MODEL}/feedback", b"{not json", 400, "not valid JSON"),
        (f"{MODEL}/feedback", b'{"feedback": []}', 400, "no feedback"),
        (f"{MODEL}/feedback", b'{"feedback": [{"label": "setosa"}]}', 400, "request_id"),
        (f"{MODEL}/feedback", b'{"feedback": [{"request_id": "x", "label": "a", "labels": ["b"]}]}', 400, "one of"),
        ("no-such-model/feedback", b'{"request_id": "x", "label": "a"}', 404, "no registered versions"),
        ("Bad Name!/feedback", b'{"request_id": "x", "label": "a"}', 422, "model name"),
    ],
)
def test_bad_feedback_gets_a_reason(served, path, body, status, reason):
    answer = httpx.post(rest(served, path), content=body)
    assert answer.status_code == status, answer.text
    assert reason in answer.json()["error"]


def test_feedback_over_grpc(served):
    infer(served, "grpc-1", FLOWERS.iloc[5:7])
    assert served["service"].prediction_log.flush()
    with grpc.insecure_channel(f"127.0.0.1:{served['servers'].grpc_port}") as channel:
        stub = pb_grpc.MonitoringStub(channel)
        labels = [pb.Label(string_value="versicolor"), pb.Label(string_value="virginica")]
        answer = stub.Feedback(pb.FeedbackRequest(model_name=MODEL, items=[
            pb.FeedbackItem(request_id="grpc-1", labels=labels),
            pb.FeedbackItem(request_id="grpc-1", row=1, label=pb.Label(string_value="setosa")),  # a correction
        ]))  # fmt: skip
        assert answer.accepted == 3
        with pytest.raises(grpc.RpcError) as err:
            stub.Feedback(pb.FeedbackRequest(model_name=MODEL, items=[pb.FeedbackItem(row_id="r")]))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "label" in err.value.details()
    window = labelled_window(served["volume"], MODEL)
    assert window[window["request_id"] == "grpc-1"]["label"].tolist() == ["versicolor", "setosa"]


def test_feedback_over_the_bus(served):
    infer(served, "bus-1", FLOWERS.iloc[8:9])
    assert served["service"].prediction_log.flush()
    send_feedback(served["bus"], MODEL, [{"request_id": "bus-1", "label": 3.5}, {"bogus": True}])  # malformed: dropped
    send_feedback(served["bus"], MODEL, [{"request_id": "bus-1", "label": "virginica"}])
    deadline = time.time() + 10
    while time.time() < deadline and "bus-1" not in set(read_feedback(served["volume"], MODEL)["request_id"]):
        time.sleep(0.05)
    window = labelled_window(served["volume"], MODEL)
    assert window[window["request_id"] == "bus-1"]["label"].tolist() == ["virginica"]


def test_drift_checks_over_rest_and_grpc(served):
    config = MonitorConfig(model=MODEL, detectors=[{"type": "psi", "features": ["petal_length"]}], min_samples=1)
    [check] = run_checks(served["volume"], config)
    assert check.samples >= 1 and check.statistic is not None
    answer = httpx.get(rest(served, f"{MODEL}/monitoring"), params={"limit": 1})
    assert answer.status_code == 200
    assert answer.json()["checks"] == [check.model_dump(mode="json")]
    assert httpx.get(rest(served, "no-such-model/monitoring")).status_code == 404
    with grpc.insecure_channel(f"127.0.0.1:{served['servers'].grpc_port}") as channel:
        [found] = pb_grpc.MonitoringStub(channel).Checks(pb.ChecksRequest(model_name=MODEL, limit=1)).checks
    assert (found.detector, found.target) == ("psi", "petal_length")
    assert (found.samples, found.drifted) == (check.samples, check.drifted)
    assert found.statistic == pytest.approx(check.statistic)


def test_the_monitoring_routes_declare_their_scopes(served):
    from services.predict.v2 import monitoring

    routes = monitoring.rest_routes(monitoring.Monitoring(served["service"].server.registry))
    scopes = {r.path: r.endpoint.scope for r in routes}
    assert scopes == {"/v2/models/{name}/feedback": "infer", "/v2/models/{name}/monitoring": "read"}
    assert set(monitoring.SCOPES) == {f"/mlrm.monitoring.Monitoring/{m}" for m in ("Feedback", "Checks")}
