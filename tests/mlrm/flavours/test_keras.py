"""The keras flavour: networks from YAML, reproducible fits, safe loading, one trace for every request shape."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from mlrm.errors import RegistryError
from mlrm.flavours import flavour
from mlrm.flavours import keras as keras_flavour
from services.train.config import TrainConfig

SPEC = {
    "layers": [{"layer": "Conv1D", "filters": 4, "kernel_size": 2}, {"layer": "GRU", "units": 4},
               {"layer": "Dense", "units": 2}],
    "epochs": 2, "batch_size": 8, "validation_split": 0.25, "seed": 3,
}  # fmt: skip


def config(hyperparameters: dict) -> dict:
    return {"kind": "TrainConfig", "target": "y@+*", "model": {"name": "k", "kind": "regression",
            "flavour": "keras", "hyperparameters": hyperparameters}}  # fmt: skip


def windows(n: int = 40, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sequences of 6 steps of 2 features, named like a sliding_window's columns, and 2 targets."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 12)), columns=[f"{f}@{o}" for o in range(-5, 1) for f in ("a", "b")])
    y = pd.DataFrame({"y@+1": X["a@0"] * 2, "y@+2": X["b@0"] - 1})
    return X, y


def test_a_config_needing_tensorflow_without_it_names_the_extra(monkeypatch):
    monkeypatch.setattr(keras_flavour, "find_spec", lambda name: None)  # as if TensorFlow were not installed
    extra = r"needs TensorFlow, which is not installed: pip install 'mlrm\[tensorflow\]'"
    with pytest.raises(ValidationError, match=extra):
        TrainConfig.model_validate(config(SPEC))


def test_layers_are_checked_when_the_config_is_validated():
    with pytest.raises(ValidationError, match="Lambda layers hold code and are refused"):
        TrainConfig.model_validate(config({"layers": [{"layer": "Lambda", "function": "x"}]}))
    with pytest.raises(ValidationError, match="unknown layer 'Dense2'"):
        TrainConfig.model_validate(config({"layers": [{"layer": "Dense2", "units": 1}]}))
    with pytest.raises(ValidationError, match="either `layers` or a `builder`"):
        TrainConfig.model_validate(config({"epochs": 1}))
    assert TrainConfig.model_validate(config(SPEC)).model.flavour == "keras"


def test_a_seeded_fit_is_reproducible_and_survives_save_and_load_with_one_trace():
    chosen = flavour("keras")
    X, y = windows()
    first = chosen.fit(chosen.build(None, SPEC), X, y)
    again = chosen.fit(chosen.build(None, SPEC), X, y)
    assert first.input_shape == (6, 2) and len(first.history) == 2 and "val_loss" in first.history[0]
    before = chosen.predict(first, X).values
    assert before.shape == (40, 2)
    np.testing.assert_array_equal(before, chosen.predict(again, X).values)  # same seed, same network
    from tensorflow.python.framework import config as tf_config

    assert not tf_config.is_op_determinism_enabled()  # deterministic while fitting only: serving keeps fast kernels

    file = io.BytesIO()
    chosen.save(first, file)
    loaded = chosen.load(file, trusted=[], what="test model")
    traced = loaded.call.experimental_get_tracing_count()
    assert traced == 1  # warmed up at load
    for rows in (1, 7, 40, 1):  # any batch size: the same graph
        np.testing.assert_allclose(chosen.predict(loaded, X.iloc[:rows]).values, before[:rows], rtol=1e-6)
    assert loaded.call.experimental_get_tracing_count() == traced
    described = chosen.describe(first)
    assert described["shapes"] == {"input": [-1, 6, 2], "output": [-1, 2]}


def test_a_keras_file_with_a_lambda_layer_is_refused():
    import keras

    network = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda x: x * 2), keras.layers.Dense(1)])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        network.save(path)
        with pytest.raises(RegistryError, match="Lambda, which would run code from the file; refused"):
            flavour("keras").load(io.BytesIO(path.read_bytes()), trusted=[], what="model 'x' version 1")
    with pytest.raises(RegistryError, match=r"not a readable \.keras file"):
        flavour("keras").load(io.BytesIO(b"not a zip"), trusted=[], what="model 'x' version 1")
