"""The features service's config: a list of feature-extraction steps applied in order."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

import services.features.steps  # noqa: F401 - registers the built-in steps
from mlrm.config import ConfigModel
from mlrm.steps import registry


class FeaturesConfig(ConfigModel):
    """Feature extraction: scaling, encoding, time features, windows.

    Statistics learned while training (means, scales, categories) are stored with
    the model version and re-applied unchanged at prediction time.
    """

    kind: Literal["FeaturesConfig"] = "FeaturesConfig"
    steps: list[registry.union("features")] = Field(default_factory=list)  # type: ignore[valid-type]
    """Feature steps, applied in order."""
    batch_size: int | None = Field(None, ge=1)
    """Rows per batch after a step that needs the whole stream (fitting, windows) re-batches it."""
