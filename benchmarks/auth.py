"""What authentication costs a predict request: the same V2 request to the same model, on a server
without authentication and on one with it (a JWT verified on every request; the signing keys held in
memory), side by side in one run.

    python benchmarks/auth.py            # 2,000 requests per cell
    python benchmarks/auth.py --quick    # 300

A logistic regression on iris (the lightest model, so the check's share is the largest) is trained
into a temporary volume; two ``mlrm serve predict --no-bus`` processes serve it, one ``--insecure``,
one with ``MLRM_JWT_KEYS`` and an API key. One client at a time (a keep-alive ``http.client``
connection for REST, a grpcio stub for gRPC) sends one row; rounds alternate between the servers
so drift on a shared machine hits both alike. Reported: p50 / p99 latency (ms) per server and the
ratio secured / open, for a bearer token and for an API key; and the checks alone, in process
(microseconds per ``Security.authenticate``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.serving import LOGREG_WORKFLOW  # noqa: E402

IRIS = ROOT / "configs" / "iris"
MODEL = "bench-logreg"
KEYS = "bench:" + "b" * 64
ROW = [[5.1, 3.5, 1.4, 0.2]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(volume: Path, env: dict[str, str], extra: list[str], log: Path) -> tuple[subprocess.Popen, int, int]:
    http_port, grpc_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "mlrm", "serve", "predict", "--no-bus", "--http-port", str(http_port),
           "--grpc-port", str(grpc_port), *extra]  # fmt: skip
    proc = subprocess.Popen(cmd, env={**os.environ, **env, "MLRM_VOLUME": str(volume)}, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
            conn.request("GET", "/v2/health/ready")
            if conn.getresponse().status == 200:
                return proc, http_port, grpc_port
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the server did not start: {log.read_text()}")


def body() -> bytes:
    request = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 4], "data": ROW}],
               "outputs": [{"name": "probabilities"}]}  # fmt: skip
    return json.dumps(request).encode()


def rest_round(port: int, headers: dict[str, str], n: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    payload, out = body(), []
    headers = {"Content-Type": "application/json", **headers}
    for i in range(n + 5):
        t0 = time.perf_counter()
        conn.request("POST", f"/v2/models/{MODEL}/infer", payload, headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"REST answered {response.status}")
        if i >= 5:  # the first few warm the connection
            out.append(time.perf_counter() - t0)
    conn.close()
    return out


def grpc_round(port: int, metadata: list[tuple[str, str]], n: int) -> list[float]:
    import grpc

    from services.predict.v2 import grpc_predict_v2_pb2 as pb
    from services.predict.v2 import grpc_predict_v2_pb2_grpc as pb_grpc

    request = pb.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add(name="x", datatype="FP64", shape=[1, 4])
    tensor.contents.fp64_contents.extend(ROW[0])
    request.outputs.add(name="probabilities")
    out = []
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for i in range(n + 5):
            t0 = time.perf_counter()
            stub.ModelInfer(request, metadata=metadata, timeout=30)
            if i >= 5:
                out.append(time.perf_counter() - t0)
    return out


def stats(latencies: list[float]) -> dict[str, float]:
    a = np.array(latencies) * 1000
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3)}


def in_process(tmp: Path) -> dict[str, float]:
    """Microseconds per check of a bearer token and of an API key."""
    from mlrm.auth import AuthSettings, Security

    security = Security.from_settings(AuthSettings(jwt_keys=KEYS, auth_file=str(tmp / "auth.yaml")))
    assert security is not None
    token, _ = security.tokens.issue("bench", ["infer"])
    _, key = security.store.create_key("bench", ["infer"])
    out = {}
    for label, headers in (("jwt_us", {"authorization": f"Bearer {token}"}), ("api_key_us", {"x-api-key": key})):
        n = 20000
        t0 = time.perf_counter()
        for _ in range(n):
            security.check(headers, "infer")
        out[label] = round((time.perf_counter() - t0) / n * 1e6, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 requests per cell")
    args = parser.parse_args()
    per_cell, rounds = (300, 3) if args.quick else (2000, 5)
    tmp = Path(tempfile.mkdtemp(prefix="mlrm-auth-bench-"))
    (tmp / "logreg.yaml").write_text(LOGREG_WORKFLOW % {"iris": IRIS})
    env = {**os.environ, "MLRM_VOLUME": str(tmp / "volume"), "MLRM_STATE": str(tmp / "runs.sqlite")}
    subprocess.run([sys.executable, "-m", "mlrm", "run", str(tmp / "logreg.yaml")], check=True, env=env, cwd=tmp)
    from mlrm.auth import AuthSettings, Security

    security = Security.from_settings(AuthSettings(jwt_keys=KEYS, auth_file=str(tmp / "auth.yaml")))
    assert security is not None
    token, _ = security.tokens.issue("bench", ["infer"], ttl=24 * 3600)
    _, key = security.store.create_key("bench", ["infer"])
    open_server = start(tmp / "volume", {}, ["--insecure"], tmp / "open.log")
    secured = start(tmp / "volume", {"MLRM_JWT_KEYS": KEYS, "MLRM_AUTH_FILE": str(tmp / "auth.yaml")}, [],
                    tmp / "secured.log")  # fmt: skip
    cases: dict[str, Any] = {
        "rest": (rest_round, 1, [("open", open_server, {}), ("jwt", secured, {"Authorization": f"Bearer {token}"}),
                                 ("api_key", secured, {"X-API-Key": key})]),
        "grpc": (grpc_round, 2, [("open", open_server, []), ("jwt", secured, [("authorization", f"Bearer {token}")]),
                                 ("api_key", secured, [("x-api-key", key)])]),
    }  # fmt: skip
    results: dict[str, Any] = {}
    try:
        for protocol, (run, port_at, variants) in cases.items():
            samples: dict[str, list[float]] = {label: [] for label, _, _ in variants}
            for _ in range(rounds):
                for label, server, creds in variants:
                    samples[label] += run(server[port_at], creds, per_cell // rounds)
            cell = {label: stats(lat) for label, lat in samples.items()}
            for label in ("jwt", "api_key"):
                cell[label]["p50_ratio"] = round(cell[label]["p50_ms"] / cell["open"]["p50_ms"], 3)
                cell[label]["p99_ratio"] = round(cell[label]["p99_ms"] / cell["open"]["p99_ms"], 3)
            results[protocol] = cell
    finally:
        for proc, _, _ in (open_server, secured):
            proc.terminate()
            proc.wait(timeout=30)
    results["check_alone"] = in_process(tmp)
    print(f"{'':6} {'server':8} {'p50 ms':>8} {'p99 ms':>8} {'p50 x open':>10} {'p99 x open':>10}")
    for protocol in ("rest", "grpc"):
        for label, cell in results[protocol].items():
            print(f"{protocol:6} {label:8} {cell['p50_ms']:8.3f} {cell['p99_ms']:8.3f} "
                  f"{cell.get('p50_ratio', 1.0):10.3f} {cell.get('p99_ratio', 1.0):10.3f}")  # fmt: skip
    print(f"the check alone, in process: JWT {results['check_alone']['jwt_us']} us, "
          f"API key {results['check_alone']['api_key_us']} us")
    out = ROOT / "benchmarks" / "results" / f"auth-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"quick": args.quick, "requests_per_cell": per_cell, **results}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
