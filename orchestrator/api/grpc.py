"""The control plane over gRPC (``mlrm.control.v1.Control`` and ``.Registry``): thin adapters over
:class:`~.control.ControlPlane` and :class:`~.registry.RegistryPlane`. Errors are the error's own
``grpc_status`` with its message; structured bodies are JSON validated by the REST API's models."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
import orjson

from mlrm.deployments import DeployRequest
from mlrm.discovery import ModelQuery
from mlrm.errors import DataError, MlrmError
from orchestrator.api import control_pb2 as pb
from orchestrator.api import control_pb2_grpc as pb_grpc
from orchestrator.api import models as M
from orchestrator.api.control import ControlPlane
from orchestrator.api.registry import RegistryPlane
from orchestrator.api.rest import MAX_LIMIT, STATUSES

log = logging.getLogger(__name__)

R = TypeVar("R")
CONTROL, REGISTRY = "/mlrm.control.v1.Control/", "/mlrm.control.v1.Registry/"
SCOPES: dict[str, str] = {
    f"{CONTROL}Submit": "submit", f"{CONTROL}CancelRun": "submit",
    f"{CONTROL}ListRuns": "read", f"{CONTROL}GetRun": "read", f"{CONTROL}GetResults": "read",
    f"{CONTROL}WatchRun": "read",
    f"{REGISTRY}ListModels": "read", f"{REGISTRY}GetCard": "read", f"{REGISTRY}SearchModels": "read",
    f"{REGISTRY}ListDeployments": "read",
    f"{REGISTRY}RegisterModel": "admin", f"{REGISTRY}SetAlias": "admin", f"{REGISTRY}Deploy": "admin",
    f"{REGISTRY}Decommission": "admin",
}  # fmt: skip


def _json(text: str, what: str) -> Any:
    try:
        return orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        raise DataError(f"{what} is not valid JSON") from None


def _reply(value: Any) -> pb.Json:
    return pb.Json(json=orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode())


def run_message(status: M.RunStatus) -> pb.Run:
    return pb.Run(
        id=status.id, workflow=status.workflow, mode=status.mode, status=status.status, created=status.created,
        finished=status.finished or 0.0, error=status.error or "",
        steps=[pb.Step(idx=s.idx, name=s.name, service=s.service, status=s.status, started=s.started or 0.0,
                       finished=s.finished or 0.0, rows_in=s.rows_in, rows_out=s.rows_out, batches_in=s.batches_in,
                       batches_out=s.batches_out, error=s.error or "",
                       result_json=orjson.dumps(s.result).decode() if s.result is not None else "")
               for s in status.steps],
    )  # fmt: skip


class _Calls:
    def _call(self, context: grpc.ServicerContext, fn: Callable[[], R]) -> R:
        try:
            return fn()
        except MlrmError as exc:
            context.abort(getattr(grpc.StatusCode, exc.grpc_status, grpc.StatusCode.INTERNAL), exc.message)
        except Exception:  # a bug: INTERNAL without a traceback for the caller; keep serving
            log.exception("control-plane gRPC call failed")
            context.abort(grpc.StatusCode.INTERNAL, "internal error (logged by the server)")
        raise AssertionError("unreachable")  # context.abort raises


class ControlServicer(pb_grpc.ControlServicer, _Calls):
    def __init__(self, control: ControlPlane) -> None:
        self.control = control

    def Submit(self, request: Any, context: grpc.ServicerContext) -> Any:
        def submit() -> pb.SubmitReply:
            source = request.WhichOneof("source")
            if source is None:
                raise DataError("give the workflow as yaml, json or name")
            body: dict[str, Any] = {"overrides": _json(request.overrides_json, "overrides_json")}
            if source == "json":
                body["workflow"] = _json(request.json, "the workflow")
            else:
                body[source] = getattr(request, source)
            parsed = M.parse(M.SubmitRequest, body)
            text = orjson.dumps(body).decode() if source != "json" else None
            return pb.SubmitReply(run_id=self.control.submit(parsed, text))

        return self._call(context, submit)

    def ListRuns(self, request: Any, context: grpc.ServicerContext) -> Any:
        def runs() -> pb.ListRunsReply:
            if request.status and request.status not in STATUSES:
                raise DataError(f"status must be one of {', '.join(STATUSES)}")
            limit = min(request.limit or 20, MAX_LIMIT)
            page = self.control.runs(status=request.status or None, workflow=request.workflow or None, limit=limit,
                                     cursor=request.cursor or None)  # fmt: skip
            out = [run_message(self.control.run(r.id)) for r in page.runs]
            return pb.ListRunsReply(runs=out, next_cursor=page.next or "")

        return self._call(context, runs)

    def GetRun(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._call(context, lambda: run_message(self.control.run(request.run_id)))

    def CancelRun(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._call(context, lambda: run_message(self.control.cancel(request.run_id)))

    def GetResults(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._call(context, lambda: _reply(self.control.results(request.run_id).model_dump(mode="json")))

    def WatchRun(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        first = self._call(context, lambda: self.control.run(request.run_id))  # NOT_FOUND before streaming
        yield run_message(first)
        for status in self.control.watch(request.run_id, stopped=lambda: not context.is_active()):
            if status != first:
                yield run_message(status)


class RegistryServicer(pb_grpc.RegistryServicer, _Calls):
    def __init__(self, registry: RegistryPlane) -> None:
        self.registry = registry

    def ListModels(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._call(context, lambda: _reply([m.model_dump(mode="json") for m in self.registry.models()]))

    def GetCard(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._call(context, lambda: _reply(self.registry.card(
            request.name, version=request.version or None, alias=request.alias or None)))  # fmt: skip

    def SearchModels(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._call(context, lambda: _reply(self.registry.search(
            M.parse(ModelQuery, _json(request.json, "the query")))))  # fmt: skip

    def RegisterModel(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._call(context, lambda: _reply(self.registry.register(
            request.name, request.artefact, request.filename, request.description, request.alias or None,
        ).model_dump(mode="json")))  # fmt: skip

    def SetAlias(self, request: Any, context: grpc.ServicerContext) -> Any:
        def set_alias() -> pb.Json:
            body = M.parse(M.AliasRequest, {"version": request.version})
            return _reply(self.registry.set_alias(request.name, request.alias, body.version).model_dump(mode="json"))

        return self._call(context, set_alias)

    def Deploy(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._call(context, lambda: _reply(self.registry.deploy(
            M.parse(DeployRequest, _json(request.json, "the deploy request"))).model_dump(mode="json")))  # fmt: skip

    def ListDeployments(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._call(context, lambda: _reply(self.registry.list_deployments()))

    def Decommission(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._call(context, lambda: _reply(
            self.registry.decommission(request.deployment_id, request.delete).model_dump(mode="json")))  # fmt: skip


def registrar(control: ControlPlane, registry: RegistryPlane) -> Callable[[grpc.Server], None]:
    def add(server: grpc.Server) -> None:
        pb_grpc.add_ControlServicer_to_server(ControlServicer(control), server)
        pb_grpc.add_RegistryServicer_to_server(RegistryServicer(registry), server)

    return add
