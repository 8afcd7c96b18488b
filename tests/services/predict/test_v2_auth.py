"""The V2 servers with authentication, called by tritonclient (http and grpc, ``headers=``): inference
needs ``infer``, metadata and the repository index ``read``, load and unload ``admin``; health and
server metadata stay open. Also over TLS."""

from __future__ import annotations

import ssl
import warnings

import httpx
import numpy as np
import pandas as pd
import pytest
import trustme

from mlrm.bus.memory import MemoryBus
from mlrm.settings import Settings
from mlrm.web.tls import Tls
from orchestrator.embedded import Embedded
from services.predict.service import PredictService
from services.predict.v2.grpc import SCOPES
from services.predict.v2.serve import V2Servers
from tests.auth_support import PASSWORDS, make_security
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
    tmp = tmp_path_factory.mktemp("v2auth")
    settings = Settings(volume=str(tmp / "volume"), state=str(tmp / "runs.sqlite"), retries=1)
    with Embedded(settings) as mlrm:
        assert mlrm.run(IRIS / "train.yaml", timeout=300).status == "succeeded"
        service = PredictService(MemoryBus(), mlrm.volume, watch_interval=0.05, worker="predict-auth")
        service.start()
        security = make_security(tmp)
        with V2Servers(service, http_port=0, grpc_port=0, security=security) as servers:
            yield {"servers": servers, "security": security, "service": service, "tmp": tmp}
        service.stop()


def token(iris, user: str) -> str:
    form = {"grant_type": "password", "username": user, "password": PASSWORDS[user]}
    answer = httpx.post(f"http://127.0.0.1:{iris['servers'].http_port}/token", data=form)
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


def inputs(module) -> list:
    frame = pd.read_csv(IRIS / "new_flowers.csv")
    out = []
    for name in FEATURES:
        tensor = module.InferInput(name, [len(frame)], "FP64")
        tensor.set_data_from_numpy(frame[name].to_numpy(dtype="float64"))
        out.append(tensor)
    return out


def check_answer(result) -> None:
    labels = {v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("prediction").tolist()}
    assert labels <= {"setosa", "versicolor", "virginica"} and labels
    assert np.allclose(result.as_numpy("probabilities").sum(axis=1), 1.0)


def refused(call, *args, **kwargs) -> str:
    with pytest.raises(InferenceServerException) as info:
        call(*args, **kwargs)
    return f"{info.value.status()} {info.value.message()}"


def test_tritonclient_http_infers_with_a_bearer_token_and_is_refused_without(iris):
    client = httpclient.InferenceServerClient(f"127.0.0.1:{iris['servers'].http_port}")
    try:
        assert client.is_server_live() and client.is_server_ready() and client.get_server_metadata()
        check_answer(
            client.infer(MODEL, inputs(httpclient), headers={"Authorization": f"Bearer {token(iris, 'alice')}"})
        )
        assert "authentication required" in refused(client.infer, MODEL, inputs(httpclient))
        reader = {"Authorization": f"Bearer {token(iris, 'reader')}"}
        assert "'infer' scope" in refused(client.infer, MODEL, inputs(httpclient), headers=reader)
        assert client.get_model_metadata(MODEL, headers=reader)["name"] == MODEL
        assert client.get_model_repository_index(headers=reader)
        assert "'admin' scope" in refused(client.unload_model, MODEL, headers=reader)
    finally:
        client.close()
    answer = httpx.post(f"http://127.0.0.1:{iris['servers'].http_port}/v2/models/{MODEL}/infer", json={"inputs": []})
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"


def test_tritonclient_grpc_sends_tokens_and_api_keys_as_metadata(iris):
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{iris['servers'].grpc_port}")
    _, key = iris["security"].store.create_key("scorer", ["infer"])
    try:
        assert client.is_server_live() and client.is_server_ready() and client.get_server_metadata()
        check_answer(
            client.infer(MODEL, inputs(grpcclient), headers={"authorization": f"Bearer {token(iris, 'alice')}"})
        )
        check_answer(client.infer(MODEL, inputs(grpcclient), headers={"x-api-key": key}))
        assert "UNAUTHENTICATED" in refused(client.infer, MODEL, inputs(grpcclient))
        assert "PERMISSION_DENIED" in refused(client.get_model_metadata, MODEL, headers={"x-api-key": key})
        root = {"authorization": f"Bearer {token(iris, 'root')}"}
        assert client.get_model_metadata(MODEL, headers=root).name == MODEL
        client.load_model(MODEL, headers=root)
        iris["security"].store.revoke_key(key.split("_")[1])
        assert "revoked" in refused(client.infer, MODEL, inputs(grpcclient), headers={"x-api-key": key})
    finally:
        client.close()


def test_every_v2_grpc_method_has_a_scope():
    from services.predict.v2 import grpc_predict_v2_pb2 as pb

    methods = {f"/inference.GRPCInferenceService/{m.name}" for m in pb.DESCRIPTOR.services_by_name[
        "GRPCInferenceService"].methods}  # fmt: skip
    assert set(SCOPES) == methods
    assert SCOPES["/inference.GRPCInferenceService/ModelInfer"] == "infer"


def test_v2_over_tls_with_authentication(iris):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    tmp = iris["tmp"]
    cert.private_key_pem.write_to_path(str(tmp / "server.key"))
    cert.cert_chain_pems[0].write_to_path(str(tmp / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    tls = Tls(cert=tmp / "server.pem", key=tmp / "server.key")
    with V2Servers(iris["service"], http_port=0, grpc_port=0, security=iris["security"], tls=tls) as servers:
        root = str(tmp / "ca.pem")
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{servers.grpc_port}", ssl=True, root_certificates=root)
        try:
            check_answer(
                client.infer(MODEL, inputs(grpcclient), headers={"authorization": f"Bearer {token(iris, 'alice')}"})
            )
        finally:
            client.close()
        base = f"https://127.0.0.1:{servers.http_port}"
        form = {"grant_type": "password", "username": "alice", "password": PASSWORDS["alice"]}
        assert httpx.post(f"{base}/token", data=form, verify=ssl.create_default_context(cafile=root)).status_code == 200
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{servers.http_port}/v2/health/live")
