"""Run the V2 REST and gRPC servers beside a predict service (``mlrm serve predict``, tests, notebooks).

    with V2Servers(service, http_port=0, grpc_port=0) as servers:   # 0: any free port
        print(servers.http_port, servers.grpc_port)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlrm.service import ApiSettings, ServiceApi
from mlrm.web.grpc_health import SCOPES as HEALTH_SCOPES
from mlrm.web.grpc_health import with_health
from mlrm.web.servers import ApiServers
from services.predict.v2.codec import V2
from services.predict.v2.grpc import SCOPES, registrar
from services.predict.v2.rest import rest_app

if TYPE_CHECKING:  # the service starts these servers (PredictService.api): no import back at run time
    from services.predict.service import PredictService


def v2_api(service: PredictService, settings: ApiSettings) -> ServiceApi:
    """The predict service's direct API (:meth:`PredictService.api`): V2 over REST and gRPC."""
    v2 = V2(service.dataplane, max_inflight=settings.max_inflight)
    grpc = with_health(registrar(v2), service.ready, ["inference.GRPCInferenceService"])
    return ServiceApi(rest=rest_app(v2, max_body=settings.max_body), grpc=grpc, scopes={**SCOPES, **HEALTH_SCOPES},
                      max_concurrent_rpcs=settings.max_inflight)  # fmt: skip


class V2Servers(ApiServers):
    def __init__(
        self,
        service: PredictService,
        *,
        host: str = "127.0.0.1",
        http_port: int | None = 8080,
        grpc_port: int | None = 8081,
        max_inflight: int = 64,
        max_body: int = 16 * 1024 * 1024,
        grpc_workers: int = 8,
    ) -> None:
        self.v2 = V2(service.dataplane, max_inflight=max_inflight)
        super().__init__(
            rest=rest_app(self.v2, max_body=max_body), grpc=registrar(self.v2), host=host,
            http_port=http_port, grpc_port=grpc_port, max_body=max_body, grpc_workers=grpc_workers,
            max_concurrent_rpcs=max_inflight, name="v2",
        )  # fmt: skip
