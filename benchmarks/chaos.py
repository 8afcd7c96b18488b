"""Chaos: repeated distributed runs while random faults strike, with Jepsen-style counts.

    python benchmarks/chaos.py                               # 20 rounds of 200,000 rows, batch_size 500
    python benchmarks/chaos.py --rounds 5 --rows 50000 --seed 7

Every round submits one batch-prediction run (collect -> clean -> features -> predict ->
CSV in S3) to a real deployment: RabbitMQ (a private vhost), a SeaweedFS S3 server
(tests/s3server.py), and one process per replica started by the same supervisor as
`mlrm up` (which restarts what dies): 2 replicas of handler, features and predict.
While the run goes, faults strike at random points of its progress:

- ``kill-replica``       SIGKILL of a random service replica
- ``kill-orchestrator``  SIGKILL of the orchestrator
- ``drop-connections``   `rabbitmqctl close_all_connections` on the vhost
- ``restart-s3``         SIGKILL of the S3 server, restarted on the same data
- ``drop-during-sink``   connections dropped while predict writes the run's output
- ``kill-sink-writer``   SIGKILL of the predict replica writing the output

Then the output is read back and every input id checked: rows published (by the
collector), written, lost (an input id missing from a succeeded run's output),
duplicated (an id written twice), dead letters, runs failed although their output was
complete, runs that never ended, and for every fault the time until the run made
progress again. Printed as JSON and written to ``benchmarks/results/chaos-*.json``.

Needs RabbitMQ on 127.0.0.1:5672 (guest/guest) with `rabbitmqctl`, and the test extra
(SeaweedFS comes with it). ``tests/distributed/test_chaos.py`` runs a short round in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.batch_predict import make_input  # noqa: E402
from benchmarks.distributed import SERVICES, rabbitmqctl  # noqa: E402
from mlrm.bus import dead_letter_queue, open_bus, service_queue  # noqa: E402
from mlrm.bus.queues import events_queue  # noqa: E402
from mlrm.volume import open_volume  # noqa: E402
from orchestrator.compile import compile_workflow  # noqa: E402
from orchestrator.local import LocalDeployment, ServiceReplicas, Supervisor  # noqa: E402
from orchestrator.orchestrator import EVENTS_GROUP, SUBMIT_QUEUE, read_status, submission  # noqa: E402
from tests.s3server import SeaweedFS  # noqa: E402
from tests.support import consumers  # noqa: E402

IRIS = ROOT / "configs" / "iris"
KINDS = ("kill-replica", "kill-orchestrator", "drop-connections", "restart-s3", "drop-during-sink", "kill-sink-writer")
SINK_FAULTS = ("drop-during-sink", "kill-sink-writer")  # strike while the output is being written
REPLICAS = {"collector": 1, "handler": 2, "features": 2, "train": 1, "predict": 2}
BUCKET = "chaos"

WORKFLOW = """\
kind: Workflow
name: chaos
steps:
  - name: collect
    service: collector
    config: {{source: {{step: csv, path: {rows}}}, batch_size: {batch_size}}}
  - name: clean        # the training's steps repeated (the older form): every service takes part in the round
    service: handler
    config: {{steps: [{{step: fill_na, name: impute, strategy: median,
                        columns: [sepal_length, sepal_width, petal_length, petal_width]}}]}}
  - {{name: features, service: features, config: {iris}/features.yaml}}
  - name: predict
    service: predict
    config:
      model: {{name: iris-classifier, alias: production}}
      keep: [id]
      sink: {{step: csv, key: "chaos/{{run_id}}.csv"}}
