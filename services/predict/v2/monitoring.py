"""Monitoring beside the V2 protocol, over REST and gRPC: feedback in, drift checks out.

REST (on the V2 app)::

    POST /v2/models/{name}/feedback     {"feedback": [{"request_id": "r-1", "label": "setosa"}, ...]}
                                        -> {"model_name": ..., "accepted": <rows labelled>}   scope: infer
    GET  /v2/models/{name}/monitoring   ?limit=N -> {"model_name": ..., "checks": [...]}      scope: read

gRPC: ``mlrm.monitoring.Monitoring`` (``monitoring.proto``), ``Feedback`` and ``Checks``.
Feedback is on disk when the answer comes; ids nobody logged are counted when joined, not refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
import grpc
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlrm.errors import DataError, MlrmError, NotFoundError
from mlrm.monitoring import Check, history, parse_feedback, write_feedback
from mlrm.registry import ModelRegistry, check_name
from mlrm.web.auth import requires
from mlrm.web.http import read_body
from services.predict.v2 import monitoring_pb2 as pb
from services.predict.v2 import monitoring_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

SCOPES: dict[str, str] = {
    "/mlrm.monitoring.Monitoring/Feedback": "infer",
    "/mlrm.monitoring.Monitoring/Checks": "read",
}
R = TypeVar("R")


class Monitoring:
    """What both transports call: the volume's feedback and check history for registered models."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.volume = registry.volume

    def _known(self, model: str) -> str:
        check_name(model)
        if not self.registry.versions(model):
            raise NotFoundError(f"model '{model}' has no registered versions")
        return model

    def feedback(self, model: str, body: Any) -> int:
        return write_feedback(self.volume, self._known(model), parse_feedback(body))

    def checks(self, model: str, limit: int | None = None) -> list[Check]:
        return history(self.volume, self._known(model), limit=limit or None)


# -- REST ------------------------------------------------------------------------------------
def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def rest_routes(monitoring: Monitoring, *, max_body: int = 16 * 1024 * 1024) -> list[Route]:
    """The routes to add to the V2 REST app."""

    def guarded(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except MlrmError as exc:
                return _json({"error": exc.message}, exc.http_status)
            except Exception:
                log.exception("monitoring REST: %s %s failed", request.method, request.url.path)
                return _json({"error": "internal error (logged by the server)"}, 500)

        return endpoint

    async def body_of(request: Request) -> Any:
        body = await read_body(request, max_body)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise DataError(f"the feedback is not valid JSON: {exc}") from None

    async def feedback(request: Request) -> Response:
        name, body = request.path_params["name"], await body_of(request)
        accepted = await anyio.to_thread.run_sync(monitoring.feedback, name, body)
        return _json({"model_name": name, "accepted": accepted})

    async def checks(request: Request) -> Response:
        name, limit = request.path_params["name"], request.query_params.get("limit", "0")
        if not limit.isdigit():
            raise DataError(f"limit must be a whole number, not {limit!r}")
        found = await anyio.to_thread.run_sync(monitoring.checks, name, int(limit))
        return _json({"model_name": name, "checks": [c.model_dump(mode="json") for c in found]})

    return [
        Route("/v2/models/{name}/feedback", requires("infer")(guarded(feedback)), methods=["POST"]),
        Route("/v2/models/{name}/monitoring", requires("read")(guarded(checks)), methods=["GET"]),
    ]


# -- gRPC ------------------------------------------------------------------------------------
def _label(label: Any) -> Any:
    which = label.WhichOneof("value")
    if which is None:
        raise DataError("a label has no value")
    return getattr(label, which)


def _item(item: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if item.request_id:
        out["request_id"] = item.request_id
    if item.HasField("row"):
        out["row"] = item.row
    if item.row_id:
        out["row_id"] = item.row_id
    if item.HasField("label"):
        out["label"] = _label(item.label)
    if len(item.labels):
        out["labels"] = [_label(v) for v in item.labels]
    return out


class Servicer(pb_grpc.MonitoringServicer):
    def __init__(self, monitoring: Monitoring) -> None:
        self.monitoring = monitoring

    def _call(self, context: grpc.ServicerContext, fn: Callable[[], R]) -> R:
        try:
            return fn()
        except MlrmError as exc:
            context.abort(getattr(grpc.StatusCode, exc.grpc_status, grpc.StatusCode.INTERNAL), exc.message)
        except Exception:
            log.exception("monitoring gRPC call failed")
            context.abort(grpc.StatusCode.INTERNAL, "internal error (logged by the server)")
        raise AssertionError("unreachable")  # context.abort raises

    def Feedback(self, request: Any, context: grpc.ServicerContext) -> Any:
        accepted = self._call(
            context, lambda: self.monitoring.feedback(request.model_name, [_item(i) for i in request.items])
        )
        return pb.FeedbackResponse(model_name=request.model_name, accepted=accepted)

    def Checks(self, request: Any, context: grpc.ServicerContext) -> Any:
        found = self._call(context, lambda: self.monitoring.checks(request.model_name, request.limit))
        return pb.ChecksResponse(checks=[_check(c) for c in found])


def _check(check: Check) -> Any:
    fields = check.model_dump(exclude={"details"}, exclude_none=True)
    fields["reason"] = check.reason or ""
    fields["alias"] = check.alias or ""
    return pb.Check(**fields)


def registrar(monitoring: Monitoring) -> Callable[[grpc.Server], None]:
    return lambda server: pb_grpc.add_MonitoringServicer_to_server(Servicer(monitoring), server)
