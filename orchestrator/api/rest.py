"""The control plane over REST (Starlette): workflows, runs, events, the model registry, deployments.

Every endpoint declares its scope (:func:`mlrm.web.auth.requires`) and answers errors through the one
mapping (:func:`mlrm.web.http.guarded`: JSON ``{"error", "detail"}``); its OpenAPI operation is the YAML
after ``---`` in its docstring, and the bodies are the pydantic models of :mod:`.models`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.to_thread
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from mlrm.deployments import Deployment, DeployRequest
from mlrm.discovery import ModelQuery
from mlrm.errors import DataError, NotFoundError
from mlrm.web.auth import requires, token_routes
from mlrm.web.http import EXCEPTION_HANDLERS, guarded, json_response, read_body
from mlrm.web.openapi import openapi_routes
from orchestrator.api import models as M
from orchestrator.api.control import ControlPlane, load_body
from orchestrator.api.registry import RegistryPlane

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
STATUSES = ("running", "succeeded", "failed", "cancelled", "abandoned")
DEPLOYMENT_ID = re.compile(r"^dep-[0-9a-f]{1,64}\Z")
MAX_LIMIT = 1000
KEEPALIVE = 15.0  # seconds between SSE comments on a quiet stream (proxies close idle connections)

MODELS: list[type[Any]] = [
    M.SubmitRequest, M.Submitted, M.RunStatus, M.RunPage, M.Results, M.ModelSummary, M.AliasRequest, M.AliasSet,
    M.DecommissionRequest, M.Registered, M.Health, M.ErrorBody, ModelQuery, DeployRequest, Deployment,
]  # fmt: skip


def _model(obj: Any) -> Response:
    return json_response(obj.model_dump(mode="json"))


async def _json(request: Request, max_body: int) -> tuple[Any, str]:
    raw = await read_body(request, max_body)
    try:
        return orjson.loads(raw or b"{}"), raw.decode()
    except (orjson.JSONDecodeError, UnicodeDecodeError):
        raise DataError("the request body is not valid JSON") from None


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not re.fullmatch(r"\d{1,9}", text) or not low <= int(text) <= high:
        raise DataError(f"query parameter '{name}' must be a whole number from {low} to {high}")
    return int(text)


def _deployment_id(request: Request) -> str:
    dep_id = request.path_params["id"]
    if not DEPLOYMENT_ID.fullmatch(dep_id):
        raise NotFoundError(f"no deployment with id {dep_id[:80]!r}")
    return dep_id


def rest_app(control: ControlPlane, registry: RegistryPlane, *, max_body: int = 16 * 1024 * 1024,
             title: str = "mlrm control plane") -> Starlette:  # fmt: skip
    """The ASGI application of the control plane."""

    def thread(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))

    # -- health -----------------------------------------------------------------------------
    @requires(None)
    async def health(request: Request) -> Response:
        """
        ---
        summary: The server is up.
        tags: [health]
        responses:
          200: {description: Alive, content: {application/json: {schema: {$ref: '#/components/schemas/Health'}}}}
        """
        return json_response({"status": "ok"})

    @requires(None)
    async def ready(request: Request) -> Response:
        """
        ---
        summary: The server can take work (its run store and volume answer).
        tags: [health]
        responses:
          200: {description: Ready, content: {application/json: {schema: {$ref: '#/components/schemas/Health'}}}}
          503: {$ref: '#/components/responses/Error'}
        """

        def check() -> None:
            control.store.page(limit=1)
            control.volume.exists("runs/.ready")

        await thread(check)
        return json_response({"status": "ready"})

    # -- runs -------------------------------------------------------------------------------
    @requires("submit")
    async def submit(request: Request) -> Response:
        """
        ---
        summary: Submit a workflow; returns the run id.
        description: >
          A JSON body (SubmitRequest: the workflow as JSON or YAML text, or the name of a workflow under the
          server's configs folder, with per-step overrides), or the workflow YAML itself
          (Content-Type application/yaml). A malformed workflow is answered 422 with the file, line and field
          of every error, as `mlrm validate` gives them.
        tags: [runs]
        requestBody:
          required: true
          content:
            application/json: {schema: {$ref: '#/components/schemas/SubmitRequest'}}
            application/yaml: {schema: {type: string}}
        responses:
          201: {description: Started, content: {application/json: {schema: {$ref: '#/components/schemas/Submitted'}}}}
          400: {$ref: '#/components/responses/Error'}
          404: {$ref: '#/components/responses/Error'}
          409: {$ref: '#/components/responses/Error'}
          413: {$ref: '#/components/responses/Error'}
          422: {$ref: '#/components/responses/Error'}
        """
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind in YAML_TYPES:
            raw = await read_body(request, max_body)
            try:
                text = raw.decode()
            except UnicodeDecodeError:
                raise DataError("the workflow is not UTF-8 text") from None
            run_id = await thread(lambda: control.submit_document(load_body(text), control.configs))
        else:
            data, text = await _json(request, max_body)
            body = M.parse(M.SubmitRequest, data)
            run_id = await thread(control.submit, body, text)
        return json_response(M.Submitted(run_id=run_id).model_dump(), 201, headers={"Location": f"/runs/{run_id}"})

    @requires("read")
    async def list_runs(request: Request) -> Response:
        """
        ---
        summary: Runs, newest first, filtered by status and workflow, a page at a time.
        tags: [runs]
        parameters:
          - {name: status, in: query, schema: {type: string, enum: [running, succeeded, failed, cancelled, abandoned]}}
          - {name: workflow, in: query, schema: {type: string}}
          - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 1000, default: 20}}
          - {name: cursor, in: query, description: The `next` of the previous page., schema: {type: string}}
        responses:
          200:
            description: A page of runs
            content: {application/json: {schema: {$ref: '#/components/schemas/RunPage'}}}
          400: {$ref: '#/components/responses/Error'}
        """
        status = request.query_params.get("status")
        if status is not None and status not in STATUSES:
            raise DataError(f"status must be one of {', '.join(STATUSES)}")
        limit = _int(request, "limit", 20, 1, MAX_LIMIT)
        page = await thread(control.runs, status=status, workflow=request.query_params.get("workflow"), limit=limit,
                            cursor=request.query_params.get("cursor"))  # fmt: skip
        return _model(page)

    @requires("read")
    async def show_run(request: Request) -> Response:
        """
        ---
        summary: A run's status, with each step's status, rows, timings, result and error.
        tags: [runs]
        parameters: [{name: id, in: path, required: true, schema: {type: string}}]
        responses:
          200: {description: The run, content: {application/json: {schema: {$ref: '#/components/schemas/RunStatus'}}}}
          404: {$ref: '#/components/responses/Error'}
        """
        return _model(await thread(control.run, request.path_params["id"]))

    @requires("submit")
    async def cancel_run(request: Request) -> Response:
        """
        ---
        summary: Cancel a run.
        description: >
          Services drop the run's remaining messages, a training registers no version, scratch data is
          removed, and the run ends `cancelled`. A run that already ended is refused (409).
        tags: [runs]
        parameters: [{name: id, in: path, required: true, schema: {type: string}}]
        responses:
          200: {description: Cancelled, content: {application/json: {schema: {$ref: '#/components/schemas/RunStatus'}}}}
          404: {$ref: '#/components/responses/Error'}
          409: {$ref: '#/components/responses/Error'}
        """
        return _model(await thread(control.cancel, request.path_params["id"]))

    @requires("read")
    async def results(request: Request) -> Response:
        """
        ---
        summary: What each step of a run reported (a training's model version and metrics, a prediction's output).
        tags: [runs]
        parameters: [{name: id, in: path, required: true, schema: {type: string}}]
        responses:
          200: {description: Results, content: {application/json: {schema: {$ref: '#/components/schemas/Results'}}}}
          404: {$ref: '#/components/responses/Error'}
        """
        return _model(await thread(control.results, request.path_params["id"]))

    @requires("read")
    async def events(request: Request) -> Response:
        """
        ---
        summary: Live events of a run (server-sent events), until it ends.
        description: >
          An `event: status` with the run's status (RunStatus) now and at every change, then `event: end`
          with the final status.
        tags: [runs]
        parameters: [{name: id, in: path, required: true, schema: {type: string}}]
        responses:
          200: {description: An event stream, content: {text/event-stream: {schema: {type: string}}}}
          404: {$ref: '#/components/responses/Error'}
        """
        run_id = request.path_params["id"]
        first = await thread(control.run, run_id)  # 404 before the stream starts

        async def stream() -> AsyncIterator[bytes]:
            status, last, quiet = first, None, 0.0
            while True:
                if status != last:
                    last, quiet = status, 0.0
                    yield b"event: status\ndata: " + orjson.dumps(status.model_dump(mode="json")) + b"\n\n"
                if status.status in STATUSES[1:]:
                    yield b"event: end\ndata: " + orjson.dumps(status.model_dump(mode="json")) + b"\n\n"
                    return
                await anyio.sleep(0.1)
                quiet += 0.1
                if quiet >= KEEPALIVE:
                    quiet = 0.0
                    yield b": keep-alive\n\n"
                status = await thread(control.run, run_id)

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    # -- models -----------------------------------------------------------------------------
    @requires("read")
    async def list_models(request: Request) -> Response:
        """
        ---
        summary: Every registered model with its versions, aliases and latest metrics.
        tags: [models]
        responses:
          200:
            description: Models
            content: {application/json: {schema: {type: array, items: {$ref: '#/components/schemas/ModelSummary'}}}}
        """
        return json_response([m.model_dump(mode="json") for m in await thread(registry.models)])

    @requires("read")
    async def show_card(request: Request) -> Response:
        """
        ---
        summary: A model version's card (the latest, or by version or alias).
        tags: [models]
        parameters:
          - {name: name, in: path, required: true, schema: {type: string}}
          - {name: version, in: query, schema: {type: integer, minimum: 1, maximum: 999999999}}
          - {name: alias, in: query, schema: {type: string}}
        responses:
          200: {description: The card, content: {application/json: {schema: {type: object}}}}
          400: {$ref: '#/components/responses/Error'}
          404: {$ref: '#/components/responses/Error'}
          422: {$ref: '#/components/responses/Error'}
        """
        version = _int(request, "version", 0, 1, 999_999_999) or None
        alias = request.query_params.get("alias")
        return json_response(await thread(registry.card, request.path_params["name"], version=version, alias=alias))

    @requires("read")
    async def search_models(request: Request) -> Response:
        """
        ---
        summary: Discovery; the model versions that fit a query (kind, features you have, metric condition, tags).
        tags: [models]
        requestBody: {required: true, content: {application/json: {schema: {$ref: '#/components/schemas/ModelQuery'}}}}
        responses:
          200:
            description: Matching cards
            content: {application/json: {schema: {type: array, items: {type: object}}}}
          400: {$ref: '#/components/responses/Error'}
          413: {$ref: '#/components/responses/Error'}
          422: {$ref: '#/components/responses/Error'}
        """
        data, _ = await _json(request, max_body)
        query = M.parse(ModelQuery, data)
        return json_response(await thread(registry.search, query))

    @requires("admin")
    async def register(request: Request) -> Response:
        """
        ---
        summary: Register a model trained elsewhere (multipart; an artefact in a safe format and its description).
        description: >
          Form fields: `artefact` (a skops or ONNX file; pickle and joblib are refused), `description` (the
          MLaaS fields as YAML or JSON, a file or text), `alias` (optional).
        tags: [models]
        parameters: [{name: name, in: path, required: true, schema: {type: string}}]
        requestBody:
          required: true
          content:
            multipart/form-data:
              schema:
                type: object
                required: [artefact, description]
                properties:
                  artefact: {type: string, format: binary}
                  description: {type: string}
                  alias: {type: string}
        responses:
          201:
            description: Registered
            content: {application/json: {schema: {$ref: '#/components/schemas/Registered'}}}
          400: {$ref: '#/components/responses/Error'}
          409: {$ref: '#/components/responses/Error'}
          413: {$ref: '#/components/responses/Error'}
          422: {$ref: '#/components/responses/Error'}
        """
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body:
            await read_body(request, max_body)  # 413 before parsing anything
        try:
            form = await request.form(max_files=2, max_fields=8, max_part_size=max_body)
        except Exception as exc:  # python-multipart's refusals (a malformed form, too many parts)
            raise DataError(f"the request is not a valid multipart form: {getattr(exc, 'detail', exc)}") from None
        try:
            artefact, description, alias = form.get("artefact"), form.get("description"), form.get("alias")
            if artefact is None or isinstance(artefact, str) or description is None:
                raise DataError("the form needs an 'artefact' file and a 'description' (YAML or JSON)")
            content = await artefact.read()
            if len(content) > max_body:
                raise DataError(f"the artefact is over the limit of {max_body} bytes")
            if not isinstance(description, str):
                description = (await description.read()).decode("utf-8", "replace")
            alias_text = alias if isinstance(alias, str) and alias else None
            filename = artefact.filename or "model"
        finally:
            await form.close()
        done = await thread(registry.register, request.path_params["name"], content, filename, description, alias_text)
        return json_response(done.model_dump(mode="json"), 201)

    @requires("admin")
    async def set_alias(request: Request) -> Response:
        """
        ---
        summary: Point an alias at a version (running predict services follow it without a restart).
        tags: [models]
        parameters:
          - {name: name, in: path, required: true, schema: {type: string}}
          - {name: alias, in: path, required: true, schema: {type: string}}
        requestBody:
          required: true
          content: {application/json: {schema: {$ref: '#/components/schemas/AliasRequest'}}}
        responses:
          200: {description: Set, content: {application/json: {schema: {$ref: '#/components/schemas/AliasSet'}}}}
          400: {$ref: '#/components/responses/Error'}
          404: {$ref: '#/components/responses/Error'}
          413: {$ref: '#/components/responses/Error'}
          422: {$ref: '#/components/responses/Error'}
        """
        data, _ = await _json(request, max_body)
        body = M.parse(M.AliasRequest, data)
        done = await thread(registry.set_alias, request.path_params["name"], request.path_params["alias"], body.version)
        return _model(done)

    # -- deployments ------------------------------------------------------------------------
    @requires("admin")
    async def deploy(request: Request) -> Response:
        """
        ---
        summary: Deploy a model version (or follow an alias); returns the deployment with its id.
        tags: [deployments]
        requestBody:
          required: true
          content: {application/json: {schema: {$ref: '#/components/schemas/DeployRequest'}}}
        responses:
          201: {description: Queued, content: {application/json: {schema: {$ref: '#/components/schemas/Deployment'}}}}
          400: {$ref: '#/components/responses/Error'}
          404: {$ref: '#/components/responses/Error'}
          413: {$ref: '#/components/responses/Error'}
          422: {$ref: '#/components/responses/Error'}
        """
        data, _ = await _json(request, max_body)
        body = M.parse(DeployRequest, data)
        dep = await thread(registry.deploy, body)
        return json_response(dep.model_dump(mode="json"), 201, headers={"Location": f"/deployments/{dep.id}"})

    @requires("read")
    async def list_deployments(request: Request) -> Response:
        """
        ---
        summary: Every deployment, its status and the replicas it is loaded on.
        tags: [deployments]
        responses:
          200: {description: Deployments, content: {application/json: {schema: {type: array, items: {type: object}}}}}
        """
        return json_response(await thread(registry.list_deployments))

    @requires("read")
    async def show_deployment(request: Request) -> Response:
        """
        ---
        summary: One deployment.
        tags: [deployments]
        parameters: [{name: id, in: path, required: true, schema: {type: string}}]
        responses:
          200:
            description: The deployment
            content: {application/json: {schema: {$ref: '#/components/schemas/Deployment'}}}
          404: {$ref: '#/components/responses/Error'}
        """
        return _model(await thread(registry.deployment, _deployment_id(request)))

    @requires("admin")
    async def decommission(request: Request) -> Response:
        """
        ---
        summary: Decommission a deployment in two steps; unload it, then (delete true) delete its version.
        tags: [deployments]
        parameters: [{name: id, in: path, required: true, schema: {type: string}}]
        requestBody: {content: {application/json: {schema: {$ref: '#/components/schemas/DecommissionRequest'}}}}
        responses:
          200: {description: Done, content: {application/json: {schema: {$ref: '#/components/schemas/Deployment'}}}}
          400: {$ref: '#/components/responses/Error'}
          404: {$ref: '#/components/responses/Error'}
          409: {$ref: '#/components/responses/Error'}
          413: {$ref: '#/components/responses/Error'}
          422: {$ref: '#/components/responses/Error'}
        """
        dep_id = _deployment_id(request)
        data, _ = await _json(request, max_body)
        body = M.parse(M.DecommissionRequest, data)
        return _model(await thread(registry.decommission, dep_id, body.delete))

    def route(path: str, endpoint: Any, methods: list[str]) -> Route:
        return Route(path, guarded(endpoint), methods=methods)

    routes = [
        route("/health", health, ["GET"]),
        route("/ready", ready, ["GET"]),
        route("/health/live", health, ["GET"]),  # the probe paths every mlrm server answers
        route("/health/ready", ready, ["GET"]),
        route("/runs", submit, ["POST"]),
        route("/runs", list_runs, ["GET"]),
        route("/runs/{id}", show_run, ["GET"]),
        route("/runs/{id}/cancel", cancel_run, ["POST"]),
        route("/runs/{id}/results", results, ["GET"]),
        route("/runs/{id}/events", events, ["GET"]),
        route("/models", list_models, ["GET"]),
        route("/models/search", search_models, ["POST"]),
        route("/models/{name}", show_card, ["GET"]),
        route("/models/{name}/versions", register, ["POST"]),
        route("/models/{name}/aliases/{alias}", set_alias, ["PUT"]),
        route("/deployments", deploy, ["POST"]),
        route("/deployments", list_deployments, ["GET"]),
        route("/deployments/{id}", show_deployment, ["GET"]),
        route("/deployments/{id}/decommission", decommission, ["POST"]),
    ]
    routes += token_routes()
    return Starlette(routes=routes + docs_routes(title, routes), exception_handlers=EXCEPTION_HANDLERS)


def docs_routes(title: str, routes: list[Route]) -> list[Route]:
    """``/openapi.json`` and ``/docs``: the document of ``routes``, every error answer the one ErrorBody."""
    return openapi_routes(title, routes, MODELS, components={"responses": {"Error": {
        "description": "Refused, with the reason (the one error mapping: mlrm.web.http.guarded)",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }}})  # fmt: skip