"""


@dataclass
class Fault:
    kind: str
    trigger: float  # fraction of the predict step's batches done when it strikes (sink faults: at the write)
    at: float | None = None  # seconds into the run
    target: str | None = None
    recovered_after: float | None = None  # seconds from the fault until the run progressed again
    due: float | None = None  # sink faults: when to strike, once the write has begun
    ended: bool = False  # the fault is over (S3 back up; signals sent)
    baseline: int | None = None  # the run's progress when it ended: recovered once it moves on

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "at_s": _r(self.at), "target": self.target,
                "progress": round(self.trigger, 2), "recovery_s": _r(self.recovered_after)}  # fmt: skip


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


@dataclass
class Chaos:
    """A deployment on RabbitMQ and SeaweedFS to break, round after round."""

    rows: int = 200_000
    batch_size: int = 500
    faults: int = 3
    kinds: tuple[str, ...] = KINDS
    seed: int = 0
    round_timeout: float = 900.0
    latest: float = 0.95  # the latest point of progress a fault may be set for
    log: Any = None  # where to print progress (stderr by default)
    tmp: Path | None = None  # where the S3 data, the run store and the replicas' log go (default: removed after)

    def __post_init__(self) -> None:
        self.own_tmp = self.tmp is None
        self.tmp = Path(tempfile.mkdtemp(prefix="mlrm-chaos-")) if self.tmp is None else self.tmp
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.random = random.Random(self.seed)
        self.log = self.log or (lambda text: print(text, file=sys.stderr, flush=True))

    # -- the deployment ------------------------------------------------------------------
    def __enter__(self) -> Chaos:
        self.vhost = f"mlrm-chaos-{uuid.uuid4().hex[:6]}"
        rabbitmqctl("add_vhost", self.vhost)
        rabbitmqctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")
        self.url = f"amqp://guest:guest@127.0.0.1:5672/{self.vhost}"
        self.s3 = SeaweedFS(self.tmp / "s3")
        self.s3.start()
        os.environ.update(MLRM_S3_ENDPOINT=self.s3.endpoint, MLRM_S3_ACCESS_KEY=self.s3.access_key,
                          MLRM_S3_SECRET_KEY=self.s3.secret_key, MLRM_S3_REGION="us-east-1")  # fmt: skip
        client = self.s3.client(retries=2)
        client.make_bucket(BUCKET)
        client._http.clear()
        self.volume = open_volume(f"s3://{BUCKET}")
        self.deployment = LocalDeployment(
            bus=f"{self.url}?heartbeat=10", volume=f"s3://{BUCKET}", state=str(self.tmp / "runs.sqlite"),
            services={s: ServiceReplicas(replicas=REPLICAS[s]) for s in SERVICES},
        )  # fmt: skip
        self.supervisor = Supervisor(self.deployment, output=str(self.tmp / "replicas.log"))
        self.supervisor.start()
        self.log(f"chaos: vhost {self.vhost}, S3 {self.s3.endpoint}, logs in {self.supervisor.output}")
        self.bus = open_bus(self.url)
        self.ready()
        trained = self.run(IRIS / "train.yaml")
        assert trained.status == "succeeded", trained.error
        data = self.tmp / "rows.csv"
        make_input(data, self.rows)
        self.workflow = self.tmp / "chaos.yaml"
        self.workflow.write_text(WORKFLOW.format(rows=data, batch_size=self.batch_size, iris=IRIS))
        return self

    def __exit__(self, *exc: object) -> None:
        for closing in (self.supervisor.stop, self.bus.close, self.volume.close, self.s3.cleanup):
            try:
                closing()
            except Exception as error:  # keep tearing down
                self.log(f"teardown: {type(error).__name__}: {error}")
        rabbitmqctl("delete_vhost", self.vhost)
        if self.own_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def ready(self, timeout: float = 120.0) -> None:
        """Every replica consumes its queue (after restarts)."""
        url = self.url
        want = {f"mlrm.{s}": n for s, n in REPLICAS.items() if n} | {SUBMIT_QUEUE: 1, events_queue(EVENTS_GROUP): 1}
        deadline = time.monotonic() + timeout
        while not all(consumers(url, q) >= n for q, n in want.items()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the deployment did not come back within {timeout}s")
            time.sleep(0.2)

    def submit(self, workflow: Path) -> str:
        message = submission(compile_workflow(workflow))
        self.bus.publish(SUBMIT_QUEUE, message)
        return message.run_id

    def status(self, run_id: str) -> Any:
        try:
            return read_status(self.volume, run_id)
        except Exception:  # not started yet, or S3 is down
            return None

    def run(self, workflow: Path, timeout: float = 300.0) -> Any:
        run_id = self.submit(workflow)
        deadline = time.monotonic() + timeout
        while (record := self.status(run_id)) is None or not record.done:
            if time.monotonic() > deadline:
                raise RuntimeError(f"run {run_id} did not end within {timeout}s")
            time.sleep(0.2)
        return record

    # -- faults ----------------------------------------------------------------------------
    def strike(self, fault: Fault, run_id: str) -> None:
        pids = self.supervisor.pids()
        if fault.kind == "kill-replica":
            fault.target = self.random.choice(sorted(n for n in pids if n != "orchestrator" and "train" not in n))
            os.kill(pids[fault.target], signal.SIGKILL)
        elif fault.kind == "kill-orchestrator":
            fault.target = "orchestrator"
            os.kill(pids["orchestrator"], signal.SIGKILL)
        elif fault.kind in ("drop-connections", "drop-during-sink"):
            fault.target = self.vhost
            rabbitmqctl("close_all_connections", "-p", self.vhost, "chaos: connection drop")
        elif fault.kind == "kill-sink-writer":
            holder = self.volume.get_json(f"runs/{run_id}/leases/gather.predict.sink.json")["holder"]["name"]
            fault.target = holder
            os.kill(pids[holder], signal.SIGKILL)
        elif fault.kind == "restart-s3":
            fault.target = "seaweedfs"
            self.s3.stop()
            self.s3.start()  # same data and ports; returns once S3 answers again
        else:
            raise ValueError(f"unknown fault {fault.kind}")

    def parts(self, run_id: str) -> int:
        """Batches predict has stored for the run's output so far (0 once it is written, or if S3 is down)."""
        try:
            return sum(1 for o in self.volume.list(f"runs/{run_id}/gather/predict.sink/") if o.key.endswith(".arrow"))
        except Exception:
            return 0

    def _strike(self, fault: Fault, run_id: str) -> None:
        try:
            self.strike(fault, run_id)
        except Exception as error:  # e.g. the output was written before its writer could be killed
            fault.target = f"missed: {type(error).__name__}"
        finally:
            fault.ended = True

    def writing(self, run_id: str) -> bool:
        """The run's output is being written (predict holds the claim on its gathered parts)."""
        try:
            return self.volume.exists(f"runs/{run_id}/leases/gather.predict.sink.json")
        except Exception:
            return False

    # -- one round -------------------------------------------------------------------------
    def round(self, number: int) -> dict[str, Any]:
        kinds = self.random.sample(self.kinds, k=min(self.faults, len(self.kinds)))  # distinct kinds per round
        kinds += self.random.choices(self.kinds, k=self.faults - len(kinds))
        faults = [Fault(kind, self.random.uniform(0.05, self.latest)) for kind in kinds]
        batches = -(-self.rows // self.batch_size)
        run_id = self.submit(self.workflow)
        t0 = time.monotonic()
        predicted = 0
        pending = sorted(faults, key=lambda f: f.trigger)
        struck: list[Fault] = []
        strikes: list[threading.Thread] = []
        record = None
        while time.monotonic() - t0 < self.round_timeout:
            record = self.status(run_id)
            now = time.monotonic()
            if record is not None:
                # Progress as the run records it, and as predict's output parts show it (those go on
                # while the orchestrator is down; its record catches up when it is back).
                predicted = max(predicted, self.parts(run_id))
                progress = sum(s.batches_in for s in record.steps) + predicted
                for fault in struck:
                    if fault.ended and fault.baseline is None:
                        fault.baseline = progress
                    elif fault.baseline is not None and fault.recovered_after is None and progress > fault.baseline:
                        fault.recovered_after = now - t0 - (fault.at or 0.0)
                if record.done:
                    break
                share = max(record.steps[-1].batches_in, predicted) / batches
                for fault in list(pending):
                    if fault.kind in SINK_FAULTS:  # some time into the write (up to half a second)
                        if fault.due is None and self.writing(run_id):
                            fault.due = now + fault.trigger / 2
                        due = fault.due is not None and now >= fault.due
                    else:
                        due = share >= fault.trigger
                    if not due:
                        continue
                    pending.remove(fault)
                    fault.at = now - t0
                    struck.append(fault)
                    # Faults strike in the background: the run goes on, and so does watching it.
                    strikes.append(threading.Thread(target=self._strike, args=(fault, run_id), daemon=True))
                    strikes[-1].start()
            time.sleep(0.05 if any(f.kind in SINK_FAULTS for f in pending) else 0.2)
        for thread in strikes:
            thread.join()
        seconds = time.monotonic() - t0
        out = self.check(run_id, record)
        out.update(round=number, run_id=run_id, seconds=round(seconds, 1), faults=[f.to_dict() for f in struck],
                   faults_missed=[f.kind for f in pending])  # fmt: skip
        self.ready()  # everything restarted before the next round
        return out

    def check(self, run_id: str, record: Any) -> dict[str, Any]:
        """Count what the run published, wrote, lost and duplicated."""
        import pandas as pd

        status = None if record is None else record.status
        out: dict[str, Any] = {"status": status or "never ended", "error": None if record is None else record.error}
        out["rows_published"] = None if record is None else record.steps[0].rows_out
        ids = None
        try:
            with self.volume.open_read(f"chaos/{run_id}.csv") as f:
                ids = pd.read_csv(f, usecols=["id"])["id"]
        except Exception:
            pass
        if ids is None:
            out.update(rows_written=0, lost=self.rows if status == "succeeded" else None, duplicated=0, complete=False)
        else:
            counts = Counter(ids.tolist())
            unique = sum(1 for i in counts if 0 <= i < self.rows)
            out.update(rows_written=len(ids), lost=self.rows - unique, duplicated=len(ids) - len(counts),
                       complete=unique == self.rows and len(ids) == self.rows,
                       in_order=ids.tolist() == list(range(self.rows)))  # fmt: skip
        out["falsely_failed"] = status == "failed" and out["complete"]
        out["dead_letters"] = self.dead_letters(run_id)
        return out

    def dead_letters(self, run_id: str) -> int:
        """Dead-lettered messages of this run (taken off the dead-letter queues, others put back)."""
        count = 0
        for name in SERVICES:
            dlq = dead_letter_queue(service_queue(name))
            for env in self.bus.drain(dlq):
                if env.run_id == run_id:
                    count += 1
                else:
                    self.bus.publish(dlq, env)
        return count


def summarize(rounds: list[dict[str, Any]], chaos: Chaos) -> dict[str, Any]:
    faults = [f for r in rounds for f in r["faults"]]
    recovery: dict[str, Any] = {}
    for kind in sorted({f["kind"] for f in faults}):
        times = [f["recovery_s"] for f in faults if f["kind"] == kind and f["recovery_s"] is not None]
        recovery[kind] = {
            "faults": sum(1 for f in faults if f["kind"] == kind),
            "recovery_s_median": _r(statistics.median(times)) if times else None,
            "recovery_s_max": _r(max(times)) if times else None,
        }
    succeeded = [r for r in rounds if r["status"] == "succeeded"]
    return {
        "rounds": len(rounds),
        "rows_per_round": chaos.rows,
        "batch_size": chaos.batch_size,
        "replicas": REPLICAS,
        "faults_per_round": chaos.faults,
        "seed": chaos.seed,
        "rows_published": sum(r["rows_published"] or 0 for r in rounds),
        "rows_written": sum(r["rows_written"] for r in rounds),
        "lost": sum(r["lost"] or 0 for r in succeeded),
        "duplicated": sum(r["duplicated"] for r in rounds),
        "out_of_order_runs": sum(1 for r in succeeded if not r.get("in_order")),
        "runs_succeeded": len(succeeded),
        "runs_failed": sum(1 for r in rounds if r["status"] == "failed"),
        "runs_falsely_failed": sum(1 for r in rounds if r["falsely_failed"]),
        "runs_never_ended": sum(1 for r in rounds if r["status"] == "never ended"),
        "dead_letters": sum(r["dead_letters"] for r in rounds),
        "faults": len(faults),
        "recovery": recovery,
        "round_seconds_median": _r(statistics.median(r["seconds"] for r in rounds)) if rounds else None,
        "details": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--faults", type=int, default=3, help="faults per round")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated fault kinds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--round-timeout", type=float, default=900.0)
    parser.add_argument("--keep", type=Path, help="keep the S3 data, run store and replicas' log in this folder")
    args = parser.parse_args()
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        parser.error(f"unknown fault kind(s): {', '.join(unknown)}; known: {', '.join(KINDS)}")
    rounds: list[dict[str, Any]] = []
    chaos = Chaos(rows=args.rows, batch_size=args.batch_size, faults=args.faults, kinds=kinds, seed=args.seed,
                  round_timeout=args.round_timeout, tmp=args.keep)  # fmt: skip
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"chaos-{time.strftime('%Y%m%d-%H%M%S')}.json"
    with chaos:
        for number in range(1, args.rounds + 1):
            result = chaos.round(number)
            rounds.append(result)
            chaos.log(json.dumps({k: v for k, v in result.items() if k != "error"} | {"error": result["error"]}))
            path.write_text(json.dumps(summarize(rounds, chaos), indent=2))  # partial results survive an abort
    summary = summarize(rounds, chaos)
    path.write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "details"}, indent=2))


if __name__ == "__main__":
    main()
