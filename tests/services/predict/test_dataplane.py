"""The data plane: one path for every caller, lifecycle hooks that see every prediction, and
versions whose cards predate the recorded pipeline."""

from __future__ import annotations

import json
import uuid

import pandas as pd
import pytest

from mlrm.errors import RefusedError, RegistryError
from mlrm.registry import ModelRef, ModelRegistry
from services.predict.dataplane import DataPlane, InferenceRequest
from services.predict.server import ModelServer
from tests.conftest import CONFIGS

IRIS = CONFIGS / "iris"
FLOWERS = pd.read_csv(IRIS / "new_flowers.csv")


@pytest.fixture
def trained(mlrm):
    assert mlrm.run(IRIS / "train.yaml", timeout=120).status == "succeeded"
    return mlrm


def test_on_predict_sees_every_prediction_whoever_asks(trained):
    seen = []
    predict = trained.service("predict")
    predict.dataplane.on_predict.append(seen.append)

    assert trained.run(IRIS / "predict.yaml", timeout=120).status == "succeeded"  # a workflow batch
    predict.infer("iris-classifier", FLOWERS.head(3), alias="production", keep=["id"])  # a direct request
    try:
        from mlrm.integrations.nameko import NamekoResponder, NamekoRpcClient
        from services.predict.rpc import methods
        from tests.support import BROKER_URL, broker_up

        if broker_up():
            name = f"predict_{uuid.uuid4().hex[:8]}"
            with NamekoResponder(BROKER_URL, name, methods(predict)), NamekoRpcClient(BROKER_URL) as client:
                client.call(name, "infer", model="iris-classifier", records=[{"sepal_length": 5.0, "sepal_width": 3.4,
                            "petal_length": 1.5, "petal_width": 0.2}])  # fmt: skip
    finally:
        predict.dataplane.on_predict.remove(seen.append)

    sources = [e.source for e in seen]
    assert sources[0] == "bus" and "direct" in sources
    assert "nameko" in sources or not broker_up()
    assert all(e.ref == ModelRef("iris-classifier", 1) for e in seen)
    batch = seen[0]
    assert len(batch.inputs) == len(batch.outputs) == 30
    assert batch.inputs["sepal_length"].tolist() == FLOWERS["sepal_length"].tolist()  # raw, as sent
    assert abs(batch.features["sepal_length"].mean()) < 1.0  # standard-scaled: what the model saw
    assert set(batch.outputs.columns) >= {"id", "prediction", "proba_setosa"}
    direct = seen[sources.index("direct")]
    assert direct.outputs["id"].tolist() == [1, 2, 3] and direct.request_id


def test_a_failing_subscriber_never_fails_the_request(trained):
    def broken(event):
        raise RuntimeError("a monitoring bug")

    predict = trained.service("predict")
    predict.dataplane.on_predict.append(broken)
    try:
        out, _ = predict.infer("iris-classifier", FLOWERS.head(2), alias="production")
    finally:
        predict.dataplane.on_predict.remove(broken)
    assert len(out) == 2


def test_on_load_and_on_unload(trained):
    server = ModelServer(trained.volume, worker="w")
    loaded, unloaded = [], []
    server.on_load.append(loaded.append)
    server.on_unload.append(unloaded.append)
    from mlrm.deployments import Deployments, DeployRequest

    deps = Deployments(trained.volume)
    dep = deps.create(DeployRequest(model="iris-classifier", version=1))
    server.sync()
    assert [m.ref for m in loaded] == [ModelRef("iris-classifier", 1)]
    assert loaded[0].stages and loaded[0].card.inference.pipeline  # the pipeline came with it
    deps.unload(dep.id)
    server.sync()
    assert [m.ref for m in unloaded] == [ModelRef("iris-classifier", 1)]


def test_a_card_written_before_pipelines_were_recorded_still_answers_the_same(trained):
    registry = ModelRegistry(trained.volume, signer=None)
    ref = ModelRef("iris-classifier", 1)
    now = DataPlane(ModelServer(trained.volume, worker="a")).infer(InferenceRequest("iris-classifier", FLOWERS))
    card = registry.card(ref)
    for field in ("schema_version",):
        card.pop(field)
    for field in ("pipeline", "inputs", "outputs"):
        card["inference"].pop(field)
    card["inference"]["artefact"].pop("flavour")
    trained.volume.put_json(f"{ref.prefix}card.json", card)  # as the previous mlrm wrote it
    old = DataPlane(ModelServer(trained.volume, worker="b")).infer(InferenceRequest("iris-classifier", FLOWERS))
    pd.testing.assert_frame_equal(old.frame, now.frame)

    card["schema_version"] = 99
    trained.volume.put_json(f"{ref.prefix}card.json", card)
    with pytest.raises(RegistryError, match=r"schema version 99, which this mlrm .* cannot read"):
        DataPlane(ModelServer(trained.volume, worker="c")).infer(InferenceRequest("iris-classifier", FLOWERS))


def test_a_version_whose_pipeline_drops_rows_refuses_direct_requests_and_says_why(mlrm, tmp_path):
    workflow = (IRIS / "train.yaml").read_text().replace("clean-train.yaml", str(tmp_path / "clean.yaml"))
    clean = (IRIS / "clean-train.yaml").read_text().replace(
        '    expr: "sepal_length > 0 and petal_length >= 0"',
        '    expr: "sepal_length > 0 and petal_length >= 0"\n    inference: true',
    )
    (tmp_path / "clean.yaml").write_text(clean)
    for name in ("collect-train.yaml", "features.yaml", "model.yaml"):
        workflow = workflow.replace(name, str(IRIS / name))
    (tmp_path / "train.yaml").write_text(workflow)
    assert mlrm.run(tmp_path / "train.yaml", timeout=120).status == "succeeded"
    card = ModelRegistry(mlrm.volume).card(ModelRef("iris-classifier", 1))
    assert [s["config"]["step"] for s in card["inference"]["pipeline"]] == ["filter", "fill_na", "standard_scale"]
    with pytest.raises(RefusedError, match=r"step 'filter' of 'clean' in its inference pipeline drops rows"):
        mlrm.service("predict").infer("iris-classifier", FLOWERS, alias="production")
    assert mlrm.run(IRIS / "predict.yaml", timeout=120).status == "succeeded"  # batch workflows still served
    assert json.dumps(card)  # and the card says what the pipeline is
