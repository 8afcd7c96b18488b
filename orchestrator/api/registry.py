"""The model registry and deployments, whatever the protocol: list, card, search, register, alias, deploy,
list deployments, decommission (unload, then delete the version)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from mlrm.byom import register_model
from mlrm.context import ModelRef
from mlrm.deployments import Deployment, Deployments, DeployRequest
from mlrm.discovery import ModelQuery, search
from mlrm.errors import CorruptRecordError, DataError, NotFoundError
from mlrm.registry import ModelRegistry, check_name
from orchestrator.api.models import AliasSet, ModelSummary, Registered

MAX_NAME = 255


class RegistryPlane:
    def __init__(self, volume: Any) -> None:
        self.volume = volume
        self.registry = ModelRegistry(volume)
        self.deployments = Deployments(volume)

    def models(self) -> list[ModelSummary]:
        out = []
        for name in self.registry.names():
            versions = self.registry.versions(name)
            if not versions:
                continue
            try:
                card = self.registry.card(ModelRef(name, versions[-1]))
            except CorruptRecordError:  # still list the model, its versions and aliases
                card = {}
            out.append(ModelSummary(
                model=name, kind=card.get("modelkind", "?"), versions=versions,
                aliases=self.registry.aliases(name, lambda exc: None),
                latest={"version": versions[-1], "metrics": card.get("modelperform", {}).get("metrics", {})},
            ))  # fmt: skip
        return out

    def card(self, name: str, *, version: int | None = None, alias: str | None = None) -> dict[str, Any]:
        self._known(name)
        return self.registry.card(self.registry.resolve(name, alias=alias, version=version))

    def _known(self, name: str) -> None:
        try:
            check_name(name)
        except Exception:
            raise NotFoundError(f"no model named {name[:MAX_NAME]!r}") from None
        if not self.registry.versions(name):
            raise NotFoundError(f"no model named '{name}'")

    def search(self, query: ModelQuery) -> list[dict[str, Any]]:
        return search(self.registry, query, lambda exc: None)

    def register(self, name: str, artefact: bytes, filename: str, description: str,
                 alias: str | None = None) -> Registered:  # fmt: skip
        """Register an uploaded artefact (skops or ONNX; pickle refused) described by YAML or JSON text."""
        check_name(name)
        suffix = Path(filename or "model").suffix.lower()
        if suffix not in (".skops", ".onnx", ""):
            suffix = ""  # the format is read from the content (an unsafe one is refused by name or content)
        if not artefact:
            raise DataError("the artefact is empty")
        with tempfile.TemporaryDirectory(prefix="mlrm-upload-") as tmp:
            stem = re.sub(r"[^A-Za-z0-9_-]", "_", Path(filename or "").stem)[:100] or "artefact"
            path = Path(tmp) / f"{stem}{suffix}"  # errors name the file the caller sent
            path.write_bytes(artefact)
            card = register_model(self.registry, name, path, description, alias=alias)
        return Registered(model=name, version=int(card["version"]), card=card)

    def set_alias(self, name: str, alias: str, version: int) -> AliasSet:
        self._known(name)
        self.registry.set_alias(name, alias, version)
        return AliasSet(model=name, alias=alias, version=version)

    def deploy(self, request: DeployRequest) -> Deployment:
        self._known(request.model)
        return self.deployments.create(request)

    def list_deployments(self) -> list[dict[str, Any]]:
        return [{**d.model_dump(mode="json"), "loaded_on": self.deployments.loaded_at(d.id, lambda exc: None)}
                for d in self.deployments.list(lambda exc: None)]  # fmt: skip

    def deployment(self, dep_id: str) -> Deployment:
        return self.deployments.get(dep_id)

    def decommission(self, dep_id: str, delete: bool = False) -> Deployment:
        """Unload (the version stays in the registry); with ``delete``, then delete the version too."""
        dep = self.deployments.get(dep_id)
        if dep.status in ("queued", "active"):
            dep = self.deployments.unload(dep_id)
        if delete:
            dep = self.deployments.delete(dep_id)
        return dep
