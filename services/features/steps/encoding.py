"""Categorical encoders: the categories are learned at training time and stored with the model."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from mlrm.errors import DataError
from mlrm.steps import register

from .base import Columns, FeatureStep


def category_labels(series: pd.Series) -> np.ndarray:
    """Values as string labels (None when missing); a whole float reads as an int so `3.0` and `3` agree."""
    labels = series.astype(str).to_numpy(dtype=object)
    if pd.api.types.is_float_dtype(series):
        num = series.to_numpy(dtype=np.float64, na_value=np.nan)
        whole = np.isfinite(num) & (num % 1 == 0) & (np.abs(num) < 2**53)
        labels[whole] = num[whole].astype(np.int64).astype(str)
    labels[series.isna().to_numpy()] = None
    return labels


class _Encoder(FeatureStep):
    """Shared by the encoders: learning the categories of each column and coding values against them."""

    stateful: ClassVar[bool] = True
    columns: Columns
    """Categorical columns to encode; missing values are never a category."""

    def _learn(self, df: pd.DataFrame, limit: int | None = None) -> dict[str, Any]:
        self.check_columns(df, self.columns)
        categories = {}
        for column in self.columns:
            counts = pd.Series(category_labels(df[column])).value_counts()
            keep = [str(label) for label in counts.index]
            if limit is not None and len(keep) > limit:
                keep = sorted(keep, key=lambda label: (-counts[label], label))[:limit]
            categories[column] = sorted(keep)
        return {"categories": categories}

    def _codes(self, df: pd.DataFrame, column: str, categories: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Position of each value in ``categories`` (-1 if not there) and a mask of the unknown, non-missing ones."""
        labels = category_labels(df[column])
        codes = pd.Index(categories, dtype=object).get_indexer(labels)
        return codes, (codes < 0) & pd.notna(labels)


@register
class OneHot(_Encoder):
    """One-hot encode categorical columns into `<column>=<category>` indicator columns (0.0 / 1.0)."""

    step: Literal["one_hot"]
    """Step type: `one_hot`."""
    handle_unknown: Literal["ignore", "error"] = "ignore"
    """A category not seen at training time: `ignore` encodes it as all zeros, `error` rejects the batch."""
    drop_original: bool = True
    """Drop the encoded columns, keeping only their indicators."""
    max_categories: int | None = Field(default=None, ge=1)
    """Keep only this many most frequent categories per column (ties alphabetically); rarer ones become all zeros."""

    @model_validator(mode="after")
    def _check_unknown(self) -> OneHot:
        if self.max_categories is not None and self.handle_unknown == "error":
            raise ValueError(
                "The 'max_categories' option of step 'one_hot' needs handle_unknown 'ignore' "
                "(rarer categories are encoded as all zeros). Got 'error'."
            )
        return self

    def fit(self, df: pd.DataFrame) -> dict[str, Any]:
        return self._learn(df, self.max_categories)

    def transform(self, df: pd.DataFrame, state: dict[str, Any] | None) -> pd.DataFrame:
        learned = self.require_state(state)["categories"]
        self.check_columns(df, self.columns)
        blocks, names = [], []
        for column in self.columns:
            categories = learned[column]
            codes, unknown = self._codes(df, column, categories)
            if self.handle_unknown == "error" and unknown.any():
                seen = ", ".join(repr(v) for v in pd.unique(category_labels(df[column])[unknown])[:5])
                raise DataError(
                    f"step 'one_hot': column '{column}' has value(s) {seen} not seen at training time "
                    f"(set handle_unknown: ignore to encode them as all zeros)"
                )
            blocks.append(codes[:, None] == np.arange(len(categories)))
            names += [f"{column}={category}" for category in categories]
        encoded = pd.DataFrame(np.hstack(blocks).astype(np.float64), index=df.index, columns=names)
        kept = df.drop(columns=self.columns) if self.drop_original else df
        return self.add_columns(kept, encoded)


@register
class OrdinalEncode(_Encoder):
    """Replace categorical columns by the float position of their value among the sorted training categories."""

    step: Literal["ordinal_encode"]
    """Step type: `ordinal_encode`."""
    unknown_value: float = -1
    """Code given to a category not seen at training time (missing values stay missing, NaN)."""

    def fit(self, df: pd.DataFrame) -> dict[str, Any]:
        return self._learn(df)

    def transform(self, df: pd.DataFrame, state: dict[str, Any] | None) -> pd.DataFrame:
        learned = self.require_state(state)["categories"]
        self.check_columns(df, self.columns)
        coded = np.empty((len(df), len(self.columns)), dtype=np.float64)
        for i, column in enumerate(self.columns):
            codes, unknown = self._codes(df, column, learned[column])
            coded[:, i] = np.where(codes >= 0, codes, np.nan)
            coded[unknown, i] = self.unknown_value
        return self.replace_columns(df, self.columns, coded)
