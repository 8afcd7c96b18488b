"""The ``keras`` flavour: Keras 3 networks on TensorFlow (CPU), declared in YAML and stored as ``.keras`` files.

A model is a sequential list of layers (``{layer: GRU, units: 32}`` ...) or a ``builder``
(``pkg.module:function``, called with the input shape and the number of outputs, returning a
``keras.Model``), compiled with an optimizer, a loss and metrics, and fitted for ``epochs`` with
optional early stopping and a seed that makes a CPU run reproducible. Without an ``Input`` layer the
input shape comes from the data: columns named ``<feature>@<offset>`` (a ``sliding_window``'s) make
a sequence ``(offsets, features)``, other columns a flat vector.

Loading never runs code from the file: only layers of Keras itself may appear in it (no ``Lambda``,
no custom classes), and Keras loads it with ``safe_mode`` on. A loaded model answers through one
``tf.function`` with a fixed input signature (any batch size, one trace), warmed up at load.

TensorFlow is an optional extra (``pip install 'mlrm[tensorflow]'``); it is imported only when a
Keras model is built, fitted or loaded, and a config naming this flavour without it fails validation.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import zipfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from importlib.util import find_spec
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mlrm.errors import ConfigError, DataError, RegistryError
from mlrm.flavours.base import Flavour, Prediction
from mlrm.imports import import_string

progress = logging.getLogger("mlrm.progress")  # `mlrm run` prints these lines above its live table

EXTRA = "pip install 'mlrm[tensorflow]'"
PREDICT_CHUNK = 4096  # rows per call of the network: bounds the memory of a large batch

# Layers a YAML list may name: keras.layers classes that hold no code of their own.
LAYERS = frozenset({
    "Input", "Dense", "Dropout", "LSTM", "GRU", "SimpleRNN", "Conv1D", "Conv2D", "MaxPooling1D", "MaxPooling2D",
    "AveragePooling1D", "GlobalAveragePooling1D", "GlobalMaxPooling1D", "Flatten", "Reshape", "Permute",
    "RepeatVector", "BatchNormalization", "LayerNormalization", "Activation", "SpatialDropout1D",
    "GaussianNoise", "ZeroPadding1D", "Cropping1D", "UpSampling1D",
})  # fmt: skip
_WINDOW_COLUMN = re.compile(r"^(?P<feature>.+)@(?P<offset>-?\d+)\Z")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EarlyStopping(_Spec):
    """Stop when the monitored figure has not improved for `patience` epochs."""

    monitor: str = "val_loss"
    patience: int = Field(3, ge=0)
    min_delta: float = 0.0
    restore_best_weights: bool = True


class KerasSpec(_Spec):
    """The `hyperparameters` of a `keras` model."""

    layers: list[dict[str, Any]] | None = None
    """The network, in order: `{layer: GRU, units: 32}`; an `Input` layer first is optional (by default the
    input shape comes from the data)."""
    builder: str | None = None
    """`pkg.module:function(input_shape, outputs) -> keras.Model`, for anything `layers` cannot say."""
    optimizer: str | dict[str, Any] = "adam"
    """A Keras optimizer name, or `{name: adam, learning_rate: 0.001, ...}`."""
    loss: str = "mse"
    metrics: list[str] = Field(default_factory=list)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    validation_split: float = Field(0.0, ge=0, lt=1)
    """The last fraction of the training rows (in order) held out to validate each epoch."""
    early_stopping: EarlyStopping | None = None
    shuffle: bool = True
    seed: int = 0
    """Seeds Python, NumPy and TensorFlow and turns on deterministic ops: a CPU run is reproducible."""

    @field_validator("layers")
    @classmethod
    def _known_layers(cls, layers: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for i, layer in enumerate(layers or []):
            kind = layer.get("layer")
            if kind == "Lambda":
                raise ValueError(f"layers[{i}]: Lambda layers hold code and are refused; use a builder")
            if kind not in LAYERS:
                raise ValueError(f"layers[{i}]: unknown layer {kind!r}; known: {', '.join(sorted(LAYERS))} "
                                 "(or a builder: pkg.module:function)")  # fmt: skip
        return layers

    def model_post_init(self, context: Any) -> None:
        if (self.layers is None) == (self.builder is None):
            raise ValueError("a keras model needs either `layers` or a `builder` (not both)")
        if self.builder is not None and ":" not in self.builder:
            raise ValueError(f"builder {self.builder!r} must be written pkg.module:function")


def spec_of(hyperparameters: dict[str, Any]) -> KerasSpec:
    try:
        return KerasSpec.model_validate(hyperparameters)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise ConfigError(f"keras hyperparameters: {where + ': ' if where else ''}{first['msg']}") from None


def require_tensorflow() -> None:
    """A ConfigError naming the extra when TensorFlow is not installed (checked without importing it)."""
    if find_spec("tensorflow") is None or find_spec("keras") is None:
        raise ConfigError(f"the keras flavour needs TensorFlow, which is not installed: {EXTRA}")


def _tf() -> Any:
    require_tensorflow()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


class KerasModel:
    """A Keras network with what mlrm needs around it: its input shape, its fit history, one traced call."""

    def __init__(self, network: Any, history: list[dict[str, float]] | None = None, spec: KerasSpec | None = None):
        self.network, self.history, self.spec = network, history or [], spec
        self.input_shape = tuple(int(d) for d in network.input_shape[1:])
        self.outputs = int(np.prod([d for d in network.output_shape[1:] if d is not None]) or 1)
        self._call: Any = None

    @property
    def call(self) -> Any:
        """The network as one ``tf.function`` over ``[None, *input_shape]``: traced once, whatever the batch size."""
        if self._call is None:
            tf = _tf()
            network = self.network
            signature = [tf.TensorSpec([None, *self.input_shape], tf.float32)]
            self._call = tf.function(lambda x: network(x, training=False), input_signature=signature)
        return self._call

    def warm_up(self) -> None:
        self.predict(np.zeros((1, int(np.prod(self.input_shape))), dtype=np.float32))

    def predict(self, flat: np.ndarray) -> np.ndarray:
        x = flat.reshape(-1, *self.input_shape)
        parts = [self.call(x[i : i + PREDICT_CHUNK]).numpy() for i in range(0, max(1, len(x)), PREDICT_CHUNK)]
        out = np.concatenate(parts).astype(np.float64).reshape(len(x), -1)
        return out[:, 0] if out.shape[1] == 1 else out


def input_shape_of(columns: list[str]) -> tuple[int, ...]:
    """``(offsets, features)`` for a sliding window's ``<feature>@<offset>`` columns (time-major), else ``(n,)``."""
    matches = [_WINDOW_COLUMN.match(str(c)) for c in columns]
    if not columns or not all(matches):
        return (len(columns),)
    features = list(dict.fromkeys(m["feature"] for m in matches if m))
    offsets = list(dict.fromkeys(int(m["offset"]) for m in matches if m))
    expected = [f"{f}@{o}" for o in offsets for f in features]
    return (len(offsets), len(features)) if expected == [str(c) for c in columns] else (len(columns),)


