"""The closed loop on the drifting-stream example (configs/drift/), embedded, over real V2 requests.

Online requests go to a V2 server (REST, port 0) beside a predict service whose predictions are logged;
their labels come back as feedback; after each window of 200 rows the loop ticks (checks, triggers,
retraining, gate, canary, promotion). The stream shifts at a known window:

- drift is detected in the first window after the shift and in none before it;
- exactly one retraining runs; its challenger passes the gate, goes through staging and a canary
  (answering its share of routing keys) to production; no request fails during any switch;
- a challenger worse than production on the recent labelled rows is rejected, and a canary whose live
  metric regresses (the world shifted back) is rolled back, production untouched; so is a shadow
  whose answers are worse than production's on the same requests.
"""

from __future__ import annotations

import importlib.util
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from mlrm.bus.memory import MemoryBus
from mlrm.deployments import Deployments, DeployRequest
from mlrm.errors import RefusedError
from mlrm.monitoring.checks import history as check_history
from mlrm.monitoring.feedback import FeedbackItem, write_feedback
from mlrm.registry import ModelRegistry
from mlrm.settings import Settings
from mlrm.volume import Volume
from orchestrator import loop_events
from orchestrator.embedded import Embedded
from orchestrator.promotion import Promoter, PromotionPolicy, ShadowStep
from orchestrator.retrain import ClosedLoop, apply, for_orchestrator
from services.predict.service import PredictService
from services.predict.v2.serve import V2Servers
from tests.conftest import CONFIGS

DRIFT = CONFIGS / "drift"
MODEL = "drift-classifier"
WINDOW = 200  # rows between two rounds of checks: the monitor's window (monitor.yaml: window.count)
ROWS_PER_REQUEST = 10


