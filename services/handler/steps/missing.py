"""Missing values: drop the rows that have them (`drop_na`) or fill them in (`fill_na`)."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas.api import types
from pydantic import Field, model_validator

from mlrm.errors import DataError
from mlrm.steps import register

from .base import HandlerStep, drop_rows, json_value, option_error, with_columns

Strategy = Literal["value", "mean", "median", "mode"]


@register
class DropNa(HandlerStep):
    """Drop the rows that have missing values (NaN, None, NaT) in the given columns."""

    curates = True  # drops rows: left out of inference pipelines unless `inference: true`

    example = {"columns": ["x"]}
    step: Literal["drop_na"]
    """The step type: `drop_na`."""
    columns: list[str] | None = Field(default=None, min_length=1)
    """Columns to look at; all columns when omitted."""
    how: Literal["any", "all"] = "any"
    """`any`: drop a row if any of the columns is missing; `all`: only if all of them are."""

    def transform(self, df: pd.DataFrame, state: dict[str, Any] | None) -> pd.DataFrame:
        columns = self.check_columns(df, self.columns)
        missing = df[columns].isna()
        return drop_rows(df, ~(missing.any(axis=1) if self.how == "any" else missing.all(axis=1)))


@register
class FillNa(HandlerStep):
    """Fill missing values with a fixed value, or with each column's mean, median or mode.

    `mean`, `median` and `mode` are learned from the training data and stored with
    the model, so predictions fill with the training statistics. Without `columns`
    they apply to every numeric column (`mean`, `median`) or every column (`mode`).
    """

    example = {"strategy": "median", "columns": ["x"]}
    step: Literal["fill_na"]
    """The step type: `fill_na`."""
    columns: list[str] | None = Field(default=None, min_length=1)
    """Columns to fill; all (suitable) columns when omitted."""
    strategy: Strategy = "value"
    """What to fill with: the fixed `value`, or the column's `mean`, `median` or `mode` (most frequent value)."""
    value: bool | int | float | str | None = None
    """The fill value; required with strategy `value`, not allowed with the others."""

    stateful = True  # statistics for mean/median/mode; strategy `value` learns nothing

    @model_validator(mode="after")
    def _check_value(self) -> FillNa:
        if self.strategy == "value" and self.value is None:
            raise option_error("fill_na", "value", "is required when 'strategy' is 'value' (the default)")
        if self.strategy != "value" and self.value is not None:
            raise option_error("fill_na", "value", f"is not allowed with strategy '{self.strategy}'", self.value)
        if isinstance(self.value, float) and not math.isfinite(self.value):
            raise option_error("fill_na", "value", "must be a finite number", self.value)
        return self

    def needs_whole_stream(self, fitting: bool) -> bool:
        return fitting and self.strategy != "value"

    def fit(self, df: pd.DataFrame) -> dict[str, Any]:
        if self.strategy == "value":
            return {}
        if self.columns is None:
            columns = [c for c in df.columns if self.strategy == "mode" or _is_number(df[c])]
        else:
            columns = self.check_columns(df, self.columns)
        return {"fill": {str(c): json_value(self._statistic(df[c], c)) for c in columns}}

    def _statistic(self, column: pd.Series, name: str) -> Any:
        if self.strategy == "mode":
            modes = column.mode(dropna=True)
            return modes.iloc[0] if len(modes) else None
        if not _is_number(column):
            raise DataError(
                f"step 'fill_na': strategy '{self.strategy}' needs a numeric column, "
                f"but column '{name}' has dtype {column.dtype}"
            )
        return column.mean() if self.strategy == "mean" else column.median()

    def transform(self, df: pd.DataFrame, state: dict[str, Any] | None) -> pd.DataFrame:
        if self.strategy == "value":
            fills = dict.fromkeys(self.check_columns(df, self.columns), self.value)
        else:
            stored = (state or {}).get("fill", {})
            if self.columns is None:  # the columns seen when fitting
                wanted = [c for c in stored if c in df.columns]
            else:
                wanted = self.check_columns(df, self.columns)
            if absent := [c for c in wanted if c not in stored]:
                raise DataError(
                    f"step 'fill_na': no learned {self.strategy} for column(s) {', '.join(absent)}; "
                    "predict with the step config the model was trained with"
                )
            fills = {c: stored[c] for c in wanted}
        learned = self.strategy != "value"
        changed = {}
        for name, value in fills.items():
            column = df[name]
            filled = _fill(column, name, value, learned)
            if filled is not column:  # most batches have no gaps: their columns stay as they are
                changed[name] = filled
        return with_columns(df, changed) if changed else df


def _is_number(column: pd.Series) -> bool:
    return types.is_numeric_dtype(column.dtype) and not types.is_bool_dtype(column.dtype)


def _fill(column: pd.Series, name: str, value: Any, learned: bool) -> pd.Series:
    """``column.fillna(value)``, widening the dtype first when it cannot hold ``value``."""
    if value is None or not column.hasnans:
        return column
    try:
        if learned and isinstance(value, str):  # JSON has no time type: times are stored as ISO text
            if types.is_datetime64_any_dtype(column.dtype):
                value = pd.Timestamp(value)
            elif types.is_timedelta64_dtype(column.dtype):
                value = pd.Timedelta(value)
        return _widen(column, value).fillna(value)
    except (TypeError, ValueError) as exc:
        raise DataError(f"step 'fill_na': cannot fill column '{name}' ({column.dtype}) with {value!r}: {exc}") from None


def _widen(column: pd.Series, value: Any) -> pd.Series:
    """``column`` in a dtype that can hold ``value`` (pandas refuses to upcast on fillna)."""
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return column if value in dtype.categories else column.cat.add_categories([value])
    if isinstance(value, bool):
        fits = types.is_bool_dtype(dtype)
    elif isinstance(value, (int, float)):
        if types.is_integer_dtype(dtype) and not float(value).is_integer():
            return column.astype("Float64")  # a nullable Int64 column filled with its mean
        fits = _is_number(column)
    elif isinstance(value, str):
        fits = types.is_string_dtype(dtype)
    elif isinstance(value, pd.Timestamp):
        fits = types.is_datetime64_any_dtype(dtype)
    else:
        fits = isinstance(value, pd.Timedelta) and types.is_timedelta64_dtype(dtype)
    return column if fits or dtype == np.dtype(object) else column.astype(object)
