"""Run the V2 REST and gRPC servers beside a predict service (``mlrm serve predict``, tests, notebooks).

    with V2Servers(service, http_port=0, grpc_port=0) as servers:   # 0: any free port
        print(servers.http_port, servers.grpc_port)
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from mlrm.errors import MlrmError
from services.predict.service import PredictService
from services.predict.v2.codec import V2
from services.predict.v2.rest import rest_app


class V2Servers:
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
        self.host, self.http_port, self.grpc_port = host, http_port, grpc_port
        self.max_body, self.grpc_workers = max_body, grpc_workers
        self._uvicorn: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._grpc: Any = None

    def start(self) -> V2Servers:
        if self.http_port is not None:
            # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on connections of a socket that says it
            # is TCP; without it a response's head and body wait on Nagle + delayed ACK (~40 ms a request)
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host, self.http_port))
            except OSError as exc:
                sock.close()
                raise MlrmError(f"cannot listen for REST on {self.host}:{self.http_port}: {exc.strerror}") from None
            self.http_port = sock.getsockname()[1]
            config = uvicorn.Config(
                rest_app(self.v2, max_body=self.max_body), log_level="warning", access_log=False, lifespan="off",
                timeout_graceful_shutdown=5,
            )  # fmt: skip
            self._uvicorn = uvicorn.Server(config)
            self._thread = threading.Thread(
                target=self._uvicorn.run, kwargs={"sockets": [sock]}, name="v2-rest", daemon=True
            )
            self._thread.start()
            deadline = time.monotonic() + 10
            while not self._uvicorn.started and self._thread.is_alive() and time.monotonic() < deadline:
                time.sleep(0.01)
            if not self._uvicorn.started:
                raise MlrmError(f"the REST server did not start on {self.host}:{self.http_port}")
        if self.grpc_port is not None:
            from services.predict.v2.grpc import grpc_server

            address = f"[{self.host}]:{self.grpc_port}" if ":" in self.host else f"{self.host}:{self.grpc_port}"
            self._grpc, self.grpc_port = grpc_server(
                self.v2, address, workers=self.grpc_workers, max_body=self.max_body
            )
            self._grpc.start()
        return self

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=2).wait()
            self._grpc = None
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._uvicorn = None

    def __enter__(self) -> V2Servers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
