"""Training jobs: acked once recorded, reported when done, adopted when their replica dies."""

from __future__ import annotations

import time

import pandas as pd

from mlrm.bus.memory import MemoryBus
from mlrm.gather import Gather
from mlrm.registry import ModelRegistry
from orchestrator.compile import compile_workflow
from services.train.jobs import job_key
from services.train.service import TrainService
from tests.conftest import CONFIGS


def test_a_job_whose_replica_died_is_adopted_and_completes(mlrm):
    """Train once to get a real job record, then replay it as if its trainer had been killed."""
    run = mlrm.run(CONFIGS / "iris" / "train.yaml", timeout=120)
    volume = mlrm.volume
    record = volume.get_json(job_key(run.id, "train"))
    assert record["status"] == "done" and record["owner"] == "train-0"

    # Put the training data back and make the job look orphaned: running, owner silent for 2 minutes.
    route = compile_workflow(CONFIGS / "iris" / "train.yaml").route
    volume.delete(f"runs/{run.id}/done/train")
    Gather(volume, run.id, "train").add(0, True, pd.read_csv(CONFIGS / "iris" / "iris.csv"))
    record.update(status="running", owner="train-dead", heartbeat=time.time() - 120,
                  route=[h.to_dict() for h in route])  # fmt: skip
    volume.put_json(job_key(run.id, "train"), record)

    bus = MemoryBus()
    events: list = []
    bus.subscribe_events("test", lambda d: (events.append(d.envelope.body), d.ack()))
    service = TrainService(bus, volume, worker="train-new", lease=60)
    bus.start()
    assert service.jobs.adopt_orphans() == [job_key(run.id, "train")]
    assert service.jobs.adopt_orphans() == []  # one taker only
    deadline = time.monotonic() + 60
    while not events:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert events[0]["event"] == "processed" and events[0]["result"]["version"] == 2
    assert ModelRegistry(volume).versions("iris-classifier") == [1, 2]
    assert volume.get_json(job_key(run.id, "train"))["status"] == "done"
    bus.close()
