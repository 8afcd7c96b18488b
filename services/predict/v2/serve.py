"""Run the V2 REST and gRPC servers beside a predict service (``mlrm serve predict``, tests, notebooks).

    with V2Servers(service, http_port=0, grpc_port=0) as servers:   # 0: any free port
        print(servers.http_port, servers.grpc_port)

With ``security`` (a :class:`~mlrm.auth.Security`) every call but health and server metadata needs
a token or API key with its scope (see :data:`~services.predict.v2.grpc.SCOPES`), and REST also
answers ``POST /token``; with ``tls`` both ports speak TLS only. Beside the protocol, the same
ports take feedback and answer drift checks (:mod:`.monitoring`) and the gRPC health check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlrm.service import ApiSettings, ServiceApi
from mlrm.web.grpc_health import SCOPES as HEALTH_SCOPES
from mlrm.web.grpc_health import with_health
from mlrm.web.servers import ApiServers
from mlrm.web.tls import Tls
from services.predict.v2 import monitoring
from services.predict.v2.codec import V2
from services.predict.v2.grpc import SCOPES, registrar
from services.predict.v2.rest import rest_app

if TYPE_CHECKING:  # the service starts these servers (PredictService.api): no import back at run time
    from mlrm.auth import Security
    from services.predict.service import PredictService


def v2_api(service: PredictService, settings: ApiSettings, v2: V2 | None = None) -> ServiceApi:
    """The predict service's direct API (:meth:`PredictService.api`): V2 over REST and gRPC, with monitoring."""
    v2 = v2 or V2(service.dataplane, max_inflight=settings.max_inflight)
    watch = monitoring.Monitoring(service.server.registry)  # feedback in, drift checks out
    rest = rest_app(v2, max_body=settings.max_body, extra=monitoring.rest_routes(watch, max_body=settings.max_body))
    v2_grpc, watch_grpc = registrar(v2), monitoring.registrar(watch)
    grpc = with_health(lambda server: (v2_grpc(server), watch_grpc(server)), service.ready,
                       ["inference.GRPCInferenceService", "mlrm.monitoring.Monitoring"])  # fmt: skip
    return ServiceApi(rest=rest, grpc=grpc, scopes={**SCOPES, **monitoring.SCOPES, **HEALTH_SCOPES},
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
        security: Security | None = None,
        tls: Tls | None = None,
    ) -> None:
        self.v2 = V2(service.dataplane, max_inflight=max_inflight)
        api = v2_api(service, ApiSettings(max_body=max_body, max_inflight=max_inflight), self.v2)
        super().__init__(
            rest=api.rest, grpc=api.grpc, host=host, http_port=http_port, grpc_port=grpc_port, max_body=max_body,
            grpc_workers=grpc_workers, max_concurrent_rpcs=api.max_concurrent_rpcs, name="v2", security=security,
            grpc_scopes=api.scopes, tls=tls,
        )  # fmt: skip
