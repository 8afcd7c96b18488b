"""The service runtime: consume a queue, run the step's config on each message, forward, report.

A concrete service (collector, handler, ...) only implements :meth:`Service.process`, and
registers itself in :data:`services` under its name (:func:`register_service`), the name
workflows write in ``service:``. What it answers when called directly (REST and gRPC, beside the bus)
it says in :meth:`Service.api`; ``mlrm serve`` runs that on the ports it is given.
The runtime gives every service the same guarantees:

- idempotent on message id: a redelivered message that was already handled is acked and skipped;
- outputs are published before the input is acked (a crash in between means a redelivery,
  and the deterministic output ids make the repeat harmless downstream);
- an unexpected error is retried ``retries`` times; a deterministic one (bad config, bad data)
  and the final retry go to the dead-letter queue with the error, and the run is told it failed;
  an mlrm error travels as data too (``error_data``), so a reader rebuilds its type and details;
- a step's config is validated once per run, not per message (:meth:`Service.config`);
- a cancelled run's messages are dropped, before processing and before forwarding (:mod:`mlrm.cancel`);
- every outcome is published as an event (:meth:`mlrm.bus.Bus.publish_event`) that any number
  of subscriber groups follow: the orchestrator records runs with them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
from pydantic import BaseModel, ValidationError

from mlrm import claim_checks
from mlrm.bus import Bus, Delivery, Envelope, Hop, dead_letter_queue, service_queue
from mlrm.cancel import Cancellations, RunCancelled
from mlrm.columns import Columns
from mlrm.context import ModelRef, StepContext
from mlrm.errors import ConfigError, MlrmError, describe
from mlrm.extensions import Registry
from mlrm.lease import Holder

log = logging.getLogger(__name__)

CONFIG_CACHE = 1024  # validated configs kept per service: one per (run, hop) in flight is plenty


@dataclass
class Batch:
    """One output of a service for the next step of the route."""

    frame: pd.DataFrame | Columns | None
    """The rows; :class:`~mlrm.columns.Columns` when the service has them as arrays (the next step, if
    there is one, gets their DataFrame)."""
    seq: int
    last: bool


@dataclass(frozen=True)
class ApiSettings:
    """What the command that starts a service (``mlrm serve``, a test) gives its direct API."""

    config: Any = None
    """The service's own config for direct calls (``mlrm serve handler --config clean.yaml``), validated."""
    max_body: int = 16 * 1024 * 1024
    """Largest request body in bytes (413 past it)."""
    max_inflight: int = 64
    """Requests in flight before a service that bounds them answers 429."""


@dataclass
class ServiceApi:
    """A service's direct API: a REST (ASGI) app and/or a gRPC registrar, for :class:`mlrm.web.servers.ApiServers`."""

    rest: Any = None
    grpc: Callable[[Any], None] | None = None
    scopes: dict[str, str | None] = field(default_factory=dict)
    """The scope each gRPC method needs, by full method name (``/package.Service/Method``)."""
    close: Callable[[], None] | None = None
    """Called when the servers stop (background jobs the API started)."""
    max_concurrent_rpcs: int | None = None
    """gRPC calls in flight before RESOURCE_EXHAUSTED (None: unbounded)."""


