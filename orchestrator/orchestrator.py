"""The orchestrator: starts runs, follows their step events, and records their state.

It never touches data. A run starts with one message to the first step of the route
(the collector); services pass batches along the route themselves and report each
processed message as an event, which the orchestrator records in its store (it reads the
events as the bus's subscriber group ``orchestrator``; other groups may follow them too).
It also publishes a snapshot of each run's state to the volume
(``runs/<id>/status.json``), so clients on other machines can follow a run.

Submissions arrive either in-process (:meth:`Orchestrator.submit`) or as messages on
the ``mlrm.orchestrator`` queue (``mlrm submit``); a submission carries its run id, so
a redelivered submission is recognised and started once.
"""

from __future__ import annotations

import copy
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from mlrm.bus import Bus, Delivery, Envelope, Hop, dead_letter_queue, message_id, service_queue
from mlrm.cancel import mark_cancelled
from mlrm.deployments import Deployments
from mlrm.errors import ConfigError, MlrmError, RefusedError, describe
from mlrm.lease import Holder, Keeper, Lease
from mlrm.registry import ModelRegistry
from mlrm.volume import Volume
from orchestrator.compile import CompiledWorkflow, route_mode
from orchestrator.store import RunRecord, RunStore, abandoned_reason

log = logging.getLogger(__name__)

SUBMIT_QUEUE = "mlrm.orchestrator"
EVENTS_GROUP = "orchestrator"  # the event subscriber group (mlrm.bus.Bus.subscribe_events) the orchestrator reads as
STATUS_EVERY = 0.25  # seconds between status snapshots of a running run
CANCEL_SWEEP = 5.0  # seconds after a cancel when its scratch space is swept again (work that was under way)


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def status_key(run_id: str) -> str:
    return f"runs/{run_id}/status.json"


def run_lease_key(run_id: str) -> str:
    return f"runs/{run_id}/leases/run.json"


def submission(workflow: CompiledWorkflow, run_id: str | None = None, *, expires: float | None = None) -> Envelope:
    """The message ``mlrm submit`` sends to a running orchestrator.

    ``expires`` (seconds since the epoch): an orchestrator that receives the submission
    later refuses it, so a client that gave up waiting never sees its run start behind its back.
    """
    run_id = run_id or new_run_id()
    body: dict[str, Any] = {"op": "submit", "workflow": workflow.name, "path": workflow.path}
    if expires is not None:
        body["expires"] = expires
    return Envelope(id=f"{run_id}/submit", run_id=run_id, route=workflow.route, body=body)


