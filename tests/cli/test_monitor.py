"""``mlrm monitor``: run a MonitorConfig's checks, read their history, store bulk feedback."""

from __future__ import annotations

import json

import pandas as pd

from mlrm.monitoring import LogEntry, PredictionLog
from mlrm.monitoring.feedback import read_feedback
from tests.cli import test_cli
from tests.cli.test_cli import assert_one_error

cli, iris = test_cli.cli, test_cli.iris  # the fixtures of the CLI's tests

MONITOR = """\
kind: MonitorConfig
model: iris-classifier
window: {count: 100}
min_samples: 20
detectors:
  - {type: psi, features: [petal_length]}
  - {type: metric_decay, metric: accuracy}
"""


def log_rows(volume, rows: int, shift: float) -> None:
    """Logged predictions of version 1 (what a deployment with `log` records), petal length shifted."""
    plog = PredictionLog(volume)
    features = pd.DataFrame({"petal_length": [shift + (i % 7) / 7 for i in range(rows)]})
    outputs = pd.DataFrame({"prediction": ["setosa"] * rows})
    plog.record(LogEntry("iris-classifier", 1, "r-1", "rest", 1_700_000_000.0, features, outputs))
    plog.close()


def test_check_then_status(cli, iris, tmp_path):
    assert cli("run", iris / "train.yaml").exit_code == 0
    (tmp_path / "monitor.yaml").write_text(MONITOR)
    waiting = cli("monitor", "check", tmp_path / "monitor.yaml")
    assert waiting.exit_code == 0 and "at least 20" in waiting.stdout  # nothing logged yet: no verdict

    log_rows(cli.volume, 50, shift=5.0)
    drifted = cli("monitor", "check", tmp_path / "monitor.yaml", "--fail-on-drift")
    assert drifted.exit_code == 1 and "DRIFT" in drifted.stdout

    status = cli("monitor", "status", "iris-classifier")
    assert status.exit_code == 0 and status.stdout.count("psi") == 2 and "DRIFT" in status.stdout
    checks = json.loads(cli("monitor", "status", "iris-classifier", "--json", "--drifted").stdout)
    assert [(c["detector"], c["target"], c["samples"]) for c in checks] == [("psi", "petal_length", 50)]
    newest = json.loads(cli("monitor", "status", "iris-classifier", "--json", "--limit", "1").stdout)
    assert len(newest) == 2 and newest[0]["window_end"] == 1_700_000_000.0


def test_mistakes_are_one_line(cli, iris, tmp_path):
    assert_one_error(cli("monitor", "status", "no-such-model"), "no-such-model")
    (tmp_path / "bad.yaml").write_text(MONITOR.replace("type: psi", "type: pis"))
    assert_one_error(cli("monitor", "check", tmp_path / "bad.yaml"), "bad.yaml", "did you mean 'psi'")


def test_bulk_feedback_from_a_collector_config(cli, iris, tmp_path):
    assert cli("run", iris / "train.yaml").exit_code == 0
    pd.DataFrame({"id": [1, 2, 3], "species": ["setosa", "versicolor", "setosa"]}).to_csv(tmp_path / "labels.csv")
    (tmp_path / "labels.yaml").write_text("kind: CollectorConfig\nsource: {step: csv, path: labels.csv}\n")
    command = ("monitor", "feedback", "iris-classifier", tmp_path / "labels.yaml", "--row-id", "id", "--label")
    done = cli(*command, "species")
    assert done.exit_code == 0 and "stored 3 label(s)" in done.stdout
    stored = read_feedback(cli.volume, "iris-classifier")
    assert stored["row_id"].tolist() == ["1", "2", "3"]
    assert stored["label"].tolist() == ["setosa", "versicolor", "setosa"]
    assert_one_error(cli(*command, "label"), "label", "not in the feedback data")


def test_deploy_with_the_prediction_log(cli, iris):
    assert cli("run", iris / "train.yaml").exit_code == 0
    dep_id = cli("deploy", "iris-classifier", "--alias", "production", "--log-sample", "0.25", "--log-row-id", "id")
    assert dep_id.exit_code == 0
    from mlrm.deployments import Deployments

    [dep] = Deployments(cli.volume).active()
    assert dep.log is not None and (dep.log.sample, dep.log.row_id) == (0.25, "id")
    refused = cli("deploy", "iris-classifier", "--log-sample", "2")
    assert refused.exit_code != 0 and "--log-sample" in refused.output + refused.stderr
