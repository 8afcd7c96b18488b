"""The Open Inference Protocol (KServe V2) over REST and gRPC, called by real clients (tritonclient).

A server is started in the test on free ports, beside a predict service, after the iris example
is trained: its answers equal the batch workflow's for the same raw rows, whichever form the
request takes; every bad request gets its 4xx or status code with a reason and the server keeps
serving; a load loop across an alias switch sees no error.
"""

from __future__ import annotations

import threading
import time
import warnings

import httpx
import numpy as np
import pandas as pd
import pytest

from mlrm.bus.memory import MemoryBus
from mlrm.registry import ModelRegistry
from mlrm.settings import Settings
from orchestrator.embedded import Embedded
from services.predict.service import PredictService
from services.predict.v2.serve import V2Servers
from tests.conftest import CONFIGS

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # gevent and friends announce deprecations on import
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

IRIS = CONFIGS / "iris"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
MODEL = "iris-classifier"


@pytest.fixture(scope="module")
def iris(tmp_path_factory):
    """Iris trained twice (versions 1 and 2), the batch workflow's answers, and a V2 server."""
    tmp = tmp_path_factory.mktemp("v2")
    settings = Settings(volume=str(tmp / "volume"), state=str(tmp / "runs.sqlite"), retries=1)
    with Embedded(settings) as mlrm:
        for _ in range(2):
            assert mlrm.run(IRIS / "train.yaml", timeout=300).status == "succeeded"
        run = mlrm.run(IRIS / "predict.yaml", timeout=300)
        assert run.status == "succeeded", run.error
        with mlrm.volume.open_read(run.result("predict")["output"].removeprefix("volume:")) as f:
            batch = pd.read_csv(f)
        ModelRegistry(mlrm.volume).set_alias(MODEL, "production", 1)
        service = PredictService(MemoryBus(), mlrm.volume, watch_interval=0.05, worker="predict-v2")
        service.start()
        with V2Servers(service, http_port=0, grpc_port=0) as servers:
            yield {"batch": batch, "servers": servers, "service": service, "volume": mlrm.volume}
        service.stop()


@pytest.fixture
def http(iris):
    client = httpclient.InferenceServerClient(f"127.0.0.1:{iris['servers'].http_port}", concurrency=4)
    yield client
    client.close()


@pytest.fixture
def grpc(iris):
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{iris['servers'].grpc_port}")
    yield client
    client.close()


def raw_rows() -> pd.DataFrame:
    return pd.read_csv(IRIS / "new_flowers.csv")


def column_inputs(module, frame: pd.DataFrame, binary: bool = True) -> list:
    inputs = []
    for name in FEATURES:
        tensor = module.InferInput(name, [len(frame)], "FP64")
        values = frame[name].to_numpy(dtype="float64")
        if module is httpclient:
            tensor.set_data_from_numpy(values, binary_data=binary)
        else:
            tensor.set_data_from_numpy(values)
        inputs.append(tensor)
    return inputs


def matrix_input(module, frame: pd.DataFrame) -> list:
    tensor = module.InferInput("input-0", [len(frame), len(FEATURES)], "FP32")
    tensor.set_data_from_numpy(frame[FEATURES].to_numpy(dtype="float32"))
    return [tensor]


def assert_batch_answers(batch: pd.DataFrame, result) -> None:
    labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("prediction").tolist()]
    assert labels == batch["prediction"].tolist()
    proba = result.as_numpy("probabilities")
    expected = batch[[c for c in batch.columns if c.startswith("proba_")]].to_numpy()
    np.testing.assert_allclose(proba, expected, rtol=1e-9)


def test_iris_answers_equal_the_batch_workflows_over_rest_and_grpc(iris, http, grpc):
    batch, frame = iris["batch"], raw_rows()
    for binary in (True, False):  # the binary tensor extension and plain JSON
        result = http.infer(MODEL, column_inputs(httpclient, frame, binary), model_version="production")
        assert_batch_answers(batch, result)
        outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("prediction", "probabilities")]
        result = http.infer(MODEL, column_inputs(httpclient, frame, binary), outputs=outputs, model_version="1")
        assert_batch_answers(batch, result)
    result = grpc.infer(MODEL, column_inputs(grpcclient, frame), model_version="production", request_id="r-1")
    assert_batch_answers(batch, result)
    assert result.get_response().id == "r-1" and result.get_response().model_version == "1"


def test_one_2d_input_and_output_selection(iris, http, grpc):
    batch, frame = iris["batch"], raw_rows()
    # float32 loses digits: compare labels, and probabilities loosely
    for client, module in ((http, httpclient), (grpc, grpcclient)):
        result = client.infer(MODEL, matrix_input(module, frame), model_version="production",
                              outputs=[module.InferRequestedOutput("prediction")])  # fmt: skip
        labels = [v.decode() for v in result.as_numpy("prediction").tolist()]
        assert labels == batch["prediction"].tolist()
        assert result.as_numpy("probabilities") is None


