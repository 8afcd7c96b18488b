"""Inference by reference: a request names an object of the volume to predict and one to write.

Instead of carrying rows, a direct request (V2 ``parameters``, or the nameko method
``infer_ref``) names ``input_ref``, an object in the volume, and ``output_ref``, where the
predictions go. The data plane streams the object batch by batch through the version's
inference pipeline and the model into the output, so large batches never pass through a
request body. The formats are ``csv``, ``jsonl`` and ``parquet``, from each key's extension
or the ``format`` / ``output_format`` parameters; reading is the collector's source of that
format and writing the predict sink of that format, both found in the step registry (predict
imports no other service). The output key obeys the rule of every configured output: not
under ``models/``, ``runs/`` or ``deployments/``; the input may not be read from them either.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from mlrm.errors import ConfigError, DataError, InvalidKeyError
from mlrm.registry import ModelRef
from mlrm.steps import SinkStep, SourceStep, registry
from mlrm.volume import check_key, check_output_key

FORMATS = ("csv", "jsonl", "parquet")
EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
BATCH_SIZE = 10_000


@dataclass
class ReferenceRequest:
    """Predict the rows of volume object ``input_ref`` with a model; write the predictions to ``output_ref``."""

    model: str
    input_ref: str
    output_ref: str
    alias: str | None = None
    version: int | None = None
    format: str | None = None  # of the input; default: from input_ref's extension
    output_format: str | None = None  # default: from output_ref's extension
    keep: list[str] = field(default_factory=list)
    probabilities: bool = True
    column: str = "prediction"
    batch_size: int = BATCH_SIZE
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    source: str = "direct"
    runtime: str | None = None


@dataclass
class ReferenceResult:
    ref: ModelRef
    output_ref: str
    rows: int
    format: str
    request_id: str

    def parameters(self) -> dict[str, Any]:
        """What a V2 answer carries in its ``parameters`` (it has no output tensors)."""
        return {"output_ref": self.output_ref, "rows": self.rows, "output_format": self.format}


def format_of(key: str, given: str | None, what: str) -> str:
    if given is not None:
        if given not in FORMATS:
            raise DataError(f"{what} format {given!r} is not one of {', '.join(FORMATS)}")
        return given
    dot = key.rfind(".")
    found = EXTENSIONS.get(key[dot:].lower()) if dot >= 0 else None
    if found is None:
        raise DataError(
            f"cannot tell the format of {what} '{key}' from its extension; name it with a .csv, .jsonl or .parquet "
            f"extension or give the '{'format' if what == 'input_ref' else 'output_format'}' parameter"
        )
    return found


def check_refs(request: ReferenceRequest) -> None:
    """Both keys valid, outside the reserved prefixes: a DataError (or InvalidKeyError) naming the parameter."""
    for what, key in (("input_ref", request.input_ref), ("output_ref", request.output_ref)):
        if not isinstance(key, str) or not key:
            raise DataError(f"'{what}' must name an object in the volume, e.g. 'predictions/new.parquet'")
        try:
            check_key(key)
        except InvalidKeyError as exc:
            raise InvalidKeyError(f"{what}: {exc.message}") from None
        try:
            check_output_key(key)  # reading mlrm's own records (models, runs) is refused like writing them
        except ConfigError as exc:
            raise DataError(f"{what}: {exc.reason}") from None
    if request.input_ref == request.output_ref:
        raise DataError("'output_ref' must not be the 'input_ref' object")
    if not isinstance(request.batch_size, int) or isinstance(request.batch_size, bool) or request.batch_size < 1:
        raise DataError(f"batch_size must be a positive integer, not {request.batch_size!r}")


def source_for(request: ReferenceRequest) -> SourceStep:
    """The collector's source of the input's format, reading the volume object ``input_ref``."""
    fmt = format_of(request.input_ref, request.format, "input_ref")
    return _step("source", fmt, request.input_ref)  # type: ignore[return-value]


def sink_for(request: ReferenceRequest) -> tuple[SinkStep, str]:
    """The predict sink of the output's format, writing the volume object ``output_ref``."""
    fmt = format_of(request.output_ref, request.output_format, "output_ref")
    return _step("sink", fmt, request.output_ref), fmt  # type: ignore[return-value]


def _step(kind: str, fmt: str, key: str) -> Any:
    cls = registry.get(kind, fmt)
    try:
        return cls.model_validate({"step": fmt, "key": key})
    except ValidationError as exc:
        reason = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise DataError(f"{'input_ref' if kind == 'source' else 'output_ref'} '{key}': {reason}") from None
