"""Extreme values: `clip`."""

from __future__ import annotations

from typing import Any, Literal

import pandas as pd
from pandas.api import types
from pydantic import Field, model_validator

from mlrm.errors import DataError
from mlrm.steps import register

from .base import HandlerStep, json_value, option_error, with_columns


@register
class Clip(HandlerStep):
    """Limit numeric columns to a range: values below it are raised to the bound, above it lowered.

    Give fixed bounds (`lower` and/or `upper`) or `quantiles`, e.g. `[0.01, 0.99]`,
    which are learned from the training data and stored with the model.
    """

    example = {"columns": ["x"], "quantiles": [0.1, 0.9]}
    step: Literal["clip"]
    """The step type: `clip`."""
    columns: list[str] = Field(min_length=1)
    """The numeric columns to clip."""
    lower: float | None = None
    """Smallest value kept; smaller ones become this. No lower bound when omitted."""
    upper: float | None = None
    """Largest value kept; larger ones become this. No upper bound when omitted."""
    quantiles: tuple[float, float] | None = None
    """`[low, high]` quantiles (0 to 1) of the training data to use as bounds, instead of `lower`/`upper`."""

    stateful = True  # quantile bounds are learned; fixed bounds learn nothing

    @model_validator(mode="after")
    def _check_bounds(self) -> Clip:
        fixed = self.lower is not None or self.upper is not None
        if fixed and self.quantiles is not None:
            raise option_error("clip", "quantiles", "cannot be combined with 'lower'/'upper'; give one or the other")
        if not fixed and self.quantiles is None:
            raise option_error("clip", "quantiles", "or 'lower'/'upper' must be given (the bounds to clip to)")
        if self.quantiles is not None and not 0 <= self.quantiles[0] < self.quantiles[1] <= 1:
            raise option_error(
                "clip", "quantiles", "must be [low, high] with 0 <= low < high <= 1", list(self.quantiles)
            )
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise option_error("clip", "lower", f"must not be above 'upper' ({self.upper})", self.lower)
        return self

    def needs_whole_stream(self, fitting: bool) -> bool:
        return fitting and self.quantiles is not None

    def fit(self, df: pd.DataFrame) -> dict[str, Any]:
        if self.quantiles is None:
            return {}
        bounds = {}
        for name in self._numeric(df):
            low, high = df[name].quantile(list(self.quantiles))
            bounds[name] = [json_value(low), json_value(high)]
        return {"bounds": bounds}

    def transform(self, df: pd.DataFrame, state: dict[str, Any] | None) -> pd.DataFrame:
        columns = self._numeric(df)
        if self.quantiles is None:
            bounds = {c: [self.lower, self.upper] for c in columns}
        else:
            bounds = (state or {}).get("bounds", {})
            if absent := [c for c in columns if c not in bounds]:
                raise DataError(
                    f"step 'clip': no learned quantiles for column(s) {', '.join(absent)}; "
                    "predict with the step config the model was trained with"
                )
        return with_columns(df, {c: df[c].clip(*bounds[c]) for c in columns})

    def _numeric(self, df: pd.DataFrame) -> list[str]:
        columns = self.check_columns(df, self.columns)
        for name in columns:
            dtype = df[name].dtype
            if not types.is_numeric_dtype(dtype) or types.is_bool_dtype(dtype):
                raise DataError(f"step 'clip': column '{name}' must be numeric to clip, but has dtype {dtype}")
        return columns