class Orchestrator:
    """Follows runs; ``name`` is how it appears as their owner (``embedded`` for ``mlrm run``)."""

    def __init__(
        self, bus: Bus, volume: Volume, store: RunStore, *, name: str = "orchestrator", lease: float = 60.0,
        publish_status: bool = True,
    ) -> None:  # fmt: skip
        self.bus, self.volume, self.store = bus, volume, store
        # Snapshots in the volume let `mlrm status` follow a run from another machine; an embedded
        # run is followed in its own process (and `mlrm runs show` reads the run store).
        self.publish_status = publish_status
        self._changed = threading.Condition()
        self._steps: dict[str, int] = {}  # run id -> number of steps (a cache of the store)
        self._status_at: dict[str, float] = {}
        self.on_finish: list[Callable[[RunRecord], None]] = []
        # In-process followers (monitoring): each step event once it is recorded, as (run id, event body).
        self.on_recorded: list[Callable[[str, dict[str, Any]], None]] = []
        # Every running run holds a lease in the volume (runs/<id>/leases/run.json), renewed here:
        # `mlrm gc` leaves live runs alone whatever run store it reads.
        self.holder = Holder.here(name, bus.url)
        self.lease_ttl = lease
        self.cancel_sweep = CANCEL_SWEEP
        self._leases = Keeper(interval=max(0.5, lease / 6))

    def start(self) -> None:
        self.reap()
        self._resume()
        self.bus.subscribe_events(EVENTS_GROUP, self.on_event)
        self.bus.subscribe(SUBMIT_QUEUE, self.on_submission)

    def stop(self) -> None:
        self._leases.stop()

    # -- owning runs -----------------------------------------------------------------------
    def reap(self) -> list[str]:
        """Mark abandoned the runs whose owner died and that nobody else can finish (see the store)."""
        abandoned = self.store.reap()
        for run_id in abandoned:
            log.warning("run %s: %s", run_id, self.store.get(run_id).error)
            self._publish_status(run_id, force=True)
        return abandoned

    def _resume(self) -> None:
        """After a restart: hold the runs of this deployment (same shared bus) again."""
        if not self.holder.bus:
            return
        for run_id, owner in self.store.running():
            if owner and Holder.from_dict(owner).bus == self.holder.bus:
                self.store.set_owner(run_id, self.holder.to_dict())
                self._hold(run_id)

    def _hold(self, run_id: str) -> None:
        lease = Lease(self.volume, run_lease_key(run_id), self.holder, ttl=self.lease_ttl)
        try:
            if not lease.acquire(run_id=run_id):
                current = lease.read()
                if current is None or not lease.take_over(current):
                    log.warning("run %s: its lease is held by another live orchestrator", run_id)
                    return
            self._leases.add(lease)
        except MlrmError as exc:  # the store still knows the run is live; the keeper retries renewals
            log.warning("run %s: could not take its lease: %s", run_id, exc)

    def _let_go(self, run_id: str) -> None:
        lease = self._leases.pop(run_lease_key(run_id))
        if lease is not None:
            lease.release()

    # -- starting runs -------------------------------------------------------------------
    def submit(self, workflow: CompiledWorkflow, run_id: str | None = None) -> str:
        """Record a new run and send its start message; returns the run id."""
        run_id = run_id or new_run_id()
        self.start_run(run_id, workflow.name, workflow.path, workflow.route)
        return run_id

    def start_run(self, run_id: str, name: str, path: str, route: list[Hop]) -> None:
        mode = route_mode(route)
        context: dict[str, Any] = {"mode": mode, "workflow": name}
        predict = next((h for h in route if h.service == "predict"), None)
        if predict is not None:  # pin the model version for the whole run
            model = predict.config["model"]
            registry = ModelRegistry(self.volume)
            ref = registry.resolve(model["name"], alias=model.get("alias"), version=model.get("version"))
            context["model"] = {"name": ref.name, "version": ref.version}
        route = self._placed(route, context)
        self.store.create(run_id, name, path, mode, route, context, owner=self.holder.to_dict())
        self._hold(run_id)
        self._steps[run_id] = len(route)
        self._send_start(run_id, route, context)
        self._publish_status(run_id, force=True)

    def _placed(self, route: list[Hop], context: dict[str, Any]) -> list[Hop]:
        """The route with the predict step sent to a node's own queue when its model must stay there."""
        predict = next((h for h in route if h.service == "predict"), None)
        if predict is None or "model" not in context:
            return route
        node = predict.config.get("node") or strict_node(Deployments(self.volume), context["model"]["name"])
        return [replace(h, node=node) if h is predict else h for h in route] if node else route

    def _send_start(self, run_id: str, route: list[Hop], context: dict[str, Any]) -> None:
        first = route[0]
        start = Envelope(id=message_id(run_id, first.name, 0), run_id=run_id, route=route, context=context)
        self.bus.publish(first.queue, start)

    def on_submission(self, delivery: Delivery) -> None:
        env = delivery.envelope
        body = env.body
        try:
            if body.get("op") == "submit":
                expires = body.get("expires")
                if not self.store.exists(env.run_id) and expires is not None and time.time() > float(expires):
                    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(expires)))
                    self._fail_submission(
                        env,
                        f"the submission expired at {when} before an orchestrator "
                        "picked it up (`mlrm submit` gave up waiting); submit it again",
                    )
                elif not self.store.exists(env.run_id):
                    self.start_run(env.run_id, body["workflow"], body.get("path", ""), env.route)
                elif not self.store.get(env.run_id).done:
                    # A redelivered submission: the start message may never have gone out (a crash
                    # right after recording the run). Sending it again is harmless: same message id.
                    context = self.store.context(env.run_id)
                    self._send_start(env.run_id, self._placed(env.route, context), context)
            elif body.get("op") == "cancel" and self.store.exists(env.run_id) and not self.store.get(env.run_id).done:
                self.cancel(env.run_id, str(body.get("reason") or "cancelled"))
            elif body.get("op") == "reopen":
                self._reopen(env.run_id, float(body.get("epoch", time.time())))
        except MlrmError as exc:  # e.g. no model version has the alias: the run fails, visibly
            self._fail_submission(env, describe(exc))
        delivery.ack()

    def _fail_submission(self, env: Envelope, error: str) -> None:
        if not self.store.exists(env.run_id):
            self.store.create(env.run_id, env.body.get("workflow", "?"), env.body.get("path", ""),
                              route_mode(env.route), env.route, {})  # fmt: skip
        self.store.finish(env.run_id, "failed", error)
        self._publish_status(env.run_id, force=True)

    # -- cancelling runs -----------------------------------------------------------------
    def cancel(self, run_id: str, reason: str = "cancelled") -> RunRecord:
        """Stop a run: services drop its messages (a marker in the volume, :mod:`mlrm.cancel`), a training
        registers no version, its scratch space goes, and it ends ``cancelled``. A finished run is refused."""
        record = self.store.get(run_id)
        if record.done:
            raise RefusedError(f"run {run_id} already ended {record.status}; there is nothing to cancel")
        mark_cancelled(self.volume, run_id, reason)  # first: no service starts new work of the run after this
        self._finish(run_id, "cancelled", reason)
        # A message a service was already processing may still write scratch data: sweep once more, later.
        sweep = threading.Timer(self.cancel_sweep, self._sweep, args=(run_id,))
        sweep.daemon = True
        sweep.start()
        return self.store.get(run_id)

    def _sweep(self, run_id: str) -> None:
        try:
            self.volume.delete_prefix(f"runs/{run_id}/gather/")
        except MlrmError as exc:  # `mlrm gc` collects it later
            log.warning("run %s: could not clean its scratch space: %s", run_id, exc)

    # -- following runs ------------------------------------------------------------------
    def on_event(self, delivery: Delivery) -> None:
        env = delivery.envelope
        if "hop" not in env.body:  # not a step's event (a monitoring check, ...): not the run store's
            delivery.ack()
            return
        try:
            self._record(env.run_id, env.body)
        except MlrmError as exc:  # e.g. an event for a run this store never saw
            log.warning("ignoring event for run %s: %s", env.run_id, exc)
        delivery.ack()
        with self._changed:
            self._changed.notify_all()

    def _reopen(self, run_id: str, epoch: float) -> None:
        """Reopen a run for a replay of its dead letters, once, whichever arrives first:
        the replay's reopen message or an event of a replayed message (they travel on different queues)."""
        if self.store.reopen(run_id, epoch):
            self._steps.pop(run_id, None)
            self._hold(run_id)
            self._publish_status(run_id, force=True)

    def _record(self, run_id: str, body: dict) -> None:
        idx = int(body["hop"])
        if body.get("reopen"):  # an event of a replayed message: its run runs again
            self._reopen(run_id, float(body["reopen"]))
        if body["event"] == "failed":
            self.store.fail_step(run_id, idx, body["error"])
            self._recorded(run_id, body)
            self._finish(run_id, "failed", body["error"])
            return
        if not self.store.record_batch(run_id, idx, body):
            return
        self._recorded(run_id, body)
        if self.store.step_complete(run_id, idx):
            steps = self._steps.get(run_id) or len(self.store.get(run_id).steps)
            if idx == steps - 1:
                self._finish(run_id, "succeeded")
                return
        self._publish_status(run_id)

    def _recorded(self, run_id: str, body: dict[str, Any]) -> None:
        """Tell the in-process followers (each its own copy); one that raises must not stop the recording."""
        for hook in self.on_recorded:
            try:
                hook(run_id, copy.deepcopy(body))
            except Exception:
                log.exception("an on_recorded hook failed on an event of run %s", run_id)

    def _finish(self, run_id: str, status: str, error: str | None = None) -> None:
        # the lease and the scratch space go before the record says the run ended: whoever sees it ended
        # (a waiting `mlrm run`, then `mlrm gc`) finds neither
        self._let_go(run_id)
        try:
            self.volume.delete_prefix(f"runs/{run_id}/gather/")  # scratch space of steps that gathered
        except MlrmError as exc:  # `mlrm gc` collects it later
            log.warning("run %s: could not clean its scratch space: %s", run_id, exc)
        if not self.store.finish(run_id, status, error):
            return
        self._steps.pop(run_id, None)
        self._publish_status(run_id, force=True)
        self._status_at.pop(run_id, None)
        record = self.store.get(run_id)
        for hook in self.on_finish:
            hook(record)

    def _publish_status(self, run_id: str, *, force: bool = False) -> None:
        if not self.publish_status:
            return
        now = time.monotonic()
        if not force and now - self._status_at.get(run_id, 0.0) < STATUS_EVERY:
            return
        self._status_at[run_id] = now
        try:
            self.volume.put_json(status_key(run_id), self.store.get(run_id).to_dict())
        except MlrmError as exc:  # the volume being down must not stop event processing
            log.warning("could not publish the status of run %s: %s", run_id, exc)

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


