"""standard_scale and minmax_scale: statistics learned at fit time are the ones applied afterwards."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from mlrm.errors import DataError, StepError
from mlrm.testing import check_transform_step
from services.features.steps import MinmaxScale, StandardScale


def stored(step, df: pd.DataFrame) -> dict:
    """Fit, then round-trip the state through JSON as the model registry does."""
    return json.loads(json.dumps(step.fit(df)))


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"a": [1, 2, 3, 4], "b": [10.0, 20.0, np.nan, 40.0], "label": ["x", "y", "x", "y"]})


def test_conformance(frame: pd.DataFrame) -> None:
    check_transform_step(StandardScale(step="standard_scale"), frame)
    check_transform_step(StandardScale(step="standard_scale", columns=["b"], with_mean=False), frame)
    check_transform_step(MinmaxScale(step="minmax_scale", clip=True), frame)


def test_standard_scale_applies_the_stored_mean_not_the_batch_one() -> None:
    step = StandardScale(step="standard_scale")
    state = stored(step, pd.DataFrame({"x": [5.0, 15.0]}))  # mean 10, population std 5
    assert state == {"columns": ["x"], "mean": [10.0], "scale": [5.0]}
    out = step.transform(pd.DataFrame({"x": [45.0, 55.0]}), state)  # this batch's mean is 50
    assert out["x"].tolist() == [7.0, 9.0]


def test_standard_scale_resolves_numeric_columns_at_fit_time(frame: pd.DataFrame) -> None:
    step = StandardScale(step="standard_scale")
    state = stored(step, frame)
    assert state["columns"] == ["a", "b"]
    assert all(isinstance(v, float) for v in state["mean"] + state["scale"])
    out = step.transform(frame, state)
    assert out["label"].tolist() == frame["label"].tolist()
    assert out["a"].dtype == np.float64
    assert out["a"].mean() == pytest.approx(0.0)
    assert np.isnan(out["b"].iloc[2])


def test_standard_scale_options_and_zero_deviation() -> None:
    df = pd.DataFrame({"c": [3.0, 3.0], "x": [0.0, 4.0]})
    assert stored(StandardScale(step="standard_scale"), df)["scale"] == [1.0, 2.0]
    assert stored(StandardScale(step="standard_scale", with_mean=False), df)["mean"] == [0.0, 0.0]
    assert stored(StandardScale(step="standard_scale", with_std=False), df)["scale"] == [1.0, 1.0]
    step = StandardScale(step="standard_scale")
    assert step.transform(df, stored(step, df))["c"].tolist() == [0.0, 0.0]


def test_scaler_errors(frame: pd.DataFrame) -> None:
    step = StandardScale(step="standard_scale", columns=["a", "b"])
    state = stored(step, frame)
    with pytest.raises(DataError, match="b"):
        step.transform(frame.drop(columns=["b"]), state)
    with pytest.raises(DataError, match="label must be numeric"):
        StandardScale(step="standard_scale", columns=["label"]).fit(frame)
    with pytest.raises(DataError, match="no values"):
        step.fit(frame.assign(b=np.nan))
    with pytest.raises(StepError, match="fitted"):
        step.transform(frame, None)


def test_minmax_scale_uses_the_training_range() -> None:
    step = MinmaxScale(step="minmax_scale", feature_range=(-1, 1))
    state = stored(step, pd.DataFrame({"x": [0.0, 10.0], "k": [7, 7]}))
    assert state == {"columns": ["x", "k"], "min": [0.0, 7.0], "max": [10.0, 7.0]}
    out = step.transform(pd.DataFrame({"x": [5.0, 20.0], "k": [7, 7]}), state)
    assert out["x"].tolist() == [0.0, 3.0]  # 20 lies outside the training range, so outside feature_range
    assert out["k"].tolist() == [-1.0, -1.0]  # constant at training time: maps to low
    clipped = MinmaxScale(step="minmax_scale", feature_range=(-1, 1), clip=True)
    assert clipped.transform(pd.DataFrame({"x": [-5.0, 20.0], "k": [7, 7]}), state)["x"].tolist() == [-1.0, 1.0]


def test_validation() -> None:
    with pytest.raises(ValidationError, match=r"'feature_range' option of step 'minmax_scale'.*Got \[1, 0\]"):
        MinmaxScale.model_validate({"step": "minmax_scale", "feature_range": [1, 0]})
    with pytest.raises(ValidationError, match="more than once"):
        StandardScale.model_validate({"step": "standard_scale", "columns": ["a", "a"]})
    with pytest.raises(ValidationError):
        StandardScale.model_validate({"step": "standard_scale", "columns": []})
    with pytest.raises(ValidationError, match=r"unknown field .with_means.; did you mean .with_mean."):
        StandardScale.model_validate({"step": "standard_scale", "with_means": True})
