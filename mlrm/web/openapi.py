"""An OpenAPI document and a docs page for a Starlette application, from its routes' docstrings.

Each endpoint's docstring holds its OpenAPI operation in YAML after a ``---`` line (Starlette's
``SchemaGenerator`` convention); request and response bodies refer to ``#/components/schemas/<Name>``,
filled from the pydantic models given here, so the models stay the single source of every contract.

    routes += openapi_routes("mlrm orchestrator", routes, models=[Workflow, RunStatus])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.schemas import SchemaGenerator

from mlrm.web.auth import requires
from mlrm.web.http import json_response

DOCS = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="https://unpkg.com/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="https://unpkg.com/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({{url: "openapi.json", dom_id: "#ui"}});</script>
<noscript>The API is described in <a href="openapi.json">openapi.json</a>.</noscript>
</body></html>"""


def document(title: str, routes: Sequence[BaseRoute], models: Sequence[type[BaseModel]] = (),
             version: str = "1", components: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """The OpenAPI 3.1 document of ``routes``; ``models`` become ``components.schemas``; ``components``
    adds other shared parts (e.g. ``responses`` the docstrings refer to)."""
    schemas: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    base = {"openapi": "3.1.0", "info": {"title": title, "version": version},
            "components": {"schemas": schemas, **(components or {})}}  # fmt: skip
    spec = SchemaGenerator(base).get_schema(list(routes))
    _security(spec, routes)
    return spec


SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "a token from POST /token"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "`mlrm keys create`"},
}


def _security(spec: dict[str, Any], routes: Sequence[BaseRoute]) -> None:
    """Say which operations need credentials (the scope each endpoint declares with ``requires``), and
    that they may answer 401 (no valid credentials, when the server has authentication) or 403."""
    secured = False
    for route in routes:
        scope = getattr(getattr(route, "endpoint", None), "scope", None)
        operations = spec.get("paths", {}).get(getattr(route, "path_format", ""), {})
        if scope is None or not operations:
            continue
        for method in getattr(route, "methods", None) or ():
            operation = operations.get(method.lower())
            if operation is None:
                continue
            secured = True
            operation.setdefault("security", [{"bearer": [scope]}, {"apiKey": [scope]}])
            responses = operation.setdefault("responses", {})
            responses.setdefault("401", {"description": "no valid credentials (a server with authentication)"})
            responses.setdefault("403", {"description": f"the credentials lack the '{scope}' scope"})
    if secured:
        spec.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES


def openapi_routes(title: str, routes: Sequence[BaseRoute], models: Sequence[type[BaseModel]] = (),
                   version: str = "1", components: dict[str, Any] | None = None) -> list[Route]:  # fmt: skip
    """``GET /openapi.json`` and ``GET /docs`` (Swagger UI) for ``routes``."""
    spec = document(title, routes, models, version, components)

    @requires(None)
    async def openapi(request: Request) -> Response:
        return json_response(spec)

    @requires(None)
    async def docs(request: Request) -> Response:
        return HTMLResponse(DOCS.format(title=title))

    return [Route("/openapi.json", openapi, include_in_schema=False), Route("/docs", docs, include_in_schema=False)]
