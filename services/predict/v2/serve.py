"""Run the V2 REST and gRPC servers beside a predict service (``mlrm serve predict``, tests, notebooks).

    with V2Servers(service, http_port=0, grpc_port=0) as servers:   # 0: any free port
        print(servers.http_port, servers.grpc_port)
"""

from __future__ import annotations

from mlrm.web.servers import ApiServers
from services.predict.service import PredictService
from services.predict.v2 import monitoring
from services.predict.v2.codec import V2
from services.predict.v2.grpc import registrar
from services.predict.v2.rest import rest_app


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
        rest = rest_app(self.v2, max_body=max_body)
        watch = monitoring.Monitoring(service.server.registry)  # feedback in, drift checks out
        rest.router.routes.extend(monitoring.rest_routes(watch, max_body=max_body))
        v2_grpc, watch_grpc = registrar(self.v2), monitoring.registrar(watch)
        super().__init__(
            rest=rest, grpc=lambda server: (v2_grpc(server), watch_grpc(server)), host=host,
            http_port=http_port, grpc_port=grpc_port, max_body=max_body, grpc_workers=grpc_workers,
            max_concurrent_rpcs=max_inflight, name="v2",
        )  # fmt: skip
