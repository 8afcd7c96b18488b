"""Training jobs: recorded once, reported when done, adopted — deliberately and visibly — when their holder dies."""

from __future__ import annotations

import threading

from mlrm.bus import Envelope, Hop
from mlrm.lease import Holder, Lease
from mlrm.registry import ModelRegistry
from mlrm.settings import Settings
from orchestrator.embedded import Embedded
from services.train.jobs import JobRunner, job_key, to_record
from tests.conftest import CONFIGS
from tests.support import dead_pid, killed_embedded_training, wait_for

BUS = "amqp://guest:guest@127.0.0.1:5672/deployment-a"


def message(seq: int = 2) -> Envelope:
    return Envelope(id=f"r1/train/{seq}", run_id="r1", route=[Hop("train", "train", {})], seq=seq, last=True)


def worker(done: list):
    def work(env: Envelope) -> None:
        done.append(env)

    return work


def test_a_job_is_recorded_once_however_often_its_message_comes(volume):
    ran: list = []
    runner = JobRunner(volume, Holder.here("train-0", BUS), worker(ran))
    assert runner.submit(message(2)) is True
    wait_for(lambda: volume.get_json(job_key("r1", "train"))["status"] == "done", what="the job")
    assert runner.submit(message(2)) is True  # the same message again: its job exists, nothing runs twice
    other = JobRunner(volume, Holder.here("train-1", BUS), worker(ran))
    assert other.submit(message(2)) is True
    assert other.submit(message(1)) is False  # another message of the run: the job reports for message 2
    assert [e.id for e in ran] == ["r1/train/2"]


def test_a_job_whose_holder_died_is_adopted_once_by_a_replica_on_its_bus_and_says_so(volume):
    here = Holder.here("train-0", BUS)
    dead = Holder("train-0", here.machine, dead_pid(), None, here.bus)  # SIGKILLed mid-training
    assert Lease(volume, job_key("r1", "train"), dead, ttl=60).acquire(**to_record(message()))

    ran: list = []
    embedded = JobRunner(volume, Holder.here("train-0", "memory://"), worker(ran))
    elsewhere = JobRunner(volume, Holder.here("train-0", "amqp://guest:guest@127.0.0.1:5672/other"), worker(ran))
    assert embedded.adopt_orphans() == []  # an embedded run adopts nothing: it cannot report to that run
    assert elsewhere.adopt_orphans() == []  # another deployment's job is not its to finish

    replicas = [JobRunner(volume, Holder.here(f"train-{i}", BUS), worker(ran)) for i in (1, 2)]
    adopted: list = []
    threads = [threading.Thread(target=lambda r=r: adopted.extend(r.adopt_orphans())) for r in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert adopted == [job_key("r1", "train")]  # one taker only
    wait_for(lambda: volume.get_json(job_key("r1", "train"))["status"] == "done", what="the adopted job")
    record = volume.get_json(job_key("r1", "train"))
    assert record["holder"]["name"] in ("train-1", "train-2")
    assert record["taken_over"][0]["from"].startswith("train-0 (pid")
    assert [e.body["adopted"] for e in ran] == [record["taken_over"]]  # reported with the step's result


def test_an_embedded_run_never_adopts_the_job_of_a_killed_run(tmp_path):
    """A later `mlrm run` on the same volume, even an unrelated one, must not retrain a dead run's job."""
    killed = killed_embedded_training(tmp_path, CONFIGS / "iris" / "iris.csv")
    volume_dir = tmp_path / "volume"
    job = next(p for p in (volume_dir / "runs" / killed).glob("**/*.json") if "job" in p.name or "jobs" in p.parts)
    record = job.read_bytes()
    # Let its heartbeat look a long time stale, as if hours had passed since the kill.
    job.write_text(record.decode().replace('"heartbeat": ', '"heartbeat": 1000000, "_was": '))
    stale = job.read_bytes()

    settings = Settings(volume=str(volume_dir), state=str(tmp_path / "runs.sqlite"), retries=1)
    with Embedded(settings) as mlrm:
        unrelated = mlrm.run(CONFIGS / "iris" / "train.yaml", timeout=120)
        assert unrelated.status == "succeeded", unrelated.error
        assert job.read_bytes() == stale  # not adopted: nobody touched the dead run's job
        assert mlrm.store.get(killed).status == "abandoned"
    assert ModelRegistry(mlrm.volume).names() == ["iris-classifier"]


def test_a_job_whose_outcome_cannot_be_reported_is_left_for_adoption_not_failed(volume):
    """The bus closes under a finishing job (its service is stopping): nothing escapes the job's thread,
    the job is neither done nor failed, and once its lease goes stale a replica on the bus adopts it."""
    from mlrm.errors import BusError

    def closing(env: Envelope) -> None:
        raise BusError("bus memory:// is closed")

    runner = JobRunner(volume, Holder.here("train-0", BUS), closing, lease=0.5)
    assert runner.submit(message(2)) is True
    wait_for(lambda: not runner._running, what="the job's thread")
    record = volume.get_json(job_key("r1", "train"))
    assert record["held"] and record.get("status") not in ("done", "failed")
    ran: list = []
    replica = JobRunner(volume, Holder.here("train-1", BUS), worker(ran))
    wait_for(lambda: replica.adopt_orphans() == [job_key("r1", "train")], what="the adoption")
    wait_for(lambda: volume.get_json(job_key("r1", "train"))["status"] == "done", what="the adopted job")
    assert [e.id for e in ran] == ["r1/train/2"]
