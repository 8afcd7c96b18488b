"""The handler's config: a list of cleaning steps applied in order."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

import services.handler.steps  # noqa: F401 - registers the built-in steps
from mlrm.config import ConfigModel
from mlrm.steps import registry


class HandlerConfig(ConfigModel):
    """Data Handler: cleans, filters, imputes, casts and dedupes records."""

    kind: Literal["HandlerConfig"] = "HandlerConfig"
    steps: list[registry.union("handler")] = Field(default_factory=list)  # type: ignore[valid-type]
    """Cleaning steps, applied in order."""
    batch_size: int | None = Field(None, ge=1)
    """Rows per batch after a step that needs the whole stream (sort, dedupe) re-batches it."""
