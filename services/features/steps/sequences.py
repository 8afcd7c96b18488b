"""Sliding windows for sequence models: a series of rows becomes one row per window, with its future targets.

A window of ``length`` rows of the ``inputs`` columns is flattened time-major into the columns
``<column>@<offset>`` (offset ``-(length-1)`` .. ``0``, the window's last row), so a model reshapes
a row back into ``(length, len(inputs))``; the ``targets`` of the ``horizon`` rows after it become
``<column>@+1`` .. ``<column>@+<horizon>`` (missing where the series ends: those windows are the ones a
forecast is asked for). Windows end at the last row and every ``stride`` rows before it, so the
newest window is always there. After the model, :meth:`SlidingWindow.postprocess` turns each window's
forecasts back into one row per future step, with its timestamp.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from mlrm.errors import DataError
from mlrm.steps import register

from .base import Columns, FeatureStep

HORIZON = "horizon"


def window_columns(inputs: list[str], length: int) -> list[str]:
    """The flattened window's column names, time-major: every input at offset -(length-1), then the next..."""
    return [f"{c}@{offset}" for offset in range(-(length - 1), 1) for c in inputs]


def target_columns(targets: list[str], horizon: int) -> list[str]:
    """The future values' column names, step-major: every target at +1, then at +2..."""
    return [f"{t}@+{k}" for k in range(1, horizon + 1) for t in targets]


@register
class SlidingWindow(FeatureStep):
    """Turn a time series into one row per window of `length` rows (flattened) and its next `horizon` targets."""

    example = {"inputs": ["x"], "length": 3, "targets": ["x"], "horizon": 1}
    step: Literal["sliding_window"]
    """Step type: `sliding_window`."""
    inputs: Columns
    """Numeric columns in each window, in the order of the model's feature axis."""
    length: int = Field(ge=1)
    """Rows per window, e.g. 672 (one week of 15-minute readings). A request must carry at least this many."""
    targets: list[str] = Field(default_factory=list)
    """Columns whose next `horizon` values are the model's targets (`<column>@+1` ..)."""
    horizon: int = Field(default=1, ge=0)
    """How many future rows of the targets each window predicts."""
    stride: int = Field(default=1, ge=1)
    """Rows between the ends of consecutive windows (counted back from the last row)."""
    time: str | None = None
    """Timestamp column: orders the rows, is kept as each window's last time, and dates the forecasts."""

    stateful: ClassVar[bool] = True  # learns the time between rows, to date the forecasts
    regroups: ClassVar[bool] = True

    @property
    def postprocesses(self) -> bool:  # its forecasts become one row per future step
        return True

    @model_validator(mode="after")
    def _targets_need_horizon(self) -> SlidingWindow:
        if self.targets and self.horizon == 0:
            raise ValueError("step 'sliding_window': targets need a horizon of at least 1")
        if len(set(self.targets)) != len(self.targets):
            raise ValueError(f"each target may be listed once. Got {self.targets}.")
        return self

    def needs_whole_stream(self, fitting: bool) -> bool:
        return True

    def keeps_rows(self) -> bool:
        return False

    def forecasts(self) -> list[str]:
        return list(self.targets) if self.horizon else []

    def _ordered(self, df: pd.DataFrame) -> pd.DataFrame:
        self.check_columns(df, [*self.inputs, *self.targets, *([self.time] if self.time else [])])
        if self.time is not None:
            if not pd.api.types.is_datetime64_any_dtype(df[self.time]):
                raise DataError(f"step 'sliding_window': column '{self.time}' does not hold timestamps")
            df = df.sort_values(self.time, kind="stable")
        return df.reset_index(drop=True)

    def fit(self, df: pd.DataFrame) -> dict[str, Any]:
        if self.time is None:
            return {}
        times = self._ordered(df)[self.time]
        steps = times.diff().dropna()
        if steps.empty:
            raise DataError(f"step 'sliding_window': column '{self.time}' needs two rows to learn the time step")
        return {"step_seconds": float(steps.median().total_seconds())}

    def transform(self, df: pd.DataFrame, state: dict[str, Any] | None) -> pd.DataFrame:
        ordered = self._ordered(df)
        rows = len(ordered)
        if rows < self.length:
            raise DataError(f"step 'sliding_window' needs at least {self.length} rows (one window); got {rows}")
        values = self.numeric_values(ordered, self.inputs)
        ends = np.arange(rows - 1, self.length - 2, -self.stride)[::-1]  # the last row always ends a window
        windows = np.lib.stride_tricks.sliding_window_view(values, self.length, axis=0)  # (n, F, L)
        flat = windows[ends - self.length + 1].transpose(0, 2, 1).reshape(len(ends), -1)
        out = pd.DataFrame(flat, columns=window_columns(self.inputs, self.length), copy=False)
        if self.targets:
            future = np.full((rows + self.horizon, len(self.targets)), np.nan)
            future[:rows] = self.numeric_values(ordered, self.targets)
            ahead = np.stack([future[ends + k] for k in range(1, self.horizon + 1)], axis=1)  # (n, H, T)
            target = pd.DataFrame(ahead.reshape(len(ends), -1), columns=target_columns(self.targets, self.horizon))
            out = pd.concat([out, target], axis=1)
        if self.time is not None:
            out.insert(0, self.time, ordered[self.time].to_numpy()[ends])
        return out

    def postprocess(self, outputs: pd.DataFrame, features: pd.DataFrame, state: dict[str, Any] | None) -> pd.DataFrame:
        """One row per window and future step: its time (the window's last time + k steps), `horizon` k, and the
        forecast of each target under the target's own name; other output columns are repeated."""
        names = target_columns(self.targets, self.horizon)
        if not self.targets or not all(n in outputs.columns for n in names):
            return outputs
        n, h, t = len(outputs), self.horizon, len(self.targets)
        values = outputs[names].to_numpy(dtype=np.float64).reshape(n, h, t).reshape(n * h, t)
        rest = [c for c in outputs.columns if c not in names and c != self.time and c != HORIZON]
        columns: dict[str, Any] = {c: np.repeat(outputs[c].to_numpy(), h) for c in rest}
        if self.time is not None and self.time in features.columns:
            step = pd.Timedelta(seconds=self.require_state(state)["step_seconds"])
            last = pd.DatetimeIndex(features[self.time].to_numpy()).repeat(h)
            columns[self.time] = last + step * np.tile(np.arange(1, h + 1), n)
        columns[HORIZON] = np.tile(np.arange(1, h + 1, dtype=np.int64), n)
        for i, target in enumerate(self.targets):
            columns[target] = values[:, i]
        order = [*([self.time] if self.time in columns else []), HORIZON, *rest, *self.targets]
        return pd.DataFrame({c: columns[c] for c in order})
