"""The ``records`` source: rows written inline in the YAML config (small fixtures, smoke tests)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
from pydantic import Field

from mlrm.steps import register
from services.collector.sources.base import TabularSource, records_in_batches

if TYPE_CHECKING:
    from mlrm.context import StepContext


@register
class RecordsSource(TabularSource):
    """Rows given inline in the config, one mapping per row; keys missing from a row are null."""

    example = {"records": [{"x": 1.0, "color": "red"}, {"x": 2.5, "color": None}]}
    step: Literal["records"]
    """Step type: `records`."""
    records: list[dict[str, Any]] = Field(min_length=1)
    """The rows, e.g. `[{x: 1, y: a}, {x: 2, y: b}]`."""

    def read(self, ctx: StepContext, batch_size: int) -> Iterator[pd.DataFrame]:
        self.check_columns(dict.fromkeys(key for record in self.records for key in record), "records")
        for chunk in records_in_batches(self.records, batch_size):
            yield self.frame_from_records(chunk, "records", strict=False)
