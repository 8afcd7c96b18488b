"""The orchestrator: starts runs, follows their step events, and records their state.

It never touches data. It sends one start message to the first step of the route
(the collector); services pass batches along the route themselves and report
each processed message on the events queue, which the orchestrator records.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable

from mlrm.bus import EVENTS_QUEUE, Bus, Delivery, Envelope, message_id, service_queue
from mlrm.errors import MlrmError
from mlrm.registry import ModelRegistry
from mlrm.volume import Volume
from orchestrator.compile import CompiledWorkflow
from orchestrator.store import RunRecord, RunStore

log = logging.getLogger(__name__)


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


class Orchestrator:
    def __init__(self, bus: Bus, volume: Volume, store: RunStore) -> None:
        self.bus, self.volume, self.store = bus, volume, store
        self._changed = threading.Condition()
        self._routes: dict[str, int] = {}  # run id -> number of steps
        self.on_finish: list[Callable[[RunRecord], None]] = []

    def start(self) -> None:
        self.bus.subscribe(EVENTS_QUEUE, self.on_event)

    def submit(self, workflow: CompiledWorkflow) -> str:
        """Record a new run and send its start message; returns the run id."""
        run_id = new_run_id()
        context: dict = {"mode": workflow.mode, "workflow": workflow.name}
        selector = workflow.predict_model()
        if selector is not None:  # pin the model version for the whole run
            ref = ModelRegistry(self.volume).resolve(selector.name, alias=selector.alias, version=selector.version)
            context["model"] = {"name": ref.name, "version": ref.version}
        self.store.create(run_id, workflow.name, workflow.path, workflow.mode, workflow.route, context)
        self._routes[run_id] = len(workflow.route)
        first = workflow.route[0]
        start = Envelope(id=message_id(run_id, first.name, 0), run_id=run_id, route=workflow.route, context=context)
        self.bus.publish(service_queue(first.service), start)
        return run_id

    def on_event(self, delivery: Delivery) -> None:
        env = delivery.envelope
        body = env.body
        try:
            self._record(env.run_id, body)
        except MlrmError as exc:  # e.g. an event for a run this store never saw
            log.warning("ignoring event for run %s: %s", env.run_id, exc)
        delivery.ack()
        with self._changed:
            self._changed.notify_all()

    def _record(self, run_id: str, body: dict) -> None:
        idx = int(body["hop"])
        if body["event"] == "failed":
            self.store.fail_step(run_id, idx, body["error"])
            self._finish(run_id, "failed", body["error"])
            return
        if not self.store.record_batch(run_id, idx, body):
            return
        if self.store.step_complete(run_id, idx):
            steps = self._routes.get(run_id) or len(self.store.get(run_id).steps)
            if idx == steps - 1:
                self._finish(run_id, "succeeded")

    def _finish(self, run_id: str, status: str, error: str | None = None) -> None:
        if not self.store.finish(run_id, status, error):
            return
        self.volume.delete_prefix(f"runs/{run_id}/gather/")  # scratch space of steps that gathered
        self._routes.pop(run_id, None)
        record = self.store.get(run_id)
        for hook in self.on_finish:
            hook(record)

    def wait(
        self, run_id: str, *, timeout: float | None = None, on_change: Callable[[RunRecord], None] | None = None
    ) -> RunRecord:
        """Block until the run finishes (or ``timeout`` passes); ``on_change`` sees each update."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = self.store.get(run_id)
            if on_change:
                on_change(record)
            if record.done or (deadline is not None and time.monotonic() >= deadline):
                return record
            with self._changed:
                self._changed.wait(0.1)
