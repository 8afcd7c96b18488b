"""Numeric scalers: learn per-column statistics at training time, apply the stored ones afterwards."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from mlrm.errors import DataError
from mlrm.steps import register

from .base import Columns, FeatureStep, floats


class _Scaler(FeatureStep):
    """Shared by the scalers: resolving columns and checking fit data."""

    stateful: ClassVar[bool] = True
    columns: Columns | None = None
    """Columns to scale; by default every numeric column present at training time."""
    restore: list[str] = Field(default_factory=list)
    """Scaled columns the model forecasts (e.g. `[power]` behind a `sliding_window`): their forecasts are
    mapped back to the original units after the model, with the same statistics."""

    @model_validator(mode="after")
    def _restore_scaled(self) -> _Scaler:
        stray = [c for c in self.restore if self.columns is not None and c not in self.columns]
        if stray:
            raise ValueError(f"restore: column(s) {', '.join(stray)} are not among the scaled columns")
        return self

    @property
    def postprocesses(self) -> bool:  # only the columns it restores
        return bool(self.restore)

    def postprocess(self, outputs: pd.DataFrame, features: pd.DataFrame, state: dict[str, Any] | None) -> pd.DataFrame:
        present = [c for c in self.restore if c in outputs.columns]
        if not present:
            return outputs
        state = self.require_state(state)
        index = [state["columns"].index(c) for c in present]
        return self.replace_columns(outputs, present, self.inverse(self.numeric_values(outputs, present), state, index))

    def inverse(self, values: np.ndarray, state: dict[str, Any], index: list[int]) -> np.ndarray:
        raise NotImplementedError

    def _fit_values(self, df: pd.DataFrame) -> tuple[list[str], np.ndarray]:
        if self.columns is None:
            columns = list(df.select_dtypes(include="number").columns)
        else:
            columns = self.check_columns(df, self.columns)
        values = self.numeric_values(df, columns)
        empty = [c for c, seen in zip(columns, np.isfinite(values).any(axis=0), strict=True) if not seen]
        if empty:
            raise DataError(f"step '{self.step}': column(s) {', '.join(map(str, empty))} have no values to learn from")
        infinite = [c for c, inf in zip(columns, np.isinf(values).any(axis=0), strict=True) if inf]
        if infinite:
            raise DataError(f"step '{self.step}': column(s) {', '.join(map(str, infinite))} contain infinite values")
        return columns, values


@register
class StandardScale(_Scaler):
    """Standardise numeric columns: subtract the training mean, divide by the training standard deviation."""

    example = {"columns": ["x", "n"]}
    step: Literal["standard_scale"]
    """Step type: `standard_scale`."""
    with_mean: bool = True
    """Subtract the mean learned at training time."""
    with_std: bool = True
    """Divide by the (population) standard deviation learned at training time; a zero deviation divides by 1."""

    def fit(self, df: pd.DataFrame) -> dict[str, Any]:
        columns, values = self._fit_values(df)
        n = values.shape[1]
        mean = np.nanmean(values, axis=0) if self.with_mean else np.zeros(n)
        std = np.nanstd(values, axis=0) if self.with_std else np.ones(n)
        scale = np.where(std > 0, std, 1.0)
        return {"columns": columns, "mean": floats(mean), "scale": floats(scale)}

    def transform(self, df: pd.DataFrame, state: dict[str, Any] | None) -> pd.DataFrame:
        state = self.require_state(state)
        columns = state["columns"]
        values = self.numeric_values(df, columns)
        scaled = (values - np.asarray(state["mean"])) / np.asarray(state["scale"])
        return self.replace_columns(df, columns, scaled)

    def inverse(self, values: np.ndarray, state: dict[str, Any], index: list[int]) -> np.ndarray:
        return values * np.asarray(state["scale"])[index] + np.asarray(state["mean"])[index]


@register
class MinmaxScale(_Scaler):
    """Rescale numeric columns linearly so the training minimum and maximum map onto `feature_range`."""

    example = {"columns": ["x"]}
    step: Literal["minmax_scale"]
    """Step type: `minmax_scale`."""
    feature_range: tuple[float, float] = (0.0, 1.0)
    """Target `[low, high]` for the training range; a column constant at training time maps to `low`."""
    clip: bool = False
    """Clip values outside the training range to `feature_range` (otherwise they land outside it)."""

    @model_validator(mode="after")
    def _check_range(self) -> MinmaxScale:
        low, high = self.feature_range
        if not low < high:
            raise ValueError(
                f"The 'feature_range' option of step 'minmax_scale' must be [low, high] with low < high. "
                f"Got [{low:g}, {high:g}]."
            )
        return self

    def fit(self, df: pd.DataFrame) -> dict[str, Any]:
        columns, values = self._fit_values(df)
        return {"columns": columns, "min": floats(np.nanmin(values, axis=0)), "max": floats(np.nanmax(values, axis=0))}

    def transform(self, df: pd.DataFrame, state: dict[str, Any] | None) -> pd.DataFrame:
        state = self.require_state(state)
        columns = state["columns"]
        low, high = self.feature_range
        lo, hi = np.asarray(state["min"]), np.asarray(state["max"])
        span = np.where(hi > lo, hi - lo, 1.0)
        scaled = low + (self.numeric_values(df, columns) - lo) / span * (high - low)
        if self.clip:
            scaled = np.clip(scaled, low, high)
        return self.replace_columns(df, columns, scaled)

    def inverse(self, values: np.ndarray, state: dict[str, Any], index: list[int]) -> np.ndarray:
        low, high = self.feature_range
        lo, hi = np.asarray(state["min"])[index], np.asarray(state["max"])[index]
        span = np.where(hi > lo, hi - lo, 1.0)
        return lo + (values - low) / (high - low) * span
