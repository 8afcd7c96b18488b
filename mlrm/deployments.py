"""Deployments: requests to serve a model version, picked up by predict replicas.

A deployment names a model by version or alias, a mode and resources. It is
recorded in the volume (``deployments/<id>.json``) with status ``queued``; every
predict replica watches the records and loads what it may serve:

- ``open``: any predict replica may load it;
- ``strict``: only replicas whose node label equals the deployment's ``node``
  (for data that must not leave a site).

A replica that loaded a deployment writes ``deployments/<id>/loaded/<worker>.json``
so ``mlrm deployments`` shows where each one is loaded. Decommissioning is two
steps: ``unload`` (replicas drop it from memory; the version stays in the
registry) and ``delete`` (the version's files go, refused while any alias or
other deployment still references it).
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from mlrm.config import Section, as_value_error
from mlrm.context import ModelRef
from mlrm.errors import ConfigError, CorruptRecordError, NotFoundError
from mlrm.monitoring.config import LogSettings
from mlrm.registry import ModelRegistry, OnCorrupt, check_alias, check_name, skip_or_raise
from mlrm.volume import Volume

Status = Literal["queued", "active", "unloaded", "deleted"]


class Resources(Section):
    cpu: float = Field(1.0, gt=0)
    """CPU cores a replica should reserve for this model."""
    memory: str = Field("512Mi", pattern=r"^\d+(\.\d+)?(Ki|Mi|Gi|K|M|G)?$")
    """Memory a replica should reserve, e.g. `512Mi`, `2Gi`."""


def check_runtime(value: str) -> str:
    """``auto`` or a registered flavour name (``sklearn``, ``onnx``)."""
    from mlrm.flavours import flavours

    if value != "auto" and value not in flavours:
        raise ConfigError(f"runtime {value!r} is not 'auto' or a model flavour ({', '.join(flavours.names())})")
    return value


class Batching(Section):
    """Adaptive batching of direct requests to one model version: concurrent requests are merged into
    one model call (after each request's own inference pipeline) and the answers split back.

    A request waits at most `max_batch_time` for others to join, and not at all when no other request
    for the model is in flight, so a lone client pays nothing for it."""

    max_batch_size: int = Field(64, ge=1)
    """Most rows in one merged call; a request of this many rows or more is called alone."""
    max_batch_time: float = Field(0.002, ge=0, le=1)
    """Seconds the first request of a batch waits, at most, for concurrent ones to join."""


class TrafficTarget(Section):
    """Another version of the same model, named by version or by alias (followed as it is re-pointed)."""

    version: int | None = Field(None, ge=1)
    """A fixed version."""
    alias: str | None = None
    """An alias to follow, e.g. `staging`."""

    @model_validator(mode="after")
    def _one(self) -> TrafficTarget:
        if (self.version is None) == (self.alias is None):
            raise ValueError("give exactly one of 'version' or 'alias'")
        if self.alias is not None:
            as_value_error(check_alias, self.alias)
        return self

    def selector(self) -> dict[str, Any]:
        return {"alias": self.alias} if self.alias else {"version": self.version}


class Canary(TrafficTarget):
    """A share of the deployment's requests answered by another version (sticky by routing key)."""

    share: float = Field(0.1, gt=0, le=1)
    """Fraction of requests the canary answers; a request's `routing_key` parameter keeps a caller on one side."""


class Shadow(TrafficTarget):
    """Mirror every request to another version, off the request path; its answers are logged, never returned."""


class DeployRequest(Section):
    """What to serve, where, and with what."""

    model: str
    """Registry name of the model."""
    version: int | None = Field(None, ge=1)
    """A fixed version; or give `alias` to follow it (re-pointing the alias hot-reloads the deployment).
    With neither, the latest version when the deployment is created (recorded as its version)."""
    alias: str | None = None
    """An alias to follow, e.g. `production`."""
    mode: Literal["open", "strict"] = "open"
    """`open`: any predict replica may load it; `strict`: only replicas whose node label is `node`."""
    node: str | None = None
    """Node label required in strict mode."""
    resources: Resources = Field(default_factory=Resources)
    """What a replica should reserve for it."""
    runtime: str = "auto"
    """Which of the version's runtimes answers: `auto` (its exact ONNX conversion when it has one, else
    its own flavour), `sklearn` or `onnx`."""
    batching: Batching | None = None
    """Merge concurrent direct requests into one model call (`{max_batch_size: 64, max_batch_time: 0.002}`);
    off by default."""
    canary: Canary | None = None
    """Answer a share of this deployment's requests with another version: `{alias: staging, share: 0.1}`."""
    shadow: Shadow | None = None
    """Mirror requests to another version and log its answers without returning them: `{alias: staging}`."""
    log: LogSettings | None = None
    """Log its predictions for monitoring (`{sample: 0.1, row_id: id}`: a tenth of the requests); off by default."""

    @model_validator(mode="after")
    def _consistent(self) -> DeployRequest:
        as_value_error(check_name, self.model)
        as_value_error(check_runtime, self.runtime)
        if self.alias is not None:
            as_value_error(check_alias, self.alias)
        if self.version is not None and self.alias is not None:
            raise ValueError("give either 'version' or 'alias', not both")
        if self.mode == "strict" and not self.node:
            raise ValueError("a strict deployment needs 'node': the label of the replicas allowed to load it")
        return self


class Deployment(DeployRequest):
    id: str
    status: Status = "queued"
    created: float
    updated: float

    def selector(self) -> dict[str, Any]:
        return {"alias": self.alias} if self.alias else {"version": self.version}


class Deployments:
    """The deployment records in a volume."""

    def __init__(self, volume: Volume) -> None:
        self.volume = volume
        self.registry = ModelRegistry(volume)

    def _key(self, dep_id: str) -> str:
        return f"deployments/{dep_id}.json"

    def _save(self, dep: Deployment) -> Deployment:
        dep.updated = time.time()
        self.volume.put_json(self._key(dep.id), dep.model_dump(mode="json"))
        return dep

    def create(self, request: DeployRequest) -> Deployment:
        """Queue a deployment; the model version must exist now (an alias is checked, not pinned).

        A request with neither version nor alias deploys the latest version, pinned in the record.
        """
        ref = self.registry.resolve(request.model, alias=request.alias, version=request.version)
        fields = request.model_dump()
        if request.alias is None:
            fields["version"] = ref.version
        now = time.time()
        dep = Deployment(**fields, id=f"dep-{secrets.token_hex(4)}", created=now, updated=now)
        return self._save(dep)

    def set_traffic(
        self,
        dep_id: str,
        *,
        canary: Canary | Literal["keep"] | None = "keep",
        shadow: Shadow | Literal["keep"] | None = "keep",
    ) -> Deployment:
        """Change a deployment's canary or shadow (None removes it); every replica applies it on its next sync."""
        dep = self.get(dep_id)
        if canary != "keep":
            dep.canary = canary
        if shadow != "keep":
            dep.shadow = shadow
        return self._save(dep)

    def following(self, model: str, alias: str) -> Deployment | None:
        """The oldest active deployment of ``model`` that follows ``alias``."""
        found = [d for d in self.active() if d.model == model and d.alias == alias]
        return found[0] if found else None

    def get(self, dep_id: str) -> Deployment:
        try:
            return self._read(self._key(dep_id))
        except NotFoundError:
            raise NotFoundError(f"no deployment with id '{dep_id}'") from None

    def _read(self, key: str) -> Deployment:
        try:
            return Deployment.model_validate(self.volume.get_json(key))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(map(str, first["loc"])) or "record"
            raise CorruptRecordError(
                f"'{key}' in volume {self.volume.url} is not a deployment record ({where}: {first['msg']})", key
            ) from None

    def list(self, on_corrupt: OnCorrupt = None) -> list[Deployment]:
        """Every deployment, oldest first (unreadable records: see :data:`mlrm.registry.OnCorrupt`)."""
        deps = []
        for obj in self.volume.list("deployments/"):
            if obj.key.count("/") == 1 and obj.key.endswith(".json"):
                try:
                    deps.append(self._read(obj.key))
                except CorruptRecordError as exc:
                    skip_or_raise(exc, on_corrupt)
        return sorted(deps, key=lambda d: d.created)

    def active(self, on_corrupt: OnCorrupt = None) -> list[Deployment]:
        return [d for d in self.list(on_corrupt) if d.status in ("queued", "active")]

    def unload(self, dep_id: str) -> Deployment:
        """Step one: replicas drop it from memory; the version stays in the registry."""
        dep = self.get(dep_id)
        dep.status = "unloaded"
        return self._save(dep)

    def delete(self, dep_id: str) -> Deployment:
        """Step two: delete the version, unless an alias or another deployment still uses it."""
        dep = self.get(dep_id)
        if dep.status in ("queued", "active"):
            raise ConfigError(f"deployment {dep_id} is still loaded; unload it first (mlrm decommission {dep_id})")
        if dep.alias:  # it followed an alias: deleting would delete whatever the alias points at now
            raise ConfigError(f"deployment {dep_id} follows alias '{dep.alias}'; delete a version explicitly")
        ref = ModelRef(dep.model, int(dep.version or 0))
        users = [d.id for d in self.active() if d.model == ref.name and self._version(d) == ref.version]
        self.registry.delete_version(ref, referenced_by=users)
        dep.status = "deleted"
        return self._save(dep)

    def _version(self, dep: Deployment) -> int | None:
        try:
            return self.registry.resolve(dep.model, alias=dep.alias, version=dep.version).version
        except NotFoundError:
            return None

    # -- what replicas report ------------------------------------------------------------
    def report_loaded(self, dep_id: str, worker: str, node: str | None, version: int) -> None:
        self.volume.put_json(
            f"deployments/{dep_id}/loaded/{worker}.json",
            {"worker": worker, "node": node, "version": version, "at": time.time()},
        )
        dep = self.get(dep_id)
        if dep.status == "queued":
            dep.status = "active"
            self._save(dep)

    def report_traffic(self, model: str, worker: str, counts: dict[int, dict[str, int]]) -> None:
        """A replica's running totals of direct requests per version of ``model`` (answered, failed)."""
        self.volume.put_json(
            f"deployments/traffic/{model}/{worker}.json",
            {"worker": worker, "at": time.time(), "versions": {str(v): c for v, c in counts.items()}},
        )

    def traffic(self, model: str, on_corrupt: OnCorrupt = None) -> dict[int, dict[str, int]]:
        """Requests and errors per version of ``model``, summed over every replica's last report."""
        totals: dict[int, dict[str, int]] = {}
        for obj in self.volume.list(f"deployments/traffic/{model}/"):
            try:
                record = self.volume.get_json(obj.key)
                versions = record.get("versions") if isinstance(record, dict) else None
                if not isinstance(versions, dict):
                    raise CorruptRecordError(
                        f"'{obj.key}' in volume {self.volume.url} is not a traffic report", obj.key
                    )
            except CorruptRecordError as exc:
                skip_or_raise(exc, on_corrupt)
                continue
            for version, counts in versions.items():
                slot = totals.setdefault(int(version), {"requests": 0, "errors": 0})
                for name in slot:
                    slot[name] += int(counts.get(name, 0))
        return totals

    def report_unloaded(self, dep_id: str, worker: str) -> None:
        self.volume.delete(f"deployments/{dep_id}/loaded/{worker}.json")

    def loaded_at(self, dep_id: str, on_corrupt: OnCorrupt = None) -> list[dict[str, Any]]:
        """The replicas that report having loaded a deployment."""
        found = []
        for obj in self.volume.list(f"deployments/{dep_id}/loaded/"):
            try:
                record = self.volume.get_json(obj.key)
                if not isinstance(record, dict) or not {"worker", "version"} <= record.keys():
                    raise CorruptRecordError(f"'{obj.key}' in volume {self.volume.url} is not a load report", obj.key)
                found.append(record)
            except CorruptRecordError as exc:
                skip_or_raise(exc, on_corrupt)
        return found
