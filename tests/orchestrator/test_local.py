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
