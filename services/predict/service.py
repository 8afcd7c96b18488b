"""The predict service: applies a pinned model version to each batch and writes the results."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pandas as pd

from mlrm.bus import Envelope
from mlrm.context import ModelRef, StepContext
from mlrm.errors import ConfigError, DataError
from mlrm.gather import Gather
from mlrm.registry import ModelRegistry
from mlrm.service import Batch, Service
from services.predict.config import PredictConfig
from services.predict.sinks import ParquetSink


class LoadedModel:
    """A verified model and what its card says about calling it."""

    def __init__(self, ref: ModelRef, estimator: Any, card: dict[str, Any]) -> None:
        self.ref, self.estimator, self.card = ref, estimator, card
        self.features = [f["name"] for f in card["featurelist"]]
        self.classes = card["inference"].get("classes")
        self.argmax_is_predict = _argmax_is_predict(estimator)

    def predict(self, df: pd.DataFrame, config: PredictConfig) -> pd.DataFrame:
        missing = [c for c in self.features if c not in df.columns]
        if missing:
            raise DataError(
                f"model '{self.ref.name}' version {self.ref.version} needs column(s) {', '.join(missing)}, "
                f"which the input lacks (columns: {', '.join(map(str, df.columns))})"
            )
        absent = [c for c in config.keep if c not in df.columns]
        if absent:
            raise DataError(f"keep: column(s) {', '.join(absent)} not in the input")
        out = df[config.keep].reset_index(drop=True) if config.keep else pd.DataFrame(index=range(len(df)))
        if len(df) == 0:
            out[config.prediction_column] = pd.Series(dtype="object" if self.classes else "float64")
            return out
        X = df[self.features]
        if config.probabilities and self.classes is not None and hasattr(self.estimator, "predict_proba"):
            proba = self.estimator.predict_proba(X)
            # One pass instead of two where predict() is by definition the argmax of predict_proba().
            if self.argmax_is_predict:
                out[config.prediction_column] = self.estimator.classes_.take(proba.argmax(axis=1))
            else:
                out[config.prediction_column] = self.estimator.predict(X)
            for i, cls in enumerate(self.classes):
                out[f"proba_{cls}"] = proba[:, i]
        else:
            out[config.prediction_column] = self.estimator.predict(X)
        return out


# Estimators whose predict() is classes_[argmax(predict_proba())] (trees, forests, boosting,
# logistic regression, naive Bayes); SVC-style calibrated probabilities are not.
_ARGMAX_FAMILIES = (
    "sklearn.tree.", "sklearn.ensemble._forest", "sklearn.ensemble._gb", "sklearn.ensemble._hist_gradient_boosting",
    "sklearn.linear_model._logistic", "sklearn.naive_bayes",
)  # fmt: skip


def _argmax_is_predict(estimator: Any) -> bool:
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    return type(final).__module__.startswith(_ARGMAX_FAMILIES) and hasattr(final, "classes_")


class PredictService(Service):
    name = "predict"
    config_model = PredictConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._models: dict[ModelRef, LoadedModel] = {}
        self._load_lock = threading.Lock()

    def model(self, ref: ModelRef, config: PredictConfig) -> LoadedModel:
        loaded = self._models.get(ref)
        if loaded is None:
            with self._load_lock:
                loaded = self._models.get(ref)
                if loaded is None:
                    registry = ModelRegistry(self.volume)
                    estimator = registry.load_artefact(ref, trusted=config.trusted_types)
                    loaded = self._models[ref] = LoadedModel(ref, estimator, registry.card(ref))
        return loaded

    def process(self, env: Envelope, config: PredictConfig, ctx: StepContext) -> Iterator[Batch]:
        if ctx.model is None:
            raise ConfigError("this run pinned no model version; submit it through the orchestrator")
        model = self.model(ctx.model, config)
        df = env.payload if env.payload is not None else pd.DataFrame()
        out = model.predict(df, config)
        yield Batch(out, env.seq, env.last)

        # Parts keep the output in input order whichever replica predicted them.
        gather = Gather(self.volume, env.run_id, f"{ctx.step}.sink")
        if gather.add(env.seq, env.last, out):
            sink = config.sink or ParquetSink(step="parquet", key="predictions/{run_id}.parquet")
            location = sink.write(ctx, gather.batches())
            gather.clear()
            ctx.extra["result"] = {"output": location, "model": model.ref.name, "version": model.ref.version}
