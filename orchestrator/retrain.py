"""The closed loop: monitoring checks trigger a retraining, whose challenger is promoted safely.

A ``RetrainPolicy`` (YAML) names the model, the monitor config whose checks trigger it, the triggers
(``drift``: a feature or prediction detector; ``decay``: a metric on labelled feedback; ``schedule``),
the training workflow to submit, the data window it trains on and the promotion policy::

    kind: RetrainPolicy
    model: drift-classifier
    monitor: monitor.yaml          # a MonitorConfig
    triggers: [drift, decay]
    workflow: retrain.yaml         # its collector reads data.key
    data: {key: retrain/drift-classifier.parquet, rows: 1500, holdout: 300}
    cooldown: 3600
    promotion: {margin: 0.02, canary: {share: 0.3, requests: 100}}

``mlrm loop apply POLICY`` stores the policy, its monitor config and its compiled workflow in the volume
(``loop/policies/<model>.json``); every :meth:`ClosedLoop.tick` then, for each stored policy, runs the
monitor's checks and moves the policy's episode along: ``idle`` → (a trigger) write the window, submit
the workflow → ``training`` → (the run succeeded) the gate → ``promoting`` (shadow, canary) → ``idle``
once promoted, rolled back or rejected. One drift episode triggers one retraining: a policy is only triggered when
idle, by a check of the version its alias points at *now* (so drift reported on a replaced version
triggers nothing) made after its last trigger, and not within ``cooldown`` seconds of it.

The loop runs inside the distributed orchestrator (``mlrm orchestrator``, every ``MLRM_LOOP_INTERVAL``
seconds) and embedded (``mlrm loop run``): the same configs, the same code.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from mlrm.bus import Hop
from mlrm.config import ConfigModel, Section, as_value_error, load_config
from mlrm.errors import ConfigError, MlrmError, NotFoundError
from mlrm.registry import AliasName, ModelName, ModelRegistry
from mlrm.volume import Volume, check_output_key
from orchestrator import loop_events
from orchestrator.compile import CompiledWorkflow, compile_workflow
from orchestrator.promotion import RUNNING, Promoter, PromotionPolicy
from orchestrator.store import RunRecord

log = logging.getLogger(__name__)

Trigger = Literal["drift", "decay", "schedule"]
POLICIES = "loop/policies/"


class FeedbackData(Section):
    """The data a retraining learns from: recent labelled feedback joined to the logged features,
    written to `key` (Parquet) for the workflow's collector to read."""

    key: str
    """Volume key the window is written to (the workflow's collector reads `{step: parquet, key: ...}`)."""
    rows: int = Field(2000, ge=1)
    """The newest this many labelled rows (less the holdout)."""
    holdout: int = Field(200, ge=0)
    """The newest this many labelled rows are kept out of training: the gate scores both versions on them."""
    min_rows: int = Field(100, ge=1)
    """Fewer training rows than this: no retraining yet (it waits for more feedback)."""
    since_drift: bool = True
    """Only rows logged since the start of the window that first drifted (on a drift or decay trigger)."""
    label: str = "label"
    """The column the label is written to: the training config's `target`."""

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        return as_value_error(check_output_key, v)  # never models/, runs/, deployments/


class Schedule(Section):
    every: float = Field(gt=0)
    """Retrain every this many seconds (counted from the last trigger)."""


