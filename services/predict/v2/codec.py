"""V2 requests and answers, whatever the transport: tensors <-> raw rows, model metadata, the repository.

A request carries either one input per feature column (shape ``[rows]`` or ``[rows, 1]``, any V2
datatype; BYTES for text, categories and timestamps) or one 2-D input ``[rows, features]`` whose
columns are the card's ``inference.inputs`` in order (MLServer's request ``content_type`` ``pd``
and ``np`` force one form or the other). The rows go through :meth:`DataPlane.infer`, so they
meet the version's inference pipeline exactly as a batch workflow's rows do. The answer has the
output ``prediction`` and, for classifiers, ``probabilities`` ``[rows, classes]`` (in the card's
order of ``classes``); a request's ``outputs`` selects among them.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlrm.card import datatype as datatype_of
from mlrm.deployments import DeployRequest
from mlrm.errors import DataError, NotFoundError, OverloadedError
from mlrm.flavours import Prediction as Answer
from services.predict.config import PROBA_PREFIX
from services.predict.dataplane import DataPlane, InferenceRequest, InferenceResult
from services.predict.model import ServedModel
from services.predict.reference import ReferenceRequest, ReferenceResult
from services.predict.server import Target

SERVER_NAME = "mlrm"
EXTENSIONS = ["model_repository", "binary_tensor_data"]
INLINE_BODY = 16 * 1024  # bytes: a request body up to this size is answered without a thread hop (REST)

# numpy dtypes of the V2 datatypes (little-endian, as the binary forms carry them)
NUMPY: dict[str, Any] = {
    "BOOL": np.dtype("?"), "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"), "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"), "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}  # fmt: skip
NUMERIC = {k for k in NUMPY if k not in ("BOOL", "BYTES")}


@dataclass
class Tensor:
    """One named tensor: ``data`` is flat (row-major), of the datatype's numpy dtype (BYTES: an object array)."""

    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)


