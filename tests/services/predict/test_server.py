"""Predict replicas: hot reload of aliases under load, deployments (open/strict), decommissioning."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.dummy import DummyClassifier

from mlrm.bus.memory import MemoryBus
from mlrm.context import ModelRef
from mlrm.deployments import Deployments, DeployRequest
from mlrm.errors import ConfigError, RefusedError, RegistryError
from mlrm.registry import ARTEFACT, ModelRegistry
from services.predict.dataplane import DataPlane, InferenceRequest
from services.predict.server import ModelServer
from services.predict.service import PredictService

X = pd.DataFrame({"x": np.arange(4, dtype=float)})


@pytest.fixture
def volume(any_volume):
    """Deployments and hot reload must work on the local folder and on S3 alike."""
    return any_volume


def publish_constant(registry: ModelRegistry, label: str, name: str = "m") -> ModelRef:
    model = DummyClassifier(strategy="constant", constant=label).fit(X, ["a", "b", "a", "b"])
    ref = ModelRef(name, registry.reserve_version(name))
    card = {
        "modelkind": "classification", "featurelist": [{"name": "x", "type": "float64"}],
        "inference": {"classes": ["a", "b"]}, "modelperform": {"metrics": {"accuracy": 0.5}}, "tags": {},
    }  # fmt: skip
    registry.publish(ref, {ARTEFACT: sio.dumps(model)}, card)
    return ref


def test_alias_switch_under_load_fails_no_request(volume):
    registry = ModelRegistry(volume)
    v1, v2 = publish_constant(registry, "a"), publish_constant(registry, "b")
    registry.set_alias("m", "production", v1.version)
    service = PredictService(MemoryBus(), volume, watch_interval=0.02, worker="predict-0")
    service.start()
    results: list[tuple[float, float, int, str]] = []  # (started, finished, version, label)
    errors: list[Exception] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                out, ref = service.infer("m", X, alias="production")
                results.append((started, time.monotonic(), ref.version, out["prediction"].iloc[0]))
            except Exception as exc:  # any failure is a test failure
                errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    wait_until(lambda: len(results) >= 20, "answers from version 1")
    switched = time.monotonic()
    registry.set_alias("m", "production", v2.version)
    wait_until(lambda: any(r[2] == 2 for r in results), "the watcher to switch to version 2")
    first_v2 = min(r[1] for r in list(results) if r[2] == 2)
    wait_until(lambda: sum(r[0] > first_v2 for r in list(results)) >= 20, "answers after the switch")
    stop.set()
    for t in threads:
        t.join()
    service.stop()

    assert errors == []
    assert {r[2] for r in results if r[0] < switched} == {1}
    # Once one request was answered by version 2, every request started later is too.
    assert {(r[2], r[3]) for r in results if r[0] > first_v2} == {(2, "b")}
    assert all((v, label) in {(1, "a"), (2, "b")} for _, _, v, label in results)  # never a mixed answer


def wait_until(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_strict_deployments_load_only_on_their_node(volume):
    registry = ModelRegistry(volume)
    publish_constant(registry, "a")
    deps = Deployments(volume)
    site_a = ModelServer(volume, worker="predict-a", node="site-a")
    site_b = ModelServer(volume, worker="predict-b", node="site-b")
    dep = deps.create(DeployRequest(model="m", version=1, mode="strict", node="site-a"))
    assert deps.get(dep.id).status == "queued"
    site_a.sync()
    site_b.sync()
    assert site_a.loaded() == [ModelRef("m", 1)] and site_b.loaded() == []
    assert [x["worker"] for x in deps.loaded_at(dep.id)] == ["predict-a"]
    assert deps.get(dep.id).status == "active"
    assert DataPlane(site_a).infer(InferenceRequest("m", X, version=1)).ref == ModelRef("m", 1)
    with pytest.raises(RefusedError, match="strict mode for node"):
        DataPlane(site_b).infer(InferenceRequest("m", X, version=1))

    open_dep = deps.create(DeployRequest(model="m", version=1, mode="open"))
    site_b.sync()
    assert site_b.loaded() == [ModelRef("m", 1)]
    assert [x["worker"] for x in deps.loaded_at(open_dep.id)] == ["predict-b"]


def test_decommission_is_unload_then_delete_when_unreferenced(volume):
    registry = ModelRegistry(volume)
    publish_constant(registry, "a")
    publish_constant(registry, "b")
    registry.set_alias("m", "production", 1)
    deps = Deployments(volume)
    server = ModelServer(volume, worker="predict-0")
    dep = deps.create(DeployRequest(model="m", version=1))
    server.sync()
    assert deps.loaded_at(dep.id)

    with pytest.raises(ConfigError, match="unload it first"):
        deps.delete(dep.id)
    deps.unload(dep.id)
    server.sync()
    assert deps.loaded_at(dep.id) == [] and ModelRef("m", 1) not in server.loaded()
    assert registry.versions("m") == [1, 2]  # unloaded, still in the registry

    with pytest.raises(RegistryError, match="alias 'production'"):
        deps.delete(dep.id)
    registry.set_alias("m", "production", 2)
    deps.delete(dep.id)
    assert registry.versions("m") == [2]
    assert deps.get(dep.id).status == "deleted"


def test_deploy_request_validation(volume):
    with pytest.raises(ValueError, match="needs 'node'"):
        DeployRequest(model="m", version=1, mode="strict")
    with pytest.raises(ValueError, match="not both"):
        DeployRequest(model="m", version=1, alias="production")


@pytest.mark.parametrize(
    ("keep", "column", "collides"),
    [(["proba_b"], "prediction", "proba_b"), (["id"], "proba_a", "proba_a"), (["id", "id"], "prediction", "id")],
)
def test_output_columns_that_collide_with_the_models_classes_are_refused(volume, keep, column, collides):
    """Only the model knows its classes: keep [proba_b] with a class 'b' would overwrite an input column."""
    server = ModelServer(volume, worker="predict-0")
    model = server.load(publish_constant(ModelRegistry(volume), "a"))
    df = X.assign(id=range(4), proba_b=[9.0] * 4)
    with pytest.raises(ConfigError, match=rf"output column\(s\) {collides} would be written twice"):
        model.predict(df, keep=keep, column=column)
    out = model.predict(df, keep=keep[:1], column=column, probabilities=False).frame  # no probability columns: fine
    assert list(out.columns) == [keep[0], column] and out[keep[0]].tolist() == df[keep[0]].tolist()
