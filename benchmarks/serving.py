"""Online inference: mlrm's V2 servers against MLServer 1.7.1 (scikit-learn runtime), side by side in one run.

    python benchmarks/serving.py            # the whole table (a few minutes)
    python benchmarks/serving.py --quick    # a short smoke run (fewer requests per cell)

MLServer is installed on first use into a virtual environment of its own,
``benchmarks/.mlserver-venv`` (``mlserver==1.7.1 mlserver-sklearn==1.7.1 'uvloop<0.22'``).

Models, the same for both servers:

- ``a`` ``bench-logreg``: logistic regression on iris's four features, no pre-processing;
- ``b`` ``bench-forest``: a 100-tree random forest on 20 features (synthetic classification data);
- ``c`` ``iris-classifier``: the iris example (``configs/iris/train.yaml``: median fill, standard
  scaling, a random forest); MLServer serves the equivalent scikit-learn ``Pipeline``
  (``SimpleImputer(median)`` + ``StandardScaler`` + the same forest, with mlrm's stored statistics).

mlrm trains (a) and (b) with small workflows into a temporary volume, as users would, and serves
that volume with ``mlrm serve predict --no-bus`` (its ``auto`` runtime: the exact ONNX conversion
where there is one). MLServer gets the very same fitted estimators, exported with joblib.

The load generator is the same for every server: N client threads, each on its own keep-alive
connection (a minimal HTTP/1.1 client over a socket for REST, a grpcio stub on its own channel
for gRPC), each sending a fixed number of requests; the payload is one 2-D ``FP64`` input
``[rows, features]`` (JSON ``data`` on REST, typed ``fp64_contents`` on gRPC) and asks for the
class probabilities only (mlrm: output ``probabilities``; MLServer: output ``predict_proba``): the same
work on both sides, and a numeric answer (MLServer 1.7.1's gRPC answers a string ``predict`` output
of a classifier with INTERNAL "expected bytes, str found").
Loads: rows=1 at concurrency 1 and 8, rows=256 at concurrency 4. Servers run one after the
other (never two at once), the load generator in this process.

MLServer runs twice: with its defaults (``parallel_workers`` 1: inference in a worker process)
and tuned (``parallel_workers: 0``, request logging off). Reported per cell: p50 / p99 latency
(ms), throughput (requests/s), and mlrm's ratios to each (``x_default``: mlrm throughput /
MLServer-defaults throughput; ``p50_default``: mlrm p50 / MLServer-defaults p50; alike for tuned).
Results are printed and written to ``benchmarks/results/``. On a shared 2-core machine the load
generator competes with the server for CPU: the figures are noisy, compare ratios from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
IRIS = ROOT / "configs" / "iris"
MLSERVER_VENV = ROOT / "benchmarks" / ".mlserver-venv"
MLSERVER_PACKAGES = ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop<0.22"]
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
FOREST_FEATURES = [f"f{i}" for i in range(20)]
MODELS = {"a": "bench-logreg", "b": "bench-forest", "c": "iris-classifier"}
LOADS = [(1, 1), (1, 8), (256, 4)]  # (rows, concurrency)

LOGREG_WORKFLOW = """
kind: Workflow
name: bench-logreg
steps:
  - name: collect
    service: collector
    config:
      kind: CollectorConfig
      source: {step: csv, path: %(iris)s/iris.csv, dtypes: {sepal_length: float, sepal_width: float,
               petal_length: float, petal_width: float, species: str}}
  - name: train
    service: train
    config:
      kind: TrainConfig
      model: {name: bench-logreg, kind: classification, estimator: sklearn.linear_model.LogisticRegression,
              hyperparameters: {max_iter: 1000}}
      target: species
      evaluation: {split: 0.2, metrics: [accuracy]}
"""

FOREST_WORKFLOW = """
kind: Workflow
name: bench-forest
steps:
  - name: collect
    service: collector
    config:
      kind: CollectorConfig
      source: {step: csv, path: %(csv)s}
  - name: train
    service: train
    config:
      kind: TrainConfig
      model: {name: bench-forest, kind: classification, estimator: sklearn.ensemble.RandomForestClassifier,
              hyperparameters: {n_estimators: 100, random_state: 0, n_jobs: 1}}
      target: label
      evaluation: {split: 0.2, metrics: [accuracy]}
