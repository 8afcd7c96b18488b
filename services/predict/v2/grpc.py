"""The V2 protocol over gRPC (grpcio, service ``inference.GRPCInferenceService``): a thin adapter over
:class:`~.codec.V2`.

Inputs arrive as typed ``contents`` or as ``raw_input_contents``; the answer mirrors the request's
form. Errors are the error's own ``grpc_status`` with its message; past ``max_inflight`` requests
in flight a call gets RESOURCE_EXHAUSTED at once, and so does a message over ``max_body`` bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
import numpy as np

from mlrm.errors import DataError, MlrmError
from services.predict.v2 import grpc_predict_v2_pb2 as pb
from services.predict.v2 import grpc_predict_v2_pb2_grpc as pb_grpc
from services.predict.v2.codec import NUMPY, V2, Tensor, check_header, from_list, from_raw, to_raw

log = logging.getLogger(__name__)

# which typed-contents field carries each datatype
CONTENTS = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP16": "fp32_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}  # fmt: skip
FIELDS = sorted(set(CONTENTS.values()))

# the scope each method needs when the server has authentication (mlrm.web.auth); None: open
SERVICE = "/inference.GRPCInferenceService/"
SCOPES: dict[str, str | None] = {
    f"{SERVICE}ServerLive": None, f"{SERVICE}ServerReady": None, f"{SERVICE}ServerMetadata": None,
    f"{SERVICE}ModelReady": "read", f"{SERVICE}ModelMetadata": "read", f"{SERVICE}RepositoryIndex": "read",
    f"{SERVICE}ModelInfer": "infer",
    f"{SERVICE}RepositoryModelLoad": "admin", f"{SERVICE}RepositoryModelUnload": "admin",
}  # fmt: skip

R = TypeVar("R")



def _params(params: Any) -> dict[str, Any]:
    out = {}
    for key, value in params.items():
        which = value.WhichOneof("parameter_choice")
        if which is not None:
            out[key] = getattr(value, which)
    return out


def _status(exc: MlrmError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, exc.grpc_status, grpc.StatusCode.INTERNAL)


def _tensor(spec: Any) -> Tensor:
    name, datatype, shape = check_header(spec.name, spec.datatype, list(spec.shape))
    expected = CONTENTS[datatype]
    stray = [f for f in FIELDS if f != expected and len(getattr(spec.contents, f))]
    if stray:
        raise DataError(f"input '{name}' is {datatype}: its values belong in contents.{expected}, not {stray[0]}")
    values = getattr(spec.contents, expected)
    if datatype == "BYTES":
        return from_list(name, datatype, shape, list(values), _params(spec.parameters))
    array = np.asarray(values, dtype=NUMPY[datatype])
    if array.size != int(np.prod(shape, dtype=np.int64)):
        count = int(np.prod(shape))
        raise DataError(f"input '{name}': shape {shape} holds {count} value(s), its contents {array.size}")
    return Tensor(name, datatype, shape, array, _params(spec.parameters))


class Servicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, v2: V2) -> None:
        self.v2 = v2

    def _call(self, context: grpc.ServicerContext, fn: Callable[[], R]) -> R:
        try:
            return fn()
        except MlrmError as exc:
            context.abort(_status(exc), exc.message)
        except Exception:  # a bug: INTERNAL without a traceback for the caller; keep serving
            log.exception("V2 gRPC call failed")
            context.abort(grpc.StatusCode.INTERNAL, "internal error (logged by the server)")
        raise AssertionError("unreachable")  # context.abort raises

    def ServerLive(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.ServerReadyResponse(ready=True)

    def ServerMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.ServerMetadataResponse(**self.v2.server_metadata())

    def ModelReady(self, request: Any, context: grpc.ServicerContext) -> Any:
        ready = self._call(context, lambda: self.v2.model_ready(request.name, request.version or None))
        return pb.ModelReadyResponse(ready=ready)

    def ModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        meta = self._call(context, lambda: self.v2.model_metadata(request.name, request.version or None))
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"],
            inputs=[tensor(**t) for t in meta["inputs"]], outputs=[tensor(**t) for t in meta["outputs"]],
        )  # fmt: skip

    def ModelInfer(self, request: Any, context: grpc.ServicerContext) -> Any:
        def answer() -> Any:
            with self.v2.admit():
                return self._infer(request)

        return self._call(context, answer)

    def _infer(self, request: Any) -> Any:
        if "input_ref" in request.parameters:
            return self._infer_reference(request)
        raw = list(request.raw_input_contents)
        if raw and len(raw) != len(request.inputs):
            raise DataError(f"{len(raw)} raw_input_contents for {len(request.inputs)} input(s); give one per input")
        tensors = [
            from_raw(s.name, s.datatype, list(s.shape), raw[i], _params(s.parameters)) if raw else _tensor(s)
            for i, s in enumerate(request.inputs)
        ]
        names = [o.name for o in request.outputs] or None
        result, outputs = self.v2.infer(
            request.model_name, request.model_version or None, tensors, outputs=names,
            parameters=_params(request.parameters), request_id=request.id or None, source="grpc",
        )  # fmt: skip
        response = pb.ModelInferResponse(
            model_name=result.ref.name, model_version=str(result.ref.version), id=request.id
        )
        for tensor in outputs:
            out = response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
            if raw:
                response.raw_output_contents.append(to_raw(tensor))
            elif tensor.datatype == "BYTES":
                out.contents.bytes_contents.extend(v if isinstance(v, bytes) else str(v).encode() for v in tensor.data)
            else:
                getattr(out.contents, CONTENTS[tensor.datatype]).extend(tensor.data.tolist())
        return response

    def _infer_reference(self, request: Any) -> Any:
        """Inference by reference: no tensors in, none out; the answer's ``parameters`` say where the rows went."""
        if len(request.inputs) or len(request.raw_input_contents):
            raise DataError("a request with 'input_ref' carries no inputs: the rows are read from the volume")
        result = self.v2.infer_reference(
            request.model_name, request.model_version or None, _params(request.parameters),
            outputs=[o.name for o in request.outputs] or None, request_id=request.id or None, source="grpc",
        )  # fmt: skip
        response = pb.ModelInferResponse(
            model_name=result.ref.name, model_version=str(result.ref.version), id=request.id
        )
        for key, value in result.parameters().items():
            if isinstance(value, int):
                response.parameters[key].int64_param = value
            else:
                response.parameters[key].string_param = str(value)
        return response

    def RepositoryIndex(self, request: Any, context: grpc.ServicerContext) -> Any:
        models = self._call(context, self.v2.index)
        return pb.RepositoryIndexResponse(models=[pb.RepositoryIndexResponse.ModelIndex(**m) for m in models])

    def RepositoryModelLoad(self, request: Any, context: grpc.ServicerContext) -> Any:
        params = {k: getattr(v, v.WhichOneof("parameter_choice") or "string_param")
                  for k, v in request.parameters.items()}  # fmt: skip
        self._call(context, lambda: self.v2.load(request.model_name, params))
        return pb.RepositoryModelLoadResponse()

    def RepositoryModelUnload(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._call(context, lambda: self.v2.unload(request.model_name))
        return pb.RepositoryModelUnloadResponse()


def registrar(v2: V2) -> Callable[[grpc.Server], None]:
    """What registers the V2 servicer on a ``grpc.Server`` (see :class:`mlrm.web.servers.ApiServers`)."""
    return lambda server: pb_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(v2), server)
