"""The standard gRPC health check (``grpc.health.v1.Health/Check``) for every service's gRPC server.

The overall status (``service: ""``) and the service's own gRPC service names answer ``SERVING`` while the
service is ready (:meth:`mlrm.service.Service.ready`), ``NOT_SERVING`` otherwise; any other name is
``NOT_FOUND``, as the protocol asks. Open to every caller, like ``/health/*`` over REST.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import grpc

from mlrm.web import health_pb2 as pb
from mlrm.web import health_pb2_grpc as pb_grpc

SCOPES: dict[str, str | None] = {"/grpc.health.v1.Health/Check": None}


class HealthServicer(pb_grpc.HealthServicer):
    def __init__(self, ready: Callable[[], str | None], services: Iterable[str] = ()) -> None:
        self.ready, self.services = ready, {"", *services}

    def Check(self, request: pb.HealthCheckRequest, context: grpc.ServicerContext) -> pb.HealthCheckResponse:
        if request.service not in self.services:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no service {request.service[:100]!r} here")
        status = pb.HealthCheckResponse.SERVING if self.ready() is None else pb.HealthCheckResponse.NOT_SERVING
        return pb.HealthCheckResponse(status=status)


def with_health(registrar: Callable[[grpc.Server], None] | None, ready: Callable[[], str | None],
                services: Iterable[str] = ()) -> Callable[[grpc.Server], None]:  # fmt: skip
    """``registrar`` and the health service, on the same server."""
    servicer = HealthServicer(ready, services)

    def register(server: grpc.Server) -> None:
        if registrar is not None:
            registrar(server)
        pb_grpc.add_HealthServicer_to_server(servicer, server)

    return register
