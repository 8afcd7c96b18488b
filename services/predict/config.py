"""The predict service's config: which model, what to output, and where to write it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

import services.predict.sinks  # noqa: F401 - registers the built-in sinks
from mlrm.config import ConfigModel, Section, as_value_error
from mlrm.registry import check_name
from mlrm.steps import registry


class ModelSelector(Section):
    """A registered model, by alias or version (the latest version when neither is given)."""

    name: str
    """Registry name of the model."""
    alias: str | None = None
    """Alias to serve, e.g. `production`. Resolved once when a run starts."""
    version: int | None = Field(None, ge=1)
    """A fixed version number."""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return as_value_error(check_name, v)

    @model_validator(mode="after")
    def _one(self) -> ModelSelector:
        if self.alias is not None and self.version is not None:
            raise ValueError("give either 'alias' or 'version', not both")
        return self


class PredictConfig(ConfigModel):
    """Predict: loads a model version from the registry (hash verified) and predicts each batch."""

    kind: Literal["PredictConfig"] = "PredictConfig"
    model: ModelSelector
    """The model to serve."""
    probabilities: bool = True
    """For classifiers, add a `proba_<class>` column per class."""
    prediction_column: str = "prediction"
    """Name of the output column holding the prediction."""
    keep: list[str] = Field(default_factory=list)
    """Input columns copied to the output beside the prediction (e.g. an id)."""
    sink: registry.union("sink") | None = None  # type: ignore[valid-type]
    """Where predictions are written (`csv`, `jsonl`, `parquet`: a `path` or a volume `key`);
    defaults to the volume object `predictions/<run id>.parquet`."""
    node: str | None = None
    """Run on the predict replicas with this node label. Chosen for you when the model is
    deployed in strict mode on exactly one node."""
    trusted_types: list[str] = Field(default_factory=list)
    """Exact type names (e.g. `numpy.log1p`) the model artefact may contain beyond scikit-learn's estimators
    and the internal types of `mlrm.trust`; a version with a verified signature also brings its own."""

    @field_validator("keep")
    @classmethod
    def _keep_once(cls, keep: list[str]) -> list[str]:
        twice = list(dict.fromkeys(c for c in keep if keep.count(c) > 1))
        if twice:
            raise ValueError(f"lists {', '.join(map(repr, twice))} more than once")
        return keep
