"""The base of every built-in handler step, and helpers the steps share."""

from __future__ import annotations

from typing import Any, ClassVar

import pandas as pd

from mlrm.steps import Kind, TransformStep

_UNSET: Any = object()


class HandlerStep(TransformStep):
    """A data-cleaning step of the handler service: a DataFrame in, a DataFrame out."""

    kind: ClassVar[Kind] = "handler"


def option_error(step: str, option: str, problem: str, got: Any = _UNSET) -> ValueError:
    """A validation error in the house style.

    ``option_error("rolling", "window", "must be an integer >= 1", 0)`` reads
    "The 'window' option of step 'rolling' must be an integer >= 1. Got 0."
    """
    text = f"The '{option}' option of step '{step}' {problem}."
    if got is not _UNSET:
        text += f" Got {got!r}."
    return ValueError(text)


def json_value(value: Any) -> Any:
    """A learned statistic as plain JSON: numpy scalars unwrapped, times as ISO text, missing as None."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, (pd.Timestamp, pd.Timedelta)):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


def with_columns(df: pd.DataFrame, columns: dict[Any, pd.Series]) -> pd.DataFrame:
    """A copy of ``df`` with ``columns`` replaced; the input is never changed (copy-on-write)."""
    out = df.copy(deep=False)
    for name, column in columns.items():
        out[name] = column
    return out


def drop_rows(df: pd.DataFrame, keep: pd.Series) -> pd.DataFrame:
    """The rows where ``keep`` is true, renumbered 0..n-1 (batches are concatenated later)."""
    return df.loc[keep].reset_index(drop=True)
