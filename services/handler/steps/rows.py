"""Which rows to keep and in what order: `filter`, `dedupe`, `sort`."""

from __future__ import annotations

from typing import Any, Literal

import pandas as pd
from pydantic import Field, field_validator, model_validator

from mlrm.errors import ExpressionError
from mlrm.expr import compile_expression, evaluate_mask
from mlrm.steps import register

from .base import HandlerStep, drop_rows, option_error


@register
class Filter(HandlerStep):
    """Keep the rows where an expression is true, e.g. `age >= 18 and country in ['FR', 'DE']`.

    Names are columns. Allowed: comparisons, `and`/`or`/`not`, arithmetic, `in [...]`
    lists and a few functions (`isnull`, `notnull`, `lower`, `contains`, `abs`, ...).
    A row whose expression involves a missing value is dropped unless tested with `isnull`.
    """

    curates = True  # drops rows: left out of inference pipelines unless `inference: true`

    example = {"expr": "x > 2"}
    step: Literal["filter"]
    """The step type: `filter`."""
    expr: str
    """The condition a row must meet to be kept, e.g. `price > 0 and notnull(category)`."""

    @field_validator("expr")
    @classmethod
    def _compile(cls, expr: str) -> str:
        try:
            compile_expression(expr)
        except ExpressionError as exc:
            raise option_error("filter", "expr", f"is not a valid expression: {exc}") from None
        return expr

    def transform(self, df: pd.DataFrame, state: dict[str, Any] | None) -> pd.DataFrame:
        expr = compile_expression(self.expr)  # cached: compiled once per expression
        self.check_columns(df, sorted(expr.names))
        return drop_rows(df, evaluate_mask(expr, df))


@register
class Dedupe(HandlerStep):
    """Drop duplicate rows, keeping the first (or last) of each group of equal rows.

    Looks at the whole data at once, so duplicates in different batches are found.
    """

    curates = True  # drops rows: left out of inference pipelines unless `inference: true`

    example = {"columns": ["color"]}
    step: Literal["dedupe"]
    """The step type: `dedupe`."""
    columns: list[str] | None = Field(default=None, min_length=1)
    """Rows are duplicates when these columns are equal; all columns when omitted."""
    keep: Literal["first", "last"] = "first"
    """Which of the duplicates to keep: the `first` or the `last` one in the data."""

    def needs_whole_stream(self, fitting: bool) -> bool:
        return True

    def transform(self, df: pd.DataFrame, state: dict[str, Any] | None) -> pd.DataFrame:
        columns = self.check_columns(df, self.columns)
        return drop_rows(df, ~df.duplicated(subset=columns, keep=self.keep))


@register
class Sort(HandlerStep):
    """Sort the rows by one or more columns. Equal rows keep their order; missing values go last."""

    example = {"by": "x"}
    step: Literal["sort"]
    """The step type: `sort`."""
    by: str | list[str]
    """The column to sort by, or a list of columns (ties on the first are ordered by the next)."""
    ascending: bool | list[bool] = True
    """`true` for smallest first, `false` for largest first; or one such value per `by` column."""

    @field_validator("by")
    @classmethod
    def _as_list(cls, by: str | list[str]) -> list[str]:
        by = [by] if isinstance(by, str) else by
        if not by:
            raise option_error("sort", "by", "must name at least one column", by)
        return by

    @model_validator(mode="after")
    def _check_ascending(self) -> Sort:
        if isinstance(self.ascending, list) and len(self.ascending) != len(self.by):
            raise option_error(
                "sort", "ascending", f"must be one true/false or one per 'by' column ({len(self.by)})", self.ascending
            )
        return self

    def needs_whole_stream(self, fitting: bool) -> bool:
        return True

    def transform(self, df: pd.DataFrame, state: dict[str, Any] | None) -> pd.DataFrame:
        by = self.check_columns(df, list(self.by))
        out = df.sort_values(by, ascending=self.ascending, kind="stable", na_position="last")
        return out.reset_index(drop=True)
