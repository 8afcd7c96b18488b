"""Run the V2 REST and gRPC servers beside a predict service (``mlrm serve predict``, tests, notebooks).

    with V2Servers(service, http_port=0, grpc_port=0) as servers:   # 0: any free port
        print(servers.http_port, servers.grpc_port)

With ``security`` (a :class:`~mlrm.auth.Security`) every call but health and server metadata needs
a token or API key with its scope (see :data:`~services.predict.v2.grpc.SCOPES`), and REST also
answers ``POST /token``; with ``tls`` both ports speak TLS only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlrm.web.servers import ApiServers
from mlrm.web.tls import Tls
from services.predict.service import PredictService
from services.predict.v2 import monitoring
from services.predict.v2.codec import V2
from services.predict.v2.grpc import SCOPES, registrar
from services.predict.v2.rest import rest_app

if TYPE_CHECKING:
    from mlrm.auth import Security


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
        rest = rest_app(self.v2, max_body=max_body)
        watch = monitoring.Monitoring(service.server.registry)  # feedback in, drift checks out
        rest.router.routes.extend(monitoring.rest_routes(watch, max_body=max_body))
        v2_grpc, watch_grpc = registrar(self.v2), monitoring.registrar(watch)
        super().__init__(
            rest=rest, grpc=lambda server: (v2_grpc(server), watch_grpc(server)), host=host,
            http_port=http_port, grpc_port=grpc_port, max_body=max_body, grpc_workers=grpc_workers,
            max_concurrent_rpcs=max_inflight, name="v2", security=security, tls=tls,
            grpc_scopes={**SCOPES, **monitoring.SCOPES},
        )  # fmt: skip
