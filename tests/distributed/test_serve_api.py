"""`mlrm serve <service>` starts the service's own API (Service.api) on the ports it is given, beside its consumer.

Real processes on the broker (a private vhost): the handler with the iris cleaning config answers a CSV over
REST and an Arrow table over gRPC; without ports its API stays off; the train service takes a job.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pandas as pd

from mlrm.auth.store import AuthStore
from mlrm.web import tables
from mlrm.web import tables_pb2 as pb
from mlrm.web import tables_pb2_grpc as pb_grpc
from tests.conftest import CONFIGS

IRIS = CONFIGS / "iris"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_key(tmp_path: Path) -> str:
    """The callers' API key (secure by default: a service opening ports on a shared bus needs a signing key)."""
    kept = tmp_path / "api-key"
    if not kept.exists():
        kept.write_text(AuthStore(tmp_path / "auth.yaml").create_key("tests", ["infer", "submit", "read"])[1])
    return kept.read_text()


def serve(tmp_path: Path, vhost: str, *args: str) -> tuple[subprocess.Popen, Path]:
    api_key(tmp_path)
    env = {**os.environ, "MLRM_VOLUME": str(tmp_path / "volume"),
           "MLRM_BUS": f"amqp://guest:guest@127.0.0.1:5672/{vhost}?heartbeat=10",
           "MLRM_JWT_KEYS": "k1:" + "t" * 40, "MLRM_AUTH_FILE": str(tmp_path / "auth.yaml")}  # fmt: skip
    env.pop("MLRM_HTTP_PORT", None)
    env.pop("MLRM_GRPC_PORT", None)
    log = tmp_path / f"serve-{args[0]}.log"
    process = subprocess.Popen([sys.executable, "-m", "mlrm", "serve", *args], env=env, stdout=log.open("w"),
                               stderr=subprocess.STDOUT)  # fmt: skip
    return process, log


def wait_ready(process: subprocess.Popen, log: Path, url: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "not ready: " + log.read_text()
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)


def stop(process: subprocess.Popen, log: Path) -> None:
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0, log.read_text()


def test_mlrm_serve_handler_answers_a_table_over_rest_and_grpc(tmp_path, vhost):
    http_port, grpc_port = free_port(), free_port()
    process, log = serve(tmp_path, vhost, "handler", "--config", str(IRIS / "clean-train.yaml"),
                         "--http-port", str(http_port), "--grpc-port", str(grpc_port))  # fmt: skip
    try:
        wait_ready(process, log, f"http://127.0.0.1:{http_port}/health/ready")
        rows = pd.read_csv(IRIS / "iris.csv").head(10)
        rows.loc[2, "sepal_width"] = np.nan
        assert httpx.post(f"http://127.0.0.1:{http_port}/v1/process", content=rows.to_csv(index=False),
                          headers={"content-type": "text/csv"}).status_code == 401  # fmt: skip
        answer = httpx.post(f"http://127.0.0.1:{http_port}/v1/process", content=rows.to_csv(index=False),
                            headers={"content-type": "text/csv", "x-api-key": api_key(tmp_path)})  # fmt: skip
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
        cleaned = tables.decode(answer.content, tables.CSV)
        assert len(cleaned) == 10 and not cleaned["sepal_width"].isna().any()
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            reply = pb_grpc.TablesStub(channel).Process(pb.ProcessRequest(arrow=tables.to_ipc(rows)), timeout=30,
                                                        metadata=(("x-api-key", api_key(tmp_path)),))  # fmt: skip
        pd.testing.assert_frame_equal(tables.from_ipc(reply.arrow), cleaned, check_dtype=False)
        assert f"REST http://127.0.0.1:{http_port}" in log.read_text()
    finally:
        stop(process, log)


def test_without_ports_the_api_is_off_and_without_a_config_it_is_refused(tmp_path, vhost):
    process, log = serve(tmp_path, vhost, "features")
    try:
        deadline = time.monotonic() + 60
        while "serving features" not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert "API on" not in log.read_text()
    finally:
        stop(process, log)
    refused, log = serve(tmp_path, vhost, "handler", "--http-port", str(free_port()))
    assert refused.wait(timeout=60) != 0
    assert "--config" in log.read_text()


def test_mlrm_serve_train_takes_a_job(tmp_path, vhost):
    http_port = free_port()
    process, log = serve(tmp_path, vhost, "train", "--config", str(IRIS / "model.yaml"), "--http-port", str(http_port))
    try:
        base = f"http://127.0.0.1:{http_port}"
        wait_ready(process, log, f"{base}/health/ready")
        key = {"x-api-key": api_key(tmp_path)}
        answer = httpx.post(f"{base}/v1/jobs", content=(IRIS / "iris.csv").read_bytes(),
                            headers={"content-type": "text/csv", **key})  # fmt: skip
        assert answer.status_code == 202, answer.text
        deadline = time.monotonic() + 120
        while (status := httpx.get(f"{base}/v1/jobs/{answer.json()['id']}", headers=key).json())["status"] not in (
            "done", "failed"
        ):  # fmt: skip
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert status["status"] == "done" and status["model"] == "iris-classifier" and status["version"] == 1
    finally:
        stop(process, log)
