"""Which columns there are and what they are called: `rename`, `select`, `drop_columns`."""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

import pandas as pd
from pydantic import Field, field_validator

from mlrm.errors import DataError
from mlrm.steps import register

from .base import HandlerStep, option_error


def _repeated(names: list[str]) -> list[str]:
    return [name for name, count in Counter(names).items() if count > 1]


@register
class Rename(HandlerStep):
    """Rename columns, e.g. `{ "Sepal Length": sepal_length }`. Other columns are left as they are."""

    example = {"columns": {"x": "y"}}
    step: Literal["rename"]
    """The step type: `rename`."""
    columns: dict[str, str] = Field(min_length=1)
    """Old name -> new name, for each column to rename."""

    @field_validator("columns")
    @classmethod
    def _distinct(cls, columns: dict[str, str]) -> dict[str, str]:
        if twice := _repeated(list(columns.values())):
            raise option_error("rename", "columns", f"gives several columns the same new name {twice[0]!r}")
        return columns

    def transform(self, df: pd.DataFrame, state: dict[str, Any] | None) -> pd.DataFrame:
        self.check_columns(df, list(self.columns))
        out = df.rename(columns=self.columns)
        if twice := _repeated(list(out.columns)):
            raise DataError(
                f"step 'rename': after renaming, column(s) {', '.join(map(str, twice))} "
                "appear more than once; rename or drop the existing column(s) first"
            )
        return out


@register
class Select(HandlerStep):
    """Keep exactly these columns, in this order; every other column is dropped."""

    example = {"columns": ["x", "n"]}
    step: Literal["select"]
    """The step type: `select`."""
    columns: list[str] = Field(min_length=1)
    """The columns to keep, in the order they should appear."""

    @field_validator("columns")
    @classmethod
    def _distinct(cls, columns: list[str]) -> list[str]:
        if twice := _repeated(columns):
            raise option_error("select", "columns", f"lists {twice[0]!r} more than once", columns)
        return columns

    def transform(self, df: pd.DataFrame, state: dict[str, Any] | None) -> pd.DataFrame:
        return df[self.check_columns(df, self.columns)]


@register
class DropColumns(HandlerStep):
    """Drop the given columns; every other column is kept, in its order."""

    example = {"columns": ["flag"]}
    step: Literal["drop_columns"]
    """The step type: `drop_columns`."""
    columns: list[str] = Field(min_length=1)
    """The columns to drop."""
    missing: Literal["error", "ignore"] = "error"
    """What to do when a column is not in the data: `error` (stop) or `ignore` (drop the others)."""

    def transform(self, df: pd.DataFrame, state: dict[str, Any] | None) -> pd.DataFrame:
        if self.missing == "error":
            self.check_columns(df, self.columns)
        return df.drop(columns=[c for c in self.columns if c in df.columns])
