"""The predict service's config: which model, what to output, and where to write it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

import services.predict.sinks  # noqa: F401 - registers the built-in sinks
from mlrm.config import ConfigModel, Section, as_value_error
from mlrm.deployments import check_runtime
from mlrm.monitoring import LogSettings
from mlrm.registry import AliasName, ModelName
from mlrm.steps import registry

PROBA_PREFIX = "proba_"


class ModelSelector(Section):
    """A registered model, by alias or version (the latest version when neither is given)."""

    name: ModelName
    """Registry name of the model."""
    alias: AliasName | None = None
    """Alias to serve, e.g. `production`. Resolved once when a run starts."""
    version: int | None = Field(None, ge=1)
    """A fixed version number."""



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
    """Name of the output column holding the prediction; not `proba_...` while `probabilities` is on."""
    keep: list[str] = Field(default_factory=list)
    """Input columns copied to the output beside the prediction (e.g. an id); each once, and not the
    `prediction_column`."""
    sink: registry.union("sink") | None = None  # type: ignore[valid-type]
    """Where predictions are written (`csv`, `jsonl`, `parquet`: a `path` or a volume `key`);
    defaults to the volume object `predictions/<run id>.parquet`."""
    node: str | None = None
    """Run on the predict replicas with this node label. Chosen for you when the model is
    deployed in strict mode on exactly one node."""
    runtime: str = "auto"
    """Which of the version's runtimes predicts: `auto` (its ONNX conversion when the card says it is exact,
    else its own flavour), `sklearn`, or `onnx` (refused for a version without an exact conversion)."""
    log: LogSettings | None = None
    """Log this workflow's predictions for monitoring (`{sample: 1.0}`); off by default for batches."""
    trusted_types: list[str] = Field(default_factory=list)
    """Exact type names (e.g. `numpy.log1p`) the model artefact may contain beyond scikit-learn's estimators
    and the internal types of `mlrm.trust`; a version with a verified signature also brings its own."""

    @field_validator("runtime")
    @classmethod
    def _runtime(cls, v: str) -> str:
        return as_value_error(check_runtime, v)

    # Output columns must not collide: what is knowable from the config is checked here; the
    # probability columns against the model's classes when it is loaded (LoadedModel.predict).
    @field_validator("prediction_column")
    @classmethod
    def _not_a_probability_column(cls, v: str, info: ValidationInfo) -> str:
        if info.data.get("probabilities", True) and v.startswith(PROBA_PREFIX):
            raise ValueError(
                f"prediction_column '{v}' starts with '{PROBA_PREFIX}', which names the probability columns "
                f"({PROBA_PREFIX}<class>); choose another name, or set probabilities: false"
            )
        return v

    @field_validator("keep")
    @classmethod
    def _each_kept_once(cls, v: list[str], info: ValidationInfo) -> list[str]:
        twice = sorted({c for c in v if v.count(c) > 1})
        if twice:
            raise ValueError(f"keep lists {', '.join(map(repr, twice))} more than once")
        column = info.data.get("prediction_column")
        if column in v:
            raise ValueError(
                f"keep lists '{column}', which is also the prediction_column: the prediction would overwrite it; "
                "choose another prediction_column"
            )
        return v