class RetrainPolicy(ConfigModel):
    """When and how a model is retrained, and how its challenger is promoted."""

    kind: Literal["RetrainPolicy"] = "RetrainPolicy"
    model: ModelName
    """Registry name of the model."""
    alias: AliasName = "production"
    """The alias served and replaced (the monitor checks the version it points at)."""
    monitor: str
    """The MonitorConfig file (relative to this file) whose checks trigger a retraining."""
    triggers: list[Trigger] = Field(default_factory=lambda: ["drift", "decay"], min_length=1)
    """`drift` (a feature or prediction detector drifted), `decay` (a metric on feedback), `schedule`."""
    schedule: Schedule | None = None
    """For `on: [schedule]`: how often."""
    workflow: str
    """The training workflow (relative to this file); it must register a new version of `model`."""
    data: FeedbackData | None = None
    """Recent labelled feedback to train on; none: the workflow's collector reads its own source."""
    training_timeout: float = Field(21600, gt=0)
    """Seconds a retraining run may take; past it (or when its run is unknown) the episode ends as failed."""
    cooldown: float = Field(3600, ge=0)
    """Seconds after a trigger during which no other trigger counts (one drift episode, one retraining)."""
    promotion: PromotionPolicy = Field(default_factory=PromotionPolicy)
    """The gate, the canary and when to roll back."""



    def check_references(self, path: Path) -> None:
        self.load_parts(path)

    def load_parts(self, path: Path) -> tuple[Any, CompiledWorkflow]:
        """The monitor config and the compiled workflow this policy names (errors name their files)."""
        from mlrm.monitoring.config import MonitorConfig

        base = Path(path).resolve().parent
        monitor = load_config(base / self.monitor, MonitorConfig)
        if monitor.model != self.model:
            raise ConfigError(f"{self.monitor} monitors '{monitor.model}', not this policy's model '{self.model}'")
        if "schedule" in self.triggers and self.schedule is None:
            raise ConfigError("'triggers' has schedule: give 'schedule: {every: SECONDS}'")
        workflow = compile_workflow(base / self.workflow)
        if workflow.mode != "train":
            raise ConfigError(f"{self.workflow} does not train a model (its last step must be train)")
        return monitor, workflow


def apply(volume: Volume, path: str | Path) -> RetrainPolicy:
    """Validate a policy file and what it names, and store them in the volume for every loop to run."""
    policy = load_config(path, RetrainPolicy)
    monitor, workflow = policy.load_parts(Path(path))
    volume.put_json(f"{POLICIES}{policy.model}.json", {
        "policy": policy.model_dump(mode="json"), "monitor": monitor.model_dump(mode="json"),
        "workflow": {"name": workflow.name, "path": workflow.path, "route": [h.to_dict() for h in workflow.route]},
        "applied": time.time(), "file": str(path),
    })  # fmt: skip
    return policy


def remove(volume: Volume, model: str) -> None:
    key = f"{POLICIES}{model}.json"
    if not volume.exists(key):
        raise NotFoundError(f"no retraining policy for model '{model}'")
    volume.delete(key)


class Stored:
    """A policy as applied: the policy, its monitor config and its workflow's route."""

    def __init__(self, record: dict[str, Any]) -> None:
        from mlrm.monitoring.config import MonitorConfig

        self.policy = RetrainPolicy.model_validate(record["policy"])
        self.monitor = MonitorConfig.model_validate(record["monitor"])
        wf = record["workflow"]
        self.workflow = CompiledWorkflow(wf["name"], wf["path"], [Hop(**h) for h in wf["route"]], [])


def stored(volume: Volume) -> list[Stored]:
    found = []
    for obj in volume.list(POLICIES):
        if obj.key.endswith(".json"):
            try:
                found.append(Stored(volume.get_json(obj.key)))
            except (MlrmError, ValueError, KeyError, TypeError) as exc:
                log.warning("skipped retraining policy %s: %s", obj.key, exc)
    return found


Submit = Callable[[CompiledWorkflow], str]
Status = Callable[[str], "RunRecord | None"]


