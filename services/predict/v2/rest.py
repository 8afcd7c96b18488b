"""The V2 protocol over REST (Starlette on uvicorn, orjson): a thin adapter over :class:`~.codec.V2`.

JSON bodies and the binary tensor extension (``Inference-Header-Content-Length``: a JSON header,
then each tensor's raw bytes) in both directions. Every refusal is the V2 error body
``{"error": "..."}`` with the error's own ``http_status``: a malformed body, a body over
``max_body`` bytes (413), more than ``max_inflight`` requests in flight (429, answered at once).
``GET /openapi.json`` describes the endpoints (from their docstrings and :mod:`.schemas`), ``GET /docs``
shows them; each endpoint names the scope it needs (:func:`mlrm.web.auth.requires`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio.to_thread
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlrm.errors import DataError, MlrmError
from mlrm.web.auth import requires, secure, token_routes
from mlrm.web.http import EXCEPTION_HANDLERS
from mlrm.web.http import read_body as bounded_body
from mlrm.web.openapi import openapi_routes
from services.predict.v2.codec import V2, Tensor, from_list, from_raw, json_data, to_raw
from services.predict.v2.schemas import MODELS

log = logging.getLogger(__name__)

HEADER_LENGTH = "inference-header-content-length"
Handler = Callable[[Request], Awaitable[Response]]


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status, media_type="application/json")


def error_response(message: str, status: int) -> Response:
    return json_response({"error": message}, status)


def rest_app(v2: V2, *, max_body: int = 16 * 1024 * 1024, extra: Sequence[Route] = ()) -> Starlette:
    """The ASGI application: health, metadata, inference, the model repository extension, ``extra`` routes
    (monitoring), and ``POST /token`` (answered when a :class:`~mlrm.auth.Security` is installed, see
    :func:`mlrm.web.auth.secure`).

    Scopes: inference ``infer``; model metadata, readiness and the repository index ``read``;
    repository load and unload ``admin``; health and server metadata open."""

    def guarded(handler: Handler, path: str = "") -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except MlrmError as exc:
                return error_response(exc.message, exc.http_status)
            except Exception:  # a bug, not the caller's fault: say so without a traceback, keep serving
                log.exception("V2 REST: %s %s failed", request.method, request.url.path)
                return error_response("internal error (logged by the server)", 500)

        endpoint.__name__, endpoint.__doc__ = handler.__name__, _with_path_params(handler.__doc__, path)
        endpoint.scope = getattr(handler, "scope", None)  # type: ignore[attr-defined]
        return endpoint

    async def read_body(request: Request) -> bytes:
        return await bounded_body(request, max_body)

    @requires(None)
    async def live(request: Request) -> Response:
        """The server is live.
            ---
            summary: Server live
            responses:
              200:
                description: live
                content: {application/json: {schema: {$ref: '#/components/schemas/V2Live'}}}
            """
        return json_response({"live": True})

    @requires(None)
    async def ready(request: Request) -> Response:
        """The server is ready.
            ---
            summary: Server ready
            responses:
              200:
                description: ready
                content: {application/json: {schema: {$ref: '#/components/schemas/V2Ready'}}}
            """
        return json_response({"ready": True})

    @requires(None)
    async def server_metadata(request: Request) -> Response:
        """The server's name, version and protocol extensions.
            ---
            summary: Server metadata
            responses:
              200:
                description: metadata
                content: {application/json: {schema: {$ref: '#/components/schemas/V2ServerMetadata'}}}
            """
        return json_response(v2.server_metadata())

    def _version(request: Request) -> str | None:
        return request.path_params.get("version")

    @requires('read')
    async def model_metadata(request: Request) -> Response:
        """A model version's inputs and outputs (the version an alias or the latest serves, without one).
            ---
            summary: Model metadata
            responses:
              200:
                description: metadata
                content: {application/json: {schema: {$ref: '#/components/schemas/V2ModelMetadata'}}}
              400:
                description: a malformed request
                content: {application/json: {schema: {$ref: '#/components/schemas/V2Error'}}}
              404:
                description: no such model or version
                content: {application/json: {schema: {$ref: '#/components/schemas/V2Error'}}}
              409:
                description: refused in this state
                content: {application/json: {schema: {$ref: '#/components/schemas/V2Error'}}}
              422:
                description: the request does not fit the model (a bad name, missing columns)
                content: {application/json: {schema: {$ref: '#/components/schemas/V2Error'}}}
            """
        name, version = request.path_params["name"], _version(request)
        return json_response(await anyio.to_thread.run_sync(v2.model_metadata, name, version))

    @requires('read')
    async def model_ready(request: Request) -> Response:
        """Whether a model (version) is ready: it is loaded if it was not.
            ---
            summary: Model ready
            responses:
              200:
                description: ready
                content: {application/json: {schema: {$ref: '#/components/schemas/V2ModelReady'}}}
              400:
                description: a malformed request
                content: {application/json: {schema: {$ref: '#/components/schemas/V2Error'}}}
              404:
                description: no such model or version
                content: {application/json: {schema: {$ref: '#/components/schemas/V2Error'}}}
              409:
                description: refused in this state
                content: {application/json: {schema: {$ref: '#/components/schemas/V2Error'}}}
              422:
                description: the request does not fit the model (a bad name, missing columns)
                content: {application/json: {schema: {$ref: '#/components/schemas/V2Error'}}}
            """
        name, version = request.path_params["name"], _version(request)
        await anyio.to_thread.run_sync(v2.model_ready, name, version)
        return json_response({"name": name, "ready": True})

    @requires('infer')
    async def infer(request: Request) -> Response:
        """Predictions for the request's rows, through the version's inference pipeline.
            ---
            summary: Inference
            description: JSON tensors, or the binary tensor extension (Inference-Header-Content-Length, then raw
              bytes; answered in kind when outputs ask for binary_data).
            requestBody:
              required: true
              content:
                application/json: {schema: {$ref: '#/components/schemas/V2InferenceRequest'}}
                application/octet-stream: {schema: {type: string, format: binary}}
            responses:
              200:
                description: the outputs
                content:
                  application/json: {schema: {$ref: '#/components/schemas/V2InferenceResponse'}}
                  application/octet-stream: {schema: {type: string, format: binary}}
              400:
                description: a malformed request
                content: {application/json: {schema: {$ref: '#/components/schemas/V2Error'}}}
              404:
                description: no such model or version
                content: {application/json: {schema: {$ref: '#/components/schemas/V2Error'}}}
              409:
                description: refused in this state
                content: {application/json: {schema: {$ref: '#/components/schemas/V2Error'}}}
              413:
                description: the body is too large
                content: {application/json: {schema: {$ref: '#/components/schemas/V2Error'}}}
              422:
                description: the rows do not fit the model
                content: {application/json: {schema: {$ref: '#/components/schemas/V2Error'}}}
              429:
                description: too many requests in flight
                content: {application/json: {schema: {$ref: '#/components/schemas/V2Error'}}}
              503:
                description: not available
                content: {application/json: {schema: {$ref: '#/components/schemas/V2Error'}}}
            """
        with v2.admit():  # 429 at once when too many are in flight
            body = await read_body(request)
            header_length = request.headers.get(HEADER_LENGTH)
            name, version = request.path_params["name"], _version(request)
            if v2.inline(name, version, len(body)):  # a small request for a loaded model: no thread hop
                return _infer(v2, name, version, body, header_length)
            return await anyio.to_thread.run_sync(_infer, v2, name, version, body, header_length)

    @requires('read')
    async def index(request: Request) -> Response:
        """The models of the registry, and the versions this server has loaded.
            ---
            summary: Repository index
            responses:
              200:
                description: one entry a model (or loaded version)
                content:
                  application/json:
                    schema: {type: array, items: {$ref: '#/components/schemas/V2RepositoryModel'}}
            """
        return json_response(await anyio.to_thread.run_sync(v2.index))

    @requires('admin')
    async def load(request: Request) -> Response:
        """Deploy a model (parameters version or alias; default the latest) and load it here.
            ---
            summary: Load a model
            requestBody:
              required: false
              content:
                application/json: {schema: {$ref: '#/components/schemas/V2LoadRequest'}}
            responses:
              200:
                description: loaded
                content: {application/json: {schema: {type: object}}}
              400:
                description: a malformed request
                content: {application/json: {schema: {$ref: '#/components/schemas/V2Error'}}}
              404:
                description: no such model or version
                content: {application/json: {schema: {$ref: '#/components/schemas/V2Error'}}}
              409:
                description: refused in this state
                content: {application/json: {schema: {$ref: '#/components/schemas/V2Error'}}}
              413:
                description: the body is too large
                content: {application/json: {schema: {$ref: '#/components/schemas/V2Error'}}}
              422:
                description: the request does not fit the model (a bad name, missing columns)
                content: {application/json: {schema: {$ref: '#/components/schemas/V2Error'}}}
            """
        body = await read_body(request)
        params = _object(body, "the load request").get("parameters") if body.strip() else None
        await anyio.to_thread.run_sync(v2.load, request.path_params["name"], params if isinstance(params, dict) else {})
        return json_response({})

    @requires('admin')
    async def unload(request: Request) -> Response:
        """Withdraw this server's deployment of a model and unload it.
            ---
            summary: Unload a model
            responses:
              200:
                description: unloaded
                content: {application/json: {schema: {type: object}}}
              400:
                description: a malformed request
                content: {application/json: {schema: {$ref: '#/components/schemas/V2Error'}}}
              404:
                description: no such model or version
                content: {application/json: {schema: {$ref: '#/components/schemas/V2Error'}}}
              409:
                description: refused in this state
                content: {application/json: {schema: {$ref: '#/components/schemas/V2Error'}}}
              422:
                description: the request does not fit the model (a bad name, missing columns)
                content: {application/json: {schema: {$ref: '#/components/schemas/V2Error'}}}
            """
        await anyio.to_thread.run_sync(v2.unload, request.path_params["name"])
        return json_response({})

    model = "/v2/models/{name}"
    versioned = "/v2/models/{name}/versions/{version}"
    repository = "/v2/repository/models/{name}"
    routes = [
        Route("/v2/health/live", guarded(live)),
        Route("/v2/health/ready", guarded(ready)),
        Route("/v2", guarded(server_metadata)),
        Route(model, guarded(model_metadata, model)),
        Route(versioned, guarded(model_metadata, versioned)),
        Route(f"{model}/ready", guarded(model_ready, f"{model}/ready")),
        Route(f"{versioned}/ready", guarded(model_ready, f"{versioned}/ready")),
        Route(f"{model}/infer", guarded(infer, f"{model}/infer"), methods=["POST"]),
        Route(f"{versioned}/infer", guarded(infer, f"{versioned}/infer"), methods=["POST"]),
        Route("/v2/repository/index", guarded(index), methods=["POST"]),
        Route(f"{repository}/load", guarded(load, f"{repository}/load"), methods=["POST"]),
        Route(f"{repository}/unload", guarded(unload, f"{repository}/unload"), methods=["POST"]),
        Route("/health/live", guarded(live)),  # the same probes at the paths every mlrm service answers
        Route("/health/ready", guarded(ready)),
        *extra,
        *token_routes(),
    ]
    routes += openapi_routes("mlrm predict: Open Inference Protocol (V2)", routes, models=MODELS)

    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)
    return secure(app, None)  # open until ApiServers installs a Security


def _with_path_params(doc: str | None, path: str) -> str | None:
    """``doc`` with its OpenAPI operation declaring the path's parameters (one handler serves several paths)."""
    names = re.findall(r"{(\w+)}", path)
    if not doc or "---" not in doc or not names:
        return doc
    head, _, operation = doc.partition("---")
    indent = re.search(r"\n( *)\S", operation)
    pad = indent.group(1) if indent else ""
    params = "".join(f"\n{pad}  - {{name: {n}, in: path, required: true, schema: {{type: string}}}}" for n in names)
    return f"{head}---\n{pad}parameters:{params}{operation}"


