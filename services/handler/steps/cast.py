"""Change column types: `cast`."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas.api import types
from pydantic import Field, model_validator

from mlrm.errors import DataError
from mlrm.steps import register

from .base import HandlerStep, json_value, option_error, with_columns

Target = Literal["int", "float", "str", "bool", "datetime", "category"]

_BOOLEANS = {
    **dict.fromkeys(["true", "t", "yes", "y", "1", "1.0", "on"], True),
    **dict.fromkeys(["false", "f", "no", "n", "0", "0.0", "off"], False),
}


@register
class Cast(HandlerStep):
    """Convert columns to another type, e.g. `{ age: int, signup: datetime }`.

    `int` columns with missing values become nullable integers (`Int64`), `bool`
    ones nullable booleans. Text converts to `bool` from true/false, yes/no, y/n,
    t/f, on/off and 1/0 (any case), numbers from 1 and 0. Numbers convert to
    `datetime` as text, e.g. `20240131` with `datetime_format: "%Y%m%d"`.

    The categories of `category` columns are learned from the training data and
    stored with the model, so predictions use the same ones; a value outside them
    counts as a value that does not convert.
    """

    example = {"dtypes": {"n": "float", "color": "category"}}
    step: Literal["cast"]
    """The step type: `cast`."""
    dtypes: dict[str, Target] = Field(min_length=1)
    """Column -> type to convert it to: `int`, `float`, `str`, `bool`, `datetime` or `category`."""
    errors: Literal["raise", "null"] = "raise"
    """A value that does not convert: `raise` stops with an error naming it; `null` makes it missing."""
    datetime_format: str | None = None
    """How `datetime` columns are written, as a strftime format such as `%d/%m/%Y %H:%M`;
    ISO 8601 (`2024-03-01`, `2024-03-01T12:30:00`) when omitted, `mixed` to guess each value."""

    stateful = True  # the categories of `category` columns; other types learn nothing

    @model_validator(mode="after")
    def _check_format(self) -> Cast:
        if self.datetime_format is not None and "datetime" not in self.dtypes.values():
            raise option_error(
                "cast",
                "datetime_format",
                "only applies to columns cast to 'datetime', and 'dtypes' has none",
                self.datetime_format,
            )
        return self

    def needs_whole_stream(self, fitting: bool) -> bool:
        return fitting and "category" in self.dtypes.values()

    def fit(self, df: pd.DataFrame) -> dict[str, Any]:
        wanted = [name for name, target in self.dtypes.items() if target == "category"]
        if not wanted:
            return {}
        self.check_columns(df, wanted)
        return {"categories": {name: [json_value(v) for v in _categories(df[name])] for name in wanted}}

    def transform(self, df: pd.DataFrame, state: dict[str, Any] | None) -> pd.DataFrame:
        self.check_columns(df, list(self.dtypes))
        categories = (state or {}).get("categories", {})
        if absent := [n for n, t in self.dtypes.items() if t == "category" and n not in categories]:
            raise DataError(
                f"step 'cast': no learned categories for column(s) {', '.join(absent)}; "
                "predict with the step config the model was trained with"
            )
        return with_columns(
            df, {name: self._cast(df[name], name, target, categories.get(name)) for name, target in self.dtypes.items()}
        )

    def _cast(self, column: pd.Series, name: str, target: Target, categories: list[Any] | None) -> pd.Series:
        if target == "str":
            return column.astype("str")  # keeps missing values missing
        converted = self._convert(column, target, categories or [])
        bad = column.notna() & converted.isna()
        if self.errors == "raise" and bad.any():
            value = json_value(column[bad].iloc[0])
            unseen = " (not one of the categories learned in training)" if target == "category" else ""
            raise DataError(
                f"step 'cast': column '{name}' has value {value!r} that cannot be converted to "
                f"{target}{unseen}; set errors: null to make such values missing"
            )
        if target == "int":
            return converted.astype("Int64" if converted.hasnans else "int64")
        if target == "bool":
            return converted.astype("boolean" if converted.hasnans else bool)
        return converted

    def _convert(self, column: pd.Series, target: Target, categories: list[Any]) -> pd.Series:
        """The converted values, with NaN/NaT where a value did not convert."""
        if target == "category":
            return _categorical(column, categories)
        if isinstance(column.dtype, pd.CategoricalDtype):
            column = column.astype(object)
        if target == "datetime":
            if types.is_datetime64_any_dtype(column.dtype):
                return column
            if types.is_float_dtype(column.dtype) and (column.dropna() % 1 == 0).all():
                column = column.astype("Int64")  # 20240131.0 -> "20240131"
            if types.is_numeric_dtype(column.dtype):
                column = column.astype("str")
            try:
                return pd.to_datetime(column, errors="coerce", format=self.datetime_format or "ISO8601")
            except (TypeError, ValueError) as exc:  # e.g. mixed time zones
                raise DataError(f"step 'cast': column '{column.name}' cannot be converted to datetime: {exc}") from None
        if target == "bool":
            if types.is_bool_dtype(column.dtype):
                return column
            if types.is_numeric_dtype(column.dtype):
                return column.map({1: True, 0: False})
            return column.astype("str").str.strip().str.lower().map(_BOOLEANS)
        numbers = pd.to_numeric(column, errors="coerce")
        if types.is_bool_dtype(numbers.dtype):
            numbers = numbers.astype("Int64" if numbers.hasnans else "int64")
        if target == "float":
            return numbers.astype("float64")
        if types.is_integer_dtype(numbers.dtype):
            return numbers
        numbers = numbers.astype("float64")
        whole = (np.floor(numbers) == numbers) & (numbers.abs() < 2**63)  # not 2.5, inf or NaN
        return numbers.where(whole)


def _categories(column: pd.Series) -> pd.Index:
    """The distinct values of ``column``, sorted when they can be."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.categories
    return pd.Categorical(column.dropna()).categories


def _categorical(column: pd.Series, categories: list[Any]) -> pd.Series:
    """``column`` as a categorical of exactly ``categories``; other values become missing."""
    known = pd.Index(categories)
    codes = known.get_indexer(np.asarray(column, dtype=object))
    return pd.Series(pd.Categorical.from_codes(codes, categories=known), index=column.index, name=column.name)
