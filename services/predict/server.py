"""The models a predict replica holds in memory (its model repository), kept in step with the
registry and deployments.

Requests name a model by alias or version. An alias is re-resolved by :meth:`ModelServer.sync`
(a watcher thread calls it every few seconds): a re-pointed alias is loaded in the
background and swapped in with one assignment, so requests in flight finish on the
version they started with and no request ever sees a half-loaded model.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TypeVar

from mlrm.deployments import Batching, Canary, Deployment, Deployments, Shadow
from mlrm.errors import CorruptRecordError, MlrmError, NotFoundError, RefusedError
from mlrm.hooks import Hook
from mlrm.registry import ModelRef, ModelRegistry
from mlrm.volume import Volume
from services.predict.model import ServedModel
from services.predict.traffic import TrafficCounts

log = logging.getLogger(__name__)

T = TypeVar("T", Canary, Shadow)


def _warn(exc: Exception) -> None:
    log.warning("skipped: %s", exc)


@dataclass(frozen=True)
class Serving:
    """How a deployment asks its requests to be served: which runtime, and batching (None: off)."""

    runtime: str = "auto"
    batching: Batching | None = None
    canary: Canary | None = None  # loaded before it is set: a request routed to it never waits or fails
    shadow: Shadow | None = None


DEFAULT_SERVING = Serving()


@dataclass(frozen=True)
class Target:
    """How a request names a model: by alias (followed) or by version (fixed)."""

    model: str
    alias: str | None = None
    version: int | None = None


class ModelServer:
    def __init__(self, volume: Volume, *, worker: str, node: str | None = None, trusted: tuple[str, ...] = ()) -> None:
        self.volume, self.worker, self.node, self.trusted = volume, worker, node, trusted
        self.registry = ModelRegistry(volume)
        self.deployments = Deployments(volume)
        self._by_ref: dict[ModelRef, ServedModel] = {}
        self._by_target: dict[Target, ServedModel] = {}
        self._deployed: dict[str, ModelRef] = {}  # deployment id -> what this replica loaded for it
        self._options: dict[Target, Serving] = {}  # how a deployment's target is served
        self._lock = threading.Lock()
        self.follow_aliases_on_request = False  # True when no watcher calls sync()
        self.on_load: Hook[ServedModel] = Hook("on_load")
        self.on_unload: Hook[ServedModel] = Hook("on_unload")
        self.traffic = TrafficCounts()  # requests and failures per version, reported on each sync
        self._reported: dict[str, dict[int, dict[str, int]]] = {}
        self.refresh_interval = 1.0  # without a watcher: how often requests re-read the deployment records
        self._refreshed = 0.0
        self._refreshing = threading.Lock()

    # -- loading -----------------------------------------------------------------------
    def load(self, ref: ModelRef, trusted: tuple[str, ...] = (), runtime: str = "auto") -> ServedModel:
        """A model version with its pipeline, loaded (and verified) once per replica; ``runtime`` is the
        one loaded at once (others are loaded when first asked for: :meth:`ServedModel.runtime`)."""
        loaded = self._by_ref.get(ref)
        if loaded is None:
            with self._lock:
                loaded = self._by_ref.get(ref)
                if loaded is None:
                    loaded = ServedModel.load(
                        self.registry, ref, trusted=self.trusted + tuple(trusted), runtime=runtime
                    )
                    self._by_ref[ref] = loaded
                    self.on_load.fire(loaded)
        return loaded

    def get(self, target: Target) -> ServedModel:
        """The model a request names; loaded on first use, then kept current by :meth:`sync`."""
        loaded = self._by_target.get(target)
        if loaded is not None and self.follow_aliases_on_request and target.alias is not None:
            ref = self.registry.resolve(target.model, alias=target.alias)
            if ref != loaded.ref:
                loaded = self._by_target[target] = self.load(ref)
        if loaded is None:
            self.check_allowed(target.model)
            loaded = self.load(self.registry.resolve(target.model, alias=target.alias, version=target.version))
            self._by_target[target] = loaded
        return loaded

    def is_loaded(self, target: Target) -> bool:
        """Whether :meth:`get` would answer from memory (no registry read, no loading)."""
        return target in self._by_target and not (self.follow_aliases_on_request and target.alias is not None)

    def check_allowed(self, model: str) -> None:
        """Refuse a model deployed only in strict mode for other nodes."""
        deps = [d for d in self.deployments.active(on_corrupt=_warn) if d.model == model]
        if deps and all(d.mode == "strict" and d.node != self.node for d in deps):
            nodes = ", ".join(sorted({str(d.node) for d in deps}))
            raise RefusedError(
                f"model '{model}' is deployed in strict mode for node(s) {nodes}; this replica's node is {self.node!r}"
            )

    def options(self, target: Target) -> Serving:
        """How requests for ``target`` are served: its deployment's runtime, batching and traffic policies,
        else the defaults. Without a watcher, the deployment records are re-read at most every
        ``refresh_interval`` seconds, by one request at a time."""
        stale = self.follow_aliases_on_request and time.monotonic() - self._refreshed > self.refresh_interval
        if stale and self._refreshing.acquire(blocking=False):
            try:
                self._refreshed = time.monotonic()
                self._sync_deployments()
            except MlrmError as exc:
                log.warning("%s: deployments not refreshed: %s", self.worker, exc)
            finally:
                self._refreshing.release()
        return self._options.get(target, DEFAULT_SERVING)

    # -- keeping current -----------------------------------------------------------------
    def sync(self) -> None:
        """Follow re-pointed aliases and the deployment records; called periodically."""
        for target, current in list(self._by_target.items()):
            if target.alias is None:
                continue
            try:
                ref = self.registry.resolve(target.model, alias=target.alias)
                fresh = self.load(ref) if ref != current.ref else current  # fully loaded before anyone sees it
            except NotFoundError:
                continue  # the alias was removed: keep serving what we have
            except MlrmError as exc:  # an unreadable alias or version: keep serving what we have, say why
                log.warning("%s: %s@%s: %s", self.worker, target.model, target.alias, exc)
                continue
            if fresh is not current:
                self._by_target[target] = fresh  # one assignment: requests see old or new, never neither
                log.info("%s: %s@%s now serves version %d", self.worker, target.model, target.alias, ref.version)
        self._sync_deployments()

    def _sync_deployments(self) -> None:
        wanted = {}
        for dep in self.deployments.active(on_corrupt=_warn):
            if dep.mode == "strict" and dep.node != self.node:
                continue
            try:
                wanted[dep.id] = (dep, self.registry.resolve(dep.model, **dep.selector()))
            except (NotFoundError, CorruptRecordError) as exc:
                log.warning("%s: deployment %s: %s", self.worker, dep.id, exc)
        for dep_id, (dep, ref) in wanted.items():
            target = Target(dep.model, dep.alias, dep.version)
            canary, shadow = self._ready(dep, dep.canary), self._ready(dep, dep.shadow)
            self._options[target] = Serving(dep.runtime, dep.batching, canary, shadow)  # applies at once
            if self._deployed.get(dep_id) != ref:
                try:
                    loaded = self.load(ref, runtime=dep.runtime)
                except MlrmError as exc:  # one deployment that cannot load must not stop the others
                    log.warning("%s: deployment %s: %s", self.worker, dep_id, exc)
                    continue
                self._by_target[target] = loaded
                self._deployed[dep_id] = ref
                self.deployments.report_loaded(dep_id, self.worker, self.node, ref.version)
        targets = {Target(dep.model, dep.alias, dep.version) for dep, _ in wanted.values()}
        for target in [t for t in self._options if t not in targets]:
            del self._options[target]
        for dep_id in [d for d in self._deployed if d not in wanted]:
            ref = self._deployed.pop(dep_id)
            self.deployments.report_unloaded(dep_id, self.worker)
            self._forget(ref)
        for model in self.traffic.models():
            counts = self.traffic.of(model)
            if self._reported.get(model) != counts:  # a replica with no traffic writes nothing
                self.deployments.report_traffic(model, self.worker, counts)
                self._reported[model] = counts

    def _ready(self, dep: Deployment, policy: T | None) -> T | None:
        """A canary or shadow whose version is loaded (and kept current), or None when it cannot be."""
        if policy is None:
            return None
        try:
            served = self.get(Target(dep.model, policy.alias, policy.version))
            if served.refusal:  # e.g. its pipeline drops rows: it could not answer one of these requests
                raise RefusedError(served.refusal)
        except MlrmError as exc:  # the deployment's own version goes on answering everything
            log.warning("%s: deployment %s: %s not applied: %s", self.worker, dep.id, type(policy).__name__, exc)
            return None
        return policy

    def _forget(self, ref: ModelRef) -> None:
        """Drop a version from memory unless a request target still uses it."""
        for target, loaded in list(self._by_target.items()):
            if loaded.ref == ref:
                del self._by_target[target]
        if ref not in self._deployed.values():
            dropped = self._by_ref.pop(ref, None)
            if dropped is not None:
                self.on_unload.fire(dropped)

    def loaded(self) -> list[ModelRef]:
        return sorted(self._by_ref, key=lambda r: (r.name, r.version))

    def watch(self, interval: float, stop: threading.Event) -> threading.Thread:
        """Run :meth:`sync` every ``interval`` seconds until ``stop`` is set."""

        def loop() -> None:
            while not stop.wait(interval):
                try:
                    self.sync()
                except Exception:  # a registry hiccup must not kill the watcher
                    log.exception("%s: model sync failed", self.worker)

        thread = threading.Thread(target=loop, name=f"{self.worker}:watch", daemon=True)
        thread.start()
        return thread
