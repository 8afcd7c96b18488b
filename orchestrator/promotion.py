"""Safe promotion of a challenger version: a gate on recent labelled data, then staging, a canary share of
live traffic, and production — or a rollback.

1. **gate**: the challenger and the current production version predict the same recent labelled rows
   (feedback joined to the logged features, rows the challenger was not trained on); the challenger
   must beat production's metric by ``margin`` (metric from the card's kind: accuracy or f1 for
   classification, mae or rmse for regression), else it is rejected.
2. **staging**: the ``staging`` alias points at the challenger; with ``shadow`` set, every request of
   the deployment is first mirrored to it (answers logged, never returned) until its metric on
   ``shadow.labels`` labelled requests can be compared with production's on the same requests
   (rolled back when it regresses by more than ``rollback.metric_tolerance``).
3. **canary**: the deployment that follows ``production`` (created when there is none) sends
   ``canary.share`` of its requests to ``staging``, sticky by routing key, on every predict replica.
4. **production**, once the canary answered ``canary.requests`` requests (and ``min_seconds`` passed)
   and, with ``rollback.min_labels`` labelled rows on each side, its live metric is not worse than
   production's by more than ``rollback.metric_tolerance``; **rollback** (the canary removed, staging
   dropped) when its server-side error rate exceeds production's by ``rollback.max_error_rate``, its
   live metric regresses, or it gets too little traffic within ``canary.max_seconds``.

The promotion's state is a record in the volume (``loop/<model>/promotion.json``), so it survives an
orchestrator restart and :meth:`Promoter.advance` can be called by any loop; every step is an event
(:mod:`orchestrator.loop_events`).
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from mlrm.config import Section
from mlrm.deployments import Canary, Deployments, DeployRequest, Shadow
from mlrm.errors import NotFoundError, RefusedError
from mlrm.registry import ModelRef, ModelRegistry
from mlrm.volume import Volume
from orchestrator import loop_events

log = logging.getLogger(__name__)

Metric = Literal["accuracy", "f1", "mae", "rmse"]
HIGHER_IS_BETTER = {"accuracy": True, "f1": True, "mae": False, "rmse": False}
DEFAULT_METRIC = {"classification": "accuracy", "regression": "rmse"}
RUNNING = ("shadow", "canary")  # the phases of a promotion in progress


class CanaryStep(Section):
    share: float = Field(0.2, gt=0, le=1)
    """The share of the production deployment's requests the challenger answers."""
    requests: int = Field(200, ge=1)
    """Requests the canary must answer before it is promoted."""
    min_seconds: float = Field(0, ge=0)
    """And at least this long."""
    max_seconds: float = Field(1800, gt=0)
    """Rolled back if it has not qualified by then (too little traffic or feedback)."""


class ShadowStep(Section):
    labels: int = Field(100, ge=1)
    """Labelled rows the shadow must have answered before its metric is compared with production's."""
    max_seconds: float = Field(1800, gt=0)
    """Rolled back if it has not got that many labels by then."""


class Rollback(Section):
    max_error_rate: float = Field(0.01, ge=0, le=1)
    """Rolled back when the canary's server-side error rate exceeds production's by more than this."""
    metric_tolerance: float = Field(0.05, ge=0)
    """Rolled back when the canary's live metric is worse than production's by more than this (absolute)."""
    min_labels: int = Field(30, ge=1)
    """Labelled live rows each side needs before the metrics are compared."""
    require_labels: bool = True
    """Promote only after the live metrics were compared (false: requests and errors suffice)."""


class PromotionPolicy(Section):
    """How a challenger is promoted: the gate, the canary and when to roll back."""

    metric: Metric | None = None
    """accuracy, f1, mae or rmse; default: accuracy for classification, rmse for regression."""
    margin: float = Field(0.0, ge=0)
    """How much better than production the challenger must be on the holdout (absolute)."""
    holdout: int = Field(500, ge=1)
    """The newest labelled rows (not trained on) both versions are scored on."""
    min_holdout: int = Field(50, ge=1)
    """Fewer labelled rows than this: the challenger is rejected (nothing to judge it on)."""
    alias: str = "production"
    """The alias the challenger replaces."""
    staging: str = "staging"
    """The alias the challenger holds during its canary."""
    shadow: ShadowStep | None = None
    """Before the canary, mirror every request to the challenger (its answers logged, never returned) and
    compare its metric with production's on the same labelled requests: `{labels: 100}`. Off by default."""
    canary: CanaryStep = Field(default_factory=CanaryStep)
    rollback: Rollback = Field(default_factory=Rollback)


