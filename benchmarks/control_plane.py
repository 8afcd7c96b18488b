"""The control plane's cost: submission to the first step starting, over the API against the in-process
(embedded) and bus (`mlrm submit`) paths, and the latency of a status call over REST and gRPC.

    python benchmarks/control_plane.py            # 200 submissions per path and mode
    python benchmarks/control_plane.py --quick    # 30

1. Embedded (`mlrm api`: every service in one process): `Orchestrator.submit` in-process (what `mlrm run`
   does) against POST /runs (REST, the workflow YAML as the body) and Control.Submit (gRPC).
2. Distributed (`mlrm orchestrator --http-port --grpc-port`, every service its own process on RabbitMQ):
   a submission message on the bus (what `mlrm submit` sends) against REST and gRPC.

"Submission to first step starting" is from just before the call to the collector's `started` time as
its event records it (same clock, one machine); runs are submitted one at a time, each waited for.
Distributed needs RabbitMQ on 127.0.0.1:5672 and `rabbitmqctl` (skipped otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
import httpx  # noqa: E402

from mlrm.bus import open_bus  # noqa: E402
from mlrm.settings import Settings  # noqa: E402
from mlrm.yamlio import loads_yaml  # noqa: E402
from orchestrator.api import control_pb2 as pb  # noqa: E402
from orchestrator.api import control_pb2_grpc as pb_grpc  # noqa: E402
from orchestrator.api.serve import ControlServers  # noqa: E402
from orchestrator.compile import compile_document  # noqa: E402
from orchestrator.embedded import Embedded  # noqa: E402
from orchestrator.local import LocalDeployment, ServiceReplicas, Supervisor  # noqa: E402
from orchestrator.orchestrator import SUBMIT_QUEUE, submission  # noqa: E402

WORKFLOW = """\
kind: Workflow
name: tiny
steps:
  - {name: collect, service: collector, config: {source: {step: records, records: [{x: 1.0}, {x: 2.0}]}}}
  - {name: clean, service: handler, config: {steps: [{step: drop_na, columns: [x]}]}}
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(name: str, ms: list[float]) -> dict:
    return {"path": name, "n": len(ms), "p50_ms": round(statistics.median(ms), 2), "p99_ms": round(pct(ms, 0.99), 2)}


def first_step(submit: Callable[[], str], status: Callable[[str], dict]) -> float:
    """ms from just before a submission to its first step starting; the run is waited for to its end."""
    t0 = time.time()
    run_id = submit()
    deadline = time.monotonic() + 60
    while True:
        run = status(run_id)
        if run["steps"][0]["started"] is not None and run["status"] != "running":
            return (run["steps"][0]["started"] - t0) * 1000
        if time.monotonic() > deadline:
            raise SystemExit(f"run {run_id} did not finish: {run}")
        time.sleep(0.002)


def measure(paths: dict[str, Callable[[], str]], status: Callable[[str], dict], runs: int) -> list[dict]:
    """Every path in turn, ``runs`` times (interleaved: a slow moment of the machine hits them all alike)."""
    for fn in paths.values():  # warm up
        for _ in range(3):
            first_step(fn, status)
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(runs):
        for name, fn in paths.items():
            times[name].append(first_step(fn, status))
    return [summary(name, ms) for name, ms in times.items()]