def test_json_by_hand_with_the_pd_content_type(iris):
    frame = raw_rows()
    body = {
        "id": "abc", "parameters": {"content_type": "pd"},
        "inputs": [{"name": n, "datatype": "FP64", "shape": [len(frame)], "data": frame[n].tolist()} for n in FEATURES],
    }  # fmt: skip
    url = f"http://127.0.0.1:{iris['servers'].http_port}/v2/models/{MODEL}/versions/production/infer"
    reply = httpx.post(url, json=body)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["model_name"] == MODEL and answer["model_version"] == "1" and answer["id"] == "abc"
    assert [o["name"] for o in answer["outputs"]] == ["prediction", "probabilities"]
    assert answer["outputs"][0]["data"] == iris["batch"]["prediction"].tolist()
    assert answer["outputs"][1]["shape"] == [len(frame), 3]


def test_health_and_metadata(iris, http, grpc):
    assert http.is_server_live() and http.is_server_ready() and http.is_model_ready(MODEL, "production")
    assert grpc.is_server_live() and grpc.is_server_ready() and grpc.is_model_ready(MODEL, "2")
    assert http.get_server_metadata()["name"] == "mlrm"
    assert "model_repository" in grpc.get_server_metadata().extensions
    meta = http.get_model_metadata(MODEL, "production")
    assert meta["versions"] == ["1"]
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [(n, "FP64", [-1]) for n in FEATURES]
    assert [(o["name"], o["datatype"], o["shape"]) for o in meta["outputs"]] == [
        ("prediction", "BYTES", [-1]), ("probabilities", "FP64", [-1, 3])
    ]  # fmt: skip
    meta = grpc.get_model_metadata(MODEL)
    assert list(meta.versions) == ["2"] and [i.name for i in meta.inputs] == FEATURES


def _bad_http(http, inputs, status: int, reason: str, **kwargs) -> None:
    with pytest.raises(InferenceServerException) as caught:
        http.infer(kwargs.pop("model", MODEL), inputs, **kwargs)
    assert caught.value.status() == str(status), caught.value
    assert reason in caught.value.message(), caught.value.message()


def _bad_grpc(grpc, inputs, status: str, reason: str, **kwargs) -> None:
    with pytest.raises(InferenceServerException) as caught:
        grpc.infer(kwargs.pop("model", MODEL), inputs, **kwargs)
    assert caught.value.status() == f"StatusCode.{status}", caught.value
    assert reason in caught.value.message(), caught.value.message()


def test_bad_requests_get_a_reason_and_the_server_keeps_serving(iris, http, grpc):
    frame = raw_rows()
    for client, module, bad, code in (
        (http, httpclient, _bad_http, 400), (grpc, grpcclient, _bad_grpc, "INVALID_ARGUMENT")
    ):  # fmt: skip
        good = column_inputs(module, frame)
        wide = module.InferInput("x", [len(frame), 3], "FP64")
        wide.set_data_from_numpy(frame[FEATURES[:3]].to_numpy())
        bad(client, [wide], code, "has 3 column(s)")  # wrong shape
        text = module.InferInput("sepal_length", [len(frame)], "BYTES")
        text.set_data_from_numpy(np.array([b"a"] * len(frame), dtype=object))
        bad(client, [text, *good[1:]], code, "sepal_length")  # wrong datatype
        bad(client, good[1:], code, "sepal_length, which the request lacks")  # missing input
        extra = module.InferInput("colour", [len(frame)], "FP64")
        extra.set_data_from_numpy(np.zeros(len(frame)))
        bad(client, [*good, extra], code, "unknown input 'colour'")  # extra input
        bad(client, good, code, "unknown output(s) shape", outputs=[module.InferRequestedOutput("shape")])
        not_found = 404 if client is http else "NOT_FOUND"
        bad(client, good, not_found, "nosuch", model="nosuch")  # unknown model
        bad(client, good, not_found, "99", model_version="99")  # unknown version
        bad(client, good, not_found, "staging", model_version="staging")  # unknown alias
        assert_batch_answers(iris["batch"], client.infer(MODEL, good, model_version="production"))


