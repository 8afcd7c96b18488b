"""The predict service's data plane: one path from raw rows to answers, whatever the transport.

Bus batches, nameko RPC (and the REST and gRPC servers built on it) decode their request,
call :meth:`DataPlane.infer` (a direct request) or :meth:`DataPlane.run` (a batch of a
workflow), and encode the result. Model lookup, the version's inference pipeline, the
model, the output columns and the ``on_predict`` hook live here, once.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlrm.columns import Columns
from mlrm.context import StepContext
from mlrm.deployments import Batching, Shadow
from mlrm.errors import MlrmError, RefusedError
from mlrm.flavours import Prediction as Answer
from mlrm.hooks import Hook
from mlrm.registry import ModelRef
from services.predict.batching import Batcher, Call, ModelCall
from services.predict.model import ServedModel
from services.predict.reference import ReferenceRequest, ReferenceResult, check_refs, sink_for, source_for
from services.predict.server import ModelServer, Serving, Target
from services.predict.traffic import Mirror, in_canary

log = logging.getLogger(__name__)


CALLER_ERRORS = frozenset({400, 404, 413, 422, 429})


def server_side(exc: Exception) -> bool:
    """Whether a failure counts against the version that answered (not a bad request, an unknown model
    or a busy server)."""
    return not (isinstance(exc, MlrmError) and exc.http_status in CALLER_ERRORS)


@dataclass
class InferenceRequest:
    """A direct request: raw rows for a model named by version, alias, or neither (the latest).

    ``frame`` may be None when ``matrix`` carries the rows: it is then built from the matrix when
    first read (a version with no pipeline never reads it)."""

    model: str
    frame: pd.DataFrame
    alias: str | None = None
    version: int | None = None
    keep: list[str] = field(default_factory=list)
    probabilities: bool = True
    column: str = "prediction"
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    source: str = "direct"  # which transport brought it: "nameko", "rest", "grpc", ...
    runtime: str | None = None  # "auto", "sklearn", "onnx"; None: the deployment's choice (else auto)
    routing_key: str | None = None  # keeps a caller on one side of a canary (default: the request id)
    matrix: np.ndarray | None = None
    """The same rows as ``frame``, as one 2-D float64 array of the columns ``matrix_columns``, when the transport
    decoded them so: a version with no pipeline steps then answers from it without DataFrames."""
    matrix_columns: list[str] | None = None


def _request_frame(request: InferenceRequest) -> pd.DataFrame:
    frame = request.__dict__.get("_frame")
    if frame is None and request.matrix is not None:
        frame = request._frame = pd.DataFrame(request.matrix, columns=request.matrix_columns, copy=False)
    return frame


def _set_request_frame(request: InferenceRequest, frame: pd.DataFrame | None) -> None:
    request._frame = frame


# ``frame`` is a property over the dataclass field of that name, so a request given only its matrix builds
# the DataFrame the first time something reads it (pandas costs more than the model on a small request)
InferenceRequest.frame = property(_request_frame, _set_request_frame)  # type: ignore[assignment,method-assign]


@dataclass
class Prediction:
    """What ``on_predict`` subscribers see, for every prediction whoever asked.

    The rows are :class:`~mlrm.columns.Columns`: ``inputs``, ``features`` and ``outputs`` are their
    DataFrames, built when first read; a subscriber that reads ``*.arrays`` (the prediction log)
    costs a small request no pandas at all."""

    ref: ModelRef
    request_id: str
    source: str  # "bus" for workflow batches, else the transport of a direct request
    input_columns: Columns  # the raw rows
    feature_columns: Columns  # the rows after the inference pipeline: what the model saw
    output_columns: Columns  # the answer: predictions, probabilities, kept columns
    at: float  # seconds since the epoch

    @property
    def inputs(self) -> pd.DataFrame:
        return self.input_columns.frame

    @property
    def features(self) -> pd.DataFrame:
        return self.feature_columns.frame

    @property
    def outputs(self) -> pd.DataFrame:
        return self.output_columns.frame

    @property
    def shadow(self) -> bool:
        """A shadow's answer to a mirrored request: logged, never returned to the caller."""
        return self.source == "shadow"


