"""The collector's config: one source, read in batches."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

import services.collector.sources  # noqa: F401 - registers the built-in sources
from mlrm.config import ConfigModel
from mlrm.steps import registry


class CollectorConfig(ConfigModel):
    """Data Collector: reads raw records from a source and emits them in batches."""

    kind: Literal["CollectorConfig"] = "CollectorConfig"
    source: registry.union("source")  # type: ignore[valid-type]
    """Where the data comes from: `csv`, `jsonl`, `parquet`, `records`, `http`, or your own class."""
    batch_size: int = Field(10_000, ge=1)
    """Rows per message. Large inputs stream batch by batch; memory stays flat."""
    limit: int | None = Field(None, ge=0)
    """Stop after this many rows."""
