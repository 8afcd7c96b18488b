"""The time-series example: train with time features, predict with the statistics stored at training time."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlrm.context import ModelRef
from tests.conftest import CONFIGS

ENERGY = CONFIGS / "energy"


def test_energy_trains_and_predicts(mlrm, energy_data, monkeypatch):
    history, upcoming = energy_data
    monkeypatch.setenv("ENERGY_DATA", str(history))
    monkeypatch.setenv("ENERGY_INPUT", str(upcoming))
    trained = mlrm.run(ENERGY / "train.yaml", timeout=300)
    assert trained.status == "succeeded", trained.error
    result = trained.result("train")
    assert result["metrics"]["r2"] >= 0.8 and result["aliases"] == ["production"]

    run = mlrm.run(ENERGY / "predict.yaml", timeout=120)
    assert run.status == "succeeded", run.error
    with mlrm.volume.open_read(run.result("predict")["output"].removeprefix("volume:")) as f:
        out = pd.read_csv(f)
    assert len(out) == len(pd.read_csv(upcoming))
    assert out["timestamp"].is_monotonic_increasing
    assert out["prediction"].between(0, 400).all()


def test_prediction_applies_the_stored_scaler_not_a_refitted_one(mlrm, energy_data, monkeypatch, tmp_path):
    """Inputs 25 °C warmer than anything seen in training are scaled with the training statistics."""
    history, upcoming = energy_data
    monkeypatch.setenv("ENERGY_DATA", str(history))
    assert mlrm.run(ENERGY / "train.yaml", timeout=300).status == "succeeded"

    shifted = pd.read_csv(upcoming)
    shifted["temperature"] += 25.0
    path = tmp_path / "shifted.csv"
    shifted.to_csv(path, index=False)
    monkeypatch.setenv("ENERGY_INPUT", str(path))
    # Keep the scaled temperature in the output to see exactly what the model was given.
    serve = tmp_path / "serve.yaml"
    serve.write_text((ENERGY / "serve.yaml").read_text().replace("keep: [timestamp]", "keep: [timestamp, temperature]"))
    workflow = tmp_path / "predict.yaml"
    workflow.write_text(
        (ENERGY / "predict.yaml").read_text()
        .replace("config: collect-new.yaml", f"config: {ENERGY / 'collect-new.yaml'}")
        .replace("config: clean.yaml", f"config: {ENERGY / 'clean.yaml'}")
        .replace("config: features.yaml", f"config: {ENERGY / 'features.yaml'}")
    )  # fmt: skip
    run = mlrm.run(workflow, timeout=120)
    assert run.status == "succeeded", run.error
    with mlrm.volume.open_read(run.result("predict")["output"].removeprefix("volume:")) as f:
        out = pd.read_csv(f)

    stored = mlrm.volume.get_json(f"{ModelRef('energy-load', 1).prefix}state/features.scale.json")["state"]
    i = stored["columns"].index("temperature")
    bounds = mlrm.volume.get_json(f"{ModelRef('energy-load', 1).prefix}state/clean.temperature-bounds.json")
    low, high = bounds["state"]["bounds"]["temperature"]
    raw = shifted["temperature"].clip(low, high)  # the stored clip bounds apply first
    expected = (raw - stored["mean"][i]) / stored["scale"][i]
    np.testing.assert_allclose(out["temperature"], expected, rtol=1e-9)
    # A scaler refitted on this batch would centre it at zero; the stored one does not.
    assert out["temperature"].mean() > 1.0
    assert abs(((raw - raw.mean()) / raw.std(ddof=0)).mean()) < 1e-9
