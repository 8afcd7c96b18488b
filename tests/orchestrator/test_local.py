"""`mlrm up`'s supervisor: restarts what dies, backing off only while a child keeps crashing."""

from __future__ import annotations

import logging
import sys

from orchestrator.local import Child, LocalDeployment, Supervisor


def test_a_child_that_ran_healthily_is_restarted_without_the_crash_loop_backoff(caplog):
    supervisor = Supervisor(LocalDeployment(), healthy_after=0.0)
    child = Child("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    supervisor.children = [child]
    supervisor._spawn(child)
    try:
        child.restarts = 6  # it crash-looped earlier: its backoff had reached 30 s
        supervisor.poll()  # ... but has now been up for `healthy_after`
        child.proc.kill()
        child.proc.wait()
        with caplog.at_level(logging.WARNING, logger="orchestrator.local"):
            supervisor.poll()
        assert "sleeper exited with -9; restarting in 0.5s" in caplog.text
    finally:
        supervisor.stop()


def test_an_insecure_deployment_serves_its_replicas_ports_without_authentication():
    from orchestrator.local import ServiceReplicas

    def predict_command(**fields):
        spec = LocalDeployment(services={"predict": ServiceReplicas(http_port=18080)}, **fields)
        return next(cmd for name, cmd in spec.commands() if name == "predict-0")

    assert "--insecure" not in predict_command()  # secure by default: the replica needs a signing key
    assert "--insecure" in predict_command(insecure=True)


def test_each_replica_serves_its_api_on_its_own_ports_and_the_others_on_none():
    deployment = LocalDeployment.model_validate({"services": {
        "handler": {"replicas": 2, "http_port": 9000, "grpc_port": 9100, "config": "configs/iris/clean-train.yaml"},
    }})  # fmt: skip
    commands = dict(deployment.commands())
    for i in (0, 1):
        cmd = commands[f"handler-{i}"]
        assert cmd[cmd.index("--http-port") + 1] == str(9000 + i) and cmd[cmd.index("--grpc-port") + 1] == str(9100 + i)
        assert cmd[cmd.index("--config") + 1] == "configs/iris/clean-train.yaml"
    features = commands["features-0"]  # no ports: 0, so an MLRM_HTTP_PORT in the environment opens nothing
    assert features[features.index("--http-port") + 1] == "0" and "--config" not in features
