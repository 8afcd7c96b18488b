"""The control plane in distributed mode: `mlrm orchestrator --http-port --grpc-port` on the real broker,
every service its own process; submit, status, results over REST and gRPC, and cancel mid-way."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import grpc
import httpx
import orjson
import pytest

from mlrm.auth.store import AuthStore
from orchestrator.api import control_pb2 as pb
from orchestrator.api import control_pb2_grpc as pb_grpc
from tests.orchestrator.api.conftest import slow_workflow

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def api(cluster_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    http, grpc_port = free_port(), free_port()
    configs = tmp_path / "configs"
    shutil.copytree(ROOT / "configs" / "iris", configs / "iris")
    monkeypatch.setenv("MLRM_CONTROL_HTTP_PORT", str(http))  # the orchestrator process serves the control plane
    monkeypatch.setenv("MLRM_CONTROL_GRPC_PORT", str(grpc_port))
    monkeypatch.setenv("MLRM_CONFIGS", str(configs))
    # secure by default: the orchestrator opening ports on a shared bus needs a signing key; callers an API key
    monkeypatch.setenv("MLRM_JWT_KEYS", "k1:" + "s" * 40)
    store = AuthStore(tmp_path / "auth.yaml")
    monkeypatch.setenv("MLRM_AUTH_FILE", str(store.path))
    _, key = store.create_key("tests", ["submit", "read"])
    cluster = cluster_factory()
    client = httpx.Client(base_url=f"http://127.0.0.1:{http}", timeout=30, headers={"X-API-Key": key})
    deadline = time.monotonic() + 60
    while True:
        try:
            if client.get("/ready").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the control plane did not come up"
        time.sleep(0.2)
    yield cluster, client, f"127.0.0.1:{grpc_port}"
    client.close()


def wait_done(client: httpx.Client, run_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while (run := client.get(f"/runs/{run_id}").json())["status"] == "running":
        assert time.monotonic() < deadline, run
        time.sleep(0.1)
    return run


def test_submit_status_results_over_rest_and_grpc(api) -> None:
    cluster, client, target = api
    anonymous = httpx.post(f"{client.base_url}/runs", json={"name": "iris/train"})
    assert anonymous.status_code == 401  # secure by default on a shared bus
    run_id = client.post("/runs", json={"name": "iris/train"}).json()["run_id"]
    run = wait_done(client, run_id)
    assert run["status"] == "succeeded", run
    assert client.get(f"/runs/{run_id}/results").json()["results"]["train"]["version"] == 1
    with grpc.insecure_channel(target) as channel:
        control = pb_grpc.ControlStub(channel)
        key = (("x-api-key", client.headers["X-API-Key"]),)
        with pytest.raises(grpc.RpcError) as refused:
            control.Submit(pb.SubmitRequest(name="iris/train"))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        second = control.Submit(pb.SubmitRequest(name="iris/train", overrides_json='{"collect": {"batch_size": 30}}'),
                                metadata=key)  # fmt: skip
        statuses = [r.status for r in control.WatchRun(pb.RunRequest(run_id=second.run_id), timeout=120,
                                                       metadata=key)]  # fmt: skip
        assert statuses[-1] == "succeeded"
        assert control.GetRun(pb.RunRequest(run_id=second.run_id), metadata=key).steps[0].batches_out == 5
        results = orjson.loads(control.GetResults(pb.RunRequest(run_id=second.run_id), metadata=key).json)
        assert results["results"]["train"]["version"] == 2
    assert cluster.status(run_id).status == "succeeded"  # the published status agrees (mlrm status)


def test_cancel_stops_a_long_run_mid_way(api, tmp_path: Path) -> None:
    cluster, client, _ = api
    body = slow_workflow(tmp_path, rows=6000, batch=50, seconds=0.03)  # 120 batches, ~4 s in the handler
    run_id = client.post("/runs", json={"yaml": body}).json()["run_id"]
    deadline = time.monotonic() + 60
    while client.get(f"/runs/{run_id}").json()["steps"][1]["batches_in"] < 5:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    cancelled = client.post(f"/runs/{run_id}/cancel").json()
    assert cancelled["status"] == "cancelled"
    time.sleep(2.0)
    seen = client.get(f"/runs/{run_id}").json()["steps"][1]["batches_in"]
    time.sleep(4.0)  # past the orchestrator's second sweep of scratch data (5 s after the cancel)
    run = client.get(f"/runs/{run_id}").json()
    assert run["status"] == "cancelled" and cluster.status(run_id).status == "cancelled"
    assert run["steps"][1]["batches_in"] == seen < 120  # the handler dropped the rest of the run
    assert run["steps"][2]["status"] == "cancelled" and run["steps"][2]["result"] is None
    assert client.get("/models").json() == [] and not list(cluster.volume.list("models/"))
    assert not list(cluster.volume.list(f"runs/{run_id}/gather/"))