def calls(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def api_paths(http: str, target: str) -> tuple[httpx.Client, grpc.Channel, dict[str, Callable[[], str]]]:
    client = httpx.Client(base_url=http, timeout=30)
    channel = grpc.insecure_channel(target)
    stub = pb_grpc.ControlStub(channel)
    return client, channel, {
        "REST POST /runs": lambda: client.post(
            "/runs", content=WORKFLOW, headers={"content-type": "application/yaml"}).json()["run_id"],
        "gRPC Control.Submit": lambda: stub.Submit(pb.SubmitRequest(yaml=WORKFLOW)).run_id,
    }  # fmt: skip


def status_calls(client: httpx.Client, channel: grpc.Channel, run_id: str, runs: int) -> list[dict]:
    stub = pb_grpc.ControlStub(channel)
    return [
        summary("REST GET /runs/{id}", calls(lambda: client.get(f"/runs/{run_id}").json(), runs)),
        summary("gRPC Control.GetRun", calls(lambda: stub.GetRun(pb.RunRequest(run_id=run_id)), runs)),
    ]


def embedded(runs: int, tmp: Path) -> dict:
    settings = Settings(volume=str(tmp / "volume"), state=str(tmp / "runs.sqlite"))
    with Embedded(settings) as mlrm, ControlServers(mlrm.orchestrator, configs=tmp, http_port=0, grpc_port=0) as api:
        client, channel, paths = api_paths(f"http://127.0.0.1:{api.http_port}", f"127.0.0.1:{api.grpc_port}")

        def direct() -> str:  # what `mlrm run` does: compile and submit in the orchestrator's process
            return mlrm.orchestrator.submit(compile_document(loads_yaml(WORKFLOW, "tiny.yaml"), tmp))

        status = lambda run_id: client.get(f"/runs/{run_id}").json()  # noqa: E731
        results = measure({"in-process Orchestrator.submit (peer)": direct, **paths}, status, runs)
        run_id = client.get("/runs", params={"limit": 1}).json()["runs"][0]["id"]
        results += status_calls(client, channel, run_id, runs * 5)
        client.close()
        channel.close()
    return {"mode": "embedded", "submit_to_first_step": results[:3], "status_call": results[3:]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def distributed(runs: int, tmp: Path) -> dict | None:
    if shutil.which("rabbitmqctl") is None:
        return None
    vhost = f"mlrm-bench-{uuid.uuid4().hex[:8]}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True)
    subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True)
    url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    http, grpc_port = free_port(), free_port()
    os.environ.update(MLRM_CONTROL_HTTP_PORT=str(http), MLRM_CONTROL_GRPC_PORT=str(grpc_port), MLRM_CONFIGS=str(tmp))
    spec = LocalDeployment(bus=url, volume=str(tmp / "dvolume"), state=str(tmp / "druns.sqlite"),
                           services={s: ServiceReplicas(replicas=1 if s in ("collector", "handler") else 0)
                                     for s in ("collector", "handler", "features", "train", "predict")})  # fmt: skip
    supervisor = Supervisor(spec, output=str(tmp / "processes.log"))
    supervisor.start()
    try:
        client, channel, paths = api_paths(f"http://127.0.0.1:{http}", f"127.0.0.1:{grpc_port}")
        deadline = time.monotonic() + 120
        while True:
            try:
                if client.get("/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the orchestrator's control plane did not come up")
            time.sleep(0.2)
        bus = open_bus(url)
        compiled = compile_document(loads_yaml(WORKFLOW, "tiny.yaml"), tmp)

        def on_bus() -> str:  # what `mlrm submit` sends
            message = submission(compiled)
            bus.publish(SUBMIT_QUEUE, message)
            return message.run_id

        def status(run_id: str) -> dict:
            answer = client.get(f"/runs/{run_id}")
            return answer.json() if answer.status_code == 200 else {"status": "running", "steps": [{"started": None}]}

        results = measure({"bus submission, mlrm submit (peer)": on_bus, **paths}, status, runs)
        run_id = client.get("/runs", params={"limit": 1}).json()["runs"][0]["id"]
        results += status_calls(client, channel, run_id, runs * 5)
        bus.close()
        client.close()
        channel.close()
    finally:
        supervisor.stop()
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], check=False)
    return {"mode": "distributed", "submit_to_first_step": results[:3], "status_call": results[3:]}


def show(report: dict) -> None:
    print(f"\n{report['mode']}: submission -> first step started")
    peer = report["submit_to_first_step"][0]
    for r in report["submit_to_first_step"]:
        ratio = r["p50_ms"] / peer["p50_ms"] if peer["p50_ms"] else float("nan")
        print(f"  {r['path']:<40} p50 {r['p50_ms']:8.2f} ms   p99 {r['p99_ms']:8.2f} ms   x{ratio:5.2f} of the peer")
    print(f"{report['mode']}: a status call")
    for r in report["status_call"]:
        print(f"  {r['path']:<40} p50 {r['p50_ms']:8.2f} ms   p99 {r['p99_ms']:8.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="submissions per path and mode")
    parser.add_argument("--quick", action="store_true", help="30 submissions per path")
    parser.add_argument("--no-distributed", action="store_true")
    args = parser.parse_args()
    runs = 30 if args.quick else args.runs
    reports = []
    with tempfile.TemporaryDirectory(prefix="mlrm-bench-") as tmp:
        reports.append(embedded(runs, Path(tmp)))
        show(reports[-1])
        if not args.no_distributed:
            found = distributed(runs, Path(tmp))
            if found is None:
                print("\ndistributed: skipped (needs RabbitMQ and rabbitmqctl)")
            else:
                reports.append(found)
                show(found)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "control_plane.json").write_text(json.dumps(reports, indent=2))


if __name__ == "__main__":
    main()
