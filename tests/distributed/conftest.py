"""A real distributed deployment for tests: RabbitMQ (a private vhost per test module) and
one process per service replica, started by the same supervisor as `mlrm up`."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlrm.bus import events_queue, open_bus
from mlrm.volume import Volume, open_volume
from orchestrator.compile import compile_workflow
from orchestrator.local import LocalDeployment, ServiceReplicas, Supervisor
from orchestrator.orchestrator import EVENTS_GROUP, SUBMIT_QUEUE, read_status, submission
from orchestrator.store import RunRecord
from tests.support import HAS_RABBITMQCTL, broker_up, consumers, rabbitmqctl

HERE = Path(__file__).resolve().parent
SERVICES = ("collector", "handler", "features", "train", "predict")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip this folder's tests, with the reason, where there is no broker to run them on.

    (A ``pytestmark`` in a conftest is ignored by pytest, so the skip is added here.)
    """
    if broker_up() and HAS_RABBITMQCTL:
        return
    skip = pytest.mark.skip(reason="needs RabbitMQ on 127.0.0.1:5672 and rabbitmqctl")
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(skip)


@pytest.fixture(scope="module")
def vhost() -> Iterator[str]:
    """A private vhost: queues of one test module never see another's messages."""
    name = f"mlrm-test-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    yield name
    rabbitmqctl("delete_vhost", name)


@dataclass
class Cluster:
    url: str
    vhost: str
    volume: Volume
    supervisor: Supervisor
    deployment: LocalDeployment

    def submit(self, workflow: Path) -> str:
        message = submission(compile_workflow(workflow))
        bus = open_bus(self.url)
        try:
            bus.publish(SUBMIT_QUEUE, message)
        finally:
            bus.close()
        return message.run_id

    def status(self, run_id: str) -> RunRecord | None:
        try:
            return read_status(self.volume, run_id)
        except Exception:
            return None

    def wait(self, run_id: str, timeout: float = 120) -> RunRecord:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = self.status(run_id)
            if record is not None and record.done:
                return record
            time.sleep(0.1)
        raise AssertionError(f"run {run_id} did not finish in {timeout}s: {self.status(run_id)}")

    def run(self, workflow: Path, timeout: float = 120) -> RunRecord:
        return self.wait(self.submit(workflow), timeout)

    def wait_ready(self, timeout: float = 60) -> None:
        want = {f"mlrm.{s}": r.replicas for s, r in self.deployment.services.items() if r.replicas}
        want |= {SUBMIT_QUEUE: 1, events_queue(EVENTS_GROUP): 1}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(consumers(self.url, q) >= n for q, n in want.items()):
                return
            time.sleep(0.2)
        raise AssertionError(f"services did not all connect within {timeout}s")

    def pid(self, name: str) -> int:
        return self.supervisor.pids()[name]


@pytest.fixture
def cluster_factory(vhost: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Start a deployment with the given replicas; every process is stopped at teardown."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setenv("MLRM_RETRIES", "1")
    started: list[Supervisor] = []

    def make(volume: str | None = None, **replicas: int) -> Cluster:
        url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}?heartbeat=10"
        volume_url = volume or str(tmp_path / "volume")
        spec = LocalDeployment(
            bus=url, volume=volume_url, state=str(tmp_path / "runs.sqlite"),
            services={s: ServiceReplicas(replicas=replicas.get(s, 1), prefetch=1) for s in SERVICES},
        )  # fmt: skip
        supervisor = Supervisor(spec)
        supervisor.start()
        started.append(supervisor)
        cluster = Cluster(url, vhost, open_volume(volume_url), supervisor, spec)
        cluster.wait_ready()
        return cluster

    yield make
    for supervisor in started:
        supervisor.stop()
