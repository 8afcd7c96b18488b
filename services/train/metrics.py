"""Metrics by the name used in YAML, for classification and regression."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np


class _SklearnMetrics:
    """``sklearn.metrics``, imported when a metric is first computed: a process that only predicts (an
    embedded ``mlrm run`` of a predict workflow registers this service too) never pays for scikit-learn."""

    def __getattr__(self, name: str) -> Any:
        from sklearn import metrics

        return getattr(metrics, name)


skm = _SklearnMetrics()


@dataclass(frozen=True)
class Metric:
    kind: Literal["classification", "regression"]
    fn: Callable[[Any, Any, Any, Any], float]  # (y_true, y_pred, proba, classes) -> value
    default: bool = False


def _proba_metric(name: str, **kw: Any) -> Callable[[Any, Any, Any, Any], float]:
    def score(y, pred, proba, classes):
        if proba is None:
            return float("nan")
        fn = getattr(skm, name)
        if len(classes) == 2:
            return float(fn(y, proba[:, 1], **kw)) if name == "roc_auc_score" else float(fn(y, proba, labels=classes))
        return float(fn(y, proba, labels=classes, **kw))

    return score


METRICS: dict[str, Metric] = {
    "accuracy": Metric("classification", lambda y, p, *_: float(skm.accuracy_score(y, p)), True),
    "balanced_accuracy": Metric("classification", lambda y, p, *_: float(skm.balanced_accuracy_score(y, p))),
    "f1_macro": Metric("classification", lambda y, p, *_: float(skm.f1_score(y, p, average="macro")), True),
    "f1_weighted": Metric("classification", lambda y, p, *_: float(skm.f1_score(y, p, average="weighted"))),
    "precision_macro": Metric(
        "classification", lambda y, p, *_: float(skm.precision_score(y, p, average="macro", zero_division=0))
    ),
    "recall_macro": Metric(
        "classification", lambda y, p, *_: float(skm.recall_score(y, p, average="macro", zero_division=0))
    ),
    "log_loss": Metric("classification", _proba_metric("log_loss")),
    "roc_auc": Metric("classification", _proba_metric("roc_auc_score", multi_class="ovr")),
    "r2": Metric("regression", lambda y, p, *_: float(skm.r2_score(y, p)), True),
    "mae": Metric("regression", lambda y, p, *_: float(skm.mean_absolute_error(y, p)), True),
    "rmse": Metric("regression", lambda y, p, *_: float(np.sqrt(skm.mean_squared_error(y, p))), True),
    "mse": Metric("regression", lambda y, p, *_: float(skm.mean_squared_error(y, p))),
    "mape": Metric("regression", lambda y, p, *_: float(skm.mean_absolute_percentage_error(y, p))),
}


def metric_names(kind: str) -> list[str]:
    return [name for name, m in METRICS.items() if m.kind == kind and m.default]


def compute(names: list[str], y: Any, pred: Any, proba: Any = None, classes: Any = None) -> dict[str, float]:
    return {name: METRICS[name].fn(y, pred, proba, classes) for name in names}