"""


# -- setup ----------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mlserver_python() -> Path:
    """MLServer's own virtual environment, created on first use."""
    python = MLSERVER_VENV / "bin" / "python"
    if not (MLSERVER_VENV / "bin" / "mlserver").exists():
        print(f"installing {' '.join(MLSERVER_PACKAGES)} into {MLSERVER_VENV} (first use)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(MLSERVER_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *MLSERVER_PACKAGES], check=True)
    return python


def train(tmp: Path, env: dict[str, str]) -> None:
    """The three models in an mlrm volume, trained by workflows."""
    rng = np.random.default_rng(0)
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=2000, n_features=20, n_informative=10, random_state=0)
    forest = pd.DataFrame(X, columns=FOREST_FEATURES)
    forest["label"] = np.array(["no", "yes"])[y]
    forest.to_csv(tmp / "forest20.csv", index=False)
    del rng
    (tmp / "logreg.yaml").write_text(LOGREG_WORKFLOW % {"iris": IRIS})
    (tmp / "forest.yaml").write_text(FOREST_WORKFLOW % {"csv": tmp / "forest20.csv"})
    code = (
        "import sys\nfrom orchestrator.embedded import Embedded\nwith Embedded() as m:\n"
        " for path in sys.argv[1:]:\n  r = m.run(path, timeout=600); assert r.status == 'succeeded', (path, r.error)"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(IRIS / "train.yaml"), str(tmp / "logreg.yaml"), str(tmp / "forest.yaml")],
        check=True, env=env, cwd=ROOT,
    )  # fmt: skip


EXPORT = """
import json, sys
import joblib
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
import numpy as np
from mlrm.registry import ModelRegistry
from mlrm.volume import open_volume

volume, out = open_volume(sys.argv[1]), sys.argv[2]
registry = ModelRegistry(volume)
features = {"bench-logreg": %(iris)r, "bench-forest": %(forest)r, "iris-classifier": %(iris)r}
for name, columns in features.items():
    ref = registry.resolve(name)
    model = registry.load_artefact(ref, runtime="sklearn")
    card = registry.verified_card(ref)
    assert list(card["inference"]["input"]) == columns, (name, card["inference"]["input"])
    if name == "iris-classifier":  # the same statistics mlrm stored, as a scikit-learn Pipeline
        fill = json.loads(registry.read_verified(ref, "state/clean.impute.json", card))["state"]["fill"]
        scale = json.loads(registry.read_verified(ref, "state/features.0-standard_scale.json", card))["state"]
        assert scale["columns"] == columns
        X = np.zeros((2, len(columns)))
        imputer = SimpleImputer(strategy="median").fit(X)
        imputer.statistics_ = np.array([fill[c] for c in columns], dtype=float)
        scaler = StandardScaler().fit(X)
        scaler.mean_, scaler.scale_ = np.array(scale["mean"], dtype=float), np.array(scale["scale"], dtype=float)
        scaler.var_ = scaler.scale_ ** 2
        model = Pipeline([("impute", imputer), ("scale", scaler), ("model", model)])
    joblib.dump(model, f"{out}/{name}/model.joblib")
"""


def export_for_mlserver(volume: Path, repo: Path, env: dict[str, str]) -> None:
    """MLServer's model repository: the very estimators mlrm registered, as joblib files."""
    for name in MODELS.values():
        (repo / name).mkdir(parents=True, exist_ok=True)
        settings = {"name": name, "implementation": "mlserver_sklearn.SKLearnModel",
                    "parameters": {"uri": "./model.joblib", "version": "1"}}  # fmt: skip
        (repo / name / "model-settings.json").write_text(json.dumps(settings))
    code = EXPORT % {"iris": FEATURES, "forest": FOREST_FEATURES}
    subprocess.run([sys.executable, "-c", code, str(volume), str(repo)], check=True, env=env, cwd=ROOT)