def replay_dead_letters(bus: Bus, services: Iterable[str], run_id: str | None = None) -> int:
    """Put the dead letters of ``services`` (of one run, or all) back on their queues; returns how many.

    Their runs are reopened. The reopen message (on the orchestrator's queue) and the
    replayed messages (on the services' queues) may reach the orchestrator in any order,
    so all of them carry this replay's epoch, and the first to arrive reopens the run:
    the replayed messages pass it on to the messages they produce, whose events carry it.
    """
    epoch = time.time()
    replayed = 0
    for name in services:
        dlq = dead_letter_queue(service_queue(name))
        for env in bus.drain(dlq):
            if run_id is not None and env.run_id != run_id:
                bus.publish(dlq, env)  # not ours: put it back
                continue
            reopen = Envelope(id=f"{env.run_id}/reopen/{epoch}", run_id=env.run_id,
                              body={"op": "reopen", "epoch": epoch})  # fmt: skip
            bus.publish(SUBMIT_QUEUE, reopen)
            env.body, env.attempt = {}, env.attempt + 1  # a new attempt, not a duplicate
            env.context = {**env.context, "reopen": epoch}
            bus.publish(env.current.queue, env)
            replayed += 1
    return replayed


def strict_node(deployments: Deployments, model: str) -> str | None:
    """The node a model's batch predictions must run on, if it is deployed only in strict mode."""
    deps = [d for d in deployments.active(on_corrupt=lambda exc: log.warning("skipped: %s", exc)) if d.model == model]
    if not deps or any(d.mode == "open" for d in deps):
        return None
    nodes = sorted({str(d.node) for d in deps})
    if len(nodes) > 1:
        raise ConfigError(
            f"model '{model}' is deployed in strict mode on several nodes ({', '.join(nodes)}); "
            "set `node:` in the predict config to choose one"
        )
    return nodes[0]


def read_status(volume: Volume, run_id: str) -> RunRecord:
    """A run's last published state, from any machine that sees the volume."""
    from mlrm.errors import NotFoundError

    try:
        record = RunRecord.from_dict(volume.get_json(status_key(run_id)))
    except NotFoundError:
        raise NotFoundError(f"no run with id '{run_id}' in volume {volume.url}") from None
    reason = None if record.done else abandoned_reason(record.owner)
    if reason is not None:  # its owner died before it could publish that: say so
        record.status, record.error = "abandoned", reason
    return record
