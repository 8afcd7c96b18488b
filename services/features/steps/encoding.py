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


MAX_ONE_HOT = 1000
"""Indicator columns one_hot makes of one column at most: each is a float64 per row, so a column
with 10,000 distinct values would need 80 kB per row."""


@register
class OneHot(_Encoder):
    """One-hot encode categorical columns into `<column>=<category>` indicator columns (0.0 / 1.0)."""

    example = {"columns": ["color"]}
    step: Literal["one_hot"]
    """Step type: `one_hot`."""
    handle_unknown: Literal["ignore", "error"] = "ignore"
    """A category not seen at training time: `ignore` encodes it as all zeros (or as `other`), `error` rejects
    the batch."""
    drop_original: bool = True
    """Drop the encoded columns, keeping only their indicators."""
    max_categories: int | None = Field(default=None, ge=1, le=MAX_ONE_HOT)
    """Keep only this many most frequent categories per column (ties alphabetically); rarer ones become all
    zeros, or `other`. Without it, a column with more than 1000 distinct values is an error at training."""
    other: str | None = Field(default=None, min_length=1)
    """Add one more indicator per column, `<column>=<other>`, for the values outside the kept categories
    (rarer than the `max_categories` kept, or unseen at training), e.g. `other: other`."""

    @model_validator(mode="after")
    def _check_unknown(self) -> OneHot:
        for option in ("max_categories", "other"):
            if getattr(self, option) is not None and self.handle_unknown == "error":
                what = "rarer categories are encoded as all zeros" if option == "max_categories" else "see other"
                raise ValueError(
                    f"The '{option}' option of step 'one_hot' needs handle_unknown 'ignore' ({what}). Got 'error'."
                )
        return self

    def fit(self, df: pd.DataFrame) -> dict[str, Any]:
        state = self._learn(df, self.max_categories)
        for column, categories in state["categories"].items():
            if self.max_categories is None and len(categories) > MAX_ONE_HOT:
                raise DataError(
                    f"step 'one_hot': column '{column}' has {len(categories)} distinct values, more than the "
                    f"{MAX_ONE_HOT} indicator columns one_hot makes of a column; set max_categories to keep the "
                    "most frequent ones (and other: to gather the rest in one column), or use ordinal_encode"
                )
            if self.other is not None and self.other in categories:
                raise DataError(
                    f"step 'one_hot': column '{column}' has a category {self.other!r}, the name given to 'other'; "
                    "choose another name for it"
                )
        return state

    def transform(self, df: pd.DataFrame, state: dict[str, Any] | None) -> pd.DataFrame:
        learned = self.require_state(state)["categories"]
        self.check_columns(df, self.columns)
        extra = self.other is not None
        width = sum(len(learned[column]) + extra for column in self.columns)
        encoded = np.zeros((len(df), width), dtype=np.float64)  # filled in place: no per-column copies
        names: list[str] = []
        rows = np.arange(len(df))
        for column in self.columns:
            categories = learned[column]
            codes, unknown = self._codes(df, column, categories)
            if self.handle_unknown == "error" and unknown.any():
                seen = ", ".join(repr(v) for v in pd.unique(category_labels(df[column])[unknown])[:5])
                raise DataError(
                    f"step 'one_hot': column '{column}' has value(s) {seen} not seen at training time "
                    f"(set handle_unknown: ignore to encode them as all zeros)"
                )
            start = len(names)
            known = codes >= 0
            encoded[rows[known], start + codes[known]] = 1.0
            names += [f"{column}={category}" for category in categories]
            if extra:
                encoded[unknown, len(names)] = 1.0
                names.append(f"{column}={self.other}")
        frame = pd.DataFrame(encoded, index=df.index, columns=names, copy=False)
        kept = df.drop(columns=self.columns) if self.drop_original else df
        return self.add_columns(kept, frame)


@register
class OrdinalEncode(_Encoder):
    """Replace categorical columns by the float position of their value among the sorted training categories."""

    example = {"columns": ["color"]}
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