class KerasFlavour(Flavour):
    name = "keras"
    format = "keras"
    file = "model.keras"
    example = None  # the conformance suite trains scikit-learn's; this flavour has its own tests

    # -- training ----------------------------------------------------------------------
    def check(self, estimator: str | None, hyperparameters: dict[str, Any]) -> None:
        require_tensorflow()  # the message names the extra; TensorFlow itself is not imported here
        spec_of(hyperparameters)

    def build(self, estimator: str | None, hyperparameters: dict[str, Any]) -> Any:
        return spec_of(hyperparameters)  # the network is built by fit(), when the data gives its input shape

    def fit(self, model: Any, X: pd.DataFrame, y: pd.Series | pd.DataFrame) -> KerasModel:
        spec: KerasSpec = model.spec if isinstance(model, KerasModel) else model
        tf = _tf()
        import keras

        keras.utils.set_random_seed(spec.seed)
        with _deterministic(tf):
            return self._fit(spec, X, y)

    def _fit(self, spec: KerasSpec, X: pd.DataFrame, y: pd.Series | pd.DataFrame) -> KerasModel:
        import keras

        shape = input_shape_of([str(c) for c in X.columns])
        targets = 1 if isinstance(y, pd.Series) else y.shape[1]
        network = _network(spec, shape, targets)
        optimizer = spec.optimizer if isinstance(spec.optimizer, str) else _optimizer(spec.optimizer)
        network.compile(optimizer=optimizer, loss=spec.loss, metrics=list(spec.metrics))
        x = X.to_numpy(dtype=np.float32).reshape(-1, *network.input_shape[1:])
        target = y.to_numpy(dtype=np.float32).reshape(len(y), -1)
        given = int(np.prod([d for d in network.output_shape[1:] if d is not None]))
        if given != target.shape[1]:
            raise DataError(f"the network gives {given} output(s) per row, the target has {target.shape[1]}; "
                            f"make its last layer Dense({target.shape[1]})")  # fmt: skip
        callbacks: list[Any] = [_Progress(spec.epochs)]
        if spec.early_stopping is not None:
            callbacks.append(keras.callbacks.EarlyStopping(**spec.early_stopping.model_dump()))
        fitted = network.fit(
            x, target, epochs=spec.epochs, batch_size=spec.batch_size, validation_split=spec.validation_split,
            shuffle=spec.shuffle, callbacks=callbacks, verbose=0,
        )  # fmt: skip
        epochs = len(fitted.history.get("loss", []))
        history = [{k: float(v[i]) for k, v in fitted.history.items()} | {"epoch": i + 1} for i in range(epochs)]
        return KerasModel(network, history, spec)

    def history(self, model: Any) -> list[dict[str, float]]:
        return list(model.history)

    def save(self, model: Any, file: IO[bytes]) -> list[str]:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / self.file
            model.network.save(path)
            file.write(path.read_bytes())
        file.flush()
        return []

    def describe(self, model: Any) -> dict[str, Any]:
        tf = _tf()
        import keras

        spec = model.spec.model_dump(exclude_none=True) if model.spec is not None else {}
        return {
            "framework": f"keras {keras.__version__} (tensorflow {tf.__version__})",
            "hyperparameters": spec | {"parameters": int(model.network.count_params())},
            "history": model.history,
            "shapes": {"input": [-1, *model.input_shape], "output": [-1, model.outputs]},
        }

    # -- serving -----------------------------------------------------------------------
    def load(self, file: IO[bytes], *, trusted: Collection[str], what: str, classes: list[Any] | None = None) -> Any:
        try:
            _tf()
        except ConfigError as exc:
            raise RegistryError(f"{what}: {exc.reason}") from None
        import keras

        file.seek(0)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / self.file
            path.write_bytes(file.read())
            _check_layers(path, what)
            try:
                network = keras.saving.load_model(path, compile=False, safe_mode=True)
            except Exception as exc:
                raise RegistryError(f"{what} could not be loaded: {str(exc).splitlines()[0]}") from None
        model = KerasModel(network)
        model.warm_up()  # the one trace happens now, not on the first request
        return model

    def predict(self, model: Any, X: pd.DataFrame, *, proba: bool = False) -> Prediction:
        return Prediction(model.predict(X.to_numpy(dtype=np.float32)))


