"""Inference by reference: a V2 (REST, gRPC) or nameko request names a volume object to predict and where
to write the predictions; the rows stream through the data plane batch by batch, never through the request.

The iris example is trained and its batch workflow run in the test; a reference request for the same
file writes the same predictions; bad references get a 4xx / gRPC status with a reason.
"""

from __future__ import annotations

import io
import warnings

import httpx
import numpy as np
import pandas as pd
import pytest

from mlrm.bus.memory import MemoryBus
from mlrm.errors import DataError, InvalidKeyError, NotFoundError
from mlrm.settings import Settings
from orchestrator.embedded import Embedded
from services.predict.rpc import methods
from services.predict.service import PredictService
from services.predict.v2.serve import V2Servers
from tests.conftest import CONFIGS

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

IRIS = CONFIGS / "iris"
MODEL = "iris-classifier"
INPUT = "raw/new_flowers.csv"


@pytest.fixture(scope="module")
def iris(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    settings = Settings(volume=str(tmp / "volume"), state=str(tmp / "runs.sqlite"), retries=1)
    with Embedded(settings) as mlrm:
        assert mlrm.run(IRIS / "train.yaml", timeout=300).status == "succeeded"
        run = mlrm.run(IRIS / "predict.yaml", timeout=300)
        assert run.status == "succeeded", run.error
        with mlrm.volume.open_read(run.result("predict")["output"].removeprefix("volume:")) as f:
            batch = pd.read_csv(f)
        mlrm.volume.put_bytes(INPUT, (IRIS / "new_flowers.csv").read_bytes())
        service = PredictService(MemoryBus(), mlrm.volume, watch_interval=0, worker="predict-ref")
        service.start()
        with V2Servers(service, http_port=0, grpc_port=0) as servers:
            yield {"batch": batch, "servers": servers, "service": service, "volume": mlrm.volume}
        service.stop()


def read(volume, key: str) -> pd.DataFrame:
    data = volume.get_bytes(key)
    if key.endswith(".parquet"):
        return pd.read_parquet(io.BytesIO(data))
    if key.endswith(".jsonl"):
        return pd.read_json(io.BytesIO(data), lines=True)
    return pd.read_csv(io.BytesIO(data))


def assert_same_as_batch(batch: pd.DataFrame, out: pd.DataFrame) -> None:
    assert list(out.columns) == list(batch.columns)  # id, prediction, proba_<class>...
    assert out["id"].tolist() == batch["id"].tolist()
    assert out["prediction"].tolist() == batch["prediction"].tolist()
    proba = [c for c in batch.columns if c.startswith("proba_")]
    np.testing.assert_allclose(out[proba].to_numpy(), batch[proba].to_numpy(), rtol=1e-9)


def rest_url(iris, version: str = "production") -> str:
    return f"http://127.0.0.1:{iris['servers'].http_port}/v2/models/{MODEL}/versions/{version}/infer"


def test_a_rest_reference_request_writes_the_batch_workflows_predictions(iris):
    for output, batch_size in (("predictions/ref/rest.parquet", 7), ("predictions/ref/rest.csv", 10_000)):
        body = {"id": "ref-1", "parameters": {"input_ref": INPUT, "output_ref": output, "keep": ["id"],
                                              "batch_size": batch_size}}  # fmt: skip
        reply = httpx.post(rest_url(iris), json=body)
        assert reply.status_code == 200, reply.text
        answer = reply.json()
        assert answer["model_name"] == MODEL and answer["model_version"] == "1" and answer["id"] == "ref-1"
        assert answer["outputs"] == []
        assert answer["parameters"] == {"output_ref": output, "rows": 30, "output_format": output.rsplit(".")[-1]}
        assert_same_as_batch(iris["batch"], read(iris["volume"], output))


def test_a_grpc_reference_request_with_tritonclient(iris):
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{iris['servers'].grpc_port}")
    try:
        params = {"input_ref": INPUT, "output_ref": "predictions/ref/grpc.jsonl", "keep": "id", "format": "csv"}
        result = client.infer(MODEL, [], model_version="production", parameters=params)
        response = result.get_response()
        assert response.model_version == "1" and not response.outputs
        assert response.parameters["output_ref"].string_param == "predictions/ref/grpc.jsonl"
        assert response.parameters["rows"].int64_param == 30
        assert_same_as_batch(iris["batch"], read(iris["volume"], "predictions/ref/grpc.jsonl"))
    finally:
        client.close()


def test_a_nameko_reference_request(iris):
    seen: list[str] = []
    service = iris["service"]
    service.dataplane.on_predict.append(lambda event: seen.append(event.source))
    answer = methods(service)["infer_ref"](
        model=MODEL, alias="production", input_ref=INPUT, output_ref="predictions/ref/nameko.parquet", keep=["id"]
    )
    assert answer == {"model": MODEL, "version": 1, "output_ref": "predictions/ref/nameko.parquet", "rows": 30,
                      "output_format": "parquet"}  # fmt: skip
    assert_same_as_batch(iris["batch"], read(iris["volume"], "predictions/ref/nameko.parquet"))
    assert seen == ["nameko"]


BAD = [
    ({"input_ref": "raw/nosuch.csv", "output_ref": "predictions/x.csv"}, 404, "NOT_FOUND", "raw/nosuch.csv"),
    ({"input_ref": INPUT, "output_ref": "models/iris-classifier/x.csv"}, 400, "INVALID_ARGUMENT", "models/"),
    ({"input_ref": INPUT, "output_ref": "RUNS/x.csv"}, 400, "INVALID_ARGUMENT", "runs/"),
    ({"input_ref": "../x.csv", "output_ref": "predictions/x.csv"}, 400, "INVALID_ARGUMENT", "'..' segment"),
    ({"input_ref": INPUT, "output_ref": "/etc/x.csv"}, 400, "INVALID_ARGUMENT", "absolute"),
    ({"input_ref": "models/iris-classifier/1/card.json", "output_ref": "p/x.csv", "format": "jsonl"}, 400,
     "INVALID_ARGUMENT", "input_ref: key 'models/"),
    ({"input_ref": INPUT, "output_ref": "predictions/x.txt"}, 400, "INVALID_ARGUMENT", "output_format"),
    ({"input_ref": INPUT, "output_ref": "predictions/x.csv", "format": "xls"}, 400, "INVALID_ARGUMENT", "xls"),
    ({"input_ref": INPUT}, 400, "INVALID_ARGUMENT", "output_ref"),
    ({"input_ref": "predictions/ref/rest.csv", "output_ref": "predictions/x.csv", "format": "parquet"}, 400,
     "INVALID_ARGUMENT", "volume:predictions/ref/rest.csv"),  # not parquet: the source says why
]  # fmt: skip


@pytest.mark.parametrize(("params", "status", "code", "reason"), BAD)
def test_bad_references_get_a_reason_over_rest_and_grpc(iris, params, status, code, reason):
    reply = httpx.post(rest_url(iris), json={"parameters": params})
    assert reply.status_code == status and reason in reply.json()["error"], reply.text
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{iris['servers'].grpc_port}")
    try:
        with pytest.raises(InferenceServerException) as caught:
            client.infer(MODEL, [], model_version="production", parameters=params)
        assert caught.value.status() == f"StatusCode.{code}" and reason in caught.value.message()
    finally:
        client.close()
    assert not iris["volume"].exists("predictions/x.csv")  # nothing half-written


def test_a_reference_request_carries_no_inputs_and_nameko_refuses_bad_refs(iris):
    body = {"parameters": {"input_ref": INPUT, "output_ref": "predictions/y.csv"},
            "inputs": [{"name": "sepal_length", "datatype": "FP64", "shape": [1], "data": [1.0]}]}  # fmt: skip
    reply = httpx.post(rest_url(iris), json=body)
    assert reply.status_code == 400 and "carries no inputs" in reply.json()["error"]
    infer_ref = methods(iris["service"])["infer_ref"]
    for output, error in (("../y.csv", InvalidKeyError), ("deployments/y.csv", DataError)):
        with pytest.raises(error):
            infer_ref(model=MODEL, input_ref=INPUT, output_ref=output)
    with pytest.raises(NotFoundError):
        infer_ref(model=MODEL, input_ref="raw/none.parquet", output_ref="predictions/y.parquet")
