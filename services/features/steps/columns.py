"""Choosing which columns go on to training."""

from __future__ import annotations

from typing import Literal

import pandas as pd

from mlrm.steps import register

from .base import Columns, FeatureStep


@register
class Select(FeatureStep):
    """Keep exactly the listed columns, in the listed order (typically the model's features and target)."""

    example = {"columns": ["x", "when"]}
    step: Literal["select"]
    """Step type: `select`."""
    columns: Columns
    """The columns to keep, in order."""

    def transform(self, df: pd.DataFrame, state: dict | None) -> pd.DataFrame:
        return df[self.check_columns(df, self.columns)]
