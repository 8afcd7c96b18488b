"""Distributed mode against embedded, in one run on the same data.

    python benchmarks/distributed.py                  # 200,000 rows; 200 single-row latency runs
    python benchmarks/distributed.py --rows 500000 --latency-runs 500

1. Throughput: the iris batch-prediction workflow (collect -> clean -> features -> predict
   -> CSV) embedded (one process, in-memory bus), then over RabbitMQ with every service its
   own process: 1 replica per service, then 2. Reported as rows/s and as a ratio to embedded.
2. Latency: one single-row message through collector -> handler -> features -> predict,
   end to end (run start to the predict step's completion, as the orchestrator records it),
   p50 and p99 over many runs, embedded and distributed.

Needs RabbitMQ on 127.0.0.1:5672 (guest/guest) and `rabbitmqctl` (a private vhost is
created and deleted). Results are also written to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.batch_predict import make_input  # noqa: E402
from mlrm.bus import open_bus  # noqa: E402
from mlrm.settings import Settings  # noqa: E402
from orchestrator.compile import compile_workflow  # noqa: E402
from orchestrator.embedded import Embedded  # noqa: E402
from orchestrator.local import LocalDeployment, ServiceReplicas, Supervisor  # noqa: E402
from orchestrator.orchestrator import SUBMIT_QUEUE, submission  # noqa: E402
from orchestrator.store import RunStore  # noqa: E402

IRIS = ROOT / "configs" / "iris"
SERVICES = ("collector", "handler", "features", "train", "predict")

SINGLE = """\
kind: Workflow
name: one-row
steps:
  - name: collect
    service: collector
    config:
      source:
        step: records
        records: [{id: 1, sepal_length: 5.1, sepal_width: 3.5, petal_length: 1.4, petal_width: 0.2}]
  - name: predict
    service: predict
    config:
      model: {name: iris-classifier, alias: production}
      keep: [id]
      sink: {step: csv, key: "latency/{run_id}.csv"}
"""


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latencies(store: RunStore, run_ids: list[str]) -> list[float]:
    out = []
    for run_id in run_ids:
        record = store.get(run_id)
        assert record.status == "succeeded", record.error
        out.append(record.steps[-1].finished - record.created)
    return out


def embedded(tmp: Path, workflow: Path, single: Path, runs: int) -> tuple[float, list[float]]:
    settings = Settings(volume=str(tmp / "volume"), state=str(tmp / "embedded.sqlite"))
    with Embedded(settings) as mlrm:
        t0 = time.perf_counter()
        record = mlrm.run(workflow)
        seconds = time.perf_counter() - t0
        assert record.status == "succeeded", record.error
        ids = [mlrm.run(single).id for _ in range(runs)]
        return seconds, latencies(mlrm.store, ids)


def distributed(tmp: Path, url: str, replicas: int, workflow: Path, single: Path | None, runs: int):
    state = tmp / f"distributed-{replicas}.sqlite"
    spec = LocalDeployment(
        bus=url, volume=str(tmp / "volume"), state=str(state),
        services={s: ServiceReplicas(replicas=replicas) for s in SERVICES},
    )  # fmt: skip
    supervisor = Supervisor(spec)
    supervisor.start()
    bus = open_bus(url)
    store = RunStore(state)
    try:
        time.sleep(3)  # let every process connect

        def run(path: Path) -> str:
            message = submission(compile_workflow(path))
            bus.publish(SUBMIT_QUEUE, message)
            deadline = time.monotonic() + 600
            while True:
                if store.exists(message.run_id) and store.get(message.run_id).done:
                    return message.run_id
                assert time.monotonic() < deadline
                time.sleep(0.002)

        run(single or workflow)  # warm up: models loaded, queues declared
        t0 = time.perf_counter()
        record = store.get(run(workflow))
        seconds = time.perf_counter() - t0
        assert record.status == "succeeded", record.error
        ids = [run(single) for _ in range(runs)] if single else []
        return seconds, latencies(store, ids)
    finally:
        bus.close()
        supervisor.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--latency-runs", type=int, default=200)
    args = parser.parse_args()
    vhost = f"mlrm-bench-{uuid.uuid4().hex[:6]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    try:
        with tempfile.TemporaryDirectory() as tmp_dir:
            tmp = Path(tmp_dir)
            os.environ.update(MLRM_VOLUME=str(tmp / "volume"), MLRM_STATE=str(tmp / "embedded.sqlite"))
            data = tmp / "rows.csv"
            make_input(data, args.rows)
            os.environ["IRIS_INPUT"] = str(data)
            single = tmp / "one-row.yaml"
            single.write_text(SINGLE % {"iris": IRIS})
            with Embedded(Settings()) as mlrm:
                assert mlrm.run(IRIS / "train.yaml").status == "succeeded"
            results = {"rows": args.rows}
            e_sec, e_lat = embedded(tmp, IRIS / "predict.yaml", single, args.latency_runs)
            results["embedded"] = {"rows_per_s": round(args.rows / e_sec),
                                   "p50_ms": round(statistics.median(e_lat) * 1000, 2),
                                   "p99_ms": round(percentile(e_lat, 0.99) * 1000, 2)}  # fmt: skip
            for replicas in (1, 2):
                d_sec, d_lat = distributed(tmp, url, replicas, IRIS / "predict.yaml",
                                           single if replicas == 1 else None, args.latency_runs)  # fmt: skip
                entry = {"rows_per_s": round(args.rows / d_sec), "ratio_to_embedded": round(e_sec / d_sec, 2)}
                if d_lat:
                    entry |= {"p50_ms": round(statistics.median(d_lat) * 1000, 2),
                              "p99_ms": round(percentile(d_lat, 0.99) * 1000, 2)}  # fmt: skip
                results[f"distributed_{replicas}"] = entry
            print(json.dumps(results, indent=2))
            out = ROOT / "benchmarks" / "results"
            out.mkdir(exist_ok=True)
            (out / f"distributed-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(results, indent=2))
    finally:
        rabbitmqctl("delete_vhost", vhost)


if __name__ == "__main__":
    main()