# -- servers ----------------------------------------------------------------------------------------
class Server:
    def __init__(self, label: str, cmd: list[str], env: dict[str, str], http: int, grpc_port: int, log: Path) -> None:
        self.label, self.http, self.grpc = label, http, grpc_port
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, models: list[str], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        pending = list(models)
        while pending and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.label} exited ({self.proc.returncode}); see {self.log.name}")
            try:
                status, _ = http_get(self.http, f"/v2/models/{pending[0]}/ready")
            except OSError:
                status = 0
            if status == 200:
                pending.pop(0)
            else:
                time.sleep(0.2)
        if pending:
            raise SystemExit(f"{self.label} not ready after {timeout}s (models {pending}); see {self.log.name}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def start_mlrm(volume: Path, logs: Path) -> Server:
    http, grpc_port = free_port(), free_port()
    env = {**os.environ, "MLRM_VOLUME": str(volume), "MLRM_BUS": "memory://"}
    cmd = [sys.executable, "-m", "mlrm", "serve", "predict", "--no-bus", "--host", "127.0.0.1",
           "--http-port", str(http), "--grpc-port", str(grpc_port)]  # fmt: skip
    server = Server("mlrm", cmd, env, http, grpc_port, logs / "mlrm.log")
    server.wait_ready(list(MODELS.values()))
    return server


def start_mlserver(repo: Path, tuned: bool, logs: Path) -> Server:
    http, grpc_port, metrics = free_port(), free_port(), free_port()
    settings: dict[str, Any] = {"host": "127.0.0.1", "http_port": http, "grpc_port": grpc_port, "metrics_port": metrics}
    if tuned:
        settings.update({"parallel_workers": 0, "debug": False})  # debug is what turns on access logs
    (repo / "settings.json").write_text(json.dumps(settings))
    label = "mlserver-tuned" if tuned else "mlserver-default"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLSERVER", "VIRTUAL_ENV"))}
    env["PATH"] = f"{MLSERVER_VENV / 'bin'}:{env.get('PATH', '')}"
    if tuned:
        env["MLSERVER_DEBUG"] = "false"
    server = Server(label, [str(MLSERVER_VENV / "bin" / "mlserver"), "start", str(repo)], env, http, grpc_port,
                    logs / f"{label}.log")  # fmt: skip
    server.wait_ready(list(MODELS.values()), timeout=180)
    return server


# -- the load generator ------------------------------------------------------------------------------
def http_get(port: int, path: str) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        conn = HttpConnection.__new__(HttpConnection)
        conn.sock, conn.buf = s, b""
        return conn.response()


class HttpConnection:
    """A minimal keep-alive HTTP/1.1 client: a prepared request's bytes out, status and body in."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def request(self, data: bytes) -> tuple[int, bytes]:
        self.sock.sendall(data)
        return self.response()

    def response(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = None
        for line in lines[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == b"content-length":
                length = int(value)
            elif key.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
                raise ConnectionError("chunked responses are not supported by this client")
        if length is None:
            raise ConnectionError("no content-length")
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            rest += chunk
        self.buf = rest[length:]
        return status, rest[:length]

    def close(self) -> None:
        self.sock.close()


def output_name(label: str) -> str:
    return "probabilities" if label == "mlrm" else "predict_proba"


def rest_payload(model: str, rows: np.ndarray, output: str | None) -> bytes:
    body: dict[str, Any] = {"inputs": [{"name": "x", "datatype": "FP64", "shape": list(rows.shape),
                                        "data": rows.tolist()}]}  # fmt: skip
    if output:
        body["outputs"] = [{"name": output}]
    data = json.dumps(body, separators=(",", ":")).encode()
    head = (f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n")  # fmt: skip
    return head.encode() + data


def grpc_payload(model: str, rows: np.ndarray, output: str | None) -> Any:
    from services.predict.v2 import grpc_predict_v2_pb2 as pb

    request = pb.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name="x", datatype="FP64", shape=list(rows.shape))
    tensor.contents.fp64_contents.extend(rows.reshape(-1).tolist())
    if output:
        request.outputs.add(name=output)
    return request


def run_cell(protocol: str, port: int, payload: Any, concurrency: int, per_client: int, cap: float) -> dict[str, Any]:
    """``concurrency`` clients, each sending ``per_client`` requests (or until ``cap`` seconds have passed)."""
    import grpc

    from services.predict.v2 import grpc_predict_v2_pb2_grpc as pb_grpc

    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    barrier = threading.Barrier(concurrency + 1)
    stop_at = [0.0]

    def client(i: int) -> None:
        if protocol == "rest":
            conn = HttpConnection(port)
            conn.request(payload)  # warm the connection

            def call() -> bool:
                status, _ = conn.request(payload)
                return status == 200

            close = conn.close
        else:
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            stub.ModelInfer(payload, timeout=60)

            def call() -> bool:
                try:
                    stub.ModelInfer(payload, timeout=60)
                    return True
                except grpc.RpcError:
                    return False

            close = channel.close
        mine = latencies[i]
        barrier.wait()
        try:
            for _ in range(per_client):
                t0 = time.perf_counter()
                ok = call()
                mine.append(time.perf_counter() - t0)
                if not ok:
                    errors[i] += 1
                if t0 > stop_at[0]:
                    break
        finally:
            close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    stop_at[0] = start + cap
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    flat = np.array([x for lat in latencies for x in lat])
    return {
        "requests": int(flat.size), "errors": sum(errors),
        "p50_ms": round(float(np.percentile(flat, 50)) * 1000, 2),
        "p99_ms": round(float(np.percentile(flat, 99)) * 1000, 2),
        "rps": round(flat.size / wall, 1),
    }  # fmt: skip


def check_answers(label: str, port: int, protocol: str, model: str, rows: np.ndarray, output: str | None) -> list:
    """One answer's predictions (to compare the servers' answers)."""
    if protocol == "rest":
        conn = HttpConnection(port)
        status, body = conn.request(rest_payload(model, rows, output))
        conn.close()
        if status != 200:
            raise SystemExit(f"{label} {model} REST: {status} {body[:300]!r}")
        return json.loads(body)["outputs"][0]["data"]
    import grpc

    from services.predict.v2 import grpc_predict_v2_pb2_grpc as pb_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        answer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(grpc_payload(model, rows, output), timeout=60)
    out = answer.outputs[0]
    if answer.raw_output_contents:
        raise SystemExit(f"{label} answered in raw_output_contents; this benchmark reads typed contents")
    return (
        [v.decode() for v in out.contents.bytes_contents]
        or list(out.contents.int64_contents)
        or list(out.contents.fp64_contents)
    )


def measure(
    server: Server, data: dict[str, np.ndarray], per: dict[int, int], cap: float, only: list[str]
) -> list[dict]:
    output = output_name(server.label)
    results = []
    for key in only:
        model = MODELS[key]
        for protocol in ("rest", "grpc"):
            port = server.http if protocol == "rest" else server.grpc
            for rows, concurrency in LOADS:
                X = data[key][:rows]
                payload = rest_payload(model, X, output) if protocol == "rest" else grpc_payload(model, X, output)
                # warm-up, then the cell
                run_cell(protocol, port, payload, 1, 5, cap)
                r = run_cell(protocol, port, payload, concurrency, max(1, per[rows] // concurrency), cap)
                r.update({"server": server.label, "model": key, "protocol": protocol, "rows": rows,
                          "concurrency": concurrency})  # fmt: skip
                print(json.dumps(r), flush=True)
                results.append(r)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run: few requests per cell")
    parser.add_argument("--requests", type=int, default=400, help="requests per rows=1 cell (rows=256: a sixth)")
    parser.add_argument("--cap", type=float, default=12.0, help="seconds at most per cell")
    parser.add_argument("--models", default="abc", help="which models (a, b, c)")
    parser.add_argument("--servers", default="mlrm,mlserver-default,mlserver-tuned")
    args = parser.parse_args()
    n = 60 if args.quick else args.requests
    per = {1: n, 256: max(8, n // 6)}
    cap = 3.0 if args.quick else args.cap
    only = [k for k in "abc" if k in args.models]
    wanted = args.servers.split(",")
    if any(s.startswith("mlserver") for s in wanted):
        mlserver_python()
    results: list[dict] = []
    answers: dict[str, dict[str, list]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        volume, repo, logs = tmp / "volume", tmp / "mlserver-models", ROOT / "benchmarks" / "results" / "serving-logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "MLRM_VOLUME": str(volume), "MLRM_STATE": str(tmp / "runs.sqlite")}
        t0 = time.perf_counter()
        train(tmp, env)
        export_for_mlserver(volume, repo, env)
        print(f"trained and exported in {time.perf_counter() - t0:.0f}s", flush=True)
        rng = np.random.default_rng(1)
        iris = pd.read_csv(IRIS / "iris.csv")[FEATURES].dropna().to_numpy(dtype=float)
        forest = pd.read_csv(tmp / "forest20.csv")[FOREST_FEATURES].to_numpy(dtype=float)
        data = {"a": iris[rng.integers(0, len(iris), 256)], "b": forest[rng.integers(0, len(forest), 256)]}
        data["c"] = data["a"]
        for label in wanted:
            if label == "mlrm":
                server = start_mlrm(volume, logs)
            else:
                server = start_mlserver(repo, label == "mlserver-tuned", logs)
            try:
                for key in only:
                    for protocol in ("rest", "grpc"):
                        port = server.http if protocol == "rest" else server.grpc
                        out = output_name(label)
                        got = check_answers(label, port, protocol, MODELS[key], data[key][:32], out)
                        answers.setdefault(f"{key}-{protocol}", {})[label] = [round(float(v), 5) for v in got]
                results.extend(measure(server, data, per, cap, only))
            finally:
                server.stop()
        shutil.rmtree(repo, ignore_errors=True)
    agree = {k: len({json.dumps(v) for v in by.values()}) == 1 for k, by in answers.items()}
    table = tabulate(results)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"serving-{stamp}.json").write_text(json.dumps({"cells": results, "table": table, "same_answers": agree},
                                                          indent=2))  # fmt: skip
    print("\nsame answers from every server:", agree)
    print_table(table)


def tabulate(results: list[dict]) -> list[dict]:
    """One row per (model, protocol, rows, concurrency): each server's figures and mlrm's ratios."""
    rows: dict[tuple, dict] = {}
    for r in results:
        key = (r["model"], r["protocol"], r["rows"], r["concurrency"])
        row = rows.setdefault(key, dict(zip(("model", "protocol", "rows", "concurrency"), key, strict=True)))
        short = {"mlrm": "mlrm", "mlserver-default": "default", "mlserver-tuned": "tuned"}[r["server"]]
        row[f"{short}_rps"], row[f"{short}_p50"], row[f"{short}_p99"] = r["rps"], r["p50_ms"], r["p99_ms"]
        row[f"{short}_errors"] = r["errors"]
    for row in rows.values():
        for peer in ("default", "tuned"):
            if f"{peer}_rps" in row and "mlrm_rps" in row:
                row[f"x_{peer}"] = round(row["mlrm_rps"] / row[f"{peer}_rps"], 2)
                row[f"p50_{peer}"] = round(row["mlrm_p50"] / row[f"{peer}_p50"], 2)
    return list(rows.values())


def print_table(table: list[dict]) -> None:
    cols = ["model", "protocol", "rows", "concurrency", "mlrm_rps", "mlrm_p50", "mlrm_p99", "default_rps",
            "default_p50", "default_p99", "tuned_rps", "tuned_p50", "tuned_p99", "x_default", "p50_default",
            "x_tuned", "p50_tuned"]  # fmt: skip
    heads = ["model", "proto", "rows", "conc", "mlrm r/s", "p50", "p99", "MLS-def r/s", "p50", "p99",
             "MLS-tuned r/s", "p50", "p99", "x def", "p50/def", "x tuned", "p50/tuned"]  # fmt: skip
    print("| " + " | ".join(heads) + " |")
    print("|" + "---|" * len(heads))
    for row in table:
        print("| " + " | ".join(str(row.get(c, "-")) for c in cols) + " |")
    errors = {k: v for row in table for k, v in row.items() if k.endswith("_errors") and v}
    if errors:
        print("errors:", errors)


if __name__ == "__main__":
    main()
