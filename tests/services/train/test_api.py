"""Training jobs over REST and gRPC: a job trains and registers a version, its status is readable, bad jobs are refused.

A real train service's API on free ports (its :meth:`~services.train.service.TrainService.api`), httpx and a gRPC
stub; the config is the iris example's ``model.yaml``, the table the iris rows.
"""

from __future__ import annotations

import time

import grpc
import httpx
import orjson
import pandas as pd
import pytest

from mlrm.bus.memory import MemoryBus
from mlrm.config import load_config
from mlrm.registry import ModelRegistry
from mlrm.service import ApiSettings
from mlrm.volume.local import LocalVolume
from mlrm.web import tables
from mlrm.web import tables_pb2 as pb
from mlrm.web import tables_pb2_grpc as pb_grpc
from mlrm.web.servers import ApiServers
from services.train.service import TrainService
from tests.conftest import CONFIGS

IRIS = CONFIGS / "iris"
MODEL = "iris-classifier"


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    volume = LocalVolume(tmp_path_factory.mktemp("train-api") / "volume")
    service = TrainService(MemoryBus(), volume, worker="train-api")
    offered = service.api(ApiSettings(config=load_config(IRIS / "model.yaml"), max_body=1024 * 1024))
    with ApiServers(rest=offered.rest, grpc=offered.grpc, http_port=0, grpc_port=0) as servers:
        http = httpx.Client(base_url=f"http://127.0.0.1:{servers.http_port}", timeout=30)
        channel = grpc.insecure_channel(f"127.0.0.1:{servers.grpc_port}")
        yield {"volume": volume, "http": http, "grpc": pb_grpc.TrainingStub(channel), "servers": servers}
        http.close()
        channel.close()
    offered.close()


def rows() -> pd.DataFrame:
    return pd.read_csv(IRIS / "iris.csv").drop(columns=["id"], errors="ignore")


def wait(http: httpx.Client, job_id: str) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = http.get(f"/v1/jobs/{job_id}").json()
        if status["status"] in ("done", "failed"):
            return status
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end: {status}")


def test_a_job_with_config_and_records_trains_and_registers_a_version(train):
    config = load_config(IRIS / "model.yaml").model_dump(mode="json", by_alias=True)
    config["model"]["name"] = "iris-by-api"
    answer = train["http"].post("/v1/jobs", json={"config": config, "records": rows().to_dict("records")})
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert job["status"] in ("queued", "running") and answer.headers["location"] == f"/v1/jobs/{job['id']}"

    status = wait(train["http"], job["id"])
    assert status["status"] == "done", status
    assert status["model"] == "iris-by-api" and status["version"] == 1
    assert status["result"]["metrics"]["accuracy"] >= 0.9 and status["result"]["aliases"] == ["production"]
    registry = ModelRegistry(train["volume"])
    assert registry.resolve("iris-by-api", alias="production").version == 1
    assert registry.card(registry.resolve("iris-by-api"))["lineage"]["run_id"] == job["id"]


