"""At registration: a scikit-learn model converted to ONNX, kept only when the conversion is exact.

The ONNX model takes one 2-D tensor ``input`` of the card's ``inference.input`` columns (the
inference pipeline's output), the fastest form for ONNX Runtime and the one the data plane
already holds. It is loaded and called through the ``onnx`` flavour, the code that will serve
it, on the hold-out rows, and compared with the scikit-learn model's answers:

- classifiers: identical labels, and every probability within :data:`PROBA_TOLERANCE` (1e-5);
- regressors: every prediction within :data:`VALUE_TOLERANCE` (1e-5) relative to the value,
  and absolute below 1: float32 arithmetic keeps about 7 significant digits, so a relative
  bound is the one that means the same for every scale of target.

Tree models try a float32 tensor first (scikit-learn's trees compare float32 inputs, so
float32 reproduces their splits exactly); other models try float64 first (their arithmetic is
float64 in scikit-learn). A conversion that is not exact, fails, or is not possible (a
non-numeric input column, an estimator skl2onnx does not know) is recorded in the card with
the reason; it never fails the training.
"""

from __future__ import annotations

import warnings
from typing import IO, Any

import numpy as np
import pandas as pd

from mlrm.card import Runtime
from mlrm.errors import one_line
from mlrm.flavours import Prediction, flavour
from mlrm.registry import spool

PROBA_TOLERANCE = 1e-5
VALUE_TOLERANCE = 1e-5
_TREES = ("sklearn.tree.", "sklearn.ensemble.")


def convert(model: Any, check: pd.DataFrame, kind: str, classes: list[Any] | None) -> tuple[IO[bytes] | None, Runtime]:
    """The ONNX artefact (an open, nameless temporary file) and its card entry when exact on ``check``;
    else None and the reason."""
    onnx = flavour("onnx")
    try:
        reason = _unsupported(check, classes)
        if reason:
            return None, Runtime(flavour="onnx", reason=reason)
        reference = flavour("sklearn").predict(model, check, proba=classes is not None)
        tried = []
        for dtype in _candidates(model):
            try:
                proto = _to_onnx(model, check.shape[1], dtype)
            except Exception as exc:
                return None, Runtime(flavour="onnx", reason=f"skl2onnx cannot convert it: {_why(exc)}")
            file = spool(lambda f, proto=proto: onnx.save(proto, f))
            try:
                loaded = onnx.load(file, trusted=(), what="the converted model", classes=classes)
                answer = onnx.predict(loaded, check, proba=classes is not None)
            except Exception as exc:
                file.close()
                tried.append(f"{np.dtype(dtype).name}: ONNX Runtime cannot run it ({_why(exc)})")
                continue
            measured = _compare(reference, answer, kind)
            differs, exact = measured.pop("differs"), measured.pop("exact")
            if exact:
                details = {"rows": len(check), "input_dtype": np.dtype(dtype).name, **measured}
                details["converter"] = _versions()
                return file, Runtime(flavour="onnx", format=onnx.format, file=onnx.file, exact=True, check=details)
            file.close()
            tried.append(f"{np.dtype(dtype).name}: {differs}")
        return None, Runtime(flavour="onnx", reason=f"not exact on the {len(check)} hold-out rows: {'; '.join(tried)}")
    except Exception as exc:  # whatever happens, the training stands: the reason goes in the card
        return None, Runtime(flavour="onnx", reason=f"conversion failed: {_why(exc)}")


def _unsupported(check: pd.DataFrame, classes: list[Any] | None) -> str | None:
    if classes is not None and len(classes) < 2:
        # skl2onnx makes a graph for it that ONNX Runtime's checks abort the whole process on (native code)
        return "a classifier of a single class: not converted"
    if len(check) == 0:
        return "no hold-out rows to check the conversion on"
    for name, dtype in check.dtypes.items():
        if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)):
            return f"input column '{name}' is {dtype}, not numeric: the ONNX model takes one numeric tensor"
    return None


def _candidates(model: Any) -> list[type]:
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    trees = type(final).__module__.startswith(_TREES)
    return [np.float32, np.float64] if trees else [np.float64, np.float32]


def _to_onnx(model: Any, columns: int, dtype: type) -> Any:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    tensor = FloatTensorType if dtype is np.float32 else DoubleTensorType
    options = {id(model): {"zipmap": False}} if hasattr(model, "classes_") else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # version notices from skl2onnx and onnx: the check below decides
        return convert_sklearn(model, initial_types=[("input", tensor([None, columns]))], options=options)


def _compare(reference: Prediction, answer: Prediction, kind: str) -> dict[str, Any]:
    if kind == "classification" and reference.proba is not None:
        same = np.asarray(reference.values == answer.values, dtype=bool)
        labels = int((~same).sum())
        gap = float(np.abs(reference.proba - answer.proba).max()) if answer.proba is not None else float("inf")
        exact = labels == 0 and gap <= PROBA_TOLERANCE
        differs = f"{labels} label(s) differ, probabilities up to {gap:.2g} apart (tolerance {PROBA_TOLERANCE:g})"
        return {"exact": exact, "labels_differ": labels, "max_proba_diff": gap, "differs": differs}
    if kind == "classification":
        labels = int((np.asarray(reference.values) != np.asarray(answer.values)).sum())
        return {"exact": labels == 0, "labels_differ": labels, "differs": f"{labels} label(s) differ"}
    want = np.asarray(reference.values, dtype=np.float64)
    got = np.asarray(answer.values, dtype=np.float64)
    gap = np.abs(want - got)
    relative = float((gap / np.maximum(np.abs(want), 1.0)).max())
    exact = relative <= VALUE_TOLERANCE
    differs = f"predictions up to {relative:.2g} apart relative to their value (tolerance {VALUE_TOLERANCE:g})"
    return {"exact": exact, "max_abs_diff": float(gap.max()), "max_rel_diff": relative, "differs": differs}


def _versions() -> str:
    import onnxruntime
    import skl2onnx

    return f"skl2onnx {skl2onnx.__version__}, onnxruntime {onnxruntime.__version__}"


def _why(exc: BaseException) -> str:
    first = (str(exc) or type(exc).__name__).split(". ")[0]  # skl2onnx explains at length after the first sentence
    return one_line(first, 200).rstrip(".")

