"""The direct API of a service that processes tables, over REST and gRPC, for any service that offers one.

A service gives a function ``process(df, options) -> df`` (its configured steps) and gets:

- ``POST /v1/process``: the table in the body (JSON records, CSV, Arrow IPC stream or Parquet, by
  ``Content-Type``), the processed table back in the format ``Accept`` asks for (default: the request's);
  with ``?model=NAME&version=N|ALIAS[&step=HOP]`` a stateful step applies the statistics that model
  version stored instead of fitting them on the request's rows (when the service takes statistics);
- ``GET /health/live`` and ``GET /health/ready`` (503 with the reason while not ready);
- ``GET /openapi.json`` and ``GET /docs``;
- gRPC ``mlrm.tables.v1.Tables/Process``: the same, the table as Arrow IPC bytes (``tables.proto``), and the
  standard health check ``grpc.health.v1.Health/Check``.

Processing a caller's table is scope ``infer``: like a prediction, it computes on the caller's rows
with the server's configuration, and reads nothing else of the server's (``read`` is for its records).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import grpc
import pandas as pd
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from mlrm.errors import DataError, MlrmError
from mlrm.web import tables
from mlrm.web import tables_pb2 as pb
from mlrm.web import tables_pb2_grpc as pb_grpc
from mlrm.web.auth import requires, token_routes
from mlrm.web.grpc_health import SCOPES as HEALTH_SCOPES
from mlrm.web.grpc_health import with_health
from mlrm.web.http import EXCEPTION_HANDLERS, guarded, json_response, read_body
from mlrm.web.openapi import openapi_routes

log = logging.getLogger(__name__)

SCOPES: dict[str, str | None] = {"/mlrm.tables.v1.Tables/Process": "infer", **HEALTH_SCOPES}


@dataclass(frozen=True)
class TableOptions:
    """How to process a table: fit statistics on it (no model) or apply a model version's."""

    model: str | None = None
    version: str | None = None
    step: str | None = None

    def __post_init__(self) -> None:
        if self.model is None and (self.version is not None or self.step is not None):
            raise DataError("'version' and 'step' choose a model version's statistics: give 'model' too")


Process = Callable[[pd.DataFrame, TableOptions], pd.DataFrame]
Ready = Callable[[], str | None]


class ErrorBody(BaseModel):
    """Every refusal: a message, and the error as data."""

    error: str
    detail: dict[str, Any] = Field(default_factory=dict)


class Health(BaseModel):
    live: bool | None = None
    ready: bool | None = None
    reason: str | None = None


def error_responses(*statuses: int) -> str:
    """The OpenAPI ``responses`` entries (YAML) of error statuses, all with the :class:`ErrorBody`."""
    reasons = {400: "the request cannot be read", 401: "no valid credentials", 403: "the credentials lack the scope",
               404: "not found", 406: "no acceptable format", 409: "refused in this state",
               413: "the body is too large", 415: "not a table format", 422: "the data does not fit the steps",
               503: "not ready"}  # fmt: skip
    return "".join(
        f"  {s}:\n    description: {reasons[s]}\n    content:\n      application/json:\n"
        f"        schema: {{$ref: '#/components/schemas/ErrorBody'}}\n"
        for s in statuses
    )


TABLE_CONTENT = """      application/json:
        schema:
          type: array
          items: {type: object, additionalProperties: {type: [string, number, integer, boolean, "null"]}}
      text/csv:
        schema: {type: string}
      application/vnd.apache.arrow.stream:
        schema: {type: string, format: binary}
      application/vnd.apache.parquet:
        schema: {type: string, format: binary}
"""


def health_routes(ready: Ready) -> list[Route]:
    @requires(None)
    async def live(request: Request) -> Response:
        """The process serves.
        ---
        summary: Liveness
        responses:
          200:
            description: alive
            content:
              application/json:
                schema: {$ref: '#/components/schemas/Health'}
        """
        return json_response({"live": True})

    @requires(None)
    async def is_ready(request: Request) -> Response:
        return json_response({"ready": True}) if (reason := ready()) is None else json_response(
            {"ready": False, "reason": reason}, 503
        )  # fmt: skip

    is_ready.__doc__ = """The service takes calls.
        ---
        summary: Readiness
        responses:
          200:
            description: ready
            content:
              application/json:
                schema: {$ref: '#/components/schemas/Health'}
          503:
            description: not ready, and why
            content:
              application/json:
                schema: {$ref: '#/components/schemas/Health'}
        """
    return [Route("/health/live", guarded(live)), Route("/health/ready", guarded(is_ready))]


