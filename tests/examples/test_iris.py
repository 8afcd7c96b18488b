"""The iris example end to end, embedded: train, register, predict, retrain."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from mlrm.context import ModelRef
from mlrm.registry import ModelRegistry
from orchestrator.embedded import Embedded
from tests.conftest import CONFIGS

IRIS = CONFIGS / "iris"


def read_output(mlrm, result) -> pd.DataFrame:
    key = result["output"].removeprefix("volume:")
    with mlrm.volume.open_read(key) as f:
        return pd.read_csv(f)


def test_train_registers_version_1_as_production_then_version_2(mlrm):
    first = mlrm.run(IRIS / "train.yaml", timeout=120)
    assert first.status == "succeeded", first.error
    result = first.result("train")
    assert result["version"] == 1
    assert result["metrics"]["accuracy"] >= 0.9
    assert result["aliases"] == ["production"]

    registry = ModelRegistry(mlrm.volume)
    assert registry.resolve("iris-classifier", alias="production") == ModelRef("iris-classifier", 1)
    card = registry.card(ModelRef("iris-classifier", 1))
    for field in ("modelname", "modelkind", "traincode", "trainingdata", "hyperparameters", "modelperform",
                  "trainingresource", "runresource", "featurelist", "inference"):  # fmt: skip
        assert card[field], field
    assert [f["name"] for f in card["featurelist"]] == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert card["modelperform"]["metrics"]["accuracy"] == result["metrics"]["accuracy"]
    assert card["lineage"]["run_id"] == first.id

    second = mlrm.run(IRIS / "train.yaml", timeout=120)
    assert second.status == "succeeded", second.error
    assert second.result("train")["version"] == 2
    assert registry.versions("iris-classifier") == [1, 2]


def test_batch_prediction_gives_one_prediction_per_input_row(mlrm):
    assert mlrm.run(IRIS / "train.yaml", timeout=120).status == "succeeded"
    run = mlrm.run(IRIS / "predict.yaml", timeout=120)
    assert run.status == "succeeded", run.error
    out = read_output(mlrm, run.result("predict"))
    inputs = pd.read_csv(IRIS / "new_flowers.csv")
    assert len(out) == len(inputs)
    assert out["id"].tolist() == inputs["id"].tolist()  # one per row, in input order
    assert set(out["prediction"]) <= {"setosa", "versicolor", "virginica"}
    probas = out[["proba_setosa", "proba_versicolor", "proba_virginica"]].sum(axis=1)
    assert probas.round(6).eq(1.0).all()
    assert run.result("predict")["version"] == 1


def test_prediction_order_and_count_survive_many_small_batches(mlrm, tmp_path, monkeypatch):
    """Many batches through every service still give exactly one prediction per row, in order."""
    assert mlrm.run(IRIS / "train.yaml", timeout=120).status == "succeeded"
    big = pd.read_csv(IRIS / "new_flowers.csv").sample(2_000, replace=True, random_state=0)
    big["id"] = range(len(big))
    path = tmp_path / "many.csv"
    big.to_csv(path, index=False)
    monkeypatch.setenv("IRIS_INPUT", str(path))
    run = mlrm.run(IRIS / "predict.yaml", timeout=120)
    assert run.status == "succeeded", run.error
    out = read_output(mlrm, run.result("predict"))
    assert out["id"].tolist() == list(range(2_000))


def test_prediction_needs_a_trained_model(mlrm):
    from mlrm.errors import NotFoundError

    with pytest.raises(NotFoundError, match=r"iris-classifier.*production"):
        mlrm.run(IRIS / "predict.yaml", timeout=60)


def test_tampered_artefacts_are_refused(mlrm):
    assert mlrm.run(IRIS / "train.yaml", timeout=120).status == "succeeded"
    key = "models/iris-classifier/1/state/features.0-standard_scale.json"
    state = mlrm.volume.get_json(key)
    state["state"]["mean"][0] += 1.0
    mlrm.volume.put_json(key, state)
    run = mlrm.run(IRIS / "predict.yaml", timeout=120)
    assert run.status == "failed"
    assert "state/features.0-standard_scale.json does not match the sha256 in its card" in run.error


def test_the_iris_workflows_run_unchanged_on_s3(settings, s3_volume):
    """The production volume: a real S3 server (SeaweedFS), same configs."""
    from orchestrator.embedded import Embedded

    with Embedded(settings, volume=s3_volume) as mlrm:
        trained = mlrm.run(IRIS / "train.yaml", timeout=120)
        assert trained.status == "succeeded", trained.error
        assert trained.result("train")["version"] == 1
        run = mlrm.run(IRIS / "predict.yaml", timeout=120)
        assert run.status == "succeeded", run.error
        assert len(read_output(mlrm, run.result("predict"))) == 30
    assert ModelRegistry(s3_volume).resolve("iris-classifier", alias="production") == ModelRef("iris-classifier", 1)


def test_an_s3_outage_fails_the_run_clearly_and_registers_nothing(settings, seaweedfs_factory, monkeypatch):
    from mlrm.volume import open_volume
    from orchestrator.embedded import Embedded
    from tests.s3server import ACCESS_KEY, SECRET_KEY

    server = seaweedfs_factory()
    for name, value in {"MLRM_S3_ENDPOINT": server.endpoint, "MLRM_S3_ACCESS_KEY": ACCESS_KEY,
                        "MLRM_S3_SECRET_KEY": SECRET_KEY, "MLRM_S3_RETRIES": "1",
                        "MLRM_S3_CREATE_BUCKET": "1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    volume = open_volume("s3://outage")
    with Embedded(settings, volume=volume) as mlrm:
        server.stop()  # the object store goes away before the data reaches it
        started = time.monotonic()
        run = mlrm.run(IRIS / "train.yaml", timeout=120)
    assert run.status == "failed"
    assert "unreachable" in run.error and server.endpoint in run.error
    assert time.monotonic() - started < 90  # bounded retries, then a clear failure
    server.start()
    assert ModelRegistry(open_volume("s3://outage")).names() == []  # no half-written version


def test_with_a_signing_key_versions_are_signed_and_a_rewritten_card_stops_predictions(mlrm, settings, monkeypatch):
    monkeypatch.setenv("MLRM_SIGNING_KEY", "an-example-signing-key-of-32-characters!")
    assert mlrm.run(IRIS / "train.yaml", timeout=120).status == "succeeded"
    card = ModelRegistry(mlrm.volume).card(ModelRef("iris-classifier", 1))
    assert card["signature"]["algorithm"] == "HMAC-SHA256"
    assert mlrm.run(IRIS / "predict.yaml", timeout=120).status == "succeeded"

    card["modelperform"]["metrics"]["accuracy"] = 1.0  # any change at all, even a harmless-looking one
    mlrm.volume.put_json("models/iris-classifier/1/card.json", card)
    with Embedded(settings) as fresh:  # a replica that has not loaded the version yet
        run = fresh.run(IRIS / "predict.yaml", timeout=120)
    assert run.status == "failed"
    assert "invalid signature" in run.error
