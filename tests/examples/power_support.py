"""The Keras power example in tests: its data, and V2 clients' forecasts for one window of raw rows."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from tests.conftest import CONFIGS

POWER = CONFIGS / "power"
MODELS = ("power-gru", "power-cnn-lstm")


def generate(folder: Path) -> tuple[Path, Path]:
    """The example's own script: six weeks of history, and the week (672 readings) to forecast from."""
    spec = importlib.util.spec_from_file_location("power_generate", POWER / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate(folder)


def triton(module_name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gevent and friends announce deprecations on import
        return importlib.import_module(f"tritonclient.{module_name}")


def v2_forecast(module, client, model: str, raw: pd.DataFrame) -> pd.DataFrame:
    """Raw rows (timestamp text, power) as two V2 inputs; the answer as a frame like the batch output."""
    times = np.asarray(raw["timestamp"].astype(str).tolist(), dtype=object)
    timestamp = module.InferInput("timestamp", [len(raw)], "BYTES")
    timestamp.set_data_from_numpy(times)
    power = module.InferInput("power", [len(raw)], "FP64")
    power.set_data_from_numpy(raw["power"].to_numpy(dtype=np.float64))
    result = client.infer(model, [timestamp, power], model_version="candidate")
    stamps = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("timestamp")]
    return pd.DataFrame({
        "timestamp": pd.to_datetime(stamps), "horizon": result.as_numpy("horizon"),
        "prediction": result.as_numpy("prediction"),
    })  # fmt: skip
