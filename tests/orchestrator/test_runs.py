"""Runs through the embedded runtime: recorded state, retries, dead letters, idempotency, replicas."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from mlrm.bus import dead_letter_queue, service_queue
from mlrm.errors import DataError, NotFoundError, error_from_dict
from mlrm.settings import Settings
from orchestrator.embedded import Embedded
from tests.support import wait_for

STEPS = '''
import os
from mlrm.steps import TransformStep

class Flaky(TransformStep):
    """Raises a plain exception the first `failures` times it sees a batch (a transient fault)."""
    kind = "handler"
    failures: int = 1
    marker: str

    def transform(self, df, state):
        count = int(open(self.marker).read()) if os.path.exists(self.marker) else 0
        if count < self.failures:
            open(self.marker, "w").write(str(count + 1))
            raise RuntimeError("transient glitch")
        return df
'''


@pytest.fixture
def workflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "run_steps.py").write_text(STEPS)
    monkeypatch.syspath_prepend(str(tmp_path))
    pd.DataFrame({"id": range(100), "x": [float(i) for i in range(100)]}).to_csv(tmp_path / "data.csv", index=False)

    def make(handler_steps: str, batch_size: int = 10) -> Path:
        path = tmp_path / "wf.yaml"
        path.write_text(
            textwrap.dedent(f"""\
            kind: Workflow
            name: t
            steps:
              - name: collect
                service: collector
                config: {{source: {{step: csv, path: data.csv}}, batch_size: {batch_size}}}
              - name: clean
                service: handler
                config: {{steps: {handler_steps}}}
            """)
        )
        return path

    return make


def test_run_state_is_recorded_per_step(mlrm, workflow):
    run = mlrm.run(workflow('[{step: filter, expr: "x >= 20"}]'), timeout=60)
    assert run.status == "succeeded", run.error
    collect, clean = run.steps
    assert (collect.status, collect.batches_in, collect.rows_out, collect.batches_out) == ("succeeded", 1, 100, 10)
    assert (clean.status, clean.batches_in, clean.rows_in, clean.rows_out) == ("succeeded", 10, 100, 80)
    assert clean.seconds is not None and clean.busy > 0
    assert mlrm.store.get(run.id).status == "succeeded"  # persisted, not just in memory


def test_transient_errors_are_retried(mlrm, workflow, tmp_path):
    marker = tmp_path / "count"
    run = mlrm.run(workflow(f'[{{step: "run_steps:Flaky", failures: 1, marker: "{marker}"}}]', 1000), timeout=60)
    assert run.status == "succeeded", run.error
    assert run.steps[1].rows_out == 100


def test_poison_message_is_dead_lettered_and_fails_only_its_run(mlrm, workflow, tmp_path):
    marker = tmp_path / "count"  # settings.retries is 1: two failures exhaust it
    bad = mlrm.run(workflow(f'[{{step: "run_steps:Flaky", failures: 5, marker: "{marker}"}}]', 1000), timeout=60)
    assert bad.status == "failed"
    assert "step 'clean' (handler): RuntimeError: transient glitch" in bad.error
    assert bad.steps[1].status == "failed"
    dead = mlrm.bus.drain(dead_letter_queue(service_queue("handler")))
    assert len(dead) == 1 and dead[0].body["attempts"] == 2 and "transient glitch" in dead[0].body["error"]
    assert len(dead[0].payload) == 100  # the message is kept whole for a replay

    good = mlrm.run(workflow("[{step: drop_na}]"), timeout=60)  # the next run is unaffected
    assert good.status == "succeeded"


def test_deterministic_errors_are_not_retried(mlrm, workflow):
    run = mlrm.run(workflow("[{step: select, columns: [nope]}]"), timeout=60)
    assert run.status == "failed" and "nope" in run.error
    dead = mlrm.bus.drain(dead_letter_queue(service_queue("handler")))
    assert dead and all(d.body["attempts"] == 1 for d in dead)


def test_redelivered_messages_are_processed_once(mlrm, workflow):
    run = mlrm.run(workflow("[{step: drop_na}]"), timeout=60)
    handler = mlrm.service("handler")
    before = handler.processed
    # Replay the collector's output for batch 0 as a broker would after a lost ack.
    from mlrm.bus import Envelope, message_id
    from orchestrator.compile import compile_workflow

    route = compile_workflow(workflow("[{step: drop_na}]")).route
    dup = Envelope(id=message_id(run.id, "clean", 0), run_id=run.id, route=route, hop=1, seq=0, last=False,
                   payload=pd.DataFrame({"id": [0], "x": [0.0]}))  # fmt: skip
    mlrm.bus.publish(service_queue("handler"), dup)
    mlrm.bus.publish(service_queue("handler"), dup)
    import time

    time.sleep(0.3)
    assert handler.processed == before
    assert mlrm.store.get(run.id).steps[1].batches_in == 10


def test_replicas_share_the_work_and_order_is_restored(tmp_path, workflow):
    settings = Settings(volume=str(tmp_path / "v"), state=str(tmp_path / "s.sqlite"))
    with Embedded(settings, replicas=3) as mlrm:
        run = mlrm.run(workflow("[{step: sort, by: x, ascending: false}, {step: drop_na}]", 5), timeout=60)
    assert run.status == "succeeded", run.error
    assert len(run.steps[1].workers) >= 1
    assert run.steps[1].rows_out == 100


def test_big_batches_travel_by_claim_check(mlrm, workflow):
    """With a tiny inline limit every batch goes through the volume; results are the same."""
    mlrm.bus.inline_limit = 1
    run = mlrm.run(workflow('[{step: filter, expr: "x >= 20"}]'), timeout=60)
    assert run.status == "succeeded", run.error
    assert run.steps[1].rows_out == 80
    assert [o.key for o in mlrm.volume.list(f"runs/{run.id}/payloads/")]  # they went through the volume


def test_a_redelivered_submission_resends_the_start_of_an_unfinished_run(tmp_path, workflow):
    """The orchestrator died after recording a run but before its start message went out."""
    from orchestrator.compile import compile_workflow
    from orchestrator.orchestrator import SUBMIT_QUEUE, submission
    from orchestrator.store import RunStore

    settings = Settings(volume=str(tmp_path / "v"), state=str(tmp_path / "s.sqlite"))
    message = submission(compile_workflow(workflow("[{step: drop_na}]")))
    store = RunStore(settings.state)  # the run is recorded, nothing was sent
    store.create(message.run_id, "t", "", "transform", message.route, {"mode": "transform", "workflow": "t"})
    store.close()
    with Embedded(settings) as mlrm:
        mlrm.bus.publish(SUBMIT_QUEUE, message)  # the broker redelivers the submission
        record = mlrm.orchestrator.wait(message.run_id, timeout=60)
    assert record.status == "succeeded" and record.steps[1].rows_out == 100


BAD_KEY_SOURCE = '''
from mlrm.steps import SourceStep

class KeyedSource(SourceStep):
    """A user's own source that computes the key it reads (so no config validation saw it)."""
    key: str

    def read(self, ctx, batch_size):
        with ctx.volume.open_read(self.key) as stream:
            yield from ()
