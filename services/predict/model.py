"""A model version as predict serves it: the verified model, its card, and its inference pipeline.

The pipeline is the training route's cleaning and feature steps (recorded in the card),
with the statistics they learned loaded once from the version (sha256 verified). Raw
rows go through it, then through the model; batch workflows, nameko RPC and the REST
and gRPC servers all call :meth:`ServedModel.transform` and :meth:`ServedModel.predict`
through the data plane, so the same raw rows get the same answer however they arrive.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlrm.bus import Hop
from mlrm.card import ModelCard
from mlrm.columns import Columns
from mlrm.errors import INPUT_EXCEPTIONS, ConfigError, DataError, RefusedError, RegistryError, one_line
from mlrm.flavours import Flavour, Prediction, flavour
from mlrm.pipeline import apply_step, inference_pipeline, postprocess, same_statistics
from mlrm.registry import ModelRef, ModelRegistry
from mlrm.service import services
from mlrm.steps import TransformStep
from services.predict.config import PROBA_PREFIX
from services.predict.parallel import split_rows


@dataclass(frozen=True)
class Stage:
    """One pipeline step, ready to run: the step, the hop it came from, its stored statistics."""

    hop: str
    step: TransformStep
    state: dict[str, Any] | None


class ServedModel:
    """A verified model version with its inference pipeline, and the runtimes it has loaded.

    A version may have several runtimes (its artefact's flavour, and an exact ONNX conversion):
    each is loaded once, when first asked for (the one ``load`` names at once), and shared.
    """

    def __init__(
        self, ref: ModelRef, card: ModelCard, model: Any, stages: list[Stage], *, runtime: str = "auto",
        registry: ModelRegistry | None = None, trusted: Collection[str] = (),
    ) -> None:  # fmt: skip
        self.ref, self.card, self.model, self.stages = ref, card, model, stages
        self.flavour = flavour(card.inference.runtime(runtime).flavour)
        self._registry, self._trusted = registry, tuple(trusted)
        self._runtimes: dict[str, tuple[Flavour, Any]] = {self.flavour.name: (self.flavour, model)}
        self._chosen: dict[str, tuple[Flavour, Any]] = {}  # choice ("auto", a flavour name) -> its runtime
        self._lock = threading.Lock()
        self.features = list(card.inference.input) or [f.name for f in card.featurelist]
        self.classes = card.inference.classes
        self.targets = list(card.inference.targets)
        self.post = [s for s in stages if s.step.postprocesses]  # run in reverse after the model
        self.forecasts = [c for s in stages for c in s.step.forecasts()]
        self._columns: pd.Index | None = None
        inputs = card.inference.inputs
        # A version with no pipeline steps whose inputs are all float64 numbers, in the model's order, takes a
        # direct request's rows as one float64 matrix (:meth:`predict_matrix`): no DataFrame on the way to the
        # model and back, which is most of what a small request costs.
        self.matrix_ready = (
            not stages and not self.targets and bool(inputs) and [f.name for f in inputs] == self.features
            and all(f.type == "float64" for f in inputs)
        )  # fmt: skip
        dropping = next((s for s in stages if not s.step.keeps_rows() and not s.step.regroups), None)
        self.refusal = (
            None
            if dropping is None
            else f"model '{ref.name}' version {ref.version} does not serve direct requests: step "
            f"'{dropping.step.step}' of '{dropping.hop}' in its inference pipeline drops rows, so answers could "
            "not be matched to the request's rows; it serves batch workflows (or retrain with `inference: false` "
            "on that step)"
        )

    @classmethod
    def load(
        cls, registry: ModelRegistry, ref: ModelRef, *, trusted: Collection[str] = (), runtime: str = "auto"
    ) -> ServedModel:
        raw = registry.verified_card(ref)
        card = ModelCard.parse(raw, f"model '{ref.name}' version {ref.version}")
        model = registry.load_artefact(ref, trusted=trusted, runtime=runtime)
        stages = _stages(registry, ref, card, raw)
        return cls(ref, card, model, stages, runtime=runtime, registry=registry, trusted=trusted)

    def runtime(self, choice: str = "auto") -> tuple[Flavour, Any]:
        """The flavour and loaded model that answer for ``choice`` (``auto``, or a flavour name)."""
        known = self._chosen.get(choice)
        if known is not None:
            return known
        try:
            name = self.card.inference.runtime(choice).flavour
        except RefusedError as exc:
            raise RefusedError(f"model '{self.ref.name}' version {self.ref.version}: {exc.message}") from None
        loaded = self._runtimes.get(name)
        if loaded is None:
            with self._lock:
                loaded = self._runtimes.get(name)
                if loaded is None:
                    if self._registry is None:
                        raise RefusedError(f"model '{self.ref.name}' version {self.ref.version}: no {name} runtime")
                    model = self._registry.load_artefact(self.ref, trusted=self._trusted, runtime=name)
                    loaded = self._runtimes[name] = (flavour(name), model)
        self._chosen[choice] = loaded  # the card's answer for a choice never changes: asked once
        return loaded

    def call(self, runtime: str = "auto") -> Callable[[pd.DataFrame, bool], Prediction]:
        """The model call of ``runtime``: rows of the card's ``inference.input`` columns -> a Prediction.

        With ``auto``, rows a converted runtime refuses (NaN or infinity, which the ONNX
        runtime does not take) are answered by the artefact's own flavour instead.
        """
        chosen, model = self.runtime(runtime)
        native_name = self.card.inference.artefact.flavour
        if runtime != "auto" or chosen.name == native_name:
            call = lambda X, proba: chosen.predict(model, X, proba=proba)  # noqa: E731
        else:

            def call(X: pd.DataFrame, proba: bool) -> Prediction:
                try:
                    return chosen.predict(model, X, proba=proba)
                except INPUT_EXCEPTIONS:  # the artefact's own runtime is loaded the first time it is needed
                    native, native_model = self.runtime(native_name)
                    return native.predict(native_model, X, proba=proba)

        # a large batch is answered in parts on the machine's cores when the runtime computes without the GIL
        threadsafe = chosen.threadsafe and flavour(native_name).threadsafe
        return split_rows(call) if threadsafe else call

    def columns(self, names: list[str]) -> pd.Index:
        """``names`` as a column index, made once per version (building one costs more than the model call)."""
        if names != self.features:
            return pd.Index(names)
        index = self._columns
        if index is None:
            index = self._columns = pd.Index(self.features)
        return index

    def predict_matrix(self, X: np.ndarray, *, probabilities: bool = True, runtime: str = "auto") -> Prediction | None:
        """The model's answer for a float64 matrix of the ``features`` columns of a :attr:`matrix_ready` version,
        without DataFrames; None when the runtime refuses these rows (the DataFrame path then answers, with
        the other runtime or the error it gives, so answers and errors stay the same)."""
        want_proba = probabilities and self.classes is not None
        self._check_outputs([], "prediction", want_proba)
        chosen, model = self.runtime(runtime)
        try:
            return chosen.predict_matrix(model, X, self.features, proba=want_proba)
        except INPUT_EXCEPTIONS:
            return None

    def answer_columns(
        self, answer: Prediction, *, probabilities: bool = True, column: str = "prediction",
        kept: pd.DataFrame | None = None,
    ) -> Columns:  # fmt: skip
        """A model's answer as output columns: ``kept`` columns, ``column``, then the class probabilities."""
        columns: dict[str, Any] = {} if kept is None else {name: kept[name].array for name in kept}  # dtypes kept
        if self.targets and answer.values.ndim == 2:  # several outputs per row: one column each
            for i, name in enumerate(self.targets):
                columns[name] = answer.values[:, i]
        else:
            columns[column] = answer.values
        if probabilities and answer.proba is not None and self.classes is not None:
            for i, cls in enumerate(self.classes):
                columns[f"{PROBA_PREFIX}{cls}"] = answer.proba[:, i]
        return Columns(columns)

    def coerce(self, df: pd.DataFrame) -> pd.DataFrame:
        """A direct request's columns converted to the types training saw (JSON carries timestamps as text).

        Batch workflows need no such step: their collector types the columns as configured.
        """
        converted: dict[str, pd.Series] = {}
        dtypes = dict(zip(df.columns, df.dtypes, strict=True))  # one look at the types, not a column per input
        for feature in self.card.inference.inputs:
            dtype = dtypes.get(feature.name)
            if dtype is None or str(dtype) == feature.type:
                continue
            column = df[feature.name]
            try:
                target = pd.api.types.pandas_dtype(feature.type)
            except TypeError:
                continue
            try:
                if target.kind == "M" and not pd.api.types.is_datetime64_any_dtype(column):
                    converted[feature.name] = pd.to_datetime(column, format="ISO8601")
                elif target.kind in "fiu" and not pd.api.types.is_numeric_dtype(column):
                    numbers = pd.to_numeric(column)
                    converted[feature.name] = numbers.astype("float64") if target.kind == "f" else numbers
                elif target.kind == "f" and pd.api.types.is_integer_dtype(column):
                    converted[feature.name] = column.astype("float64")
            except (TypeError, ValueError, OverflowError) as exc:
                raise DataError(f"input '{feature.name}' must be {feature.type} values: {exc}") from None
        return df.assign(**converted) if converted else df

    def needs_whole_stream(self, skip_hops: Collection[str] = ()) -> bool:
        """Whether a batch workflow must gather every row before the pipeline (a sort, a window)."""
        return any(s.step.needs_whole_stream(False) for s in self.stages if s.hop not in skip_hops)

    def transform(self, df: pd.DataFrame, skip_hops: Collection[str] = ()) -> pd.DataFrame:
        """Raw rows through the inference pipeline; hops named in ``skip_hops`` were applied upstream."""
        for stage in self.stages:
            if stage.hop not in skip_hops:
                df = apply_step(stage.step, df, stage.state)
        return df

    def predict(
        self, df: pd.DataFrame, *, keep: Collection[str] = (), probabilities: bool = True, column: str = "prediction",
        runtime: str = "auto", call: Callable[[pd.DataFrame, bool], Prediction] | None = None,
    ) -> Columns:  # fmt: skip
        """The model's answers for rows that went through the pipeline, beside the ``keep`` columns.

        ``runtime`` picks the model call (see :meth:`call`); ``call`` replaces it (a batcher's).
        """
        missing = [c for c in self.features if c not in df.columns]
        if missing:
            raise DataError(
                f"model '{self.ref.name}' version {self.ref.version} needs column(s) {', '.join(missing)}, "
                f"which the input lacks (columns: {', '.join(map(str, df.columns))})"
            )
        absent = [c for c in keep if c not in df.columns]
        if absent:
            raise DataError(f"keep: column(s) {', '.join(absent)} not in the input")
        want_proba = probabilities and self.classes is not None
        self._check_outputs(list(keep), column, want_proba)
        if len(df) == 0:
            out = df[list(keep)].reset_index(drop=True) if keep else pd.DataFrame(index=range(0))
            for name in self.targets or [column]:
                out[name] = pd.Series(dtype="object" if self.classes else "float64")
            return Columns.of(out)
        # the rows as they are when their columns already are the model's, in order (a V2 request's usually
        # are): selecting them again would copy every value
        X = df if list(df.columns) == self.features else df[self.features]
        try:
            answer = (call or self.call(runtime))(X, want_proba)
        except INPUT_EXCEPTIONS as exc:  # the model refused these values (infinity, text, ...)
            raise DataError(
                f"model '{self.ref.name}' version {self.ref.version} cannot predict this input: "
                f"{one_line(str(exc) or type(exc).__name__).rstrip('.')}{_suspects(X)}"
            ) from None
        kept = df[list(keep)] if keep else None  # dtypes kept
        return self.answer_columns(answer, probabilities=want_proba, column=column, kept=kept)

    def postprocess(self, outputs: pd.DataFrame, features: pd.DataFrame, column: str = "prediction") -> pd.DataFrame:
        """The model's outputs through the pipeline's post-processing, in reverse step order (a window's
        forecasts become one row per future step, then are de-normalised); a single forecast column is
        named ``column``."""
        if not self.post:
            return outputs
        outputs = postprocess([(s.step, s.state) for s in self.post], outputs, features)
        if len(self.forecasts) == 1 and self.forecasts[0] in outputs.columns and column not in outputs.columns:
            outputs = outputs.rename(columns={self.forecasts[0]: column})
        return outputs

    def _check_outputs(self, keep: list[str], column: str, with_proba: bool) -> None:
        """No output column may be written twice (one would silently overwrite the other)."""
        proba = [f"{PROBA_PREFIX}{c}" for c in self.classes or []] if with_proba else []
        names = [*keep, column, *proba]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(
                f"model '{self.ref.name}' version {self.ref.version}: output column(s) {', '.join(twice)} would be "
                f"written twice (keep: {', '.join(keep) or '-'}; prediction_column: {column}; probability columns: "
                f"{', '.join(proba) or '-'}); rename the input column, or choose another prediction_column, or set "
                "probabilities: false"
            )


def _suspects(X: pd.DataFrame) -> str:
    """Which input columns hold values estimators refuse (infinite numbers, text), for the error message."""
    infinite, text = [], []
    for name in X.columns:
        column = X[name]
        if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
            if np.isinf(column.to_numpy(dtype="float64", na_value=np.nan)).any():
                infinite.append(f"'{name}'")
        elif pd.api.types.is_object_dtype(column.dtype) or pd.api.types.is_string_dtype(column.dtype):
            text.append(f"'{name}'")
    found = []
    if infinite:
        found.append(f"column(s) {', '.join(infinite)} hold infinite values")
    if text:
        found.append(f"column(s) {', '.join(text)} hold text")
    return f"; {'; '.join(found)}" if found else ""


def _stages(registry: ModelRegistry, ref: ModelRef, card: ModelCard, raw: dict[str, Any]) -> list[Stage]:
    """The card's pipeline as runnable stages, with verified statistics."""
    if card.schema_version >= 2:
        entries = [(p.hop, p.service, p.config, p.state) for p in card.inference.pipeline]
    else:  # schema 1: recovered from the training route recorded in the lineage
        route = [Hop(**h) for h in card.lineage.get("steps") or [] if isinstance(h, dict) and h.get("service")]
        entries = [
            (s.hop, s.service, s.step.model_dump(mode="json"), s.state)
            for s in inference_pipeline([h for h in route if h.service != "train"])
        ]
    stages = []
    for hop, service, config, state_key in entries:
        step = _step(service, config, ref)
        state = None
        if state_key is not None:
            record = json.loads(registry.read_verified(ref, f"state/{state_key}.json", raw))
            if not same_statistics(record, step):
                raise RegistryError(f"model '{ref.name}' version {ref.version}: statistics of '{state_key}' "
                                    "were learned by a differently configured step")  # fmt: skip
            state = record["state"]
        stages.append(Stage(hop, step, state))
    return stages


def _step(service: str, config: dict[str, Any], ref: ModelRef) -> TransformStep:
    """A recorded step config as a step instance, validated by the service that ran it in training."""
    try:
        model = services.get(service).config_model.model_validate({"steps": [config]})
    except Exception as exc:
        raise RegistryError(
            f"model '{ref.name}' version {ref.version}: its pipeline step {config.get('step')!r} ({service}) "
            f"cannot be rebuilt here: {exc}"
        ) from None
    return model.steps[0]  # type: ignore[attr-defined]