def _network(spec: KerasSpec, shape: tuple[int, ...], outputs: int) -> Any:
    import keras

    if spec.builder is not None:
        build = import_string(spec.builder, what="keras builder")
        network = build(shape, outputs)
        if not isinstance(network, keras.Model):
            raise ConfigError(f"keras builder {spec.builder!r} returned {type(network).__name__}, not a keras.Model")
        return network
    layers = list(spec.layers or [])
    if not layers or layers[0].get("layer") != "Input":
        layers.insert(0, {"layer": "Input", "shape": list(shape)})
    built = []
    for i, options in enumerate(layers):
        kwargs = {k: (tuple(v) if k in ("shape", "target_shape", "dims") else v) for k, v in options.items()}
        kind = kwargs.pop("layer")
        try:
            built.append(getattr(keras.layers, kind)(**kwargs))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"keras layers[{i}] ({kind}): {str(exc).splitlines()[0]}") from None
    try:
        return keras.Sequential(built)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"keras layers do not fit together: {str(exc).splitlines()[0]}") from None


def _optimizer(options: dict[str, Any]) -> Any:
    import keras

    config = dict(options)
    name = config.pop("name", "adam")
    try:
        return keras.optimizers.get({"class_name": name, "config": config})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"keras optimizer {name!r}: {str(exc).splitlines()[0]}") from None


def _check_layers(path: Path, what: str) -> None:
    """Refuse a ``.keras`` file naming anything but Keras's own classes (a Lambda, a custom layer): code."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise RegistryError(f"{what}: not a readable .keras file ({exc})") from None
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            if "class_name" in node:
                module, name = str(node.get("module") or "keras"), str(node["class_name"])
                if name == "Lambda" or module.split(".")[0] != "keras":
                    raise RegistryError(
                        f"{what} contains {module}.{name}, which would run code from the file; refused "
                        "(only Keras's own layers load)"
                    )
            stack.extend(node.values())


@contextmanager
def _deterministic(tf: Any) -> Iterator[None]:
    """Deterministic ops while fitting only: serving in the same process keeps TensorFlow's faster kernels."""
    from tensorflow.python.framework import config  # the public API has no way back (disable, is_enabled)

    was = config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if not was:
            config.disable_op_determinism()


class _Progress:
    """Logs one line per epoch (the per-epoch progress a training shows); made a keras Callback on use."""

    def __new__(cls, epochs: int) -> Any:
        import keras

        class Progress(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                figures = ", ".join(f"{k} {v:.4g}" for k, v in (logs or {}).items())
                progress.info("epoch %d/%d: %s", epoch + 1, epochs, figures)

        return Progress()


