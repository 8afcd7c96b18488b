"""lag and rolling: features from earlier rows of the whole, ordered stream."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from mlrm.errors import DataError
from mlrm.testing import check_transform_step
from services.features.steps import Lag, Rolling


@pytest.fixture
def series() -> pd.DataFrame:
    return pd.DataFrame({"t": [1, 2, 3, 4, 5], "x": [10.0, 20.0, 30.0, 40.0, 50.0], "k": list("abcde")})


def test_conformance_and_whole_stream(series: pd.DataFrame) -> None:
    lag = Lag(step="lag", columns=["x", "k"], lags=[1, 2])
    rolling = Rolling(step="rolling", columns=["x"], window=2, stats=["mean", "std"])
    for window_step in (lag, rolling):
        check_transform_step(window_step, series)
        assert window_step.needs_whole_stream(fitting=True) and window_step.needs_whole_stream(fitting=False)


def test_lag_values(series: pd.DataFrame) -> None:
    out = Lag(step="lag", columns=["x"], lags=[1, 2]).transform(series, None)
    assert out["x"].tolist() == [30.0, 40.0, 50.0]
    assert out["x_lag1"].tolist() == [20.0, 30.0, 40.0]
    assert out["x_lag2"].tolist() == [10.0, 20.0, 30.0]
    assert out.index.tolist() == [0, 1, 2]
    kept = Lag(step="lag", columns=["x"], lags=[1], drop_na=False).transform(series, None)
    assert kept["x_lag1"].tolist()[1:] == [10.0, 20.0, 30.0, 40.0] and np.isnan(kept["x_lag1"].iloc[0])


def test_lag_orders_by_a_column_first(series: pd.DataFrame) -> None:
    shuffled = series.iloc[[3, 0, 4, 2, 1]]
    out = Lag(step="lag", columns=["k"], lags=[1], order_by="t").transform(shuffled, None)
    assert out["k"].tolist() == ["b", "c", "d", "e"]
    assert out["k_lag1"].tolist() == ["a", "b", "c", "d"]
    assert shuffled.index.tolist() == [3, 0, 4, 2, 1]  # the input is untouched


def test_rolling_values(series: pd.DataFrame) -> None:
    out = Rolling(step="rolling", columns=["x"], window=2, stats=["mean", "min", "max", "sum"]).transform(series, None)
    assert out["x"].tolist() == [30.0, 40.0, 50.0]  # the first 2 rows lack a full window before them
    assert out["x_roll2_mean"].tolist() == [15.0, 25.0, 35.0]
    assert out["x_roll2_min"].tolist() == [10.0, 20.0, 30.0]
    assert out["x_roll2_max"].tolist() == [20.0, 30.0, 40.0]
    assert out["x_roll2_sum"].tolist() == [30.0, 50.0, 70.0]


def test_rolling_shift_keeps_the_current_row_out() -> None:
    spike = pd.DataFrame({"x": [0.0, 0.0, 100.0]})
    shifted = Rolling(step="rolling", columns=["x"], window=1, stats=["max"]).transform(spike, None)
    assert shifted["x_roll1_max"].tolist() == [0.0, 0.0]  # the 100 row sees only the row before it
    current = Rolling(step="rolling", columns=["x"], window=1, stats=["max"], shift=0).transform(spike, None)
    assert current["x_roll1_max"].tolist() == [0.0, 0.0, 100.0]


def test_rolling_min_periods(series: pd.DataFrame) -> None:
    out = Rolling(step="rolling", columns=["x"], window=3, min_periods=1).transform(series, None)
    assert out["x_roll3_mean"].tolist() == [10.0, 15.0, 20.0, 30.0]


def test_errors(series: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="k must be numeric"):
        Rolling(step="rolling", columns=["k"], window=2).transform(series, None)
    with pytest.raises(DataError, match="when"):
        Lag(step="lag", columns=["x"], lags=[1], order_by="when").transform(series, None)


@pytest.mark.parametrize(
    "options",
    [
        {"step": "rolling", "columns": ["x"], "window": 0},
        {"step": "rolling", "columns": ["x"], "window": 2, "shift": -1},
        {"step": "rolling", "columns": ["x"], "window": 2, "min_periods": 3},
        {"step": "rolling", "columns": ["x"], "window": 2, "stats": ["median"]},
        {"step": "lag", "columns": ["x"], "lags": [0]},
        {"step": "lag", "columns": ["x"], "lags": []},
        {"step": "lag", "columns": ["x"], "lags": [1, 1]},
    ],
)
def test_validation(options: dict) -> None:
    cls = Rolling if options["step"] == "rolling" else Lag
    with pytest.raises(ValidationError):
        cls.model_validate(options)


def test_validation_messages() -> None:
    with pytest.raises(ValidationError, match=r"window\n.*greater than or equal to 1"):
        Rolling.model_validate({"step": "rolling", "columns": ["x"], "window": 0})
    with pytest.raises(ValidationError, match=r"lags\.0\n.*greater than or equal to 1"):
        Lag.model_validate({"step": "lag", "columns": ["x"], "lags": [0]})
    with pytest.raises(ValidationError, match="'min_periods' option of step 'rolling' must be at most 'window'"):
        Rolling.model_validate({"step": "rolling", "columns": ["x"], "window": 2, "min_periods": 3})