class Service(ABC):
    """One service of a workflow route; ``name`` is what workflows write in ``service:``."""

    name: ClassVar[str]
    config_model: ClassVar[type[BaseModel]]
    default_prefetch: ClassVar[int] = 4  # messages a replica takes at once unless configured
    api_ports: ClassVar[tuple[int | None, int | None]] = (None, None)
    """(REST, gRPC) ports ``mlrm serve`` opens when none is given; None: the API is off unless asked for."""

    def __init__(
        self,
        bus: Bus,
        volume: Any,
        *,
        retries: int = 2,
        worker: str | None = None,
        prefetch: int | None = None,
        node: str | None = None,
        background: bool = True,
    ) -> None:
        self.bus = bus
        self.node = node
        # Background work a long-lived replica needs (watching deployments, adopting orphaned jobs);
        # an embedded run, one process for one workflow, has no use for it.
        self.background = background
        self.volume = volume
        self.retries = retries
        self.prefetch = prefetch or self.default_prefetch
        self.worker = worker or f"{self.name}@{os.getpid()}"
        self.holder = Holder.here(self.worker, bus.url)  # who holds the leases this replica takes
        self.processed = 0
        self._configs: OrderedDict[tuple[str, int, str], BaseModel] = OrderedDict()
        self._done: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._lock = threading.Lock()
        self.cancelled = Cancellations(volume)

    @property
    def queue(self) -> str:
        return service_queue(self.name)

    def start(self) -> None:
        self.bus.subscribe(self.queue, self.on_delivery, prefetch=self.prefetch)
        if self.node:  # work only replicas on this node may do (strict deployments)
            self.bus.subscribe(service_queue(self.name, self.node), self.on_delivery, prefetch=self.prefetch)

    def stop(self) -> None:  # noqa: B027 - an optional hook
        """Stop background work (watchers); the bus stops deliveries."""

    def api(self, settings: ApiSettings) -> ServiceApi:
        """What this service answers over REST and gRPC beside the bus (a lifecycle hook services override).

        The base answers health only: ``GET /health/live`` (the process serves), ``GET /health/ready``, and the
        standard gRPC health check ``grpc.health.v1.Health/Check``.
        """
        from mlrm.web.grpc_health import SCOPES, with_health
        from mlrm.web.tables_api import rest_app

        return ServiceApi(rest=rest_app(f"mlrm {self.name}", [], ready=self.ready), grpc=with_health(None, self.ready),
                          scopes=dict(SCOPES))  # fmt: skip

    def ready(self) -> str | None:
        """None when the service can take direct calls; otherwise why not (``/health/ready`` answers 503)."""
        return None

    # -- what a concrete service implements ----------------------------------------------
    @abstractmethod
    def process(self, env: Envelope, config: Any, ctx: StepContext) -> Iterator[Batch]:
        """Handle one message; yield the batches for the next step (none for a terminal step).

        Put anything the run summary should show (a model version, an output location)
        in ``ctx.extra["result"]``.
        """

    # -- the runtime -----------------------------------------------------------------------
    def config(self, target: Envelope | Hop) -> Any:
        """The validated config of the step a message is addressed to (or of a bare hop).

        Validation can be costly (a train config checks its estimator), and a route never
        changes during its run, so a config is validated once, not for every message:
        in-process the orchestrator's compiled route carries the model it validated
        (:attr:`Hop.validated`), used as is; a route that came over a remote bus has JSON
        only, validated on the first message of a run and cached by (run id, hop index),
        bounded. A bare hop without its model (a recorded job's) is validated each call.
        """
        hop = target.current if isinstance(target, Envelope) else target
        if isinstance(hop.validated, self.config_model):
            return hop.validated
        if not isinstance(target, Envelope):
            return self._validate(hop)
        key = (target.run_id, target.hop, hop.name)
        with self._lock:
            cached = self._configs.get(key)
            if cached is not None:
                self._configs.move_to_end(key)
                return cached
        cached = self._validate(hop)
        with self._lock:
            self._configs[key] = cached
            while len(self._configs) > CONFIG_CACHE:
                self._configs.popitem(last=False)
        return cached

    def _validate(self, hop: Hop) -> BaseModel:
        try:
            return self.config_model.model_validate(hop.config)
        except ValidationError as exc:
            raise ConfigError(f"step '{hop.name}': invalid {self.name} config: {exc}") from None

    def context(self, env: Envelope) -> StepContext:
        model = env.context.get("model")
        return StepContext(
            volume=self.volume,
            run_id=env.run_id,
            step=env.current.name,
            mode=env.context.get("mode", "transform"),
            model=ModelRef(model["name"], int(model["version"])) if model else None,
            base_dir=Path(env.current.base_dir),
            cancelled=lambda: self.cancelled(env.run_id, fresh=True),
        )

    def on_delivery(self, delivery: Delivery) -> None:
        env = delivery.envelope
        if self._key(env) in self._done:  # a redelivery of work already done (or dead-lettered)
            delivery.ack()
            return
        started = time.time()
        rows_out = batches_out = 0
        try:
            self.cancelled.check(env.run_id)
            config = self.config(env)
            ctx = self.context(env)
            has_next = env.hop + 1 < len(env.route)
            if env.payload is None and env.payload_ref:
                env.payload = claim_checks.fetch(self.volume, env.payload_ref)
            outputs = self.process(env, config, ctx)
            try:
                for batch in outputs:
                    batches_out += 1
                    rows_out += 0 if batch.frame is None else len(batch.frame)
                    if has_next:
                        self.cancelled.check(env.run_id)
                        rows = batch.frame.frame if isinstance(batch.frame, Columns) else batch.frame
                        nxt = env.forward(seq=batch.seq, last=batch.last, payload=rows)
                        claim_checks.check_in(self.volume, self.bus.inline_limit, nxt)
                        self.bus.publish(nxt.current.queue, nxt)
            finally:  # a step holding a claim (on a gathered stream) lets go of it now, not at GC
                close = getattr(outputs, "close", None)
                if close is not None:
                    close()
        except RunCancelled:  # the run ended `cancelled`: its remaining work is dropped, silently
            with self._lock:
                self._done[self._key(env)] = None
            delivery.ack()
            return
        except Exception as exc:
            self._failed(delivery, exc, started)
            return
        with self._lock:
            self._done[self._key(env)] = None
            if len(self._done) > 100_000:
                self._done.popitem(last=False)
            self.processed += 1
        if ctx.extra.get("deferred"):  # a background job reports this step's outcome when it ends
            delivery.ack()
            return
        # A redelivered message whose stream was handled before reports what was done then.
        report = ctx.extra.get("report") or {}
        self._event(
            env,
            "processed",
            started=started,
            rows_in=0 if env.payload is None else len(env.payload),
            rows_out=report.get("rows_out", rows_out),
            batches_out=report.get("batches_out", batches_out),
            result=ctx.extra.get("result") or report.get("result"),
        )
        delivery.ack()

    @staticmethod
    def _key(env: Envelope) -> tuple[str, int]:
        # A replay from the dead-letter queue is a new attempt of the same message.
        return env.id, env.attempt

    def _failed(self, delivery: Delivery, exc: Exception, started: float) -> None:
        env = delivery.envelope
        error = describe(exc)
        if isinstance(exc, MlrmError) and exc.transient and delivery.delivery_count <= self.retries + 3:
            # The bus or the volume is in trouble, not the message: give it back, after a pause,
            # a few more times than a bug gets; a lasting outage then fails the run clearly.
            log.warning("%s: %s hit %s; giving it back", self.worker, env.id, error)
            time.sleep(min(5.0, 0.5 * delivery.delivery_count))
            delivery.reject(requeue=True)
            return
        if not isinstance(exc, MlrmError) and delivery.delivery_count <= self.retries:
            log.warning("%s: %s failed (attempt %d), retrying: %s", self.worker, env.id, delivery.delivery_count, error)
            delivery.reject(requeue=True)
            return
        if not isinstance(exc, MlrmError):
            # The run's error says what happened; the traceback is for whoever debugs mlrm (-v),
            # never on a user's console.
            log.error("%s: %s failed: %s", self.worker, env.id, error)
            log.debug("%s: %s failed", self.worker, env.id, exc_info=exc)
        step = env.current.name if env.route else "?"
        data = error_data(exc)
        dead = Envelope(
            id=env.id, run_id=env.run_id, route=env.route, hop=env.hop, seq=env.seq, last=env.last,
            payload=env.payload, context=env.context, created=env.created,
            body={"error": error, **data, "service": self.name, "worker": self.worker,
                  "attempts": delivery.delivery_count},
        )  # fmt: skip
        self.bus.publish(dead_letter_queue(self.queue), dead)
        self._event(env, "failed", started=started, error=f"step '{step}' ({self.name}): {error}", **data)
        with self._lock:  # a redelivery (if this ack is lost) must not be dead-lettered twice
            self._done[self._key(env)] = None
        delivery.ack()

    def _event(self, env: Envelope, event: str, *, started: float, **fields: Any) -> None:
        body = {
            "event": event,
            "step": env.current.name,
            "hop": env.hop,
            "service": self.name,
            "worker": self.worker,
            "seq": env.seq,
            "last": env.last,
            "started": started,
            "finished": time.time(),
            **fields,
        }
        if env.context.get("reopen"):  # a replayed message's events reopen its run (see `mlrm dlq replay`)
            body["reopen"] = env.context["reopen"]
        self.bus.publish_event(Envelope(id=f"{env.id}#{event}", run_id=env.run_id, body=body))


def error_data(exc: BaseException) -> dict[str, Any]:
    """``{"error_data": ...}``: an mlrm error as data, next to the one-line ``error`` run records show.

    Readers of dead letters and events rebuild it with :func:`mlrm.errors.error_from_dict`
    (its type, a config error's file and line). Other exceptions have no data form.
    """
    if not isinstance(exc, MlrmError):
        return {}
    try:
        return {"error_data": exc.to_dict()}
    except Exception:  # a plug-in error whose to_dict fails: the one line is still there
        log.warning("could not describe %s as data", type(exc).__name__, exc_info=True)
        return {}


services: Registry[type[Service]] = Registry("service")


def register_service(cls: type[Service]) -> type[Service]:
    """Class decorator: make a service known by its ``name`` (to workflows, `mlrm serve`, `mlrm up`)."""
    services.register(cls.name, cls)
    return cls
