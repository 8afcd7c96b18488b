"""Building the model card (:class:`mlrm.card.ModelCard`) of a newly trained version."""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import Any

import pandas as pd

from mlrm import __version__
from mlrm.card import Artefact, Feature, Inference, ModelCard, Output, PipelineStep, Runtime, datatype
from mlrm.flavours import Flavour


def json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return repr(value)


def features(columns: list[dict[str, str]] | pd.DataFrame) -> list[Feature]:
    """Name, pandas dtype and V2 datatype of each column (from a frame, or recorded ``{name, type}`` pairs)."""
    if isinstance(columns, pd.DataFrame):
        columns = [{"name": str(c), "type": str(t)} for c, t in columns.dtypes.items()]
    out = []
    for column in columns:
        try:
            dtype = pd.api.types.pandas_dtype(column["type"])
        except TypeError:  # a dtype this pandas does not parse back: text, for the protocol's sake
            dtype = pd.Series(dtype=object).dtype
        out.append(Feature(name=column["name"], type=column["type"], datatype=datatype(dtype)))
    return out


def outputs(kind: str, classes: list[Any] | None, predictions: Any) -> list[Output]:
    values = pd.Series(predictions)
    what = "the predicted class" if kind == "classification" else "the predicted value"
    out = [Output(name="prediction", datatype=datatype(values.dtype), shape=[-1], description=what)]
    if classes is not None:
        order = ", ".join(map(str, classes))
        about = f"class probabilities, in the order of `classes`: {order}"
        out.append(Output(name="probabilities", datatype="FP64", shape=[-1, len(classes)], description=about))
    return out


def build_card(
    *,
    config: Any,
    flavour: Flavour,
    model: Any,
    X: pd.DataFrame,
    inputs: list[Feature],
    pipeline: list[PipelineStep],
    classes: list[Any] | None,
    predictions: Any,
    metrics: dict[str, float],
    evaluation: dict[str, Any],
    training: dict[str, Any],
    runresource: dict[str, Any],
    lineage: dict[str, Any],
    trusted: list[str],
    runtimes: dict[str, Runtime] | None = None,
    targets: list[str] | None = None,
    output_frame: pd.DataFrame | None = None,
) -> ModelCard:
    """Every MLaaS description field (modelname .. inference), plus lineage and what predict needs."""
    spec = config.model
    described = flavour.describe(model)
    output: dict[str, Any] = {"prediction": "class label" if spec.kind == "classification" else "number"}
    if classes is not None:
        output["probabilities"] = [f"proba_{c}" for c in classes]
    if "shapes" in described:  # the network's own tensors (a Keras model's input is a window)
        output["model_input_shape"], output["model_output_shape"] = (
            described["shapes"]["input"], described["shapes"]["output"]
        )
    if targets:
        output["targets"] = list(targets)
    served = (
        outputs(spec.kind, classes, predictions)
        if output_frame is None
        else [Output(name=str(c), datatype=datatype(t), shape=[-1]) for c, t in output_frame.dtypes.items()]
    )
    modelperform: dict[str, Any] = {"metrics": metrics, **evaluation}
    if described.get("history"):
        modelperform["history"] = described["history"]
    return ModelCard(
        modelname=spec.name,
        modelkind=spec.kind,
        description=spec.description,
        tags=spec.tags,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        traincode={
            "estimator": spec.estimator or spec.flavour,
            "flavour": flavour.name,
            "framework": described["framework"],
            "mlrm": __version__,
            "python": platform.python_version(),
        },
        trainingdata=training,
        hyperparameters=json_safe(described["hyperparameters"]),
        modelperform=modelperform,
        trainingresource={
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "fit_seconds": round(training.pop("fit_seconds", 0.0), 4),
        },
        runresource=runresource,
        featurelist=features(X),
        inference=Inference(
            input=[str(c) for c in X.columns],
            output=output,
            classes=json_safe(classes) if classes is not None else None,
            targets=list(targets or []),
            artefact=Artefact(
                flavour=flavour.name, format=flavour.format, file=flavour.file, python=sys.version.split()[0]
            ),
            pipeline=pipeline,
            inputs=inputs,
            outputs=served,
            predict_config={"kind": "PredictConfig", "model": {"name": spec.name, "alias": "production"}},
            runtimes=runtimes or {},
        ),
        lineage=lineage,
        trusted_types=trusted,
    )
