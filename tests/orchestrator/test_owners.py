"""Who owns a run: a run whose owner died ends (abandoned), and what it left is collected."""

from __future__ import annotations

import os
import subprocess
import sys

from mlrm.bus import Hop
from mlrm.lease import Holder
from orchestrator.store import RunStore
from tests.conftest import CONFIGS, ROOT
from tests.support import dead_pid, killed_embedded_training


def mlrm_cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLRM_VOLUME": str(tmp_path / "volume"), "MLRM_STATE": str(tmp_path / "runs.sqlite"),
           "COLUMNS": "250"}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "mlrm", *args], env=env, capture_output=True, text=True, cwd=ROOT)


def test_a_killed_embedded_run_is_abandoned_and_gc_collects_what_it_left(tmp_path):
    killed = killed_embedded_training(tmp_path, CONFIGS / "iris" / "iris.csv")
    volume = tmp_path / "volume"
    assert (volume / "runs" / killed / "gather").is_dir()  # its training data, gathered

    listed = mlrm_cli(tmp_path, "runs")
    assert listed.returncode == 0, listed.stderr
    assert killed in listed.stdout and "abandoned" in listed.stdout and "running" not in listed.stdout
    shown = mlrm_cli(tmp_path, "runs", "show", killed)
    assert "abandoned" in shown.stdout and "stopped before the run finished" in shown.stdout

    assert not (volume / "runs" / killed / "status.json").exists()  # an embedded run publishes no snapshot

    gc = mlrm_cli(tmp_path, "gc", "--older-than", "0")
    assert gc.returncode == 0, gc.stderr
    assert not (volume / "runs" / killed).exists()


def test_only_runs_nobody_else_can_finish_are_abandoned(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    here = Holder.here("embedded")
    route = [Hop("collect", "collector", {})]
    owners = {
        "embedded-dead": Holder("embedded", here.machine, dead_pid(), None),
        "embedded-alive": here,  # another `mlrm run`, still running
        # an orchestrator on a shared bus died: a restarted one picks its runs up
        "distributed": Holder("orchestrator", here.machine, dead_pid(), None, "amqp://127.0.0.1:5672/%2F"),
        "elsewhere": Holder("embedded", "another-machine", 1, None),  # cannot be checked from here
    }
    for run_id, owner in owners.items():
        store.create(run_id, "wf", "", "transform", route, {}, owner=owner.to_dict())
    assert store.reap() == ["embedded-dead"]
    assert {r: store.get(r).status for r in owners} == {
        "embedded-dead": "abandoned", "embedded-alive": "running", "distributed": "running", "elsewhere": "running",
    }  # fmt: skip
    assert store.finished_at("embedded-dead") is not None
    assert not store.finish("embedded-dead", "succeeded")  # abandoned is final
