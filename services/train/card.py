"""The model card: the MLaaS description of a model version, stored as ``card.json``."""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import Any

import pandas as pd


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return repr(value)


def featurelist(X: pd.DataFrame) -> list[dict[str, str]]:
    return [{"name": str(c), "type": str(t)} for c, t in X.dtypes.items()]


def build_card(
    *,
    config: Any,
    estimator: Any,
    X: pd.DataFrame,
    classes: list[Any] | None,
    metrics: dict[str, float],
    evaluation: dict[str, Any],
    training: dict[str, Any],
    runresource: dict[str, Any],
    lineage: dict[str, Any],
) -> dict[str, Any]:
    """Every MLaaS description field: modelname .. inference, plus lineage."""
    import sklearn

    from mlrm import __version__

    spec = config.model
    features = featurelist(X)
    outputs: dict[str, Any] = {"prediction": "class label" if spec.kind == "classification" else "number"}
    if classes is not None:
        outputs["probabilities"] = [f"proba_{c}" for c in classes]
    return {
        "modelname": spec.name,
        "modelkind": spec.kind,
        "description": spec.description,
        "tags": spec.tags,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "traincode": {
            "estimator": spec.estimator,
            "framework": f"scikit-learn {sklearn.__version__}",
            "mlrm": __version__,
            "python": platform.python_version(),
        },
        "trainingdata": training,
        "hyperparameters": _json_safe(estimator.get_params(deep=False)),
        "modelperform": {"metrics": metrics, **evaluation},
        "trainingresource": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "fit_seconds": round(training.pop("fit_seconds", 0.0), 4),
        },
        "runresource": runresource,
        "featurelist": features,
        "inference": {
            "input": [f["name"] for f in features],
            "output": outputs,
            "classes": _json_safe(classes) if classes is not None else None,
            "predict_config": {"kind": "PredictConfig", "model": {"name": spec.name, "alias": "production"}},
            "artefact": {"format": "skops", "file": "model.skops", "python": sys.version.split()[0]},
        },
        "lineage": lineage,
        "trusted_types": [],
    }
