"""Time-series features built from neighbouring rows: lags and rolling-window statistics.

These steps see the whole stream at once, in order (optionally sorted by `order_by`). At prediction
time the batch must therefore carry enough history rows before the rows to score.
"""

from __future__ import annotations

from typing import Annotated, Literal

import pandas as pd
from pydantic import AfterValidator, Field, model_validator

from mlrm.steps import register

from .base import Columns, FeatureStep

Stat = Literal["mean", "std", "min", "max", "sum"]


def _distinct(values: list) -> list:
    if len(set(values)) != len(values):
        raise ValueError(f"each value may be listed once. Got {values}.")
    return values


class _WindowStep(FeatureStep):
    """Shared by the window steps: ordering the stream and dropping its warm-up rows."""

    columns: Columns
    """Numeric columns to derive features from."""
    order_by: str | None = None
    """Sort the rows by this column first (stably); by default rows are taken in stream order."""
    drop_na: bool = True
    """Drop the first rows, which lack a full history (the output index is renumbered from 0 either way)."""

    def needs_whole_stream(self, fitting: bool) -> bool:
        return True

    def keeps_rows(self) -> bool:
        return not self.drop_na

    def _ordered(self, df: pd.DataFrame) -> pd.DataFrame:
        self.check_columns(df, [*self.columns, *([self.order_by] if self.order_by else [])])
        if self.order_by is not None:
            df = df.sort_values(self.order_by, kind="stable")
        return df.reset_index(drop=True)

    def _finish(self, ordered: pd.DataFrame, new: dict[str, pd.Series], warmup: int) -> pd.DataFrame:
        out = self.add_columns(ordered, pd.DataFrame(new, index=ordered.index))
        if self.drop_na:
            out = out.iloc[warmup:].reset_index(drop=True)
        return out


@register
class Lag(_WindowStep):
    """Add the values of earlier rows as `<column>_lag<k>` columns."""

    example = {"columns": ["x"], "lags": [1, 2]}
    step: Literal["lag"]
    """Step type: `lag`."""
    lags: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1), AfterValidator(_distinct)]
    """How many rows back to look, e.g. `[1, 7]`; each at least 1."""

    def transform(self, df: pd.DataFrame, state: dict | None) -> pd.DataFrame:
        ordered = self._ordered(df)
        new = {f"{c}_lag{k}": ordered[c].shift(k) for c in self.columns for k in self.lags}
        return self._finish(ordered, new, warmup=max(self.lags))


@register
class Rolling(_WindowStep):
    """Add statistics of a sliding window of earlier rows as `<column>_roll<window>_<stat>` columns."""

    example = {"columns": ["x"], "window": 2, "stats": ["mean", "max"]}
    step: Literal["rolling"]
    """Step type: `rolling`."""
    window: int = Field(ge=1)
    """Number of rows in the window."""
    stats: Annotated[list[Stat], Field(min_length=1), AfterValidator(_distinct)] = ["mean"]
    """Statistics of the window to add (`std` is the sample standard deviation)."""
    min_periods: int | None = Field(default=None, ge=1)
    """Fewest values a window needs to give a statistic (default: `window`)."""
    shift: int = Field(default=1, ge=0)
    """Rows between a row and the end of its window; the default 1 keeps a row's own value out of its features."""

    @model_validator(mode="after")
    def _check_periods(self) -> Rolling:
        if self.min_periods is not None and self.min_periods > self.window:
            raise ValueError(
                f"The 'min_periods' option of step 'rolling' must be at most 'window' ({self.window}). "
                f"Got {self.min_periods}."
            )
        return self

    def transform(self, df: pd.DataFrame, state: dict | None) -> pd.DataFrame:
        ordered = self._ordered(df)
        values = self.numeric_values(ordered, self.columns)
        new = {}
        for i, column in enumerate(self.columns):
            windows = pd.Series(values[:, i]).shift(self.shift).rolling(self.window, min_periods=self.min_periods)
            for stat in self.stats:
                new[f"{column}_roll{self.window}_{stat}"] = windows.agg(stat)
        warmup = self.shift + (self.min_periods or self.window) - 1
        return self._finish(ordered, new, warmup)
