"""Discovery over model cards, on models trained by the example workflows."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mlrm.discovery import ModelQuery, search
from mlrm.registry import ModelRegistry
from tests.conftest import CONFIGS

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture
def registry(mlrm, energy_data, monkeypatch):
    monkeypatch.setenv("ENERGY_DATA", str(energy_data[0]))
    for workflow in ("iris/train.yaml", "iris/train.yaml", "energy/train.yaml"):
        assert mlrm.run(CONFIGS / workflow, timeout=300).status == "succeeded"
    return ModelRegistry(mlrm.volume)


def found(registry, **query) -> list[tuple[str, int]]:
    return [(c["modelname"], c["version"]) for c in search(registry, ModelQuery(**query))]


def test_search_by_kind_features_metrics_and_tags(registry):
    assert found(registry) == [("energy-load", 1), ("iris-classifier", 2), ("iris-classifier", 1)]
    assert found(registry, kind="regression") == [("energy-load", 1)]
    assert found(registry, kind="classification", latest=True) == [("iris-classifier", 2)]
    # The caller's features must cover the model's inputs.
    assert found(registry, features=[*IRIS_FEATURES, "id"], latest=True) == [("iris-classifier", 2)]
    assert found(registry, features=IRIS_FEATURES[:3]) == []
    assert found(registry, where="accuracy >= 0.9", latest=True) == [("iris-classifier", 2)]
    assert found(registry, where="accuracy >= 0.99") == []
    assert found(registry, where="r2 > 0.8") == [("energy-load", 1)]
    assert found(registry, tags={"dataset": "energy"}) == [("energy-load", 1)]
    assert found(registry, tags={"dataset": "nope"}) == []


def test_query_is_validated():
    with pytest.raises(ValidationError):
        ModelQuery(where="accuracy.__class__")
    with pytest.raises(ValidationError):
        ModelQuery(kind="clustering")


def test_cards_carry_lineage(registry):
    card = search(registry, ModelQuery(name="energy-load"))[0]
    steps = card["lineage"]["steps"]
    assert [s["name"] for s in steps] == ["collect", "clean", "features", "train"]
    assert steps[0]["config"]["source"]["step"] == "csv"  # which input data and configs made it
