"""sliding_window: a series becomes windows and future targets, and forecasts become dated rows again."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from mlrm.errors import DataError
from mlrm.pipeline import postprocess
from services.features.steps import SlidingWindow, StandardScale


def series(n: int) -> pd.DataFrame:
    times = pd.date_range("2025-01-01", periods=n, freq="15min")
    return pd.DataFrame({"t": times[::-1], "x": np.arange(n, dtype=float)[::-1], "y": np.arange(n) * 10.0})


def window(**options) -> SlidingWindow:
    return SlidingWindow.model_validate({"step": "sliding_window", "inputs": ["x", "y"], "length": 3,
                                         "targets": ["x"], "horizon": 2, "time": "t", **options})  # fmt: skip


def test_windows_are_flattened_time_major_with_their_future_targets():
    df = series(6)  # given newest first: the time column orders them
    step = window()
    out = step.transform(df, step.fit(df))
    assert list(out.columns) == ["t", "x@-2", "y@-2", "x@-1", "y@-1", "x@0", "y@0", "x@+1", "x@+2"]
    assert len(out) == 4  # windows end at rows 2, 3, 4, 5
    first = out.iloc[0]
    assert first["t"] == pd.Timestamp("2025-01-01 00:30")  # the window's last time
    assert [first["x@-2"], first["y@-2"], first["x@0"], first["x@+1"], first["x@+2"]] == [0.0, 50.0, 2.0, 3.0, 4.0]
    assert out["x@+2"].isna().tolist() == [False, False, True, True]  # the future is not known yet


def test_the_newest_window_always_ends_at_the_last_row_whatever_the_stride():
    df = series(10)
    step = window(stride=4)
    out = step.transform(df, step.fit(df))
    assert list(out["t"]) == [pd.Timestamp("2025-01-01") + pd.Timedelta(minutes=15 * i) for i in (5, 9)]


def test_too_few_rows_for_one_window_is_a_clear_error():
    with pytest.raises(DataError, match="needs at least 3 rows \\(one window\\); got 2"):
        window().transform(series(2), {"step_seconds": 900.0})
    with pytest.raises(ValidationError, match="targets need a horizon"):
        window(horizon=0)


def test_forecasts_become_one_dated_row_per_future_step_in_the_original_units():
    df = series(8)
    scale = StandardScale.model_validate({"step": "standard_scale", "columns": ["x"], "restore": ["x"]})
    scale_state = scale.fit(df)
    step = window()
    windows = step.transform(scale.transform(df, scale_state), step.fit(df))
    newest = windows.iloc[[-1]].reset_index(drop=True)
    outputs = newest[["x@+1", "x@+2"]].fillna(0.5)  # what a model would answer, in scaled units
    rows = postprocess([(scale, scale_state), (step, {"step_seconds": 900.0})], outputs, newest)
    assert list(rows.columns) == ["t", "horizon", "x"]
    assert list(rows["t"]) == [pd.Timestamp("2025-01-01 02:00"), pd.Timestamp("2025-01-01 02:15")]
    assert list(rows["horizon"]) == [1, 2]
    expected = 0.5 * scale_state["scale"][0] + scale_state["mean"][0]
    np.testing.assert_allclose(rows["x"], [expected, expected])


def test_restore_names_only_scaled_columns():
    with pytest.raises(ValidationError, match="not among the scaled columns"):
        StandardScale.model_validate({"step": "standard_scale", "columns": ["x"], "restore": ["y"]})


def test_only_a_scaler_that_restores_post_processes_the_models_outputs():
    """A version whose outputs nothing changes keeps the model's own arrays (no DataFrame on the way back)."""
    plain = StandardScale.model_validate({"step": "standard_scale", "columns": ["x"]})
    restoring = StandardScale.model_validate({"step": "standard_scale", "columns": ["x"], "restore": ["x"]})
    assert not plain.postprocesses and restoring.postprocesses and window().postprocesses
