"""What every REST application of mlrm shares: JSON responses, the one error mapping, bounded bodies.

    routes = [Route("/runs/{id}", guarded(requires("read")(show_run)))]

:func:`guarded` turns an :class:`~mlrm.errors.MlrmError` into its own ``http_status`` with the body
``{"error": message, "detail": error.to_dict()}`` and any other exception into a logged 500 that
says nothing of the server's insides.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mlrm.errors import MlrmError, TooLargeError, UnauthorizedError

log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS), status,
        headers=headers, media_type="application/json",
    )  # fmt: skip


def error_response(exc: MlrmError) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, UnauthorizedError) else None
    return json_response({"error": exc.message, "detail": exc.to_dict()}, exc.http_status, headers)


def guarded(endpoint: Endpoint) -> Endpoint:
    """The endpoint, with every error answered by the one mapping (never a traceback)."""

    async def call(request: Request) -> Response:
        try:
            return await endpoint(request)
        except MlrmError as exc:
            return error_response(exc)
        except Exception:  # a bug, not the caller's fault: say so without a traceback, keep serving
            log.exception("%s %s failed", request.method, request.url.path)
            return json_response({"error": "internal error (logged by the server)"}, 500)

    call.__name__, call.__doc__ = endpoint.__name__, endpoint.__doc__  # the OpenAPI generator reads docstrings
    call.scope = getattr(endpoint, "scope", None)  # type: ignore[attr-defined]
    return call


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    return json_response({"error": f"{request.method} {request.url.path}: {detail}"}, status)


EXCEPTION_HANDLERS: dict[Any, Any] = {HTTPException: _http_error, Exception: _http_error}
"""For ``Starlette(exception_handlers=...)``: an unknown path (404), a wrong method (405) or anything
that escapes an endpoint answers JSON ``{"error": ...}`` too, not plain text or a traceback."""


async def read_body(request: Request, max_body: int) -> bytes:
    """The whole body, refused with 413 past ``max_body`` bytes (before reading it when the length says so)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_body:
        raise TooLargeError(f"the request body has {length} bytes; the limit is {max_body}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body:
            raise TooLargeError(f"the request body is over the limit of {max_body} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