def test_malformed_and_oversized_rest_bodies(iris):
    base = f"http://127.0.0.1:{iris['servers'].http_port}"
    for body, reason in ((b"{not json", "not valid JSON"), (b"[1, 2]", "JSON object"), (b"{}", "'inputs'")):
        reply = httpx.post(f"{base}/v2/models/{MODEL}/infer", content=body)
        assert reply.status_code == 400 and reason in reply.json()["error"], reply.text
    reply = httpx.get(f"{base}/v2/nowhere")
    assert reply.status_code == 404 and "error" in reply.json()
    with V2Servers(iris["service"], http_port=0, grpc_port=0, max_body=2000) as small:
        frame = pd.concat([raw_rows()] * 20)
        inputs = [
            {"name": n, "datatype": "FP64", "shape": [len(frame)], "data": frame[n].tolist()} for n in FEATURES
        ]  # fmt: skip
        reply = httpx.post(f"http://127.0.0.1:{small.http_port}/v2/models/{MODEL}/infer", json={"inputs": inputs})
        assert reply.status_code == 413 and "limit" in reply.json()["error"]
        grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{small.grpc_port}")
        _bad_grpc(grpc, column_inputs(grpcclient, frame), "RESOURCE_EXHAUSTED", "")
        assert grpc.is_server_live()
        grpc.close()


def test_too_many_in_flight_is_answered_at_once_and_on_predict_fires(iris):
    service, frame = iris["service"], raw_rows()
    seen: list[str] = []
    entered, release = threading.Event(), threading.Event()

    def hold(event) -> None:
        seen.append(event.source)
        entered.set()
        release.wait(10)

    service.dataplane.on_predict.append(hold)
    try:
        with V2Servers(service, http_port=0, grpc_port=0, max_inflight=1) as tight:
            http = httpclient.InferenceServerClient(f"127.0.0.1:{tight.http_port}")
            grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{tight.grpc_port}")
            body = {"inputs": [
                {"name": n, "datatype": "FP64", "shape": [len(frame)], "data": frame[n].tolist()} for n in FEATURES
            ]}  # fmt: skip
            url = f"http://127.0.0.1:{tight.http_port}/v2/models/{MODEL}/infer"
            replies: list[int] = []  # a gevent client is not shared across threads: httpx holds the first request
            first = threading.Thread(target=lambda: replies.append(httpx.post(url, json=body).status_code))
            first.start()
            assert entered.wait(10)
            started = time.monotonic()
            _bad_http(http, column_inputs(httpclient, frame), 429, "too many requests in flight")
            _bad_grpc(grpc, column_inputs(grpcclient, frame), "RESOURCE_EXHAUSTED", "")
            assert time.monotonic() - started < 5  # answered, not queued
            release.set()
            first.join()
            assert replies == [200]
            grpc.infer(MODEL, column_inputs(grpcclient, frame))
            http.close()
            grpc.close()
    finally:
        release.set()
        service.dataplane.on_predict.remove(hold)
    assert seen == ["rest", "grpc"]


def test_a_load_loop_across_an_alias_switch_sees_no_error(iris):
    frame = raw_rows().head(3)
    registry = ModelRegistry(iris["volume"])
    ports = iris["servers"]
    versions: list[str] = []
    errors: list[Exception] = []
    stop = threading.Event()

    def loop(module, address: str) -> None:
        client = module.InferenceServerClient(address)
        try:
            while not stop.is_set():
                try:
                    result = client.infer(MODEL, column_inputs(module, frame), model_version="production")
                    response = result.get_response()
                    versions.append(response["model_version"] if isinstance(response, dict) else response.model_version)
                except Exception as exc:  # any failure fails the test
                    errors.append(exc)
        finally:
            client.close()

    threads = [
        threading.Thread(target=loop, args=(httpclient, f"127.0.0.1:{ports.http_port}")),
        threading.Thread(target=loop, args=(grpcclient, f"127.0.0.1:{ports.grpc_port}")),
    ]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        registry.set_alias(MODEL, "production", 2)
        deadline = time.monotonic() + 10
        while (not versions or versions[-1] != "2") and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
        registry.set_alias(MODEL, "production", 1)
    assert errors == []
    assert versions[0] == "1" and versions[-1] == "2"


def test_the_repository_extension_maps_onto_deployments(iris, http, grpc):
    from mlrm.deployments import Deployments

    deployments = Deployments(iris["volume"])
    assert {m["name"] for m in http.get_model_repository_index()} == {MODEL}
    http.load_model(MODEL)  # the latest version, pinned in a new deployment
    active = [d for d in deployments.active() if d.model == MODEL]
    assert [d.version for d in active] == [2]
    index = grpc.get_model_repository_index()
    assert ("2", "READY") in {(m.version, m.state) for m in index.models if m.name == MODEL}
    grpc.unload_model(MODEL)
    assert [d for d in deployments.active() if d.model == MODEL] == []
    with pytest.raises(InferenceServerException) as caught:
        http.unload_model(MODEL)
    assert caught.value.status() == "404" and "no active deployment" in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        grpc.load_model("nosuch")
    assert caught.value.status() == "StatusCode.NOT_FOUND"
    assert http.is_model_ready(MODEL, "production")  # still serving


