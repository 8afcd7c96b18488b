"""Retraining policies: their validation, and when they trigger (drift with a cool-down, a schedule)."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import pytest

from mlrm.config import load_config, validate_files
from mlrm.deployments import Deployments, DeployRequest
from mlrm.errors import ConfigError, NotFoundError
from mlrm.monitoring.feedback import FeedbackItem, write_feedback
from mlrm.settings import Settings
from orchestrator import loop_events
from orchestrator.embedded import Embedded
from orchestrator.retrain import RetrainPolicy, apply, for_orchestrator, remove, stored
from tests.examples.test_closed_loop import DRIFT, MODEL, generator


def policy_file(folder: Path, text: str) -> Path:
    """A copy of the drift example's configs with this policy beside them."""
    shutil.copytree(DRIFT, folder, dirs_exist_ok=True)
    path = folder / "p.yaml"
    path.write_text(text)
    return path


BASE = "kind: RetrainPolicy\nmodel: drift-classifier\nmonitor: monitor.yaml\nworkflow: retrain.yaml\n"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("triggers: [drift, weather]\n", "triggers[1]"),
        ("triggers: [schedule]\n", "schedule: {every: SECONDS}"),
        ("cooldown: -1\n", "cooldown"),
        ("data: {key: ../outside.parquet}\n", "data.key"),
        ("promotion: {canary: {share: 1.5}}\n", "promotion.canary.share"),
    ],
)
def test_bad_policies_are_refused_with_the_field(tmp_path, extra, message):
    path = policy_file(tmp_path, BASE + extra)
    errors = validate_files([path])
    assert errors and message in str(errors[0]), errors


def test_a_policy_names_files_that_exist_and_a_monitor_of_its_model(tmp_path):
    path = policy_file(tmp_path / "a", BASE.replace("retrain.yaml", "nowhere.yaml"))
    with pytest.raises(NotFoundError, match=r"nowhere\.yaml"):
        load_config(path, RetrainPolicy).check_references(path)
    assert "nowhere.yaml" in str(validate_files([path])[0])
    path = policy_file(tmp_path / "b", BASE)
    (tmp_path / "b" / "monitor.yaml").write_text((DRIFT / "monitor.yaml").read_text().replace(MODEL, "other-model"))
    with pytest.raises(ConfigError, match="monitors 'other-model'"):
        load_config(path, RetrainPolicy).check_references(path)


@pytest.fixture
def trained(tmp_path, monkeypatch):
    gen = generator()
    monkeypatch.setenv("DRIFT_DATA", str(gen.generate(tmp_path / "data")))
    settings = Settings(volume=str(tmp_path / "volume"), state=str(tmp_path / "runs.sqlite"), retries=1)
    with Embedded(settings) as mlrm:
        assert mlrm.run(DRIFT / "train.yaml", timeout=300).status == "succeeded"
        Deployments(mlrm.volume).create(DeployRequest(model=MODEL, alias="production", log={"sample": 1.0}))
        mlrm.service("predict").prediction_log.reload()  # (it re-reads the deployments every few seconds)
        yield mlrm, gen


def predict_and_label(mlrm, rows) -> None:
    """Predict rows with production (logged by its deployment) and send their labels."""
    predict = mlrm.service("predict")
    items = []
    for start in range(0, len(rows), 20):
        chunk, rid = rows.iloc[start : start + 20], uuid.uuid4().hex
        predict.infer(MODEL, chunk[["x1", "x2", "x3"]], alias="production", id=rid)
        items.append(FeedbackItem(request_id=rid, labels=chunk["y"].tolist()))
    assert predict.prediction_log.flush()
    write_feedback(mlrm.volume, MODEL, items)


def retrainings(volume) -> int:
    return [e["step"] for e in loop_events.history(volume, MODEL)].count("retraining")


def settle(mlrm, loop, now: float) -> None:
    """Tick, and let a retraining it started finish and be gated."""
    loop.tick(now)
    state = loop.state(MODEL)
    if state["phase"] == "training":
        mlrm.orchestrator.wait(state["run_id"], timeout=300)
        loop.tick(now)


def test_one_drift_episode_triggers_one_retraining_until_the_cooldown_ends(trained, tmp_path):
    mlrm, gen = trained
    path = policy_file(tmp_path / "cfg", (DRIFT / "policy.yaml").read_text()
                       .replace("cooldown: 3600", "cooldown: 100").replace("margin: 0.05", "margin: 0.9"))  # fmt: skip
    apply(mlrm.volume, path)
    loop = for_orchestrator(mlrm.orchestrator)
    t = time.time() + 10_000  # the loop's clock, ahead of every logged row: checks see all of them
    predict_and_label(mlrm, gen.rows(200, shifted=False, seed=1))
    settle(mlrm, loop, t)
    assert retrainings(mlrm.volume) == 0  # no drift, no retraining
    for i in range(1, 4):  # drifting windows; the retraining waits for 450 labelled rows since the drift began
        predict_and_label(mlrm, gen.rows(200, shifted=True, seed=1 + i))
        settle(mlrm, loop, t + i)
        assert retrainings(mlrm.volume) == (1 if i == 3 else 0)
    steps = [e["step"] for e in loop_events.history(mlrm.volume, MODEL)]
    assert steps == ["retraining", "trained", "gate", "rejected"]  # margin 0.9: nobody passes; the drift goes on
    for later in (10, 50, 102):
        predict_and_label(mlrm, gen.rows(200, shifted=True, seed=later))
        settle(mlrm, loop, t + later)
    assert retrainings(mlrm.volume) == 1  # the same episode, within the cool-down
    settle(mlrm, loop, t + 104)
    assert retrainings(mlrm.volume) == 2  # still drifting after the cool-down: retrained again


def test_a_schedule_retrains_on_its_interval(trained, tmp_path):
    mlrm, gen = trained
    path = policy_file(tmp_path / "cfg", BASE + "triggers: [schedule]\nschedule: {every: 600}\ncooldown: 0\n")
    with mlrm.volume.open_write("retrain/drift-classifier.parquet") as f:  # no data: the workflow reads its own
        gen.rows(500, shifted=False, seed=3).drop(columns="id").to_parquet(f, index=False)
    apply(mlrm.volume, path)
    loop = for_orchestrator(mlrm.orchestrator)
    settle(mlrm, loop, 10_000.0)
    assert retrainings(mlrm.volume) == 1
    rejected = loop_events.history(mlrm.volume, MODEL)[-1]
    assert rejected["step"] == "rejected" and "min_holdout" in rejected["why"]  # no labelled feedback yet
    settle(mlrm, loop, 10_599.0)
    assert retrainings(mlrm.volume) == 1
    settle(mlrm, loop, 10_601.0)
    assert retrainings(mlrm.volume) == 2
    assert [s.policy.model for s in stored(mlrm.volume)] == [MODEL]
    remove(mlrm.volume, MODEL)
    assert stored(mlrm.volume) == []
    with pytest.raises(NotFoundError):
        remove(mlrm.volume, MODEL)