class ClosedLoop:
    """Checks, triggers, retrainings and promotions for every policy stored in a volume, one tick at a time.

    ``submit`` starts a workflow run and returns its id; ``status`` gives a run's record (None: unknown yet).
    """

    def __init__(self, volume: Volume, submit: Submit, status: Status, *, bus: Any = None) -> None:
        self.volume, self.submit, self.status, self.bus = volume, submit, status, bus
        self.registry = ModelRegistry(volume)
        self.promoter = Promoter(volume)

    def _state_key(self, model: str) -> str:
        return f"loop/{model}/state.json"

    def state(self, model: str) -> dict[str, Any]:
        try:
            return self.volume.get_json(self._state_key(model))
        except NotFoundError:
            return {"model": model, "phase": "idle", "last_trigger": None}

    def _save(self, state: dict[str, Any]) -> None:
        state["updated"] = time.time()
        self.volume.put_json(self._state_key(state["model"]), state)

    def tick(self, now: float | None = None) -> None:
        """One round over every stored policy; a policy that fails is logged and the others go on."""
        for entry in stored(self.volume):
            try:
                self._tick(entry, time.time() if now is None else now)
            except MlrmError as exc:
                log.warning("loop %s: %s", entry.policy.model, exc)
            except Exception:  # one policy's surprise must not stop the others
                log.exception("loop %s: tick failed", entry.policy.model)

    def _tick(self, entry: Stored, now: float) -> None:
        from mlrm.monitoring.checks import run_checks

        model = entry.policy.model
        state = self.state(model)
        checks = run_checks(self.volume, entry.monitor, now=now, bus=self.bus)
        if state["phase"] == "training":
            self._training(entry, state)
            return
        promotion = self.promoter.state(model)
        if promotion is not None and promotion.get("phase") in RUNNING:  # ours, or one `mlrm loop promote` began
            promotion = self.promoter.advance(model)
        if promotion is not None and promotion.get("phase") in RUNNING:
            return  # nothing triggers while a challenger is being promoted
        if state["phase"] == "promoting":
            state["phase"] = "idle"
            self._save(state)
            return
        self._maybe_trigger(entry, state, checks, now)

    # -- idle: is there a reason to retrain? -----------------------------------------------------
    def _maybe_trigger(self, entry: Stored, state: dict[str, Any], checks: list[Any], now: float) -> None:
        policy = entry.policy
        try:
            current = self.registry.resolve(policy.model, alias=policy.alias).version
        except NotFoundError:
            return
        last = state.get("last_trigger")
        fresh = [c for c in checks if c.drifted and c.version == current and (last is None or c.at > last)]
        starts = [c.window_start for c in fresh if c.window_start is not None]
        if starts and (state.get("episode_start") is None or state.get("episode_version") != current):
            # An episode begins with the first window that drifts (after the last trigger): the rows logged
            # since then are what a challenger learns from. Tracked during the cool-down too.
            state.update(episode_start=min(starts), episode_version=current)
            self._save(state)
        if last is not None and now - last < policy.cooldown:
            return
        reasons = []
        if "drift" in policy.triggers and any(c.on != "metric" for c in fresh):
            reasons.append("drift")
        if "decay" in policy.triggers and any(c.on == "metric" for c in fresh):
            reasons.append("decay")
        if "schedule" in policy.triggers and policy.schedule and (last is None or now - last >= policy.schedule.every):
            reasons.append("schedule")
        if not reasons:
            return
        since = state.get("episode_start") if policy.data is not None and policy.data.since_drift else None
        window = self._write_window(policy, since) if policy.data is not None else {"rows": None, "holdout_since": now}
        if window is None:
            return  # too little feedback yet: wait for more, without starting the cool-down
        run_id = self.submit(entry.workflow)
        state.update(phase="training", last_trigger=now, run_id=run_id, reasons=reasons, production=current,
                     holdout_since=window["holdout_since"], episode_start=None, submitted=time.time())  # fmt: skip
        self._save(state)
        drifted = [{"detector": c.detector, "target": c.target, "statistic": c.statistic, "p_value": c.p_value}
                   for c in fresh][:20]  # fmt: skip
        loop_events.record(self.volume, policy.model, "retraining", reasons=reasons, run_id=run_id, version=current,
                           workflow=entry.workflow.name, rows=window["rows"], checks=drifted)  # fmt: skip

    def _write_window(self, policy: RetrainPolicy, since: float | None) -> dict[str, Any] | None:
        """Write the training rows to ``data.key``; the newest ``holdout`` labelled rows stay out of it."""
        from mlrm.monitoring.feedback import labelled_window

        data = policy.data
        assert data is not None
        frame = labelled_window(self.volume, policy.model, since=since, limit=data.rows + data.holdout,
                                label=data.label)  # fmt: skip
        train = frame.iloc[: max(0, len(frame) - data.holdout)]
        if len(train) < data.min_rows:
            log.info("loop %s: %d labelled rows to train on, waiting for %d", policy.model, len(train), data.min_rows)
            return None
        holdout_since = float(frame["at"].iloc[len(train)]) if len(train) < len(frame) else time.time()
        meta = [c for c in train.columns if c.startswith("output.") or c in ("request_id", "row_id", "version", "at")]
        with self.volume.open_write(data.key) as f:
            train.drop(columns=meta).reset_index(drop=True).to_parquet(f, index=False)
        return {"rows": len(train), "holdout_since": holdout_since}

    # -- training: wait for the run, then gate its version ---------------------------------------
    def _training(self, entry: Stored, state: dict[str, Any]) -> None:
        policy = entry.policy
        record = self.status(state["run_id"])
        if record is None or not record.done:
            if time.time() - float(state.get("submitted", time.time())) > policy.training_timeout:
                loop_events.record(self.volume, policy.model, "retraining_failed", run_id=state["run_id"],
                                   error=f"the run did not finish within {policy.training_timeout:g}s")  # fmt: skip
                state["phase"] = "idle"
                self._save(state)
            return
        result = record.result("train") or {}
        if record.status != "succeeded" or result.get("model") != policy.model:
            loop_events.record(self.volume, policy.model, "retraining_failed", run_id=record.id,
                               error=record.error or f"the run registered no version of {policy.model}")  # fmt: skip
            state["phase"] = "idle"
            self._save(state)
            return
        challenger = int(result["version"])
        loop_events.record(self.volume, policy.model, "trained", run_id=record.id, version=challenger,
                           metrics=result.get("metrics"))  # fmt: skip
        try:
            outcome = self.promoter.start(
                policy.model, challenger, policy.promotion, holdout_since=state.get("holdout_since"),
                reason=",".join(state["reasons"]),
            )  # fmt: skip
        except MlrmError as exc:  # e.g. the alias went away: this challenger's promotion ends here
            loop_events.record(self.volume, policy.model, "rejected", challenger=challenger, why=str(exc))
            outcome = {}
        promoting = outcome.get("phase") in ("shadow", "canary")
        state.update(phase="promoting" if promoting else "idle", challenger=challenger)
        self._save(state)