def _object(body: bytes, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DataError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise DataError(f"{what} must be a JSON object")
    return value


def _infer(v2: V2, name: str, version: str | None, body: bytes, header_length: str | None) -> Response:
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise DataError(f"{HEADER_LENGTH} {header_length!r} is not a length within the body")
        split = int(header_length)
        request, binary = _object(body[:split], "the inference request's JSON header"), memoryview(body)[split:]
    else:
        request, binary = _object(body, "the inference request"), memoryview(b"")
    if isinstance(request.get("parameters"), dict) and "input_ref" in request["parameters"]:
        return _infer_reference(v2, name, version, request, len(binary))
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
        raise DataError("the inference request needs 'inputs': a list of tensors")
    parameters = request.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise DataError("'parameters' must be an object")
    tensors, at = [], 0
    for spec in inputs:
        params = spec.get("parameters") or {}
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is not None:
            if not isinstance(size, int) or size < 0 or at + size > len(binary):
                raise DataError(f"input {spec.get('name')!r}: binary_data_size {size!r} goes past the body's end")
            tensors.append(from_raw(spec.get("name"), spec.get("datatype"), spec.get("shape"),
                                    bytes(binary[at : at + size]), params))  # fmt: skip
            at += size
        else:
            data = spec.get("data")
            tensors.append(from_list(spec.get("name"), spec.get("datatype"), spec.get("shape"), data, params))
    if at != len(binary):
        raise DataError(f"the body has {len(binary) - at} byte(s) of binary data that no input claims")
    requested = request.get("outputs")
    binary_out: dict[str, bool] = {}
    names = None
    if requested is not None:
        if not isinstance(requested, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                      for o in requested):  # fmt: skip
            raise DataError("'outputs' must be a list of objects with a 'name'")
        names = [o["name"] for o in requested]
        binary_out = {o["name"]: bool((o.get("parameters") or {}).get("binary_data")) for o in requested}
    all_binary = bool(parameters.get("binary_data_output"))
    request_id = request.get("id")
    result, outputs = v2.infer(
        name, version, tensors, outputs=names, parameters=parameters,
        request_id=request_id if isinstance(request_id, str) else None, source="rest",
    )  # fmt: skip
    head: dict[str, Any] = {"model_name": result.ref.name, "model_version": str(result.ref.version)}
    if isinstance(request_id, str):
        head["id"] = request_id
    described, raw = [], []
    for tensor in outputs:
        out: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}
        if all_binary or binary_out.get(tensor.name):
            data = to_raw(tensor)
            out["parameters"] = {"binary_data_size": len(data)}
            raw.append(data)
        else:
            out["data"] = _json_values(tensor)
        described.append(out)
    head["outputs"] = described
    text = orjson.dumps(head, option=orjson.OPT_SERIALIZE_NUMPY)
    if not raw:
        return Response(text, 200, media_type="application/json")
    return Response(
        b"".join([text, *raw]), 200, media_type="application/octet-stream", headers={HEADER_LENGTH: str(len(text))}
    )


def _infer_reference(v2: V2, name: str, version: str | None, request: dict[str, Any], binary: int) -> Response:
    """Inference by reference: no tensors in, none out; the answer's ``parameters`` say where the rows went."""
    if request.get("inputs") or binary:
        raise DataError("a request with 'input_ref' carries no inputs: the rows are read from the volume")
    requested = request.get("outputs")
    if requested is not None and not (
        isinstance(requested, list) and all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in requested)
    ):
        raise DataError("'outputs' must be a list of objects with a 'name'")
    request_id = request.get("id")
    result = v2.infer_reference(
        name, version, request["parameters"], outputs=[o["name"] for o in requested] if requested else None,
        request_id=request_id if isinstance(request_id, str) else None, source="rest",
    )  # fmt: skip
    head: dict[str, Any] = {"model_name": result.ref.name, "model_version": str(result.ref.version)}
    if isinstance(request_id, str):
        head["id"] = request_id
    head["parameters"] = result.parameters()
    head["outputs"] = []
    return json_response(head)


def _json_values(tensor: Tensor) -> Any:
    return tensor.data if tensor.datatype not in ("BYTES",) else json_data(tensor)