# -- tensors from the wire ---------------------------------------------------------------------
def check_header(name: Any, datatype: Any, shape: Any) -> tuple[str, str, list[int]]:
    if not isinstance(name, str) or not name:
        raise DataError("every input needs a 'name'")
    if datatype not in NUMPY:
        raise DataError(f"input '{name}': datatype {datatype!r} is not a V2 datatype ({', '.join(NUMPY)})")
    if not isinstance(shape, list | tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise DataError(f"input '{name}': shape must be a list of non-negative integers, not {shape!r}")
    return name, datatype, list(shape)


def _size(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def from_list(name: Any, datatype: Any, shape: Any, data: Any, parameters: Any = None) -> Tensor:
    """A tensor from JSON data (flat or nested, row-major) or typed gRPC contents."""
    name, datatype, shape = check_header(name, datatype, shape)
    if not isinstance(data, list | tuple):
        raise DataError(f"input '{name}': 'data' must be a list")
    if datatype == "BYTES":
        flat = _flatten(data, name)
        if not all(isinstance(v, str | bytes) for v in flat):
            raise DataError(f"input '{name}' is BYTES: its data must be strings")
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
    else:
        try:
            loose = np.asarray(data)
        except ValueError:
            raise DataError(f"input '{name}': 'data' is ragged (nested lists of different lengths)") from None
        kind = loose.dtype.kind
        # integers fit every numeric datatype, numbers with a fraction only FP*
        fits = kind == "b" if datatype == "BOOL" else (kind in "iu" or (kind == "f" and datatype.startswith("FP")))
        if not fits and loose.size:
            raise DataError(f"input '{name}' is {datatype}: its data must be {_what(datatype)}")
        try:
            array = loose.astype(NUMPY[datatype])
        except (TypeError, ValueError, OverflowError):
            raise DataError(f"input '{name}' is {datatype}: its data must be {_what(datatype)}") from None
        array = array.reshape(-1)
    if array.size != _size(shape):
        raise DataError(f"input '{name}': shape {shape} holds {_size(shape)} value(s), its data has {array.size}")
    return Tensor(name, datatype, shape, array, dict(parameters or {}))


def _what(datatype: str) -> str:
    return {"BOOL": "true/false", "BYTES": "strings"}.get(datatype, "integers" if datatype[0] in "IU" else "numbers")


def _flatten(data: Any, name: str) -> list[Any]:
    if not any(isinstance(v, list) for v in data):
        return list(data)
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for v in stack[-1]:
            if isinstance(v, list):
                stack.append(iter(v))
                break
            out.append(v)
        else:
            stack.pop()
        if len(stack) > 64:
            raise DataError(f"input '{name}': 'data' is nested too deeply")
    return out


def from_raw(name: Any, datatype: Any, shape: Any, raw: bytes, parameters: Any = None) -> Tensor:
    """A tensor from the binary form (REST binary extension, gRPC ``raw_input_contents``)."""
    name, datatype, shape = check_header(name, datatype, shape)
    if datatype == "BYTES":
        values, at, end = [], 0, len(raw)
        while at < end:
            if at + 4 > end:
                raise DataError(f"input '{name}': binary BYTES data is cut inside a length prefix")
            (n,) = struct.unpack_from("<I", raw, at)
            at += 4
            if at + n > end:
                raise DataError(f"input '{name}': binary BYTES data is shorter than its length prefixes say")
            values.append(bytes(raw[at : at + n]))
            at += n
        array = np.empty(len(values), dtype=object)
        array[:] = values
    else:
        width = NUMPY[datatype].itemsize
        if len(raw) % width:
            raise DataError(f"input '{name}': {len(raw)} byte(s) of binary data is not a whole number of {datatype}")
        array = np.frombuffer(raw, dtype=NUMPY[datatype])
    if array.size != _size(shape):
        raise DataError(f"input '{name}': shape {shape} holds {_size(shape)} value(s), its data has {array.size}")
    return Tensor(name, datatype, shape, array, dict(parameters or {}))


def to_raw(tensor: Tensor) -> bytes:
    """The binary form of a tensor (BYTES: each element a 4-byte little-endian length, then its bytes)."""
    if tensor.datatype != "BYTES":
        return np.ascontiguousarray(tensor.data, dtype=NUMPY[tensor.datatype]).tobytes()
    parts = []
    for v in tensor.data:
        b = v if isinstance(v, bytes) else str(v).encode()
        parts.append(struct.pack("<I", len(b)))
        parts.append(b)
    return b"".join(parts)


def json_data(tensor: Tensor) -> list[Any]:
    if tensor.datatype == "BYTES":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in tensor.data.tolist()]
    return tensor.data.tolist()


# -- tensors <-> rows ----------------------------------------------------------------------------
def _content_type(parameters: dict[str, Any]) -> str | None:
    value = parameters.get("content_type")
    return value if isinstance(value, str) else None


def decode(served: ServedModel, tensors: list[Tensor], parameters: dict[str, Any]) -> pd.DataFrame:
    """The raw rows a request carries, as columns named like the card's ``inference.inputs``."""
    return decode_rows(served, tensors, parameters)[0]


# integer and float64 tensors become the float64 a float64 feature is coerced to (FP32, FP16: not the same numbers)
_TO_FLOAT64 = {"FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}


def decode_rows(
    served: ServedModel, tensors: list[Tensor], parameters: dict[str, Any], *, lazy: bool = False
) -> tuple[pd.DataFrame | None, np.ndarray | None]:
    """:func:`decode`, and for a :attr:`~ServedModel.matrix_ready` version the same rows as one float64 matrix
    (None otherwise): the values the DataFrame path would hand the model after coercion. With ``lazy``, a
    frame that is the matrix itself (FP64 inputs) is left to be built from it (None)."""
    features = served.card.inference.inputs or served.card.featurelist
    names = [f.name for f in features]
    kinds = {f.name: f.datatype for f in features}
    model = f"model '{served.ref.name}' version {served.ref.version}"
    if not tensors:
        raise DataError(f"the request has no inputs; {model} takes: {', '.join(names)}")
    form = _content_type(parameters)
    first = tensors[0]
    one_2d = len(tensors) == 1 and len(first.shape) == 2
    matrix = form == "np" or (form != "pd" and one_2d and (first.shape[1] != 1 or first.name not in names))
    if matrix:
        if len(tensors) != 1 or len(first.shape) != 2:
            raise DataError(f"a 2-D request ('np') has one input of shape [rows, {len(names)}] for {model}")
        rows, width = first.shape
        if width != len(names):
            raise DataError(
                f"input '{first.name}' has {width} column(s); {model} takes {len(names)}: {', '.join(names)}"
            )
        for name in names:
            _check_kind(first, kinds[name], model, column=name)
        values = _values(first).reshape(rows, width)
        if values.dtype != object:  # one numeric block, built at once (a column at a time costs ~0.2 ms a request)
            matrix = None
            if served.matrix_ready and first.datatype in _TO_FLOAT64:
                matrix = values.astype(np.float64, copy=False)  # FP64: the same array
                if lazy and matrix is values:
                    return None, matrix
            return pd.DataFrame(values, columns=served.columns(names), copy=False), matrix
        return pd.DataFrame({name: values[:, i] for i, name in enumerate(names)}), None
    columns: dict[str, Any] = {}
    rows = None
    for tensor in tensors:
        if tensor.name not in kinds:
            raise DataError(f"unknown input '{tensor.name}': {model} takes {', '.join(names)}")
        if tensor.name in columns:
            raise DataError(f"input '{tensor.name}' is given twice")
        if len(tensor.shape) not in (1, 2) or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
            raise DataError(f"input '{tensor.name}' has shape {tensor.shape}; one column is [rows] or [rows, 1]")
        if rows is None:
            rows = tensor.shape[0]
        elif tensor.shape[0] != rows:
            raise DataError(f"input '{tensor.name}' has {tensor.shape[0]} row(s), the first input {rows}")
        _check_kind(tensor, kinds[tensor.name], model)
        columns[tensor.name] = _values(tensor)
    missing = [n for n in names if n not in columns]
    if missing:
        raise DataError(f"{model} needs input(s) {', '.join(missing)}, which the request lacks")
    if served.matrix_ready and all(t.datatype in _TO_FLOAT64 for t in tensors):
        matrix = np.empty((rows or 0, len(names)), dtype=np.float64)
        for i, n in enumerate(names):
            matrix[:, i] = columns[n]
        if all(t.datatype == "FP64" for t in tensors):  # the same rows, one block (integers keep their type)
            return None if lazy else pd.DataFrame(matrix, columns=served.columns(names), copy=False), matrix
        return pd.DataFrame({n: columns[n] for n in names}), matrix
    return pd.DataFrame({n: columns[n] for n in names}), None


def _check_kind(tensor: Tensor, expected: str, model: str, column: str | None = None) -> None:
    """Numbers for numeric features, BYTES for text, categories and timestamps; BOOL for BOOL."""
    got = tensor.datatype
    fits = (
        got == expected
        or (expected in NUMERIC and got in NUMERIC)
        or (expected == "BOOL" and got in NUMERIC)
        or (expected == "BYTES" and column is not None)  # a BYTES matrix may carry numbers as text
        or (expected in NUMERIC and got == "BYTES" and column is not None)
    )
    if not fits:
        where = f"column '{column}' of input '{tensor.name}'" if column else f"input '{tensor.name}'"
        raise DataError(f"{where} is {got}; {model} takes {expected} there")


def _values(tensor: Tensor) -> np.ndarray:
    if tensor.datatype != "BYTES":
        return tensor.data
    try:
        text = [v.decode("utf-8") if isinstance(v, bytes) else v for v in tensor.data]
    except UnicodeDecodeError:
        raise DataError(f"input '{tensor.name}' is BYTES: its values must be UTF-8 text") from None
    out = np.empty(len(text), dtype=object)
    out[:] = text
    return out


def outputs_of(served: ServedModel) -> list[str]:
    names = [o.name for o in served.card.inference.outputs]
    if not names:
        names = ["prediction"] + (["probabilities"] if served.classes is not None else [])
    return names


def encode(served: ServedModel, frame: pd.DataFrame, wanted: list[str]) -> list[Tensor]:
    """The answer's output tensors, in the order ``wanted`` names them."""
    out = []
    rows = len(frame)
    for name in wanted:
        if name == "probabilities":
            columns = [f"{PROBA_PREFIX}{c}" for c in served.classes or []]
            values = frame[columns].to_numpy(dtype="float64").reshape(-1)
            out.append(Tensor(name, "FP64", [rows, len(columns)], values))
        else:
            values = frame[name if name in frame.columns else "prediction"].to_numpy()
            kind = datatype_of(values.dtype)
            if values.dtype.kind == "M":  # timestamps (a forecast's) as ISO 8601 text
                values = np.datetime_as_string(values, unit="s").astype(object)
            elif kind == "BYTES":
                values = np.asarray([str(v) for v in values], dtype=object)
            out.append(Tensor(name, kind, [rows], values))
    return out


def encode_answer(served: ServedModel, answer: Answer, wanted: list[str]) -> list[Tensor]:
    """:func:`encode` straight from the model's arrays (an answer made without DataFrames): the same tensors."""
    out = []
    rows = len(answer.values)
    for name in wanted:
        if name == "probabilities":
            width = len(served.classes or [])
            proba = answer.proba if answer.proba is not None else np.empty((rows, 0))
            values = np.ascontiguousarray(proba, dtype=np.float64).reshape(-1)
            out.append(Tensor(name, "FP64", [rows, width], values))
        else:
            values = answer.values
            if values.dtype.kind in "OSU":  # what a DataFrame column of text gives back: BYTES
                values = np.asarray([str(v) for v in values], dtype=object)
                out.append(Tensor(name, "BYTES", [rows], values))
            else:
                out.append(Tensor(name, datatype_of(values.dtype), [rows], values))
    return out


# -- the protocol, transport-independent ------------------------------------------------------
class V2:
    """What REST and gRPC both answer: health, metadata, inference, the repository extension."""

    def __init__(self, dataplane: DataPlane, *, max_inflight: int = 64, version: str = "") -> None:
        self.dataplane = dataplane
        self.server = dataplane.server
        self.max_inflight = max_inflight
        self.version = version or _mlrm_version()
        self._inflight = 0
        self._lock = threading.Lock()

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Count a request in flight; past ``max_inflight`` refuse it at once (429 / RESOURCE_EXHAUSTED)."""
        with self._lock:
            if self._inflight >= self.max_inflight:
                raise OverloadedError(f"too many requests in flight (the bound is {self.max_inflight}); retry later")
            self._inflight += 1
        try:
            yield
        finally:
            with self._lock:
                self._inflight -= 1

    @staticmethod
    def target(model: str, version: str | None) -> Target:
        """A V2 version is a version number or an alias (``.../versions/production/infer``); none: the latest."""
        if not version:
            return Target(model)
        if version.isdigit():
            return Target(model, version=int(version))
        return Target(model, alias=version)

    def inline(self, model: str, version: str | None, size: int) -> bool:
        """Whether a request may be answered on the event loop rather than in a worker thread: a small body
        (``INLINE_BODY`` bytes at most) for a model already loaded and not batched. Such a request takes well
        under a millisecond, less than the hop to a thread and back; loading a model, a large batch, a
        batcher's wait for other requests or an ``on_predict`` subscriber (user code, which may block) would
        stall the loop, and with it the 429 answered at once, so those still go to a thread (subscribers that
        say they never block, ``may_block = False`` like the prediction logger, do not count)."""
        if size > INLINE_BODY or any(getattr(fn, "may_block", True) for fn in self.dataplane.on_predict):
            return False
        target = self.target(model, version)
        return self.server.is_loaded(target) and self.server.options(target).batching is None

    def served(self, model: str, version: str | None) -> ServedModel:
        return self.server.get(self.target(model, version))

    def infer(
        self,
        model: str,
        version: str | None,
        tensors: list[Tensor],
        *,
        outputs: list[str] | None = None,
        parameters: dict[str, Any] | None = None,
        request_id: str | None = None,
        source: str,
    ) -> tuple[InferenceResult, list[Tensor]]:
        target = self.target(model, version)
        served = self.server.get(target)
        available = outputs_of(served)
        wanted = outputs or available
        unknown = [o for o in wanted if o not in available]
        if unknown:
            raise DataError(f"unknown output(s) {', '.join(unknown)}: the model has {', '.join(available)}")
        frame, matrix = decode_rows(served, tensors, parameters or {}, lazy=True)
        request = InferenceRequest(
            model, frame, alias=target.alias, version=target.version, probabilities="probabilities" in wanted,
            source=source, routing_key=_routing_key(parameters or {}),
            matrix=matrix, matrix_columns=served.features if matrix is not None else None,
        )  # fmt: skip
        if request_id:
            request.id = request_id
        result = self.dataplane.infer(request)
        served = self.server.load(result.ref)  # the version that answered (an alias may have moved meanwhile)
        if result.answer is not None:
            return result, encode_answer(served, result.answer, wanted)
        return result, encode(served, result.frame, wanted)

    def infer_reference(
        self,
        model: str,
        version: str | None,
        parameters: dict[str, Any],
        *,
        outputs: list[str] | None = None,
        request_id: str | None = None,
        source: str,
    ) -> ReferenceResult:
        """Inference by reference: the request's ``parameters`` name ``input_ref`` and ``output_ref``
        (optionally ``format``, ``output_format``, ``keep``, ``batch_size``); nothing else is carried."""
        target = self.target(model, version)
        served = self.server.get(target)
        available = outputs_of(served)
        unknown = [o for o in outputs or [] if o not in available]
        if unknown:
            raise DataError(f"unknown output(s) {', '.join(unknown)}: the model has {', '.join(available)}")
        request = ReferenceRequest(
            model, _text(parameters, "input_ref", required=True), _text(parameters, "output_ref", required=True),
            alias=target.alias, version=target.version, format=_text(parameters, "format"),
            output_format=_text(parameters, "output_format"), keep=_names(parameters.get("keep")),
            probabilities=outputs is None or "probabilities" in outputs, source=source,
        )  # fmt: skip
        if "batch_size" in parameters:
            request.batch_size = parameters["batch_size"]
        if request_id:
            request.id = request_id
        return self.dataplane.infer_reference(request)

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": self.version, "extensions": EXTENSIONS}

    def model_metadata(self, model: str, version: str | None) -> dict[str, Any]:
        served = self.served(model, version)
        card = served.card
        inputs = card.inference.inputs or card.featurelist
        outputs = card.inference.outputs
        return {
            "name": served.ref.name,
            "versions": [str(served.ref.version)],
            "platform": f"mlrm-{card.inference.artefact.flavour}",
            "inputs": [{"name": f.name, "datatype": f.datatype, "shape": list(f.shape)} for f in inputs],
            "outputs": [{"name": o.name, "datatype": o.datatype, "shape": list(o.shape)} for o in outputs],
        }

    def model_ready(self, model: str, version: str | None) -> bool:
        self.served(model, version)  # loads it (a NotFoundError if there is no such model or version)
        return True

    # -- the model repository extension, mapped onto deployments ------------------------------
    def index(self) -> list[dict[str, Any]]:
        loaded = {}
        for ref in self.server.loaded():
            loaded.setdefault(ref.name, []).append(ref.version)
        out = []
        for name in self.server.registry.names():
            versions = loaded.get(name)
            if versions:
                out.extend({"name": name, "version": str(v), "state": "READY", "reason": ""} for v in versions)
            else:
                out.append({"name": name, "version": "", "state": "UNAVAILABLE", "reason": "not loaded"})
        return out

    def load(self, model: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
        """Deploy ``model`` (parameters ``version`` or ``alias``; the latest version by default) and load it here."""
        params = parameters or {}
        version, alias = params.get("version"), params.get("alias")
        try:
            request = DeployRequest(
                model=model, version=int(version) if version not in (None, "") else None, alias=alias or None
            )
        except (ValueError, TypeError) as exc:
            raise DataError(f"cannot load model '{model}': {_first_line(exc)}") from None
        dep = self.server.deployments.create(request)
        self.server.sync()
        return {"deployment": dep.id}

    def unload(self, model: str) -> dict[str, Any]:
        """Unload every active deployment of ``model`` (the versions stay in the registry)."""
        deps = [d for d in self.server.deployments.active() if d.model == model]
        if not deps:
            raise NotFoundError(f"model '{model}' has no active deployment to unload")
        for dep in deps:
            self.server.deployments.unload(dep.id)
        self.server.sync()
        return {"deployments": [d.id for d in deps]}


def _routing_key(parameters: dict[str, Any]) -> str | None:
    """``routing_key``: keeps a caller on one side of a canary (a string or a number)."""
    value = parameters.get("routing_key")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value) or len(str(value)) > 256:
        raise DataError("parameter 'routing_key' must be a non-empty string (256 characters at most) or an integer")
    return str(value)


def _text(parameters: dict[str, Any], name: str, *, required: bool = False) -> Any:
    value = parameters.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise DataError(f"parameter '{name}' must be a non-empty string (a volume object, e.g. 'raw/new.csv')"
                        if required else f"parameter '{name}' must be a string")  # fmt: skip
    return value


def _names(value: Any) -> list[str]:
    """``keep``: a list of column names, or (gRPC parameters are scalars) one comma-separated string."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise DataError("parameter 'keep' must be a list of column names or a comma-separated string")


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__


def _mlrm_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mlrm")
    except PackageNotFoundError:
        return "0"
