"""The control plane over gRPC, served for real on a free port, called with the generated stubs."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import orjson
import pytest

from orchestrator.api import control_pb2 as pb
from orchestrator.api import control_pb2_grpc as pb_grpc
from orchestrator.api.grpc import SCOPES
from tests.orchestrator.api.conftest import slow_workflow


@pytest.fixture
def channel(servers):
    with grpc.insecure_channel(f"127.0.0.1:{servers.grpc_port}") as ch:
        yield ch


def test_submit_status_results_watch(channel) -> None:
    control = pb_grpc.ControlStub(channel)
    run_id = control.Submit(pb.SubmitRequest(name="iris/train")).run_id
    seen = [run.status for run in control.WatchRun(pb.RunRequest(run_id=run_id), timeout=60)]
    assert seen[-1] == "succeeded" and len(seen) >= 2
    run = control.GetRun(pb.RunRequest(run_id=run_id))
    assert [s.name for s in run.steps] == ["collect", "clean", "features", "train"]
    assert run.steps[-1].status == "succeeded" and run.steps[1].rows_in == 150
    results = orjson.loads(control.GetResults(pb.RunRequest(run_id=run_id)).json)
    assert results["results"]["train"]["version"] == 1
    listed = control.ListRuns(pb.ListRunsRequest(status="succeeded", limit=5))
    assert [r.id for r in listed.runs] == [run_id] and not listed.next_cursor
    registry = pb_grpc.RegistryStub(channel)
    models = orjson.loads(registry.ListModels(pb.Empty()).json)
    assert models[0]["model"] == "iris-classifier"
    card = orjson.loads(registry.GetCard(pb.CardRequest(name="iris-classifier", alias="production")).json)
    assert card["lineage"]["run_id"] == run_id
    found = orjson.loads(registry.SearchModels(pb.Json(json='{"where": "accuracy >= 0.5"}')).json)
    assert [c["modelname"] for c in found] == ["iris-classifier"]
    dep = orjson.loads(registry.Deploy(pb.Json(json='{"model": "iris-classifier", "alias": "production"}')).json)
    assert dep["id"].startswith("dep-")
    assert orjson.loads(registry.Decommission(pb.DecommissionRequest(deployment_id=dep["id"])).json)["status"] == (
        "unloaded"
    )


def test_errors_carry_their_status(channel) -> None:
    control = pb_grpc.ControlStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        control.GetRun(pb.RunRequest(run_id="nope"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as caught:
        control.Submit(pb.SubmitRequest(yaml="kind: Workflow\nname: x\nsteps: []\n"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "request body:3" in caught.value.details()
    with pytest.raises(grpc.RpcError) as caught:
        list(control.WatchRun(pb.RunRequest(run_id="nope")))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as caught:
        pb_grpc.RegistryStub(channel).GetCard(pb.CardRequest(name="nope"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_cancel_over_grpc(channel, tmp_path: Path, embedded) -> None:
    control = pb_grpc.ControlStub(channel)
    run_id = control.Submit(pb.SubmitRequest(yaml=slow_workflow(tmp_path, rows=4000, batch=50))).run_id
    deadline = time.monotonic() + 30
    while control.GetRun(pb.RunRequest(run_id=run_id)).steps[1].batches_in < 3:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert control.CancelRun(pb.RunRequest(run_id=run_id)).status == "cancelled"
    time.sleep(1.5)
    run = control.GetRun(pb.RunRequest(run_id=run_id))
    assert run.status == "cancelled" and run.steps[1].batches_in < 80
    assert orjson.loads(pb_grpc.RegistryStub(channel).ListModels(pb.Empty()).json) == []
    with pytest.raises(grpc.RpcError) as caught:
        control.CancelRun(pb.RunRequest(run_id=run_id))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_every_method_has_a_scope() -> None:
    methods = {f"/mlrm.control.v1.{service.name}/{m.name}" for service in pb.DESCRIPTOR.services_by_name.values()
               for m in service.methods}  # fmt: skip
    assert set(SCOPES) == methods
    assert SCOPES["/mlrm.control.v1.Control/Submit"] == "submit"
    assert SCOPES["/mlrm.control.v1.Registry/Deploy"] == "admin"
