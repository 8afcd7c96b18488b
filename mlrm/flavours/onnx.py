"""The ``onnx`` flavour: models in ONNX, served by ONNX Runtime on the CPU.

The train service converts a scikit-learn model to ONNX at registration when the conversion
is exact on the hold-out rows, and stores it beside the skops artefact; predict serves it
when ``runtime`` is ``onnx``, or ``auto`` and the version has it. The model takes one 2-D
tensor, ``input``, of the card's ``inference.input`` columns in that order (float32 or
float64: the conversion records which), and answers ``label`` and, for classifiers,
``probabilities`` (no ZipMap), or ``variable`` for regressors.

Loading runs no code: an ONNX file is a graph of standard operators. A model whose tensors
point at external files is refused (they could name any path on the host). One ONNX Runtime
session is created per loaded version and shared by every request (``run`` is thread-safe).
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import pandas as pd

from mlrm.errors import ConfigError, RegistryError
from mlrm.flavours.base import Flavour, Prediction

INPUT = "input"
_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64}


@dataclass
class OnnxModel:
    """A loaded ONNX model: its session and what to feed it."""

    session: Any
    input: str
    dtype: type
    label: str
    proba: str | None
    classes: list[Any] | None


def session_options() -> Any:
    """Low latency on a small machine: one thread per call by default (``MLRM_ONNX_THREADS``), so
    concurrent requests use the cores instead of fighting over them, and no spinning between calls."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(os.environ.get("MLRM_ONNX_THREADS", "1")))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only
    return options


class OnnxFlavour(Flavour):
    name = "onnx"
    threadsafe = True
    format = "onnx"
    file = "model.onnx"
    trains = False

    def conformance_model(self, X: pd.DataFrame, y: pd.Series) -> tuple[Any, list[Any] | None]:
        import warnings

        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import DoubleTensorType
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression().fit(X, y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onx = convert_sklearn(
                model, initial_types=[(INPUT, DoubleTensorType([None, X.shape[1]]))],
                options={id(model): {"zipmap": False}},
            )  # fmt: skip
        return onx, list(model.classes_)

    # -- training: ONNX models are converted (services/train/convert.py) or brought, not fitted here --
    def build(self, estimator: str | None, hyperparameters: dict[str, Any]) -> Any:
        raise ConfigError(
            "the onnx flavour does not train models: train with flavour 'sklearn' (the version gets an ONNX "
            "runtime at registration when the conversion is exact)"
        )

    def check(self, estimator: str | None, hyperparameters: dict[str, Any]) -> None:
        self.build(estimator, hyperparameters)

    def save(self, model: Any, file: IO[bytes]) -> list[str]:
        file.write(model if isinstance(model, bytes) else model.SerializeToString())
        file.flush()
        return []

    def describe(self, model: Any) -> dict[str, Any]:
        import onnxruntime

        return {"framework": f"onnxruntime {onnxruntime.__version__}", "hyperparameters": {}}

    # -- serving -----------------------------------------------------------------------
    def load(
        self, file: IO[bytes], *, trusted: Collection[str], what: str, classes: list[Any] | None = None
    ) -> OnnxModel:
        import onnx
        import onnxruntime as ort

        try:
            file.seek(0)
            proto = onnx.load_model_from_string(file.read())  # external data is refused below, never read
        except Exception as exc:
            raise RegistryError(f"{what}: {self.file} is not a readable ONNX model ({exc})") from None
        external = [t.name for t in _tensors(proto) if t.data_location == onnx.TensorProto.EXTERNAL]
        if external:
            raise RegistryError(f"{what}: {self.file} keeps tensors in external files ({', '.join(external[:3])}); "
                                "only self-contained ONNX models are served")  # fmt: skip
        try:
            session = ort.InferenceSession(
                proto.SerializeToString(), sess_options=session_options(), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise RegistryError(f"{what} could not be loaded by ONNX Runtime: {exc}") from None
        inputs, outputs = session.get_inputs(), [o.name for o in session.get_outputs()]
        if len(inputs) != 1 or inputs[0].type not in _DTYPES:
            raise RegistryError(f"{what}: {self.file} must take one float or double tensor named '{INPUT}'")
        label = "label" if "label" in outputs else outputs[0]
        proba = "probabilities" if "probabilities" in outputs else None
        return OnnxModel(session, inputs[0].name, _DTYPES[inputs[0].type], label, proba, classes)

    def classes(self, model: Any) -> list[Any] | None:
        return model.classes

    def predict(self, model: Any, X: pd.DataFrame, *, proba: bool = False) -> Prediction:
        return self._run(model, X.to_numpy(dtype=model.dtype), proba)  # text refuses here, as in scikit-learn

    def predict_matrix(self, model: Any, X: np.ndarray, columns: list[str], *, proba: bool = False) -> Prediction:
        return self._run(model, np.asarray(X, dtype=model.dtype), proba)

    def _run(self, model: Any, data: np.ndarray, proba: bool) -> Prediction:
        if not np.isfinite(data).all():  # scikit-learn's own check: refused, never answered differently
            raise ValueError("Input contains NaN or infinity")
        want = [model.label, model.proba] if proba and model.proba is not None else [model.label]
        answers = model.session.run(want, {model.input: data})
        values = answers[0].ravel() if answers[0].ndim > 1 else answers[0]
        if values.dtype.kind == "f":
            values = values.astype(np.float64)
        proba_out = None
        if len(answers) > 1:
            # float32 graphs (trees) leave rows summing to 1 - 6e-7: put them back in float64, as scikit-learn's
            proba_out = answers[1].astype(np.float64)
            total = proba_out.sum(axis=1, keepdims=True)
            np.divide(proba_out, total, out=proba_out, where=total > 0)
        return Prediction(values, proba_out)


def _tensors(proto: Any) -> list[Any]:
    """Every initializer, in the main graph and in subgraphs (If/Loop bodies)."""
    found, graphs = [], [proto.graph]
    while graphs:
        graph = graphs.pop()
        found.extend(graph.initializer)
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.g is not None and attribute.g.ByteSize():
                    graphs.append(attribute.g)
                graphs.extend(attribute.graphs)
                if attribute.t is not None and attribute.t.ByteSize():
                    found.append(attribute.t)
    return found
