"""time_features: calendar features of a timestamp, stateless and row-local."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from mlrm.errors import DataError
from mlrm.testing import check_transform_step
from services.features.steps import TimeFeatures


def step(**options) -> TimeFeatures:
    return TimeFeatures.model_validate({"step": "time_features", "column": "ts", **options})


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"ts": ["2024-01-01 06:00", "2024-03-15T13:30:00", None, "2024-12-31 23:59"], "v": range(4)})


def test_conformance(frame: pd.DataFrame) -> None:
    check_transform_step(step(), frame)
    check_transform_step(step(cyclical=False, drop_original=True), frame)
    check_transform_step(step(features=["month"]), frame.assign(ts=pd.to_datetime(frame["ts"], format="ISO8601")))


def test_cyclical_values_for_a_known_timestamp(frame: pd.DataFrame) -> None:
    out = step().transform(frame, None)
    first = out.iloc[0]  # 2024-01-01 06:00, a Monday
    assert first["ts_hour_sin"] == 1.0
    assert first["ts_hour_cos"] == pytest.approx(0.0, abs=1e-12)
    for feature in ("day_of_week", "day_of_year", "month"):  # all at the start of their cycle
        assert first[f"ts_{feature}_sin"] == 0.0
        assert first[f"ts_{feature}_cos"] == 1.0
    assert out.columns.tolist()[:2] == ["ts", "v"]
    assert (out.drop(columns=["ts", "v"]).dtypes == np.float64).all()
    assert out.iloc[2, 2:].isna().all()  # a missing timestamp gives missing features


def test_plain_numbers(frame: pd.DataFrame) -> None:
    out = step(cyclical=False, drop_original=True).transform(frame, None)
    assert list(out.columns) == ["v", "ts_hour", "ts_day_of_week", "ts_day_of_year", "ts_month"]
    assert out.iloc[1].tolist() == [1, 13.0, 4.0, 75.0, 3.0]  # 2024-03-15 is a Friday, leap year


def test_format_option() -> None:
    out = step(format="%d/%m/%Y %H:%M", features=["hour"]).transform(pd.DataFrame({"ts": ["02/01/2024 18:00"]}), None)
    assert list(out.columns) == ["ts", "ts_hour_sin", "ts_hour_cos"]
    assert out["ts_hour_sin"].iloc[0] == pytest.approx(-1.0)


def test_bad_timestamps_name_the_column() -> None:
    with pytest.raises(DataError, match="column 'ts' does not hold timestamps: 'soon'"):
        step().transform(pd.DataFrame({"ts": ["2024-01-01", "soon"]}), None)
    with pytest.raises(DataError, match="column 'ts' does not hold timestamps: it is numeric"):
        step().transform(pd.DataFrame({"ts": [1, 2]}), None)
    with pytest.raises(DataError, match="ts"):
        step().transform(pd.DataFrame({"other": ["2024-01-01"]}), None)


def test_validation() -> None:
    with pytest.raises(ValidationError, match="listed once"):
        step(features=["hour", "hour"])
    with pytest.raises(ValidationError):
        step(features=["week"])
    with pytest.raises(ValidationError):
        step(features=[])