def test_energy_answers_equal_the_batch_workflows_over_rest_and_grpc(mlrm, energy_data, monkeypatch):
    """Timestamps travel as BYTES (ISO text) and meet the card's types and the version's pipeline."""
    history, upcoming = energy_data
    monkeypatch.setenv("ENERGY_DATA", str(history))
    monkeypatch.setenv("ENERGY_INPUT", str(upcoming))
    energy = CONFIGS / "energy"
    assert mlrm.run(energy / "train.yaml", timeout=300).status == "succeeded"
    run = mlrm.run(energy / "predict.yaml", timeout=300)
    assert run.status == "succeeded", run.error
    with mlrm.volume.open_read(run.result("predict")["output"].removeprefix("volume:")) as f:
        batch = pd.read_csv(f)
    raw = pd.read_csv(upcoming)  # timestamps as text, as a client sends them
    with V2Servers(mlrm.service("predict"), http_port=0, grpc_port=0) as servers:
        http = httpclient.InferenceServerClient(f"127.0.0.1:{servers.http_port}")
        grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{servers.grpc_port}")
        meta = http.get_model_metadata("energy-load", "production")
        for client, module in ((http, httpclient), (grpc, grpcclient)):
            inputs = []
            for spec in meta["inputs"]:
                tensor = module.InferInput(spec["name"], [len(raw)], spec["datatype"])
                if spec["datatype"] == "BYTES":
                    tensor.set_data_from_numpy(raw[spec["name"]].astype(str).to_numpy(dtype=object))
                else:
                    tensor.set_data_from_numpy(raw[spec["name"]].to_numpy(dtype=NUMPY_OF[spec["datatype"]]))
                inputs.append(tensor)
            result = client.infer("energy-load", inputs, model_version="production")
            np.testing.assert_allclose(result.as_numpy("prediction"), batch["prediction"].to_numpy(), rtol=1e-9)
        http.close()
        grpc.close()


NUMPY_OF = {"FP64": "float64", "FP32": "float32", "INT64": "int64", "BOOL": "bool"}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlrm_serve_predict_needs_no_broker(iris, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    http_port, grpc_port = _free_port(), _free_port()
    env = {**os.environ, "MLRM_VOLUME": str(iris["volume"].root), "MLRM_BUS": "amqp://nowhere:1/"}
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlrm", "serve", "predict", "--no-bus", "--http-port", str(http_port),
         "--grpc-port", str(grpc_port)], env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "the server did not get ready: " + (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        frame = raw_rows()
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        assert_batch_answers(iris["batch"], client.infer(MODEL, column_inputs(grpcclient, frame), model_version="1"))
        client.close()
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0, (tmp_path / "serve.log").read_text()


def test_grpc_typed_contents(iris):
    """KServe clients send typed `contents`; the answer comes back the same way."""
    import grpc as grpclib

    from services.predict.v2 import grpc_predict_v2_pb2 as pb
    from services.predict.v2 import grpc_predict_v2_pb2_grpc as pb_grpc

    frame = raw_rows()
    with grpclib.insecure_channel(f"127.0.0.1:{iris['servers'].grpc_port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        request = pb.ModelInferRequest(model_name=MODEL, model_version="production", id="typed")
        for name in FEATURES:
            tensor = request.inputs.add(name=name, datatype="FP64", shape=[len(frame)])
            tensor.contents.fp64_contents.extend(frame[name].tolist())
        reply = stub.ModelInfer(request)
        assert reply.id == "typed" and [o.name for o in reply.outputs] == ["prediction", "probabilities"]
        assert [b.decode() for b in reply.outputs[0].contents.bytes_contents] == iris["batch"]["prediction"].tolist()
        assert list(reply.outputs[1].shape) == [len(frame), 3] and not reply.raw_output_contents
        request.inputs[0].contents.int64_contents.append(1)
        with pytest.raises(grpclib.RpcError) as caught:
            stub.ModelInfer(request)
        assert caught.value.code() == grpclib.StatusCode.INVALID_ARGUMENT
        assert "contents.fp64_contents, not int64_contents" in caught.value.details()


def test_unknown_paths_and_methods_answer_the_v2_error_body(iris):
    base = f"http://127.0.0.1:{iris['servers'].http_port}"
    for method, path, status in [("GET", "/v3/models", 404), ("DELETE", "/v2/models/iris-classifier/infer", 405)]:
        answer = httpx.request(method, base + path)
        assert answer.status_code == status and list(answer.json()) == ["error"]
