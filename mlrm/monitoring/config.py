"""The ``MonitorConfig`` kind (what to check, on which window) and the prediction log's settings.

```yaml
kind: MonitorConfig
model: iris-classifier
alias: production          # the version checked: the one this alias points at
window: {count: 500}       # the newest 500 logged rows of that version; or {seconds: 3600}
min_samples: 100           # fewer rows (or labelled rows, for metric decay): no verdict, a reason
detectors:
  - {type: psi, on: features, features: all, threshold: 0.2}
  - {type: ks, on: features, features: [petal_length], threshold: 0.01}
  - {type: chi2, on: predictions, features: [prediction]}
  - {type: metric_decay, metric: accuracy, tolerance: 0.1}
```
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mlrm.config import ConfigModel, Section, as_value_error
from mlrm.registry import AliasName, ModelName

DecayMetric = Literal["accuracy", "f1", "mae", "rmse"]


class LogSettings(Section):
    """Log predictions for monitoring (a deployment's or a batch predict config's `log`); off by default."""

    sample: float = Field(1.0, ge=0, le=1)
    """The share of requests logged (each request is logged whole or not at all)."""
    row_id: str | None = None
    """A raw input column whose values identify rows (feedback may name them); else rows are
    `<request id>/<row number>`."""


class Window(Section):
    """Which logged rows a check looks at: the newest `count`, or those of the last `seconds`."""

    count: int | None = Field(None, ge=1)
    """The newest this many logged rows of the version."""
    seconds: float | None = Field(None, gt=0)
    """The rows logged in the last this many seconds."""

    @model_validator(mode="after")
    def _one(self) -> Window:
        if (self.count is None) == (self.seconds is None):
            raise ValueError("give a window either 'count' or 'seconds'")
        return self


class DetectorSpec(Section):
    """One detector: a registered `type`, what it looks at, and when it says drift."""

    type: str
    """`psi`, `ks`, `chi2`, `wasserstein`, `metric_decay` (or a registered one)."""
    on: Literal["features", "predictions", "labels"] = "features"
    """The model's input features (after its pipeline), its outputs, or the labels of the feedback."""
    features: list[str] | Literal["all"] = "all"
    """Which columns of `on` (a list of names), or `all`."""
    threshold: float | None = None
    """Drift when the statistic passes it (psi: > 0.2, wasserstein: > 0.2 reference standard
    deviations) or the p-value falls below it (ks, chi2: < 0.01). Default: the detector's."""
    metric: DecayMetric | None = None
    """For `metric_decay`: the metric computed on labelled feedback."""
    tolerance: float = Field(0.1, ge=0)
    """For `metric_decay`: how much worse than the hold-out figure is tolerated, as a share of it
    (0.1: accuracy 0.95 may fall to 0.855; rmse 2.0 may rise to 2.2)."""

    @model_validator(mode="before")
    @classmethod
    def _on_is_not_true(cls, data: Any) -> Any:
        """YAML 1.1 reads a bare `on:` key as the boolean true: it means the field `on` here."""
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if key is True else key): value for key, value in data.items()}
        return data

    @field_validator("type")
    @classmethod
    def _known(cls, v: str) -> str:
        from mlrm.monitoring.detectors import detectors

        as_value_error(detectors.get, v)
        return v

    @model_validator(mode="after")
    def _metric(self) -> DetectorSpec:
        if self.type == "metric_decay" and self.metric is None:
            raise ValueError("a metric_decay detector needs 'metric': accuracy, f1, mae or rmse")
        if self.type != "metric_decay" and self.metric is not None:
            raise ValueError(f"'metric' is for metric_decay detectors, not {self.type}")
        return self


class MonitorConfig(ConfigModel):
    """Monitoring of a deployed model: drift detectors over a window of its prediction log and feedback."""

    kind: Literal["MonitorConfig"] = "MonitorConfig"
    model: ModelName
    """Registry name of the model."""
    alias: AliasName = "production"
    """The alias whose version is checked (against its own reference statistics)."""
    detectors: list[DetectorSpec] = Field(min_length=1)
    """What to check."""
    window: Window = Field(default_factory=lambda: Window(count=1000))
    """Which logged rows: `{count: N}` or `{seconds: S}`."""
    min_samples: int = Field(100, ge=1)
    """Fewer rows in the window than this: the check gives no verdict (not drifted) and says why."""


