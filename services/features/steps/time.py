"""Calendar features from a timestamp column: stateless and row-local."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import AfterValidator, Field

from mlrm.errors import DataError
from mlrm.steps import register

from .base import FeatureStep

TimeFeature = Literal["hour", "day_of_week", "day_of_year", "month"]

# Period of each feature's cycle, and the value its cycle starts at (day_of_year and month count from 1).
_CYCLES: dict[str, tuple[float, int]] = {
    "hour": (24, 0),
    "day_of_week": (7, 0),
    "day_of_year": (365.25, 1),
    "month": (12, 1),
}


def _distinct(features: list[TimeFeature]) -> list[TimeFeature]:
    if len(set(features)) != len(features):
        raise ValueError(f"each feature may be listed once. Got {features}.")
    return features


@register
class TimeFeatures(FeatureStep):
    """Add hour, day of week, day of year and month features of a timestamp column, as sin/cos pairs by default."""

    example = {"column": "when"}
    step: Literal["time_features"]
    """Step type: `time_features`."""
    column: str
    """The timestamp column (datetimes, or text parsed with `format`)."""
    features: Annotated[list[TimeFeature], Field(min_length=1), AfterValidator(_distinct)] = [
        "hour",
        "day_of_week",
        "day_of_year",
        "month",
    ]
    """Which calendar features to add; day_of_week counts from Monday = 0."""
    cyclical: bool = True
    """Encode each feature as `<column>_<feature>_sin` / `_cos` so that e.g. 23:00 is next to 00:00; otherwise
    add the plain number as `<column>_<feature>`."""
    drop_original: bool = False
    """Drop the timestamp column after extracting the features."""
    format: str | None = None
    """strftime format of text timestamps, e.g. `%d/%m/%Y %H:%M`; by default they must be ISO 8601."""

    def _timestamps(self, df: pd.DataFrame) -> pd.Series:
        self.check_columns(df, [self.column])
        raw = df[self.column]
        if pd.api.types.is_datetime64_any_dtype(raw):
            return raw
        problem = f"step 'time_features': column '{self.column}' does not hold timestamps"
        if pd.api.types.is_numeric_dtype(raw):
            raise DataError(f"{problem}: it is numeric ({raw.dtype}); convert epoch numbers to datetimes first")
        try:
            parsed = pd.to_datetime(raw, format=self.format or "ISO8601", errors="coerce")
        except (TypeError, ValueError, OverflowError) as exc:
            raise DataError(f"{problem} ({exc})") from None
        bad = parsed.isna() & raw.notna()
        if bad.any():
            expected = f"format {self.format!r}" if self.format else "ISO 8601 or set the 'format' option"
            raise DataError(f"{problem}: {raw[bad].iloc[0]!r} is not a timestamp ({expected})")
        return parsed

    def transform(self, df: pd.DataFrame, state: dict | None) -> pd.DataFrame:
        ts = self._timestamps(df).dt
        numbers = {"hour": ts.hour, "day_of_week": ts.day_of_week, "day_of_year": ts.day_of_year, "month": ts.month}
        new: dict[str, np.ndarray] = {}
        for feature in self.features:
            value = numbers[feature].to_numpy(dtype=np.float64, na_value=np.nan)
            name = f"{self.column}_{feature}"
            if self.cyclical:
                period, start = _CYCLES[feature]
                angle = 2 * np.pi * (value - start) / period
                new[f"{name}_sin"], new[f"{name}_cos"] = np.sin(angle), np.cos(angle)
            else:
                new[name] = value
        kept = df.drop(columns=[self.column]) if self.drop_original else df
        return self.add_columns(kept, pd.DataFrame(new, index=df.index))
