"""The predict service's direct API (its :meth:`~services.predict.service.PredictService.api` hook): the V2 REST app
describes itself (OpenAPI, docs page), every endpoint and gRPC method names its scope, health answers at the V2
paths and at the ones every mlrm service has, and schemathesis finds no 5xx and no answer off the document.
"""

from __future__ import annotations

import httpx
import pytest

from mlrm.bus.memory import MemoryBus
from mlrm.service import ApiSettings
from mlrm.settings import Settings
from mlrm.web.servers import ApiServers
from orchestrator.embedded import Embedded
from services.predict.service import PredictService
from services.predict.v2 import grpc_predict_v2_pb2 as pb
from services.predict.v2.grpc import SCOPES
from tests.conftest import CONFIGS

MODEL = "iris-classifier"


@pytest.fixture(scope="module")
def v2(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("v2-openapi")
    settings = Settings(volume=str(tmp / "volume"), state=str(tmp / "runs.sqlite"), retries=1)
    with Embedded(settings) as mlrm:
        assert mlrm.run(CONFIGS / "iris" / "train.yaml", timeout=300).status == "succeeded"
        service = PredictService(MemoryBus(), mlrm.volume, watch_interval=0, worker="predict-openapi")
        service.start()
        offered = service.api(ApiSettings(max_body=64 * 1024))
        assert service.api_ports == (8080, 8081)
        servers = ApiServers(rest=offered.rest, grpc=offered.grpc, http_port=0, grpc_port=0,
                             max_concurrent_rpcs=offered.max_concurrent_rpcs)  # fmt: skip
        with servers, httpx.Client(base_url=f"http://127.0.0.1:{servers.http_port}", timeout=30) as http:
            yield {"http": http, "servers": servers, "offered": offered}
        service.stop()


def test_the_v2_app_describes_itself(v2):
    spec = v2["http"].get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    infer = spec["paths"]["/v2/models/{name}/versions/{version}/infer"]["post"]
    assert {p["name"] for p in infer["parameters"]} == {"name", "version"}
    assert infer["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("V2InferenceRequest")
    assert {"V2InferenceRequest", "V2InferenceResponse", "V2Error"} <= set(spec["components"]["schemas"])
    assert "openapi.json" in v2["http"].get("/docs").text


def test_health_at_the_v2_paths_and_the_common_ones(v2):
    http = v2["http"]
    assert http.get("/v2/health/live").json() == {"live": True} == http.get("/health/live").json()
    assert http.get("/v2/health/ready").json() == {"ready": True} == http.get("/health/ready").json()


def test_a_v2_error_keeps_its_body(v2):
    answer = v2["http"].post(f"/v2/models/{MODEL}/infer", content=b"{", headers={"content-type": "application/json"})
    assert answer.status_code == 400 and set(answer.json()) == {"error"}
    assert v2["http"].get("/v2/models/no-such-model").status_code == 404


def test_every_endpoint_and_grpc_method_names_its_scope(v2):
    scopes = {r.path: getattr(r.endpoint, "scope", "undeclared") for r in v2["servers"].rest.routes
              if getattr(r, "include_in_schema", True)}  # fmt: skip
    assert "undeclared" not in scopes.values()
    assert scopes["/v2/health/live"] is None and scopes["/v2/models/{name}/infer"] == "infer"
    assert scopes["/v2/repository/models/{name}/load"] == "admin"
    methods = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods_by_name
    assert set(SCOPES) == {f"/inference.GRPCInferenceService/{m}" for m in methods}
    from services.predict.v2 import monitoring

    assert v2["offered"].scopes == {**SCOPES, **monitoring.SCOPES, "/grpc.health.v1.Health/Check": None}


def test_the_standard_grpc_health_check_answers(v2):
    import grpc

    from mlrm.web import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{v2['servers'].grpc_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in ("", "inference.GRPCInferenceService"):
            answer = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=30)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as info:
            stub.Check(health_pb2.HealthCheckRequest(service="nothing.Here"))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_schemathesis_finds_no_server_error_and_no_answer_off_its_schema(v2):
    from tests.mlrm.web.fuzz import fuzz

    fuzz(str(v2["http"].base_url).rstrip("/"), max_examples=15)