def score(metric: str, truth: pd.Series, predicted: pd.Series) -> float:
    """One metric of predictions against labels."""
    from sklearn import metrics

    if metric == "accuracy":
        return float(metrics.accuracy_score(truth.astype(str), predicted.astype(str)))
    if metric == "f1":
        return float(metrics.f1_score(truth.astype(str), predicted.astype(str), average="macro"))
    error = truth.astype(float).to_numpy() - predicted.astype(float).to_numpy()
    return float(np.mean(np.abs(error))) if metric == "mae" else float(math.sqrt(np.mean(error**2)))


def improvement(metric: str, challenger: float, production: float) -> float:
    """How much better the challenger is (positive) or worse (negative), whatever the metric's direction."""
    return challenger - production if HIGHER_IS_BETTER[metric] else production - challenger


class Evaluator:
    """Scores registered versions on labelled rows through the data plane (their pipeline, their model)."""

    def __init__(self, volume: Volume) -> None:
        from services.predict.dataplane import DataPlane
        from services.predict.server import ModelServer

        self.server = ModelServer(volume, worker="promotion")
        self.dataplane = DataPlane(self.server)

    def predictions(self, ref: ModelRef, frame: pd.DataFrame) -> pd.Series:
        served = self.server.load(ref)
        inputs = [f.name for f in (served.card.inference.inputs or served.card.featurelist)]
        rows = served.coerce(frame[[c for c in inputs if c in frame.columns]].reset_index(drop=True))
        out = self.dataplane.run(
            served, rows, probabilities=False, request_id=f"gate-{uuid.uuid4().hex}", source="gate"
        )
        return out["prediction"]

    def kind(self, ref: ModelRef) -> str:
        return str(self.server.load(ref).card.modelkind)


def _window(volume: Volume, model: str, **kwargs: Any) -> pd.DataFrame:
    from mlrm.monitoring.feedback import labelled_window

    return labelled_window(volume, model, **kwargs)


