"""Who may call what: the scopes an endpoint or a gRPC method needs.

Scopes: ``infer`` (predictions), ``submit`` (workflows), ``read`` (runs, models, deployments),
``admin`` (register, deploy, decommission, delete). Each REST endpoint says what it needs with
:func:`requires`; each gRPC server module lists ``SCOPES`` by full method name. With no
authentication configured (``--insecure``, the embedded quick start) every call is allowed.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Literal

from starlette.requests import Request
from starlette.responses import Response

Scope = Literal["infer", "submit", "read", "admin"]
SCOPES: tuple[Scope, ...] = ("infer", "submit", "read", "admin")

Endpoint = Callable[[Request], Awaitable[Response]]


def requires(scope: Scope | None) -> Callable[[Endpoint], Endpoint]:
    """Mark a Starlette endpoint as needing ``scope`` (``None``: open, e.g. health)."""

    def mark(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            return await endpoint(request)

        guarded.scope = scope  # type: ignore[attr-defined]
        return guarded

    return mark