def generator() -> Any:
    spec = importlib.util.spec_from_file_location("drift_generate", DRIFT / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Traffic:
    """Sends stream rows as V2 requests (each with a routing key) and their labels as feedback, once the
    predict service's prediction log (the deployment's `log`) has written the rows."""

    def __init__(self, volume: Volume, service: PredictService, url: str, feedback: Any = None) -> None:
        self.volume, self.service = volume, service
        self.client = httpx.Client(base_url=url, timeout=60)
        self.feedback = feedback or (lambda items: write_feedback(volume, MODEL, items))
        self.failures: list[str] = []
        self.versions: Counter[str] = Counter()
        self.sticky: dict[str, str] = {}
        self._n = 0

    def send(self, rows: pd.DataFrame, *, feedback: bool = True) -> None:
        """The rows in requests of ROWS_PER_REQUEST to `production`, then (once logged) their labels."""
        labels = []
        for start in range(0, len(rows), ROWS_PER_REQUEST):
            chunk = rows.iloc[start : start + ROWS_PER_REQUEST]
            request_id, key = uuid.uuid4().hex, f"user-{self._n % 97}"
            self._n += 1
            body = {"id": request_id, "parameters": {"routing_key": key}, "inputs": [
                {"name": c, "datatype": "FP64", "shape": [len(chunk)], "data": chunk[c].tolist()}
                for c in ("x1", "x2", "x3")]}  # fmt: skip
            r = self.client.post(f"/v2/models/{MODEL}/versions/production/infer", json=body)
            if r.status_code != 200:
                self.failures.append(f"{r.status_code}: {r.text}")
                continue
            version = r.json()["model_version"]
            self.versions[version] += 1
            self.sticky.setdefault(f"{key}@{self.canary_epoch}", version)
            if self.sticky[f"{key}@{self.canary_epoch}"] != version:
                self.failures.append(f"routing key {key} moved to version {version} while the canary stood still")
            labels.append(FeedbackItem(request_id=request_id, labels=chunk["y"].tolist()))
        assert self.service.prediction_log.flush()
        if feedback:
            self.feedback(labels)

    canary_epoch = 0  # bumped when the traffic policy may have changed (a routing key sticks within one epoch)

    def policies_changed(self) -> None:
        """Apply the deployment records now (the watcher would within 50 ms) and start a new epoch."""
        self.service.server.sync()
        self.canary_epoch += 1

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The example's first version trained and deployed (`production`, logged), a V2 server, the loop."""
    gen = generator()
    monkeypatch.setenv("DRIFT_DATA", str(gen.generate(tmp_path / "data")))
    settings = Settings(volume=str(tmp_path / "volume"), state=str(tmp_path / "runs.sqlite"), retries=1)
    with Embedded(settings) as mlrm:
        assert mlrm.run(DRIFT / "train.yaml", timeout=300).status == "succeeded"
        Deployments(mlrm.volume).create(DeployRequest(model=MODEL, alias="production", log={"sample": 1.0}))
        service = PredictService(MemoryBus(), mlrm.volume, watch_interval=0.05, worker="predict-loop")
        service.start()
        with V2Servers(service, http_port=0, grpc_port=None) as servers:
            traffic = Traffic(mlrm.volume, service, f"http://127.0.0.1:{servers.http_port}")
            apply(mlrm.volume, DRIFT / "policy.yaml")
            yield {"mlrm": mlrm, "gen": gen, "traffic": traffic, "loop": for_orchestrator(mlrm.orchestrator),
                   "service": service}  # fmt: skip
            traffic.close()
        service.stop()


def drifted_windows(volume: Volume) -> set[float]:
    return {c.window_end for c in check_history(volume, MODEL) if c.drifted and c.on != "metric"}


def steps(volume: Volume) -> list[str]:
    return [e["step"] for e in loop_events.history(volume, MODEL)]


def test_drift_is_detected_after_the_shift_and_one_retraining_is_promoted_through_a_canary(world):
    mlrm, gen, traffic, loop = world["mlrm"], world["gen"], world["traffic"], world["loop"]
    volume: Volume = mlrm.volume
    shift_window = 5
    stream = gen.stream(WINDOW * 40, shift_at=WINDOW * shift_window, seed=11)
    loop_: ClosedLoop = loop
    detected_at = None
    promoted_at = None
    for w in range(40):
        traffic.send(stream.iloc[w * WINDOW : (w + 1) * WINDOW])
        loop_.tick()
        traffic.policies_changed()
        if detected_at is None and any(c.drifted for c in check_history(volume, MODEL, limit=10)):
            detected_at = w
            assert w >= shift_window, f"a false alarm in window {w}, before the shift at {shift_window}"
        state = loop_.state(MODEL)
        if state["phase"] == "training":  # let the embedded training finish before the next window
            assert mlrm.orchestrator.wait(state["run_id"], timeout=300).status == "succeeded"
        if promoted_at is None and "promoted" in steps(volume):
            promoted_at = w
        if promoted_at is not None and w >= promoted_at + 4:
            break
    assert detected_at is not None and detected_at - shift_window <= 1, f"detected in window {detected_at}"
    assert promoted_at is not None, steps(volume)
    history = steps(volume)
    assert history.count("retraining") == 1  # one drift episode, one retraining
    assert history == ["retraining", "trained", "gate", "staging", "shadow", "shadow_passed", "canary", "promoted"]
    gate = next(e for e in loop_events.history(volume, MODEL) if e["step"] == "gate")
    assert gate["passed"] and gate["challenger"] == 2 and gate["production"] == 1
    assert gate["challenger_score"] > gate["production_score"] + 0.05
    registry = ModelRegistry(volume)
    assert registry.aliases(MODEL) == {"production": 2, "staging": 2}
    assert traffic.failures == []  # no request failed, before, during or after any switch
    assert set(traffic.versions) == {"1", "2"}  # the canary answered live requests before production moved
    shadow = next(e for e in loop_events.history(volume, MODEL) if e["step"] == "shadow_passed")
    assert shadow["labels"] >= 100 and shadow["challenger_score"] > shadow["production_score"]  # same requests
    promoted = next(e for e in loop_events.history(volume, MODEL) if e["step"] == "promoted")
    assert promoted["live"]["challenger"]["requests"] >= 20
    assert promoted["live"]["challenger"]["metric"] > promoted["live"]["production"]["metric"]
    # After the promotion the new version serves everything and sees no drift: nothing more happens.
    assert Deployments(volume).following(MODEL, "production").canary is None
    assert not any(c.drifted for c in check_history(volume, MODEL, limit=4) if c.version == 2)


def train_challenger(world, rows: pd.DataFrame) -> int:
    """A challenger trained by the example's retraining workflow on the given labelled rows."""
    volume: Volume = world["mlrm"].volume
    with volume.open_write("retrain/drift-classifier.parquet") as f:
        rows[["x1", "x2", "x3", "y"]].to_parquet(f, index=False)
    run = world["mlrm"].run(DRIFT / "retrain.yaml", timeout=300)
    assert run.status == "succeeded", run.error
    return int(run.result("train")["version"])


def test_a_worse_challenger_is_rejected_and_a_regressing_canary_is_rolled_back(world):
    gen, traffic, volume = world["gen"], world["traffic"], world["mlrm"].volume
    registry, promoter = ModelRegistry(volume), Promoter(volume)
    policy = PromotionPolicy.model_validate({
        "margin": 0.05, "holdout": 150, "min_holdout": 100, "canary": {"share": 0.3, "requests": 1000},
        "rollback": {"min_labels": 30, "metric_tolerance": 0.05},
    })  # fmt: skip
    shifted = gen.rows(1000, shifted=True, seed=21)
    challenger = train_challenger(world, shifted)  # learned the shifted relation

    # The world has not shifted: on recent labelled traffic the challenger is worse, and is rejected.
    traffic.send(gen.rows(200, shifted=False, seed=22))
    rejected = promoter.start(MODEL, challenger, policy)
    assert rejected["outcome"] == "rejected" and not rejected["gate"]["passed"]
    assert registry.aliases(MODEL) == {"production": 1}

    # The world shifts: the challenger passes the gate and its canary starts ...
    since = time.time()
    traffic.send(gen.rows(200, shifted=True, seed=23))
    started = promoter.start(MODEL, challenger, policy, holdout_since=since)
    assert started["phase"] == "canary", started.get("why")
    assert registry.aliases(MODEL) == {"production": 1, "staging": challenger}
    with pytest.raises(RefusedError, match="being promoted"):  # one promotion of a model at a time
        promoter.start(MODEL, challenger, policy)
    traffic.policies_changed()
    # ... and the world shifts back: live, the canary is worse than production, and is rolled back.
    outcome = None
    for seed in range(30, 40):
        traffic.send(gen.rows(200, shifted=False, seed=seed))
        outcome = promoter.advance(MODEL)
        traffic.policies_changed()
        if outcome["phase"] == "done":
            break
    assert outcome is not None and outcome["outcome"] == "rolled_back", outcome
    assert "regresses" in outcome["why"]
    assert registry.aliases(MODEL) == {"production": 1}  # production untouched, staging dropped
    assert Deployments(volume).following(MODEL, "production").canary is None
    traffic.policies_changed()
    traffic.send(gen.rows(100, shifted=False, seed=50))
    assert traffic.failures == []
    assert {"1", str(challenger)} <= set(traffic.versions)
    assert steps(volume) == ["gate", "rejected", "gate", "staging", "canary", "rolled_back"]

    # With a shadow step, the challenger first answers every request in the shadow: when the world has
    # shifted back meanwhile, it is worse on the same requests and rolled back before any caller saw it.
    shadowed = policy.model_copy(update={"shadow": ShadowStep(labels=50)})
    since = time.time()
    traffic.send(gen.rows(200, shifted=True, seed=60))
    assert promoter.start(MODEL, challenger, shadowed, holdout_since=since)["phase"] == "shadow"
    traffic.policies_changed()
    served_before = traffic.versions[str(challenger)]
    for seed in range(61, 70):
        traffic.send(gen.rows(200, shifted=False, seed=seed))
        outcome = promoter.advance(MODEL)
        traffic.policies_changed()
        if outcome["phase"] == "done":
            break
    assert outcome["outcome"] == "rolled_back" and "shadow" in outcome["why"], outcome
    assert traffic.versions[str(challenger)] == served_before  # a shadow's answers are never returned
    assert registry.aliases(MODEL) == {"production": 1}
    assert Deployments(volume).following(MODEL, "production").shadow is None
    assert traffic.failures == []