class Promoter:
    """Runs promotions of one volume's models; :meth:`start` a challenger, then :meth:`advance` it."""

    def __init__(self, volume: Volume) -> None:
        self.volume = volume
        self.registry = ModelRegistry(volume)
        self.deployments = Deployments(volume)

    @staticmethod
    def key(model: str) -> str:
        return f"loop/{model}/promotion.json"

    def state(self, model: str) -> dict[str, Any] | None:
        """The model's promotion in progress (or the last one, with its outcome)."""
        try:
            return self.volume.get_json(self.key(model))
        except NotFoundError:
            return None

    def _save(self, state: dict[str, Any]) -> dict[str, Any]:
        state["updated"] = time.time()
        self.volume.put_json(self.key(state["model"]), state)
        return state

    def _event(self, state: dict[str, Any], step: str, **fields: Any) -> None:
        loop_events.record(self.volume, state["model"], step, challenger=state["challenger"],
                           production=state.get("production"), promotion=state["id"], **fields)  # fmt: skip

    # -- 1. the gate ------------------------------------------------------------------------
    def start(
        self, model: str, challenger: int, policy: PromotionPolicy, *, holdout_since: float | None = None,
        reason: str = "",
    ) -> dict[str, Any]:  # fmt: skip
        """Gate ``challenger`` against the version ``policy.alias`` points at, on labelled rows logged
        since ``holdout_since`` (the newest ``policy.holdout``); on success start its canary."""
        running = self.state(model)
        if running is not None and running.get("phase") in RUNNING:
            raise RefusedError(f"version {running['challenger']} of '{model}' is being promoted "
                                f"({running['phase']}); wait for it to end")  # fmt: skip
        self.registry.resolve(model, version=challenger)  # NotFoundError for a version that does not exist
        production = self.registry.resolve(model, alias=policy.alias).version
        evaluator = Evaluator(self.volume)  # per gate: nothing stays loaded in a long-lived loop
        state: dict[str, Any] = {
            "id": uuid.uuid4().hex[:12], "model": model, "challenger": challenger, "production": production,
            "policy": policy.model_dump(mode="json"), "phase": "gate", "started": time.time(), "reason": reason,
        }  # fmt: skip
        holdout = _window(self.volume, model, since=holdout_since, limit=policy.holdout)
        metric = policy.metric or DEFAULT_METRIC.get(evaluator.kind(ModelRef(model, challenger)), "accuracy")
        state["metric"] = metric
        if len(holdout) < policy.min_holdout:
            return self._finish(state, "rejected", f"{len(holdout)} labelled rows, fewer than min_holdout "
                                f"{policy.min_holdout}: nothing to judge the challenger on")  # fmt: skip
        try:
            scores = {
                side: score(metric, holdout["label"], evaluator.predictions(ModelRef(model, version), holdout))
                for side, version in (("challenger", challenger), ("production", production))
            }
        except Exception as exc:  # e.g. a challenger that wants inputs the logged rows do not have
            return self._finish(state, "rejected", f"the versions could not be scored on the holdout: {exc}")
        gain = improvement(metric, scores["challenger"], scores["production"])
        passed = challenger != production and gain > policy.margin
        state["gate"] = {"metric": metric, "rows": len(holdout), "margin": policy.margin, "improvement": gain,
                         "passed": passed, "challenger_score": scores["challenger"],
                         "production_score": scores["production"]}  # fmt: skip
        self._event(state, "gate", **state["gate"])
        if not passed:
            return self._finish(state, "rejected", f"{metric} {scores['challenger']:.4f} does not beat production's "
                                f"{scores['production']:.4f} by more than {policy.margin}")  # fmt: skip
        return self._staging(state, policy)

    # -- 2, 3. staging, the shadow, the canary -----------------------------------------------------
    def _staging(self, state: dict[str, Any], policy: PromotionPolicy) -> dict[str, Any]:
        model = state["model"]
        self.registry.set_alias(model, policy.staging, state["challenger"])
        self._event(state, "staging", alias=policy.staging)
        dep = self.deployments.following(model, policy.alias)
        if dep is None:
            dep = self.deployments.create(DeployRequest(model=model, alias=policy.alias))
        state["deployment"] = dep.id
        if policy.shadow is None:
            return self._start_canary(state, policy)
        state.update(phase="shadow", shadow_started=time.time())
        self.deployments.set_traffic(dep.id, shadow=Shadow(alias=policy.staging))
        self._event(state, "shadow", deployment=dep.id)
        return self._save(state)

    def _judge_shadow(self, state: dict[str, Any], policy: PromotionPolicy) -> dict[str, Any]:
        """The shadow's answers against production's, on the same labelled requests."""
        assert policy.shadow is not None
        labelled = _window(self.volume, state["model"], since=state["shadow_started"])
        version = labelled["version"].astype("Int64") if len(labelled) else pd.Series(dtype="Int64")
        chal = labelled[version == state["challenger"]]
        prod = labelled[(version == state["production"]) & labelled["request_id"].isin(set(chal["request_id"]))]
        shadow: dict[str, Any] = {"labels": len(chal)}
        if len(chal) >= policy.shadow.labels and len(prod):
            metric = state["metric"]
            shadow["challenger_score"] = score(metric, chal["label"], chal["output.prediction"])
            shadow["production_score"] = score(metric, prod["label"], prod["output.prediction"])
            shadow["regression"] = -improvement(metric, shadow["challenger_score"], shadow["production_score"])
        state["shadow"] = shadow
        if "regression" in shadow:
            self.deployments.set_traffic(state["deployment"], shadow=None)
            if shadow["regression"] > policy.rollback.metric_tolerance:
                why = (f"the shadow's {state['metric']} {shadow['challenger_score']:.4f} regresses from "
                       f"production's {shadow['production_score']:.4f} on the same requests")  # fmt: skip
                return self._rollback(state, policy, why)
            self._event(state, "shadow_passed", **shadow)
            return self._start_canary(state, policy)
        if time.time() - state["shadow_started"] > policy.shadow.max_seconds:
            return self._rollback(state, policy, f"the shadow got {len(chal)} labelled rows within "
                                  f"{policy.shadow.max_seconds:g}s, fewer than {policy.shadow.labels}")  # fmt: skip
        return self._save(state)

    def _start_canary(self, state: dict[str, Any], policy: PromotionPolicy) -> dict[str, Any]:
        model = state["model"]
        dep = self.deployments.get(state["deployment"])
        traffic = self.deployments.traffic(model)
        state.update(
            phase="canary", deployment=dep.id, canary_started=time.time(),
            baseline={str(v): traffic.get(v, {"requests": 0, "errors": 0}) for v in (state["challenger"],
                                                                                    state["production"])},
        )  # fmt: skip
        self.deployments.set_traffic(dep.id, canary=Canary(alias=policy.staging, share=policy.canary.share))
        self._event(state, "canary", deployment=dep.id, share=policy.canary.share)
        return self._save(state)

    def advance(self, model: str) -> dict[str, Any] | None:
        """Judge a running canary once: promote it, roll it back, or leave it running. None: nothing running."""
        state = self.state(model)
        if state is None or state.get("phase") not in RUNNING:
            return state
        policy = PromotionPolicy.model_validate(state["policy"])
        if state["phase"] == "shadow":
            return self._judge_shadow(state, policy)
        live = self._live(state)
        state["live"] = live
        chal, prod = live["challenger"], live["production"]
        elapsed = time.time() - state["canary_started"]
        if chal["requests"] >= 20 and chal["error_rate"] > prod["error_rate"] + policy.rollback.max_error_rate:
            return self._rollback(state, policy, f"canary error rate {chal['error_rate']:.3f} vs production's "
                                  f"{prod['error_rate']:.3f}")  # fmt: skip
        compared = live.get("compared", False)
        if compared and live["regression"] > policy.rollback.metric_tolerance:
            return self._rollback(state, policy, f"canary's live {state['metric']} {chal['metric']:.4f} regresses "
                                  f"from production's {prod['metric']:.4f}")  # fmt: skip
        ready = chal["requests"] >= policy.canary.requests and elapsed >= policy.canary.min_seconds
        if ready and (compared or not policy.rollback.require_labels):
            return self._promote(state, policy)
        if elapsed > policy.canary.max_seconds:
            return self._rollback(state, policy, f"the canary did not qualify within {policy.canary.max_seconds:g}s "
                                  f"({chal['requests']} requests, labels compared: {compared})")  # fmt: skip
        return self._save(state)

    def _live(self, state: dict[str, Any]) -> dict[str, Any]:
        """Requests, errors and (with enough feedback) the metric of each side since the canary began."""
        policy = PromotionPolicy.model_validate(state["policy"])
        traffic = self.deployments.traffic(state["model"])
        live: dict[str, Any] = {}
        for side in ("challenger", "production"):
            version = state[side]
            now, base = traffic.get(version, {}), state["baseline"][str(version)]
            requests = max(0, now.get("requests", 0) - base["requests"])
            errors = max(0, now.get("errors", 0) - base["errors"])
            live[side] = {"version": version, "requests": requests, "errors": errors,
                          "error_rate": errors / requests if requests else 0.0}  # fmt: skip
        labelled = _window(self.volume, state["model"], since=state["canary_started"])
        counts = {side: 0 for side in live}
        for side, entry in live.items():
            rows = labelled[labelled["version"].astype("Int64") == entry["version"]] if len(labelled) else labelled
            counts[side] = len(rows)
            entry["labels"] = len(rows)
            if len(rows):
                entry["metric"] = score(state["metric"], rows["label"], rows["output.prediction"])
        if min(counts.values()) >= policy.rollback.min_labels:
            live["compared"] = True
            live["regression"] = -improvement(state["metric"], live["challenger"]["metric"],
                                              live["production"]["metric"])  # fmt: skip
        return live

    # -- 4. the outcome -------------------------------------------------------------------------
    def _promote(self, state: dict[str, Any], policy: PromotionPolicy) -> dict[str, Any]:
        model = state["model"]
        self.registry.set_alias(model, policy.alias, state["challenger"])  # first: then the canary is moot
        self.deployments.set_traffic(state["deployment"], canary=None)
        self._event(state, "promoted", alias=policy.alias, live=state.get("live"))
        return self._finish(state, "promoted")

    def _rollback(self, state: dict[str, Any], policy: PromotionPolicy, why: str) -> dict[str, Any]:
        self.deployments.set_traffic(state["deployment"], canary=None, shadow=None)
        try:
            if self.registry.resolve(state["model"], alias=policy.staging).version == state["challenger"]:
                self.registry.remove_alias(state["model"], policy.staging)
        except NotFoundError:
            pass
        self._event(state, "rolled_back", why=why, live=state.get("live"))
        return self._finish(state, "rolled_back", why)

    def _finish(self, state: dict[str, Any], outcome: str, why: str | None = None) -> dict[str, Any]:
        state.update(phase="done", outcome=outcome, why=why, finished=time.time())
        if outcome == "rejected":
            self._event(state, "rejected", why=why)
        return self._save(state)