'''


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a\\x00b"])
def test_a_bad_key_fails_at_once_and_is_not_retried_as_an_outage(mlrm, tmp_path, monkeypatch, key):
    (tmp_path / "keyed_source.py").write_text(BAD_KEY_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "wf.yaml"
    path.write_text(
        "kind: Workflow\nname: t\nsteps:\n  - name: collect\n    service: collector\n"
        f"    config: {{source: {{step: 'keyed_source:KeyedSource', key: {json.dumps(key)}}}}}\n"
    )
    run = mlrm.run(path, timeout=60)
    assert run.status == "failed" and "object name" in run.error
    dead = mlrm.bus.drain(dead_letter_queue(service_queue("collector")))
    assert len(dead) == 1 and dead[0].body["attempts"] == 1


def test_run_ids_are_found_by_plain_prefix_never_by_pattern(tmp_path):
    """`runs show 20261129_184615` showed run 20261129-184615-...: LIKE read '_' as any character."""
    from orchestrator.store import RunStore

    store = RunStore(str(tmp_path / "s.sqlite"))
    for run_id in ("20261129-184615-aaaaaa", "20261129-184615-aaaaaa-2", "20261130-090000-bbbbbb"):
        store.create(run_id, "t", "", "transform", [], {})
    for pattern in ("20261129_184615", "20261129%", "%", "_", "2026113_", "20261129-184615-AAAAAA"):
        with pytest.raises(NotFoundError, match="no run with id"):
            store.find(pattern)
    assert store.find("20261130").id == "20261130-090000-bbbbbb"
    assert store.find("20261129-184615-aaaaaa").id == "20261129-184615-aaaaaa"  # exact, though it prefixes another
    with pytest.raises(NotFoundError, match="ambiguous"):
        store.find("20261129-184615")
    store.close()


def test_other_groups_and_in_process_hooks_follow_the_events_the_orchestrator_records(mlrm, workflow):
    followed: list[str] = []  # another subscriber group (monitoring), beside the orchestrator's
    mlrm.bus.subscribe_events("monitor", lambda d: (followed.append(d.envelope.id), d.ack()))
    recorded: list[tuple[str, dict]] = []
    mlrm.orchestrator.on_recorded.append(lambda run_id, event: recorded.append((run_id, event)))
    run = mlrm.run(workflow('[{step: filter, expr: "x >= 20"}]'), timeout=60)
    assert run.status == "succeeded", run.error  # the orchestrator still records the run
    assert run.steps[1].batches_in == 10
    # 1 collector message and 10 handler batches: each seen once by the monitor and by the hook
    wait_for(lambda: len(followed) == 11, what="the monitor's events")
    assert sorted(followed) == sorted({*followed})
    assert len(recorded) == 11 and {r for r, _ in recorded} == {run.id}
    assert sorted((e["step"], e["seq"]) for _, e in recorded) == [("clean", i) for i in range(10)] + [("collect", 0)]


def test_a_failed_step_event_carries_the_error_as_data(mlrm, workflow):
    recorded: list[dict] = []
    mlrm.orchestrator.on_recorded.append(lambda run_id, event: recorded.append(event))
    mlrm.orchestrator.on_recorded.append(lambda run_id, event: 1 / 0)  # a broken follower stops nothing
    run = mlrm.run(workflow("[{step: select, columns: [nope]}]"), timeout=60)
    assert run.status == "failed" and "nope" in run.error
    failed = [e for e in recorded if e["event"] == "failed"]
    assert failed and run.error == failed[0]["error"]
    error = error_from_dict(failed[0]["error_data"])
    assert isinstance(error, DataError) and "nope" in error.message
    dead = mlrm.bus.drain(dead_letter_queue(service_queue("handler")))
    assert isinstance(error_from_dict(dead[0].body["error_data"]), DataError)


def test_run_store_read_only_creates_nothing(tmp_path: Path) -> None:
    from orchestrator.store import RunStore

    missing = tmp_path / "no" / "such" / "runs.sqlite"
    store = RunStore(missing, read_only=True)
    assert store.list(10**30) == []  # any limit: more than SQLite's integers means all
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("what", ["folder", "garbage", "other database"])
def test_run_store_that_is_not_one(tmp_path: Path, what: str) -> None:
    import sqlite3

    from mlrm.errors import ConfigError
    from orchestrator.store import RunStore

    path = tmp_path / "state"
    if what == "folder":
        path.mkdir()
    elif what == "garbage":
        path.write_bytes(bytes(range(256)) * 16)
    else:
        sqlite3.connect(path).execute("CREATE TABLE other (x)").connection.close()
    for read_only in (True, False) if what != "other database" else (True,):
        with pytest.raises(ConfigError, match=rf"run store {path}: "):
            RunStore(path, read_only=read_only)


def test_an_embedded_run_does_only_the_work_it_needs(mlrm):
    """No deployment watcher, no orphan scan, no status snapshot nobody reads; aliases still followed."""
    import threading

    from mlrm.registry import ModelRegistry
    from tests.conftest import CONFIGS

    first = mlrm.run(CONFIGS / "iris" / "train.yaml", timeout=120)
    assert first.status == "succeeded"
    background = [t.name for t in threading.enumerate() if t.name.endswith((":watch", ":jobs"))]
    assert background == []
    assert not mlrm.volume.exists(f"runs/{first.id}/status.json")

    predict = mlrm.service("predict")
    rows = __import__("pandas").read_csv(CONFIGS / "iris" / "new_flowers.csv").head(2)
    assert predict.infer("iris-classifier", rows, alias="production")[1].version == 1
    assert mlrm.run(CONFIGS / "iris" / "train.yaml", timeout=120).status == "succeeded"  # production -> 2
    assert ModelRegistry(mlrm.volume).resolve("iris-classifier", alias="production").version == 2
    assert predict.infer("iris-classifier", rows, alias="production")[1].version == 2  # followed on request


@pytest.mark.parametrize("first", ["reopen message first", "replayed events first"])
@pytest.mark.parametrize("fixed", [True, False], ids=["replay succeeds", "replay fails again"])
def test_a_replayed_run_ends_whichever_of_its_messages_arrives_first(mlrm, workflow, tmp_path, first, fixed):
    """`mlrm dlq replay` sends a reopen message to the orchestrator and the dead letters to their services:
    different queues, so the replayed batch's events may be recorded before the run is reopened."""
    import time

    from orchestrator.compile import compile_workflow
    from orchestrator.orchestrator import SUBMIT_QUEUE, replay_dead_letters, submission
    from tests.support import wait_for

    marker = tmp_path / "count"  # settings.retries is 1: two failures dead-letter the batch
    steps = f'[{{step: "run_steps:Flaky", failures: {2 if fixed else 10}, marker: "{marker}"}}]'
    failed = mlrm.run(workflow(steps, 1000), timeout=60)
    assert failed.status == "failed"

    held: list = []

    class Broker:  # the bus, delivering the reopen message late when asked to
        def publish(self, queue, env):
            if queue == SUBMIT_QUEUE and first == "replayed events first":
                held.append((queue, env))
            else:
                mlrm.bus.publish(queue, env)

        def drain(self, queue):
            return mlrm.bus.drain(queue)

    replayed_at = time.time()
    assert replay_dead_letters(Broker(), ["handler"], failed.id) == 1
    clean = lambda: mlrm.store.get(failed.id).steps[1]  # noqa: E731
    wait_for(lambda: (clean().finished or 0) > replayed_at, 60, "the replayed batch's event to be recorded")
    for queue, env in held:
        mlrm.bus.publish(queue, env)
    # The orchestrator takes submissions in order: once a later one has started, the reopen was handled.
    later = submission(compile_workflow(workflow("[{step: drop_na}]")))
    mlrm.bus.publish(SUBMIT_QUEUE, later)
    wait_for(lambda: mlrm.store.exists(later.run_id), 60, "the orchestrator to take the reopen message")
    record = mlrm.orchestrator.wait(failed.id, timeout=60)
    assert record.status == ("succeeded" if fixed else "failed"), record


def test_replaying_a_stray_dead_letter_of_a_run_that_succeeded_leaves_it_succeeded(mlrm, workflow):
    """A batch dead-lettered although its run completed (a stray redelivery): replaying it must not
    reopen the run for good (its events are repeats, which never complete anything)."""
    from mlrm.bus import Envelope, message_id
    from orchestrator.compile import compile_workflow
    from orchestrator.orchestrator import SUBMIT_QUEUE, replay_dead_letters, submission
    from tests.support import wait_for

    path = workflow("[{step: drop_na}]")
    run = mlrm.run(path, timeout=60)
    assert run.status == "succeeded"
    stray = Envelope(id=message_id(run.id, "clean", 0), run_id=run.id, route=compile_workflow(path).route, hop=1,
                     seq=0, last=False, payload=pd.DataFrame({"id": [0], "x": [0.0]}))  # fmt: skip
    mlrm.bus.publish(dead_letter_queue(service_queue("handler")), stray)
    handled = mlrm.service("handler").processed
    assert replay_dead_letters(mlrm.bus, ["handler"], run.id) == 1
    wait_for(lambda: mlrm.service("handler").processed > handled, 60, "the replayed batch")
    later = submission(compile_workflow(path))  # once a later submission started, the reopen was handled
    mlrm.bus.publish(SUBMIT_QUEUE, later)
    wait_for(lambda: mlrm.store.exists(later.run_id), 60, "the orchestrator to take the reopen message")
    assert mlrm.store.get(run.id).status == "succeeded"
