"""Traffic policies of a deployment, over real V2 requests: a canary answers its share of routing keys
(sticky per key), a shadow's answers are logged and never returned, every replica reports its counts,
and switching policies under load fails no request."""

from __future__ import annotations

import threading

import httpx
import pytest

from mlrm.bus.memory import MemoryBus
from mlrm.deployments import Canary, Deployments, DeployRequest, Shadow
from mlrm.registry import ModelRegistry
from mlrm.settings import Settings
from orchestrator.embedded import Embedded
from services.predict.dataplane import Prediction
from services.predict.service import PredictService
from services.predict.traffic import bucket
from services.predict.v2.serve import V2Servers
from tests.conftest import CONFIGS
from tests.support import wait_for

MODEL = "iris-classifier"
ROW = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 4], "data": [[5.8, 4.0, 1.2, 0.2]]}]}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("traffic")
    settings = Settings(volume=str(tmp / "volume"), state=str(tmp / "runs.sqlite"), retries=1)
    with Embedded(settings) as mlrm:
        for _ in range(2):
            assert mlrm.run(CONFIGS / "iris" / "train.yaml", timeout=300).status == "succeeded"
        ModelRegistry(mlrm.volume).set_alias(MODEL, "production", 1)
        service = PredictService(MemoryBus(), mlrm.volume, watch_interval=0.05, worker="predict-traffic")
        service.start()
        deployments = Deployments(mlrm.volume)
        dep = deployments.create(DeployRequest(model=MODEL, alias="production"))
        service.server.sync()
        with V2Servers(service, http_port=0, grpc_port=0) as servers:
            client = httpx.Client(base_url=f"http://127.0.0.1:{servers.http_port}", timeout=30)
            yield {"service": service, "deployments": deployments, "dep": dep, "client": client,
                   "grpc_port": servers.grpc_port}  # fmt: skip
            client.close()
        service.stop()


def infer(client: httpx.Client, key: str | None = None) -> httpx.Response:
    body = dict(ROW, parameters={"routing_key": key}) if key is not None else ROW
    return client.post(f"/v2/models/{MODEL}/versions/production/infer", json=body)


def apply(served, **policies) -> None:
    served["deployments"].set_traffic(served["dep"].id, **policies)
    served["service"].server.sync()


def test_canary_answers_its_share_of_routing_keys_and_each_key_sticks(served):
    apply(served, canary=Canary(version=2, share=0.3), shadow=None)
    try:
        answered = {}
        for i in range(200):
            r = infer(served["client"], f"user-{i}")
            assert r.status_code == 200, r.text
            answered[f"user-{i}"] = r.json()["model_version"]
        expected = {k: "2" if bucket(MODEL, k) < 0.3 else "1" for k in answered}
        assert answered == expected  # the side is a function of the key alone
        assert 40 <= sum(v == "2" for v in answered.values()) <= 80  # and about the share
        for key in list(answered)[:20]:  # sticky: the same key meets the same version again
            assert infer(served["client"], key).json()["model_version"] == answered[key]
    finally:
        apply(served, canary=None)
    assert {infer(served["client"], f"user-{i}").json()["model_version"] for i in range(50)} == {"1"}


def test_a_routing_key_meets_the_same_version_over_rest_and_grpc(served):
    import numpy as np
    import tritonclient.grpc as grpcclient

    apply(served, canary=Canary(version=2, share=0.5), shadow=None)
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{served['grpc_port']}")
    try:
        for key in [f"k-{i}" for i in range(20)]:
            x = grpcclient.InferInput("x", [1, 4], "FP64")
            x.set_data_from_numpy(np.array([[5.8, 4.0, 1.2, 0.2]]))
            answer = client.infer(MODEL, [x], model_version="production", parameters={"routing_key": key})
            version = answer.get_response().model_version
            assert version == infer(served["client"], key).json()["model_version"]
            assert version == ("2" if bucket(MODEL, key) < 0.5 else "1")
    finally:
        client.close()
        apply(served, canary=None)


def test_replicas_report_requests_per_version_for_promotion(served):
    served["service"].server.sync()
    before = served["deployments"].traffic(MODEL).get(1, {"requests": 0})["requests"]
    for _ in range(5):
        assert infer(served["client"]).status_code == 200
    served["service"].server.sync()
    assert served["deployments"].traffic(MODEL)[1]["requests"] == before + 5
    assert infer(served["client"], "").status_code == 400  # a bad routing key is the caller's error
    assert "routing_key" in infer(served["client"], "").json()["error"]
    body = b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 4], "data": [[1e999, 4.0, 1.2, 0.2]]}]}'
    r = served["client"].post(f"/v2/models/{MODEL}/versions/production/infer", content=body)
    assert r.status_code == 400, r.text  # the caller's failure, never the version's
    served["service"].server.sync()
    assert served["deployments"].traffic(MODEL)[1]["errors"] == 0


def test_shadow_answers_are_logged_as_shadow_and_never_returned(served):
    seen: list[Prediction] = []
    dataplane = served["service"].dataplane
    dataplane.on_predict.append(seen.append)
    apply(served, shadow=Shadow(version=2))
    try:
        r = infer(served["client"])
        assert r.status_code == 200 and r.json()["model_version"] == "1"
        dataplane.mirror.drain()
    finally:
        apply(served, shadow=None)
        dataplane.on_predict.remove(seen.append)
    request_id = next(p.request_id for p in seen if not p.shadow)
    shadow = [p for p in seen if p.shadow]
    assert [(p.ref.version, p.request_id) for p in shadow] == [(2, request_id)]
    assert shadow[0].outputs["prediction"].tolist() == ["setosa"]


def test_no_request_fails_while_canary_and_shadow_come_and_go(served):
    stop, failures, versions, answered = threading.Event(), [], set(), []

    def load() -> None:
        with httpx.Client(base_url=served["client"].base_url, timeout=30) as client:
            i = 0
            while not stop.is_set():
                r = infer(client, f"k{i % 50}")
                i += 1
                if r.status_code != 200:
                    failures.append(r.text)
                else:
                    versions.add(r.json()["model_version"])
                answered.append(1)

    def under_load(**policies) -> None:
        apply(served, **policies)
        start = len(answered)
        wait_for(lambda: len(answered) >= start + 30, timeout=60, what="30 more requests")

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for share in (0.5, 1.0, 0.2):
            under_load(canary=Canary(version=2, share=share), shadow=Shadow(version=2))
            under_load(canary=None, shadow=None)
        under_load(canary=Canary(alias="production", share=0.5))  # a canary of itself is harmless
        under_load(canary=None)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert versions == {"1", "2"}
