"""Run a REST (ASGI) application and gRPC services on their ports, in background threads.

    with ApiServers(rest=app, grpc=add_servicers, http_port=0, grpc_port=0) as servers:   # 0: any free port
        print(servers.http_port, servers.grpc_port)

``rest`` is any ASGI application; ``grpc`` is a callable that registers servicers on a
``grpc.Server`` (the generated ``add_*Servicer_to_server`` functions). Either may be ``None``.

``security`` (a :class:`~mlrm.auth.Security`; None: open) is installed on the REST application
(:func:`mlrm.web.auth.secure`) and, with ``grpc_scopes`` (the gRPC module's ``SCOPES``), as an
interceptor on gRPC. ``tls`` (a :class:`~mlrm.web.tls.Tls`) serves both ports over TLS only.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

import grpc
import uvicorn

from mlrm.errors import MlrmError
from mlrm.web.auth import grpc_auth_interceptor, secure
from mlrm.web.tls import Tls

if TYPE_CHECKING:
    from mlrm.auth import Security

GrpcRegistrar = Callable[[grpc.Server], None]

# httptools' C parser and uvloop's libuv loop (dependencies; uvloop has no Windows build) roughly halve what
# uvicorn spends on a small request. uvicorn >= 0.36 gives the loop to this server's thread only (a loop
# factory), never as the process's event loop policy.
HTTP = "httptools" if find_spec("httptools") else "h11"
LOOP = "uvloop" if find_spec("uvloop") else "asyncio"


class ApiServers:
    def __init__(
        self,
        *,
        rest: Any = None,
        grpc: GrpcRegistrar | None = None,
        host: str = "127.0.0.1",
        http_port: int | None = None,
        grpc_port: int | None = None,
        max_body: int = 16 * 1024 * 1024,
        grpc_workers: int = 8,
        max_concurrent_rpcs: int | None = None,
        grpc_interceptors: Sequence[Any] = (),
        name: str = "api",
        security: Security | None = None,
        grpc_scopes: Mapping[str, str | None] | None = None,
        tls: Tls | None = None,
    ) -> None:
        self.rest, self.grpc = rest, grpc
        self.host = host
        self.http_port = http_port if rest is not None else None
        self.grpc_port = grpc_port if grpc is not None else None
        self.max_body, self.grpc_workers, self.max_concurrent_rpcs = max_body, grpc_workers, max_concurrent_rpcs
        self.grpc_interceptors = list(grpc_interceptors)
        self.name = name
        self.security, self.tls = security, tls
        if security is not None:
            if rest is not None:
                secure(rest, security)
            # first: a call is authenticated before any other interceptor sees it; unlisted methods need admin
            self.grpc_interceptors.insert(0, grpc_auth_interceptor(security, grpc_scopes or {}))
        self._uvicorn: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._grpc: Any = None

    def _listen(self) -> socket.socket:
        # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on connections of a socket that says it
        # is TCP; without it a response's head and body wait on Nagle + delayed ACK (~40 ms a request)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.http_port or 0))
        except OSError as exc:
            sock.close()
            raise MlrmError(f"cannot listen for REST on {self.host}:{self.http_port}: {exc.strerror}") from None
        return sock

    def _start_rest(self) -> None:
        sock = self._listen()
        self.http_port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.rest, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=5,
            **(self.tls.uvicorn_options() if self.tls is not None else {}),
            http=HTTP, loop=LOOP,
        )  # fmt: skip
        self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._uvicorn.run, kwargs={"sockets": [sock]}, name=f"{self.name}-rest", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._uvicorn.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._uvicorn.started:
            raise MlrmError(f"the REST server did not start on {self.host}:{self.http_port}")

    def _start_grpc(self) -> None:
        assert self.grpc is not None
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.grpc_workers, thread_name_prefix=f"{self.name}-grpc"),
            interceptors=self.grpc_interceptors,
            maximum_concurrent_rpcs=self.max_concurrent_rpcs,
            options=[("grpc.max_receive_message_length", self.max_body),
                     ("grpc.max_send_message_length", 2**31 - 1)],
        )  # fmt: skip
        self.grpc(server)
        address = f"[{self.host}]:{self.grpc_port or 0}" if ":" in self.host else f"{self.host}:{self.grpc_port or 0}"
        if self.tls is not None:
            port = server.add_secure_port(address, self.tls.grpc_credentials())
        else:
            port = server.add_insecure_port(address)
        if port == 0:
            raise MlrmError(f"cannot listen for gRPC on {address}")
        self._grpc, self.grpc_port = server, port
        server.start()

    def start(self) -> ApiServers:
        try:
            if self.rest is not None and self.http_port is not None:
                self._start_rest()
            if self.grpc is not None and self.grpc_port is not None:
                self._start_grpc()
        except BaseException:
            self.stop()
            raise
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

    def __enter__(self) -> ApiServers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
