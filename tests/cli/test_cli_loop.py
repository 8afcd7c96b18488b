"""`mlrm loop` and `mlrm traffic`: applying a retraining policy, reading the loop's history, setting a
deployment's canary and shadow."""

from __future__ import annotations

import json

from mlrm.deployments import Deployments
from orchestrator import loop_events
from tests.cli import test_cli
from tests.cli.test_cli import error_lines
from tests.conftest import CONFIGS

cli = test_cli.cli  # the fixture of the CLI's tests

DRIFT = CONFIGS / "drift"


def test_apply_history_and_remove(cli, tmp_path, monkeypatch):
    from tests.examples.test_closed_loop import generator

    monkeypatch.setenv("DRIFT_DATA", str(generator().generate(tmp_path / "data")))
    assert cli("run", DRIFT / "train.yaml", "-q").exit_code == 0
    result = cli("loop", "apply", DRIFT / "policy.yaml")
    assert result.exit_code == 0 and "drift-classifier" in result.stderr
    assert cli.volume.exists("loop/policies/drift-classifier.json")
    loop_events.record(cli.volume, "drift-classifier", "retraining", reasons=["drift"], run_id="r-1", version=1)
    loop_events.record(cli.volume, "drift-classifier", "gate", challenger=2, production=1, metric="accuracy",
                       passed=True, improvement=0.41)  # fmt: skip
    table = cli("loop", "history", "drift-classifier")
    assert table.exit_code == 0 and "retraining" in table.stdout and "improvement=0.41" in table.stdout
    events = json.loads(cli("loop", "history", "drift-classifier", "--json").stdout)
    assert [e["step"] for e in events] == ["retraining", "gate"]
    rejected = cli("loop", "promote", "drift-classifier", "1")
    assert rejected.exit_code == 1 and "fewer than min_holdout" in rejected.stderr  # no feedback to judge it on
    missing = cli("loop", "promote", "drift-classifier", "7")
    assert missing.exit_code != 0 and "7" in " ".join(error_lines(missing))
    assert cli("loop", "run", DRIFT / "policy.yaml", "--once").exit_code == 0  # one embedded round: no logs yet
    checks = json.loads(cli("monitor", "status", "drift-classifier", "--json").stdout)
    assert checks and not any(c["drifted"] for c in checks)  # it ran the monitor's checks: too few samples
    status = json.loads(cli("loop", "status", "--json").stdout)
    assert [(s["model"], s["state"]["phase"]) for s in status] == [("drift-classifier", "idle")]
    assert "drift-classifier" in cli("loop", "status").stdout
    assert cli("loop", "remove", "drift-classifier").exit_code == 0
    missing = cli("loop", "remove", "drift-classifier")
    assert missing.exit_code != 0 and "no retraining policy" in " ".join(error_lines(missing))


def test_a_bad_policy_is_refused_with_its_file(cli, tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("kind: RetrainPolicy\nmodel: m\nmonitor: nowhere.yaml\nworkflow: w.yaml\ncooldown: -5\n")
    result = cli("loop", "apply", bad)
    assert result.exit_code != 0 and "p.yaml:5" in " ".join(error_lines(result)) and "cooldown" in result.stderr


def test_traffic_sets_and_clears_a_canary_and_a_shadow(cli, monkeypatch):
    assert cli("run", CONFIGS / "iris" / "train.yaml", "-q").exit_code == 0
    dep_id = cli("deploy", "iris-classifier", "--alias", "production").stdout.strip()
    result = cli("traffic", dep_id, "--canary", "staging", "--share", "0.25", "--shadow", "1")
    assert result.exit_code == 0, result.stderr
    dep = Deployments(cli.volume).get(dep_id)
    assert (dep.canary.alias, dep.canary.share, dep.shadow.version) == ("staging", 0.25, 1)
    assert cli("traffic", dep_id, "--clear").exit_code == 0
    dep = Deployments(cli.volume).get(dep_id)
    assert dep.canary is None and dep.shadow is None
    refused = cli("traffic", dep_id)
    assert refused.exit_code != 0 and "--clear" in " ".join(error_lines(refused))
