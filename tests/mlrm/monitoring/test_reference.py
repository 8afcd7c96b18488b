"""Reference statistics are recorded with every version at training time, verified like its other files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlrm.errors import RegistryError
from mlrm.monitoring import REFERENCE_FILE, load_reference, reference_statistics
from mlrm.monitoring.reference import summarize
from mlrm.registry import ModelRegistry
from tests.mlrm.monitoring.conftest import FEATURES


def test_a_trained_version_carries_its_reference_statistics(iris):
    registry = ModelRegistry(iris.volume)
    ref = registry.resolve("iris-classifier", alias="production")
    card = registry.model_card(ref)
    assert REFERENCE_FILE in card.sha256  # signed and hashed like the artefact
    reference = load_reference(registry, ref)
    assert reference is not None and reference.kind == "classification"
    assert reference.rows == 150 and reference.prediction_rows == 150  # 30 hold-out rows: too few, all rows instead
    assert set(reference.features) == set(FEATURES)
    petal = reference.features["petal_length"]
    assert petal.kind == "numeric" and abs(petal.mean) < 1e-6  # standard-scaled: what the model saw
    assert len(petal.quantiles) == 101 and sum(petal.counts) == 150 and len(petal.sample) == 150
    assert reference.target.kind == "categorical"
    assert reference.target.frequencies == pytest.approx({"setosa": 1 / 3, "versicolor": 1 / 3, "virginica": 1 / 3})
    assert reference.predictions["prediction"].kind == "categorical"
    assert {"proba_setosa", "proba_versicolor", "proba_virginica"} <= set(reference.predictions)
    assert reference.metrics == pytest.approx(card.metrics)


def test_a_tampered_reference_is_refused(iris):
    registry = ModelRegistry(iris.volume)
    ref = registry.resolve("iris-classifier", alias="production")
    key = f"{ref.prefix}{REFERENCE_FILE}"
    original = iris.volume.get_bytes(key)
    data = json.loads(original)
    data["rows"] = 1
    iris.volume.put_bytes(key, json.dumps(data).encode())
    try:
        with pytest.raises(RegistryError, match="sha256"):
            load_reference(registry, ref)
    finally:
        iris.volume.put_bytes(key, original)


def test_summaries_of_numbers_and_categories():
    rng = np.random.default_rng(0)
    numbers = summarize(pd.Series(np.r_[rng.normal(size=5000), [np.nan] * 10]))
    assert numbers.count == 5000 and numbers.missing == 10 and len(numbers.sample) == 1000
    assert len(numbers.cuts) == 9 and all(abs(c - 500) <= 1 for c in numbers.counts)  # deciles: equal bins
    labels = summarize(pd.Series([1, 1.0, 2, 2, 2]), categorical=True)
    assert labels.frequencies == {"2": 0.6, "1": 0.4}  # 1 and 1.0 are one class
    reference = reference_statistics(pd.DataFrame({"x": [1.0, 2.0]}), None, None, kind="regression",
                                     metrics={"rmse": 1.5, "log_loss": float("nan")})  # fmt: skip
    assert reference.metrics == {"rmse": 1.5} and reference.target is None
