"""The onnx runtime: converted at registration when exact, chosen by config, equal to scikit-learn's answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification

from mlrm.context import ModelRef, StepContext
from mlrm.errors import DataError, RefusedError
from mlrm.registry import ModelRegistry
from services.predict.dataplane import DataPlane, InferenceRequest
from services.predict.server import ModelServer
from services.train.config import TrainConfig
from services.train.trainer import train
from tests.conftest import CONFIGS

IRIS = CONFIGS / "iris"

WORKFLOW = """\
kind: Workflow
name: iris-predict-%(runtime)s
steps:
  - {name: collect, service: collector, config: %(iris)s/collect-new.yaml}
  - name: predict
    service: predict
    config: {model: {name: iris-classifier, alias: production}, keep: [id], runtime: %(runtime)s,
             sink: {step: csv, key: "predictions/%(runtime)s.csv"}}
"""


def assert_equal_answers(onnx: pd.DataFrame, sklearn: pd.DataFrame) -> None:
    assert list(onnx.columns) == list(sklearn.columns)
    assert (onnx["prediction"] == sklearn["prediction"]).all()
    proba = [c for c in sklearn.columns if c.startswith("proba_")]
    assert proba and np.abs(onnx[proba].to_numpy() - sklearn[proba].to_numpy()).max() <= 1e-5


def test_iris_serves_through_onnx_with_sklearn_answers(mlrm, tmp_path):
    assert mlrm.run(IRIS / "train.yaml", timeout=120).status == "succeeded"
    registry = ModelRegistry(mlrm.volume)
    ref = registry.resolve("iris-classifier", alias="production")
    card = registry.model_card(ref)
    onnx = card.inference.runtimes["onnx"]
    assert onnx.exact and onnx.file == "model.onnx" and onnx.check["labels_differ"] == 0
    assert {"model.onnx", "model.skops"} <= set(card.sha256)  # both hashed, so both signed

    outputs = {}
    for runtime in ("onnx", "sklearn"):
        workflow = tmp_path / f"{runtime}.yaml"
        workflow.write_text(WORKFLOW % {"iris": IRIS, "runtime": runtime})
        run = mlrm.run(workflow, timeout=120)
        assert run.status == "succeeded", run.error
        with mlrm.volume.open_read(f"predictions/{runtime}.csv") as f:
            outputs[runtime] = pd.read_csv(f)
    assert len(outputs["onnx"]) == 30
    assert_equal_answers(outputs["onnx"], outputs["sklearn"])

    plane = mlrm.service("predict").dataplane
    raw = pd.read_csv(IRIS / "new_flowers.csv")
    direct = {
        r: plane.infer(InferenceRequest("iris-classifier", raw, alias="production", keep=["id"], runtime=r)).frame
        for r in ("onnx", "sklearn", None)  # None: the default, auto
    }
    assert_equal_answers(direct["onnx"], direct["sklearn"])
    pd.testing.assert_frame_equal(direct[None], direct["onnx"])
    assert plane.server.load(ref).runtime("auto")[0].name == "onnx"


def forest_frame(rows: int = 3000) -> pd.DataFrame:
    X, y = make_classification(rows, 20, n_informative=10, n_classes=3, random_state=0)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(20)])
    frame["label"] = np.array(["low", "mid", "high"])[y]
    return frame


def train_model(volume, frame: pd.DataFrame, estimator: str, **hyperparameters) -> ModelRef:
    config = TrainConfig.model_validate({
        "kind": "TrainConfig", "target": "label",
        "model": {"name": "m", "kind": "classification", "estimator": estimator, "hyperparameters": hyperparameters},
    })  # fmt: skip
    result = train(frame, config, StepContext(volume=volume, run_id="r1", step="train", mode="train"), {})
    return ModelRef("m", result["version"])


def test_forest_of_100_trees_on_20_features_answers_alike_on_both_runtimes(volume):
    frame = forest_frame()
    ref = train_model(volume, frame, "sklearn.ensemble.RandomForestClassifier", n_estimators=100, random_state=0)
    card = ModelRegistry(volume).model_card(ref)
    assert card.inference.runtimes["onnx"].exact
    assert card.inference.runtimes["onnx"].check["input_dtype"] == "float32"

    plane = DataPlane(ModelServer(volume, worker="predict-0"))
    raw = forest_frame(600).drop(columns="label")
    answers = {
        r: plane.infer(InferenceRequest("m", raw, version=ref.version, runtime=r)).frame for r in ("onnx", "sklearn")
    }
    assert_equal_answers(answers["onnx"], answers["sklearn"])

    served = plane.server.load(ref)  # the batch path: a workflow's batch through DataPlane.run
    batch = {r: plane.run(served, raw, request_id="b", source="bus", runtime=r) for r in ("onnx", "sklearn")}
    assert_equal_answers(batch["onnx"], batch["sklearn"])

    bad = raw.head(3).assign(f0=[0.0, np.inf, np.nan])  # ONNX Runtime would answer; auto asks scikit-learn
    with pytest.raises(DataError, match=r"infinity|NaN"):
        plane.infer(InferenceRequest("m", bad, version=ref.version))


def test_a_model_skl2onnx_cannot_convert_keeps_sklearn_and_the_card_says_why(volume):
    ref = train_model(volume, forest_frame(500), "sklearn.neighbors.NearestCentroid")
    card = ModelRegistry(volume).model_card(ref)
    onnx = card.inference.runtimes["onnx"]
    assert not onnx.available and onnx.file is None
    assert "skl2onnx cannot convert it" in onnx.reason and "NearestCentroid" in onnx.reason
    assert "model.onnx" not in card.sha256

    plane = DataPlane(ModelServer(volume, worker="predict-0"))
    raw = forest_frame(50).drop(columns="label")
    out = plane.infer(InferenceRequest("m", raw, version=ref.version)).frame  # auto: scikit-learn
    assert len(out) == 50 and plane.server.load(ref).runtime("auto")[0].name == "sklearn"
    with pytest.raises(RefusedError, match=r"no onnx runtime.*skl2onnx cannot convert"):
        plane.infer(InferenceRequest("m", raw, version=ref.version, runtime="onnx"))