def process_routes(service: str, process: Process, *, statistics: bool, max_body: int,
                   max_cells: int = tables.MAX_CELLS, description: str = "") -> list[Route]:  # fmt: skip
    """``POST /v1/process`` for ``process``; ``statistics``: it takes ``model``/``version``/``step``."""

    @requires("infer")
    async def process_table(request: Request) -> Response:
        query = request.query_params
        unknown = sorted(set(query) - ({"model", "version", "step"} if statistics else set()))
        if unknown:
            raise DataError(f"unknown query parameter(s): {', '.join(unknown)}")
        options = TableOptions(query.get("model"), query.get("version"), query.get("step"))
        content_type = request.headers.get("content-type")
        media = tables.media_type_of(content_type)
        answer = tables.negotiate(request.headers.get("accept"), media)
        body = await read_body(request, max_body)

        def work() -> bytes:
            df = tables.decode(body, content_type, max_cells=max_cells)
            return tables.encode(process(df, options), answer)

        return Response(await anyio.to_thread.run_sync(work), 200, media_type=answer)

    params = (
        """parameters:
          - {name: model, in: query, required: false, schema: {type: string},
             description: apply the statistics this model stored instead of fitting them}
          - {name: version, in: query, required: false, schema: {type: string},
             description: with model - a version number or an alias (default - the latest)}
          - {name: step, in: query, required: false, schema: {type: string},
             description: with model - the training route's step whose statistics to use}
        """
        if statistics
        else ""
    )
    process_table.__doc__ = f"""The table, processed by the {service} service's configured steps.
        ---
        summary: Process a table ({service})
        description: {json.dumps(description or "The body is a table; the answer is the processed table.")}
        {params}requestBody:
          required: true
          content:
{_indent(TABLE_CONTENT, 8)}
        responses:
          200:
            description: the processed table, in the format Accept asks for (default - the request's)
            content:
{_indent(TABLE_CONTENT, 8)}
{_indent(error_responses(400, 401, 403, 404, 406, 409, 413, 415, 422), 8)}
        """
    return [Route("/v1/process", guarded(process_table), methods=["POST"])]


def _indent(text: str, n: int) -> str:
    return "\n".join((" " * n + line) if line else line for line in text.splitlines())


def rest_app(title: str, routes: Sequence[BaseRoute], *, ready: Ready,
             models: Sequence[type[BaseModel]] = ()) -> Starlette:  # fmt: skip
    """A service's REST application: its ``routes``, health, the OpenAPI document and docs page, JSON errors."""
    routes = [*health_routes(ready), *routes, *token_routes()]
    routes += openapi_routes(title, routes, models=[ErrorBody, Health, *models])

    return Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)


def grpc_status(exc: MlrmError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, exc.grpc_status, grpc.StatusCode.INTERNAL)


def grpc_guarded(method: Callable[[Any, Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
    """A servicer method with every error answered by the one mapping (its grpc_status and message)."""

    def call(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except MlrmError as exc:
            context.abort(grpc_status(exc), exc.message)
        except Exception:
            log.exception("gRPC %s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, "internal error (logged by the server)")

    call.__name__ = method.__name__
    return call


class TablesServicer(pb_grpc.TablesServicer):
    def __init__(self, process: Process, *, statistics: bool, max_cells: int = tables.MAX_CELLS) -> None:
        self.process, self.statistics, self.max_cells = process, statistics, max_cells

    @grpc_guarded
    def Process(self, request: pb.ProcessRequest, context: grpc.ServicerContext) -> pb.ProcessResponse:
        if not self.statistics and (request.model or request.version or request.step):
            raise DataError("this service applies no model statistics: leave model, version and step empty")
        options = TableOptions(request.model or None, request.version or None, request.step or None)
        df = self.process(tables.from_ipc(request.arrow, max_cells=self.max_cells), options)
        return pb.ProcessResponse(arrow=tables.to_ipc(df), rows=len(df))


def tables_registrar(process: Process, *, statistics: bool, ready: Ready) -> Callable[[grpc.Server], None]:
    """``Tables/Process`` and the standard health check (``grpc.health.v1``)."""
    servicer = TablesServicer(process, statistics=statistics)
    return with_health(lambda server: pb_grpc.add_TablesServicer_to_server(servicer, server), ready,
                       ["mlrm.tables.v1.Tables"])  # fmt: skip
