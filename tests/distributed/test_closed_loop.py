"""The closed loop distributed: the same drift example's configs, every service its own process on
RabbitMQ, the volume in S3 (SeaweedFS), and the loop running inside the orchestrator process
(``MLRM_LOOP_INTERVAL``), with online V2 requests (logged by their deployment) and feedback over the
bus (stored by the cluster's predict replicas) flowing meanwhile."""

from __future__ import annotations

import time

from mlrm.bus import open_bus
from mlrm.bus.memory import MemoryBus
from mlrm.deployments import Deployments, DeployRequest
from mlrm.monitoring import send_feedback
from mlrm.monitoring.checks import history as check_history
from mlrm.registry import ModelRegistry
from orchestrator import loop_events
from orchestrator.retrain import apply
from services.predict.service import PredictService
from services.predict.v2.serve import V2Servers
from tests.examples.test_closed_loop import DRIFT, MODEL, WINDOW, Traffic, generator


def test_the_loop_runs_in_the_distributed_orchestrator_on_s3(cluster_factory, s3_bucket, tmp_path, monkeypatch):
    gen = generator()
    monkeypatch.setenv("DRIFT_DATA", str(gen.generate(tmp_path / "data")))
    monkeypatch.setenv("MLRM_LOOP_INTERVAL", "0.5")
    cluster = cluster_factory(volume=f"s3://{s3_bucket}")
    volume = cluster.volume
    trained = cluster.run(DRIFT / "train.yaml")
    assert trained.status == "succeeded", trained.error
    Deployments(volume).create(DeployRequest(model=MODEL, alias="production", log={"sample": 1.0}))
    apply(volume, DRIFT / "policy.yaml")

    service = PredictService(MemoryBus(), volume, watch_interval=0.1, worker="predict-online")
    service.start()
    shift_window = 3
    stream = gen.stream(WINDOW * 60, shift_at=WINDOW * shift_window, seed=11)
    try:
        with V2Servers(service, http_port=0, grpc_port=None) as servers:
            bus = open_bus(cluster.url)  # feedback travels over the bus to the cluster's predict replicas
            traffic = Traffic(volume, service, f"http://127.0.0.1:{servers.http_port}",
                              feedback=lambda items: send_feedback(bus, MODEL, items))  # fmt: skip
            shifted_at = None
            try:
                for w in range(60):
                    if w == shift_window:
                        shifted_at = time.time()
                    traffic.send(stream.iloc[w * WINDOW : (w + 1) * WINDOW])
                    time.sleep(1.5)  # a few rounds of the orchestrator's loop
                    traffic.policies_changed()
                    if "promoted" in [e["step"] for e in loop_events.history(volume, MODEL)]:
                        break
            finally:
                traffic.close()
                bus.close()
    finally:
        service.stop()

    steps = [e["step"] for e in loop_events.history(volume, MODEL)]
    assert steps == ["retraining", "trained", "gate", "staging", "shadow", "shadow_passed", "canary", "promoted"], steps
    drifted = [c for c in check_history(volume, MODEL) if c.drifted]
    assert drifted and min(c.at for c in drifted) > shifted_at  # no alarm before the shift
    assert ModelRegistry(volume).aliases(MODEL)["production"] == 2
    assert traffic.failures == []
    assert set(traffic.versions) == {"1", "2"}
