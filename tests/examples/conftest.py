"""Fixtures of the example tests."""

from __future__ import annotations

import pandas as pd
import pytest

from mlrm.settings import Settings
from orchestrator.embedded import Embedded
from tests.examples.power_support import MODELS, POWER, generate


@pytest.fixture(scope="session")
def power(tmp_path_factory):
    """Both Keras forecasters trained once per session (their tests share them), and the week to forecast from."""
    tmp = tmp_path_factory.mktemp("power")
    history, week = generate(tmp / "data")
    patch = pytest.MonkeyPatch()
    patch.setenv("POWER_DATA", str(history))
    patch.setenv("POWER_INPUT", str(week))
    settings = Settings(volume=str(tmp / "volume"), state=str(tmp / "runs.sqlite"), retries=1)
    with Embedded(settings) as mlrm:
        results = {}
        for model, kind in zip(MODELS, ("gru", "cnn-lstm"), strict=True):
            run = mlrm.run(POWER / f"train-{kind}.yaml", timeout=300)
            assert run.status == "succeeded", run.error
            results[model] = run.result("train")
        yield {"mlrm": mlrm, "results": results, "raw": pd.read_csv(week)}
    patch.undo()
