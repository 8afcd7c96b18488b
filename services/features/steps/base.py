"""What every built-in features step shares: its kind and a few frame helpers."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import AfterValidator, Field

from mlrm.errors import DataError, StepError
from mlrm.steps import Kind, TransformStep


def _unique(columns: list[str]) -> list[str]:
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise ValueError(f"each column may be listed once. Got {', '.join(twice)} more than once.")
    return columns


Columns = Annotated[list[str], Field(min_length=1), AfterValidator(_unique)]
"""A non-empty list of distinct column names (a step option)."""


class FeatureStep(TransformStep):
    """Base of the built-in feature extraction steps."""

    kind: ClassVar[Kind] = "features"

    def require_state(self, state: dict[str, Any] | None) -> dict[str, Any]:
        """The state learned by ``fit``; a stateful step cannot run without it."""
        if not state:
            raise StepError(f"step '{self.step}' has no fitted state: it must be fitted (trained) before use")
        return state

    def numeric_values(self, df: pd.DataFrame, columns: list[str]) -> np.ndarray:
        """The columns as a float64 matrix (missing values as NaN), or a DataError naming non-numeric ones."""
        self.check_columns(df, columns)
        try:
            return df[columns].to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            bad = [c for c in columns if not pd.api.types.is_numeric_dtype(df[c])]
            raise DataError(
                f"step '{self.step}': column(s) {', '.join(map(str, bad or columns))} must be numeric"
            ) from None

    def replace_columns(self, df: pd.DataFrame, columns: list[str], values: np.ndarray) -> pd.DataFrame:
        """A copy of ``df`` whose ``columns`` hold the matching columns of ``values`` (the input is untouched)."""
        out = df.copy(deep=False)  # copy-on-write: setting columns never reaches ``df``
        for i, column in enumerate(columns):
            out[column] = values[:, i]
        return out

    def add_columns(self, df: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
        """``df`` with the columns of ``new`` appended; refuses to overwrite an existing column."""
        clash = [c for c in new.columns if c in df.columns]
        if clash:
            raise DataError(f"step '{self.step}' would overwrite existing column(s) {', '.join(map(str, clash))}")
        new = new.set_axis(df.index, axis=0)
        return pd.concat([df, new], axis=1)


def floats(values: Any) -> list[float]:
    """A JSON-native list of floats from an array or Series."""
    return [float(v) for v in np.asarray(values, dtype=np.float64)]