class InferenceResult:
    """The answer to a direct request: its output columns (``frame``), and the version that made them.

    An answer made from a request's ``matrix`` holds the model's arrays (``answer``); its ``frame`` is
    built from them only when someone asks for it."""

    def __init__(
        self, ref: ModelRef, frame: pd.DataFrame | None, request_id: str, *, answer: Answer | None = None,
        served: ServedModel | None = None, probabilities: bool = True, column: str = "prediction",
    ) -> None:  # fmt: skip
        self.ref, self.request_id, self.answer = ref, request_id, answer
        self._frame, self._served, self._probabilities, self._column = frame, served, probabilities, column

    @property
    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            assert self.answer is not None and self._served is not None
            served, answer = self._served, self.answer
            self._frame = served.answer_columns(answer, probabilities=self._probabilities, column=self._column).frame
        return self._frame


class DataPlane:
    def __init__(self, server: ModelServer) -> None:
        self.server = server
        self.on_predict: Hook[Prediction] = Hook("on_predict")
        self.on_model_call: Hook[ModelCall] = Hook("on_model_call")
        """Fires for each model call of batched direct requests: how many requests and rows it merged."""
        self._batchers: dict[tuple[ModelRef, str], Batcher] = {}
        self._lock = threading.Lock()
        self.mirror = Mirror()  # runs shadow requests off the request path
        server.on_unload.append(self._drop_batchers)

    def infer(self, request: InferenceRequest) -> InferenceResult:
        """Answer a direct request with the version it names (an alias is followed as it is re-pointed).

        With batching configured for its deployment, the model call (after the request's own
        pipeline) is merged with those of concurrent requests for the same version and runtime.
        """
        target = Target(request.model, request.alias, request.version)
        options = self.server.options(target)
        served = self._route(target, options, request)
        if served.refusal:
            raise RefusedError(served.refusal)
        runtime = request.runtime or options.runtime
        batcher = self._batcher(served, runtime, options.batching) if options.batching else None
        with self._counted(served):
            result = self._answer(served, request, runtime, batcher)
        if options.shadow is not None:
            self._mirror(options.shadow, served, request)
        return result

    def _answer(
        self, served: ServedModel, request: InferenceRequest, runtime: str, batcher: Batcher | None
    ) -> InferenceResult:
        if (
            request.matrix is not None and served.matrix_ready and batcher is None and not request.keep
            and request.matrix_columns == served.features and len(request.matrix)
        ):  # fmt: skip
            answer = served.predict_matrix(request.matrix, probabilities=request.probabilities, runtime=runtime)
            if answer is not None:  # else the runtime refused these rows: the DataFrame path says why
                result = InferenceResult(
                    served.ref, None, request.id, answer=answer, served=served,
                    probabilities=request.probabilities and served.classes is not None, column=request.column,
                )  # fmt: skip
                if len(self.on_predict):  # what run() would tell them: with no pipeline, features are the input
                    rows = Columns.of_matrix(request.matrix, served.features)
                    outputs = served.answer_columns(
                        answer, probabilities=request.probabilities and served.classes is not None,
                        column=request.column,
                    )  # fmt: skip
                    event = Prediction(served.ref, request.id, request.source, rows, rows, outputs, time.time())
                    self.on_predict.fire(event)
                return result
        with batcher.slot() if batcher is not None else nullcontext() as slot:
            frame = self.run(
                served, served.coerce(request.frame), keep=request.keep, probabilities=request.probabilities,
                column=request.column, request_id=request.id, source=request.source, runtime=runtime,
                call=slot.call if slot is not None else None,
            )  # fmt: skip
        return InferenceResult(served.ref, frame, request.id)

    @contextmanager
    def _counted(self, served: ServedModel) -> Iterator[None]:
        """Count a direct request against the version that answers it (promotion reads the counts)."""
        try:
            yield
        except Exception as exc:  # a bad request is the caller's; anything else counts against the version
            self.server.traffic.add(served.ref.name, served.ref.version, failed=server_side(exc))
            raise
        self.server.traffic.add(served.ref.name, served.ref.version)

    def _route(self, target: Target, options: Serving, request: InferenceRequest) -> ServedModel:
        """The version that answers: the deployment's, or its canary's for the share of routing keys it has."""
        canary = options.canary
        if canary is not None and in_canary(request.model, request.routing_key or request.id, canary.share):
            try:
                return self.server.get(Target(request.model, canary.alias, canary.version))
            except MlrmError as exc:  # the canary went away since the last sync: the deployment answers
                log.warning("canary %s of %s not available: %s", canary.selector(), request.model, exc)
        return self.server.get(target)

    def _mirror(self, shadow: Shadow, answered: ServedModel, request: InferenceRequest) -> None:
        def run() -> None:
            served = self.server.get(Target(request.model, shadow.alias, shadow.version))
            if served.ref == answered.ref or served.refusal:
                return
            self.run(
                served, served.coerce(request.frame), keep=request.keep, probabilities=request.probabilities,
                column=request.column, request_id=request.id, source="shadow",
            )  # fmt: skip

        self.mirror.submit(run)

    def infer_reference(self, request: ReferenceRequest) -> ReferenceResult:
        """Predict a volume object's rows into another object, batch by batch (see :mod:`.reference`).

        Like a batch workflow, the version may drop rows (no answer is matched to a request row),
        and a pipeline that needs every row at once (a sort, a window) sees the whole input
        gathered first; otherwise one batch is in memory at a time.
        """
        check_refs(request)
        source = source_for(request)
        sink, fmt = sink_for(request)
        target = Target(request.model, request.alias, request.version)
        served = self.server.get(target)
        runtime = request.runtime or self.server.options(target).runtime
        ctx = StepContext(self.server.volume, run_id=request.id, step="predict", mode="predict", model=served.ref)
        rows = 0

        def predicted() -> Iterator[pd.DataFrame]:
            nonlocal rows
            batches: Iterable[pd.DataFrame] = source.read(ctx, request.batch_size)
            if served.needs_whole_stream():
                batches = [pd.concat(list(batches), ignore_index=True)]
            for number, batch in enumerate(batches):
                out = self.run(
                    served, served.coerce(batch), keep=request.keep, probabilities=request.probabilities,
                    column=request.column, request_id=f"{request.id}/{number}", source=request.source,
                    runtime=runtime,
                )  # fmt: skip
                rows += len(out)
                yield out

        sink.write(ctx, predicted())
        return ReferenceResult(served.ref, request.output_ref, rows, fmt, request.id)

    def _batcher(self, served: ServedModel, runtime: str, settings: Batching) -> Batcher:
        key = (served.ref, runtime)
        batcher = self._batchers.get(key)
        if batcher is None or batcher.settings != settings:
            with self._lock:
                batcher = self._batchers.get(key)
                if batcher is None or batcher.settings != settings:
                    batcher = self._batchers[key] = Batcher(served.call(runtime), settings, self.on_model_call)
        return batcher

    def _drop_batchers(self, served: ServedModel) -> None:
        with self._lock:
            for key in [k for k in self._batchers if k[0] == served.ref]:
                del self._batchers[key]

    def run(self, served: ServedModel, frame: pd.DataFrame, **options: Any) -> pd.DataFrame:
        """:meth:`run_columns`, as a DataFrame."""
        return self.run_columns(served, frame, **options).frame

    def run_columns(
        self,
        served: ServedModel,
        frame: pd.DataFrame,
        *,
        skip_hops: Collection[str] = (),
        keep: Collection[str] = (),
        probabilities: bool = True,
        column: str = "prediction",
        request_id: str,
        source: str,
        runtime: str = "auto",
        call: Call | None = None,
    ) -> Columns:
        """Raw rows -> the version's pipeline (less ``skip_hops``, applied upstream) -> the model -> outputs.

        ``runtime`` picks the model call (``auto``: the version's exact ONNX conversion when it has one);
        ``call`` replaces it (a batcher's)."""
        features = served.transform(frame, skip_hops)
        outputs = served.predict(
            features, keep=keep, probabilities=probabilities, column=column, runtime=runtime, call=call
        )
        if served.post:
            outputs = Columns.of(served.postprocess(outputs.frame, features, column))
        if len(self.on_predict):
            rows, seen = Columns.of(frame), Columns.of(features)
            self.on_predict.fire(Prediction(served.ref, request_id, source, rows, seen, outputs, time.time()))
        return outputs
