"""Serve the control plane over REST and gRPC beside an orchestrator in this process.

    with ControlServers(orchestrator, http_port=0, grpc_port=0) as servers:   # 0: any free port
        print(servers.http_port, servers.grpc_port)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mlrm.web.servers import ApiServers
from mlrm.web.tls import Tls
from orchestrator.api.control import ControlPlane
from orchestrator.api.grpc import SCOPES, registrar
from orchestrator.api.registry import RegistryPlane
from orchestrator.api.rest import rest_app
from orchestrator.orchestrator import Orchestrator

if TYPE_CHECKING:
    from mlrm.auth import Security


class ControlServers(ApiServers):
    def __init__(
        self,
        orchestrator: Orchestrator,
        *,
        configs: str | Path = "configs",
        host: str = "127.0.0.1",
        http_port: int | None = 8090,
        grpc_port: int | None = 8091,
        max_body: int = 64 * 1024 * 1024,
        grpc_workers: int = 16,
        security: Security | None = None,
        tls: Tls | None = None,
    ) -> None:
        self.control = ControlPlane(orchestrator, configs)
        self.registry = RegistryPlane(orchestrator.volume)
        super().__init__(
            rest=rest_app(self.control, self.registry, max_body=max_body),
            grpc=registrar(self.control, self.registry), host=host, http_port=http_port, grpc_port=grpc_port,
            max_body=max_body, grpc_workers=grpc_workers, name="control", security=security, grpc_scopes=SCOPES,
            tls=tls,
        )  # fmt: skip
