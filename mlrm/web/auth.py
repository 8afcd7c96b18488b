"""Who may call what, on REST and gRPC: the scope each endpoint needs, checked against the caller.

Scopes: ``infer`` (predictions), ``submit`` (workflows), ``read`` (runs, models, deployments),
``admin`` (register, deploy, decommission, delete; it implies the others). Each REST endpoint says
what it needs with :func:`requires`; each gRPC server module lists ``SCOPES`` by full method name
(a method it leaves out needs ``admin``). :func:`secure` puts a :class:`~mlrm.auth.Security` on a
Starlette application; with none (``--insecure``, the embedded quick start) every call is allowed.

    routes = [Route("/runs", guarded(requires("read")(list_runs))), *token_routes()]
    app = secure(Starlette(routes=routes), security)
    server = grpc.server(pool, interceptors=[grpc_auth_interceptor(security, SCOPES)])
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

import anyio.to_thread
import grpc
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from mlrm.auth.scopes import SCOPES, Scope
from mlrm.auth.security import Security
from mlrm.errors import DataError, MlrmError, NotFoundError
from mlrm.web.http import error_response, guarded, json_response, read_body

__all__ = ["SCOPES", "Scope", "grpc_auth_interceptor", "requires", "secure", "token_routes"]

Endpoint = Callable[[Request], Awaitable[Response]]
MAX_FORM = 64 * 1024


def requires(scope: Scope | None) -> Callable[[Endpoint], Endpoint]:
    """Mark a Starlette endpoint as needing ``scope`` (``None``: open, e.g. health), and check it on
    every call against the application's security (``app.state.security``; none: allowed). A refusal
    is answered here (401 with ``WWW-Authenticate: Bearer``, or 403), whatever wraps the endpoint."""

    def mark(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def checked(request: Request) -> Response:
            security = getattr(request.app.state, "security", None)
            if security is not None and scope is not None:
                try:
                    request.state.principal = security.check(request.headers, scope)
                except MlrmError as exc:
                    return error_response(exc)
            return await endpoint(request)

        checked.scope = scope  # type: ignore[attr-defined]
        return checked

    return mark


def secure(app: Any, security: Security | None) -> Any:
    """Install ``security`` on a Starlette application (None: open), and on every Starlette application
    mounted in it (an endpoint reads the security of the application that routed it). Every route must
    declare its scope with :func:`requires` (``None`` for an open one): an unmarked route would be open
    by accident, so it is refused here."""
    unmarked = _install(app, security)
    if security is not None and unmarked:
        raise MlrmError(f"endpoints without a scope (decorate them with requires()): {', '.join(unmarked)}")
    return app


def _install(app: Any, security: Security | None) -> list[str]:
    if hasattr(app, "state"):
        app.state.security = security
    unmarked = []
    for route in getattr(app, "routes", None) or []:
        if isinstance(route, Route) and not hasattr(route.endpoint, "scope"):
            unmarked.append(route.path)
        elif isinstance(route, Mount):
            unmarked += [route.path + path for path in _install(route.app, security)]
    return unmarked


def token_routes() -> list[Route]:
    """``POST /token``: OAuth2's password grant (form ``grant_type=password&username=&password=&scope=``)."""

    @requires(None)
    async def token(request: Request) -> Response:
        """Exchange a user name and password for a bearer token (OAuth2 password grant).
        ---
        summary: Get an access token
        requestBody:
          content:
            application/x-www-form-urlencoded:
              schema:
                type: object
                required: [grant_type, username, password]
                properties:
                  grant_type: {type: string, enum: [password]}
                  username: {type: string}
                  password: {type: string, format: password}
                  scope: {type: string, description: "space-separated scopes (default: all the user's)"}
        responses:
          "200": {description: "{access_token, token_type: bearer, expires_in, scope}"}
          "400": {description: "not an OAuth2 password-grant form"}
          "401": {description: wrong user name or password}
          "404": {description: "this server runs without authentication: it issues no tokens"}
          "413": {description: the form is too large}
        """
        security: Security | None = getattr(request.app.state, "security", None)
        if security is None:
            raise NotFoundError("this server runs without authentication: it issues no tokens")
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            raise DataError("POST /token takes an application/x-www-form-urlencoded form (OAuth2 password grant)")
        try:
            form = parse_qs((await read_body(request, MAX_FORM)).decode(), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise DataError("the form is not valid UTF-8") from None
        field = {k: v[0] for k, v in form.items()}
        if field.get("grant_type") != "password":
            raise DataError("grant_type must be 'password'")
        if not field.get("username") or "password" not in field:
            raise DataError("the form needs 'username' and 'password'")
        answer = await anyio.to_thread.run_sync(
            security.password_grant, field["username"], field["password"], field.get("scope", "")
        )
        return json_response(answer, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    return [Route("/token", guarded(token), methods=["POST"])]


# -- gRPC ----------------------------------------------------------------------------------------
class _AuthInterceptor(grpc.ServerInterceptor):
    def __init__(self, security: Security, scopes: Mapping[str, str | None]) -> None:
        self.security, self.scopes = security, dict(scopes)

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        scope = self.scopes.get(details.method, "admin")  # a method nobody listed: administrators only
        if scope is None:
            return continuation(details)
        headers = {k.lower(): v for k, v in details.invocation_metadata or () if isinstance(v, str)}
        try:
            self.security.check(headers, scope)
        except MlrmError as exc:
            handler = continuation(details)
            return None if handler is None else _refusal(handler, exc)
        return continuation(details)


def _refusal(handler: Any, exc: MlrmError) -> Any:
    code = getattr(grpc.StatusCode, exc.grpc_status, grpc.StatusCode.UNAUTHENTICATED)

    def abort(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, exc.message)

    options = {"request_deserializer": handler.request_deserializer,
               "response_serializer": handler.response_serializer}  # fmt: skip
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort, **options)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort, **options)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort, **options)
    return grpc.unary_unary_rpc_method_handler(abort, **options)


def grpc_auth_interceptor(security: Security, scopes: Mapping[str, str | None]) -> grpc.ServerInterceptor:
    """A server interceptor checking call metadata (``authorization: Bearer <jwt>`` or ``x-api-key``)
    against ``scopes`` (full method name -> scope, None: open); UNAUTHENTICATED / PERMISSION_DENIED."""
    return _AuthInterceptor(security, scopes)
