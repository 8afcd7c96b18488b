"""The training service's config: which estimator, on which target, evaluated how, registered when."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from mlrm.config import ConfigModel, Section, as_value_error
from mlrm.expr import compile_condition, compile_expression
from mlrm.flavours import flavour
from mlrm.imports import import_string
from mlrm.registry import AliasName, ModelName
from services.train.metrics import METRICS, metric_names


class ModelSpec(Section):
    """What to train and what to call it."""

    name: ModelName
    """Registry name of the model (lower-case letters, digits, '.', '_', '-')."""
    kind: Literal["classification", "regression"]
    """The task; decides the default metrics and whether class probabilities are served."""
    flavour: str = "sklearn"
    """The kind of model (`sklearn`, or a plug-in's flavour): how it is built, stored and served."""
    estimator: str | None = None
    """Dotted path of a scikit-learn estimator or Pipeline class (or your own with fit/predict),
    e.g. `sklearn.ensemble.RandomForestClassifier`; required by the `sklearn` flavour (the `keras`
    flavour's model is described by its hyperparameters)."""
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    """Constructor arguments. A value `{estimator: dotted.Name, hyperparameters: {...}}` builds a
    nested estimator (Pipeline steps, a meta-estimator's base). For `keras`: `layers` (or `builder`),
    `optimizer`, `loss`, `metrics`, `epochs`, `batch_size`, `validation_split`, `early_stopping`, `seed`."""
    description: str = ""
    """Free text for the model card."""
    tags: dict[str, str] = Field(default_factory=dict)
    """Labels for discovery, e.g. `{team: energy, site: plant-3}`."""


    @field_validator("estimator")
    @classmethod
    def _estimator(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and info.data.get("flavour", "sklearn") == "sklearn":
            as_value_error(import_string, v, what="estimator")  # fails early, with the config's line number
        return v

    @model_validator(mode="after")
    def _builds(self) -> ModelSpec:
        as_value_error(lambda: flavour(self.flavour).check(self.estimator, self.hyperparameters))
        return self


class Evaluation(Section):
    """How the model is evaluated before it is registered."""

    split: float | None = Field(0.2, gt=0, lt=1)
    """Fraction of rows held out for testing (ignored when `kfold` is set)."""
    kfold: int | None = Field(None, ge=2)
    """Cross-validate with this many folds, then fit on all rows."""
    strategy: Literal["auto", "random", "stratified", "time"] = "auto"
    """How rows are split: `time` keeps order (the last rows are the test set); `auto` is
    stratified for classification and random for regression."""
    random_state: int = 0
    """Seed for splitting, so a run is reproducible."""
    metrics: list[str] | None = None
    """Metrics to report; defaults depend on the model kind."""
    refit: bool = False
    """After a hold-out evaluation, refit on all rows before registering."""
    seasonal_naive: int | None = Field(None, ge=1)
    """Steps per season (e.g. 672: a week of 15-minute readings) of a forecast baseline: each future value
    forecast by the value one season earlier in its window. Its metrics are recorded beside the model's as
    `baseline_<metric>`, so the card shows whether the model beats it (targets from a `sliding_window`)."""


class RegisterRule(Section):
    """Point an alias at the new version when a condition on its metrics holds."""

    alias: AliasName
    """Alias to (re)point, e.g. `production`, `staging`, `canary`."""
    when: str | None = None
    """Condition over metric names, e.g. `accuracy >= 0.9 and f1_macro > 0.85`; always when omitted."""


    @field_validator("when")
    @classmethod
    def _when(cls, v: str | None) -> str | None:
        if v is not None:
            as_value_error(compile_condition, v)  # true or false by its form: 'accuracy' alone is refused here
        return v


class TrainConfig(ConfigModel):
    """Training: fits an estimator, evaluates it and registers a new model version with its card."""

    kind: Literal["TrainConfig"] = "TrainConfig"
    model: ModelSpec
    """The model to train."""
    target: str | list[str]
    """Column to predict; or several (a list, or a pattern with `*` such as `power@+*`, in column order),
    which a multi-output model (e.g. a forecast of the next 8 values) predicts at once."""
    unlabelled: Literal["error", "drop"] = "error"
    """Rows whose target is missing: an `error`, or `drop` them (a sliding window's newest windows, whose
    future is not known yet)."""
    features: list[str] | None = None
    """Input columns; defaults to every column except the target and `exclude`."""
    exclude: list[str] = Field(default_factory=list)
    """Columns never used as features (ids, timestamps)."""
    evaluation: Evaluation = Field(default_factory=Evaluation)
    """Hold-out split or k-fold cross-validation, and the metrics to report."""
    register_rules: list[RegisterRule] = Field(default_factory=list, alias="register")
    """Alias rules applied to the new version, e.g. `{alias: production, when: "accuracy >= 0.9"}`."""

    @field_validator("register_rules", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, dict) else v

    @model_validator(mode="after")
    def _metrics_fit_kind(self) -> TrainConfig:
        for name in self.evaluation.metrics or []:
            if name not in METRICS:
                raise ValueError(f"unknown metric '{name}'; known: {', '.join(sorted(METRICS))}")
            if METRICS[name].kind != self.model.kind:
                raise ValueError(f"metric '{name}' is for {METRICS[name].kind}, but this model is a {self.model.kind}")
        for rule in self.register_rules:
            if rule.when:
                names = self.metric_names()
                allowed = set(names) | {f"{m}_std" for m in names} | {f"baseline_{m}" for m in names}
                unknown = compile_expression(rule.when).names - allowed
                if unknown:
                    raise ValueError(
                        f"register rule for '{rule.alias}' uses {', '.join(sorted(unknown))}, which this training "
                        f"does not report; metrics: {', '.join(self.metric_names())}"
                    )
        return self

    @model_validator(mode="after")
    def _baseline_forecasts(self) -> TrainConfig:
        if self.evaluation.seasonal_naive is not None and self.model.kind != "regression":
            raise ValueError("evaluation.seasonal_naive is a forecast baseline: it needs a regression model")
        return self

    def metric_names(self) -> list[str]:
        return self.evaluation.metrics or metric_names(self.model.kind)
