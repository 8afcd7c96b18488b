"""The models a predict replica holds in memory, kept in step with the registry and deployments.

Requests name a model by alias or version. An alias is re-resolved by :meth:`ModelServer.sync`
(a watcher thread calls it every few seconds): a re-pointed alias is loaded in the
background and swapped in with one assignment, so requests in flight finish on the
version they started with and no request ever sees a half-loaded model.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlrm.context import ModelRef
from mlrm.deployments import Deployments
from mlrm.errors import INPUT_EXCEPTIONS, ConfigError, DataError, NotFoundError, one_line
from mlrm.registry import ModelRegistry
from mlrm.volume import Volume

log = logging.getLogger(__name__)

# Estimators whose predict() is classes_[argmax(predict_proba())] (trees, forests, boosting,
# logistic regression, naive Bayes); SVC-style calibrated probabilities are not.
_ARGMAX_FAMILIES = (
    "sklearn.tree.", "sklearn.ensemble._forest", "sklearn.ensemble._gb", "sklearn.ensemble._hist_gradient_boosting",
    "sklearn.linear_model._logistic", "sklearn.naive_bayes",
)  # fmt: skip


def _argmax_is_predict(estimator: Any) -> bool:
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    return type(final).__module__.startswith(_ARGMAX_FAMILIES) and hasattr(final, "classes_")


class LoadedModel:
    """A verified model and what its card says about calling it."""

    def __init__(self, ref: ModelRef, estimator: Any, card: dict[str, Any]) -> None:
        self.ref, self.estimator, self.card = ref, estimator, card
        self.features = [f["name"] for f in card["featurelist"]]
        self.classes = card["inference"].get("classes")
        self.argmax_is_predict = _argmax_is_predict(estimator)

    def predict(
        self, df: pd.DataFrame, *, keep: list[str] = (), probabilities: bool = True, column: str = "prediction"
    ) -> pd.DataFrame:  # type: ignore[assignment]
        missing = [c for c in self.features if c not in df.columns]
        if missing:
            raise DataError(
                f"model '{self.ref.name}' version {self.ref.version} needs column(s) {', '.join(missing)}, "
                f"which the input lacks (columns: {', '.join(map(str, df.columns))})"
            )
        absent = [c for c in keep if c not in df.columns]
        if absent:
            raise DataError(f"keep: column(s) {', '.join(absent)} not in the input")
        out = df[list(keep)].reset_index(drop=True) if keep else pd.DataFrame(index=range(len(df)))
        if len(df) == 0:
            out[column] = pd.Series(dtype="object" if self.classes else "float64")
            return out
        X = df[self.features]
        try:
            if probabilities and self.classes is not None and hasattr(self.estimator, "predict_proba"):
                proba = self.estimator.predict_proba(X)
                # One pass instead of two where predict() is by definition the argmax of predict_proba().
                if self.argmax_is_predict:
                    out[column] = self.estimator.classes_.take(proba.argmax(axis=1))
                else:
                    out[column] = self.estimator.predict(X)
                for i, cls in enumerate(self.classes):
                    out[f"proba_{cls}"] = proba[:, i]
            else:
                out[column] = self.estimator.predict(X)
        except INPUT_EXCEPTIONS as exc:  # the estimator refused these values (infinity, text, ...)
            raise DataError(
                f"model '{self.ref.name}' version {self.ref.version} cannot predict this input: "
                f"{one_line(str(exc) or type(exc).__name__).rstrip('.')}{_suspects(X)}"
            ) from None
        return out


def _suspects(X: pd.DataFrame) -> str:
    """Which input columns hold values estimators refuse (infinite numbers, text), for the error message."""
    infinite, text = [], []
    for name in X.columns:
        column = X[name]
        if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
            if np.isinf(column.to_numpy(dtype="float64", na_value=np.nan)).any():
                infinite.append(f"'{name}'")
        elif pd.api.types.is_object_dtype(column.dtype) or pd.api.types.is_string_dtype(column.dtype):
            text.append(f"'{name}'")
    found = []
    if infinite:
        found.append(f"column(s) {', '.join(infinite)} hold infinite values")
    if text:
        found.append(f"column(s) {', '.join(text)} hold text")
    return f"; {'; '.join(found)}" if found else ""


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
        self._by_ref: dict[ModelRef, LoadedModel] = {}
        self._by_target: dict[Target, LoadedModel] = {}
        self._deployed: dict[str, ModelRef] = {}  # deployment id -> what this replica loaded for it
        self._lock = threading.Lock()
        self.on_load: list[Callable[[LoadedModel], None]] = []

    # -- loading -----------------------------------------------------------------------
    def load(self, ref: ModelRef, trusted: tuple[str, ...] = ()) -> LoadedModel:
        """A model version, loaded (and verified) once per replica."""
        loaded = self._by_ref.get(ref)
        if loaded is None:
            with self._lock:
                loaded = self._by_ref.get(ref)
                if loaded is None:
                    estimator = self.registry.load_artefact(ref, trusted=self.trusted + tuple(trusted))
                    loaded = LoadedModel(ref, estimator, self.registry.card(ref))
                    self._by_ref[ref] = loaded
                    for hook in self.on_load:
                        hook(loaded)
        return loaded

    def get(self, target: Target) -> LoadedModel:
        """The model a request names; loaded on first use, then kept current by :meth:`sync`."""
        loaded = self._by_target.get(target)
        if loaded is None:
            self.check_allowed(target.model)
            loaded = self.load(self.registry.resolve(target.model, alias=target.alias, version=target.version))
            self._by_target[target] = loaded
        return loaded

    def infer(self, model: str, df: pd.DataFrame, *, alias: str | None = None, version: int | None = None,
              **options: Any) -> tuple[pd.DataFrame, ModelRef]:  # fmt: skip
        """Predict with the model a request names; returns the predictions and the version that made them."""
        loaded = self.get(Target(model, alias, version))
        return loaded.predict(df, **options), loaded.ref

    def check_allowed(self, model: str) -> None:
        """Refuse a model deployed only in strict mode for other nodes."""
        deps = [d for d in self.deployments.active() if d.model == model]
        if deps and all(d.mode == "strict" and d.node != self.node for d in deps):
            nodes = ", ".join(sorted({str(d.node) for d in deps}))
            raise ConfigError(
                f"model '{model}' is deployed in strict mode for node(s) {nodes}; this replica's node is {self.node!r}"
            )

    # -- keeping current -----------------------------------------------------------------
    def sync(self) -> None:
        """Follow re-pointed aliases and the deployment records; called periodically."""
        for target, current in list(self._by_target.items()):
            if target.alias is None:
                continue
            try:
                ref = self.registry.resolve(target.model, alias=target.alias)
            except NotFoundError:
                continue  # the alias was removed: keep serving what we have
            if ref != current.ref:
                fresh = self.load(ref)  # fully loaded before anyone sees it
                self._by_target[target] = fresh  # one assignment: requests see old or new, never neither
                log.info("%s: %s@%s now serves version %d", self.worker, target.model, target.alias, ref.version)
        self._sync_deployments()

    def _sync_deployments(self) -> None:
        wanted = {}
        for dep in self.deployments.active():
            if dep.mode == "strict" and dep.node != self.node:
                continue
            try:
                wanted[dep.id] = (dep, self.registry.resolve(dep.model, **dep.selector()))
            except NotFoundError as exc:
                log.warning("%s: deployment %s: %s", self.worker, dep.id, exc)
        for dep_id, (dep, ref) in wanted.items():
            if self._deployed.get(dep_id) != ref:
                self._by_target[Target(dep.model, dep.alias, dep.version)] = self.load(ref)
                self._deployed[dep_id] = ref
                self.deployments.report_loaded(dep_id, self.worker, self.node, ref.version)
        for dep_id in [d for d in self._deployed if d not in wanted]:
            ref = self._deployed.pop(dep_id)
            self.deployments.report_unloaded(dep_id, self.worker)
            self._forget(ref)

    def _forget(self, ref: ModelRef) -> None:
        """Drop a version from memory unless a request target still uses it."""
        for target, loaded in list(self._by_target.items()):
            if loaded.ref == ref:
                del self._by_target[target]
        if ref not in self._deployed.values():
            self._by_ref.pop(ref, None)

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