def for_orchestrator(orchestrator: Any) -> ClosedLoop:
    """A loop whose retrainings are runs of ``orchestrator`` (embedded or distributed)."""

    def status(run_id: str) -> RunRecord | None:
        return orchestrator.store.get(run_id) if orchestrator.store.exists(run_id) else None

    return ClosedLoop(orchestrator.volume, orchestrator.submit, status, bus=None)


def loop_interval() -> float:
    """``MLRM_LOOP_INTERVAL``: seconds between the orchestrator's rounds of checks (default 10; 0: off)."""
    import os

    raw = os.environ.get("MLRM_LOOP_INTERVAL", "10")
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"MLRM_LOOP_INTERVAL must be a number of seconds, got {raw!r}") from None
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"MLRM_LOOP_INTERVAL must be zero (off) or a positive number of seconds, got {raw!r}")
    return value


def start_with(orchestrator: Any) -> LoopThread | None:
    """The orchestrator's lifecycle hook: run the loop beside it every ``MLRM_LOOP_INTERVAL`` seconds."""
    interval = loop_interval()
    return LoopThread(for_orchestrator(orchestrator), interval).start() if interval > 0 else None


class LoopThread:
    """Runs :meth:`ClosedLoop.tick` every ``interval`` seconds on a daemon thread (the orchestrator's hook)."""

    def __init__(self, loop: ClosedLoop, interval: float) -> None:
        self.loop, self.interval = loop, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="closed-loop", daemon=True)

    def start(self) -> LoopThread:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.loop.tick()
            except Exception:  # a volume hiccup must not end the loop
                log.exception("closed loop tick failed")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