def test_a_bare_table_trains_with_the_services_config_and_over_grpc_too(train):
    answer = train["http"].post("/v1/jobs", content=tables.encode(rows(), tables.PARQUET),
                                headers={"content-type": tables.PARQUET})  # fmt: skip
    assert answer.status_code == 202, answer.text
    first = wait(train["http"], answer.json()["id"])
    assert first["status"] == "done" and first["model"] == MODEL

    job = train["grpc"].Submit(pb.TrainJob(arrow=tables.to_ipc(rows())), timeout=30)
    assert job.id.startswith("train-") and job.status in ("queued", "running")
    deadline = time.monotonic() + 120
    while (status := train["grpc"].Status(pb.JobRef(id=job.id), timeout=30)).status not in ("done", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert status.status == "done" and status.model == MODEL and status.version == first["version"] + 1
    assert orjson.loads(status.result_json)["metrics"]["accuracy"] >= 0.9


def test_a_job_reading_its_table_from_the_volume(train):
    train["volume"].put_bytes("prepared/iris.csv", (IRIS / "iris.csv").read_bytes())
    answer = train["http"].post("/v1/jobs", json={"key": "prepared/iris.csv"})
    assert answer.status_code == 202, answer.text
    assert wait(train["http"], answer.json()["id"])["status"] == "done"
    missing = train["http"].post("/v1/jobs", json={"key": "prepared/nothing.csv"})
    assert missing.status_code == 404


def test_a_job_whose_training_fails_reports_why(train):
    answer = train["http"].post("/v1/jobs", json={"records": rows().drop(columns=["species"]).to_dict("records")})
    assert answer.status_code == 202
    status = wait(train["http"], answer.json()["id"])
    assert status["status"] == "failed" and "species" in status["error"]


def test_a_job_whose_rows_hold_one_class_trains_and_the_server_survives(train):
    """Found by schemathesis: converting a one-class classifier to ONNX aborted the process in native code."""
    one = rows()[rows()["species"] == "setosa"]
    answer = train["http"].post("/v1/jobs", json={"records": one.to_dict("records")})
    status = wait(train["http"], answer.json()["id"])
    assert status["status"] == "done" and train["http"].get("/health/live").status_code == 200
    card = ModelRegistry(train["volume"]).card(ModelRegistry(train["volume"]).resolve(MODEL, version=status["version"]))
    assert "single class" in card["inference"]["runtimes"]["onnx"]["reason"]


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"config": {"kind": "TrainConfig", "target": "species"}, "records": [{"a": 1}]}, 422, "model"),
        ({"records": [{"a": 1}], "key": "x.csv"}, 400, "exactly one"),
        ({}, 400, "exactly one"),
        ({"key": "x.txt"}, 400, "must end in"),
        ({"key": "../../etc/passwd.csv"}, 400, ""),
        ({"records": []}, 400, "no rows"),
        ({"records": "nope"}, 400, "not a training job"),
    ],
)
def test_a_bad_job_is_refused_with_the_reason(train, body, status, reason):
    answer = train["http"].post("/v1/jobs", json=body)
    assert answer.status_code == status, answer.text
    assert reason in answer.json()["error"]


def test_bad_bodies_and_unknown_jobs(train):
    http = train["http"]
    assert http.post("/v1/jobs", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    assert http.post("/v1/jobs", content=b"{", headers={"content-type": "application/json"}).status_code == 400
    big = b"a" * (2 * 1024 * 1024)
    assert http.post("/v1/jobs", content=big, headers={"content-type": "text/csv"}).status_code == 413
    assert http.get("/v1/jobs/train-0000000000000000").status_code == 404
    assert http.get("/v1/jobs/../../etc").status_code == 404
    with pytest.raises(grpc.RpcError) as info:
        train["grpc"].Status(pb.JobRef(id="nope"), timeout=30)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as info:
        train["grpc"].Submit(pb.TrainJob(), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_health_documents_and_scopes(train):
    from services.train.api import SCOPES

    http = train["http"]
    assert http.get("/health/live").json() == {"live": True} and http.get("/health/ready").json() == {"ready": True}
    assert set(http.get("/openapi.json").json()["paths"]) == {"/health/live", "/health/ready", "/v1/jobs",
                                                               "/v1/jobs/{id}", "/token"}  # fmt: skip
    scopes = {r.path: r.endpoint.scope for r in train["servers"].rest.routes if getattr(r, "include_in_schema", True)}
    assert scopes == {"/health/live": None, "/health/ready": None, "/v1/jobs": "submit", "/v1/jobs/{id}": "read",
                      "/token": None}  # fmt: skip
    assert SCOPES == {"/mlrm.tables.v1.Training/Submit": "submit", "/mlrm.tables.v1.Training/Status": "read",
                      "/grpc.health.v1.Health/Check": None}  # fmt: skip


def test_schemathesis_finds_no_server_error_and_no_answer_off_its_schema(train):
    from tests.mlrm.web.fuzz import fuzz

    fuzz(f"http://127.0.0.1:{train['servers'].http_port}", max_examples=20)
