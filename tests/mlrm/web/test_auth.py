"""Authentication on a real REST + gRPC server pair (ApiServers on free ports, httpx and grpc clients):
POST /token, bearer tokens, API keys and scopes; 401 for no or bad credentials, 403 without the scope;
nothing secret in an error body or in the server's log."""

from __future__ import annotations

import logging
import time

import grpc
import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlrm.auth.tokens import SigningKeys, Tokens
from mlrm.errors import MlrmError
from mlrm.web.auth import requires, secure, token_routes
from mlrm.web.http import guarded, json_response
from mlrm.web.servers import ApiServers
from tests.auth_support import KEYS, PASSWORDS, cheap_argon2, make_security  # noqa: F401 - a fixture

SERVICE = "/test.Things/"
GRPC_SCOPES = {f"{SERVICE}Health": None, f"{SERVICE}Predict": "infer", f"{SERVICE}Read": "read"}


@requires(None)
async def health(request: Request) -> Response:
    return json_response({"ok": True})


@requires("infer")
async def predict(request: Request) -> Response:
    return json_response({"by": request.state.principal.subject})


@requires("admin")
async def delete(request: Request) -> Response:
    return json_response({"deleted": True})


def grpc_registrar(server: grpc.Server) -> None:
    echo = grpc.unary_unary_rpc_method_handler(lambda request, context: request)  # raw bytes in and out
    names = ("Health", "Predict", "Read", "Unlisted")
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.Things", dict.fromkeys(names, echo))])


@pytest.fixture
def servers(tmp_path, cheap_argon2):  # noqa: F811
    security = make_security(tmp_path)
    routes = [Route("/health", guarded(health)), Route("/predict", guarded(predict), methods=["POST"]),
              Route("/things", guarded(delete), methods=["DELETE"]), *token_routes()]  # fmt: skip
    app = Starlette(routes=routes)
    with ApiServers(rest=app, grpc=grpc_registrar, http_port=0, grpc_port=0, security=security,
                    grpc_scopes=GRPC_SCOPES) as running:  # fmt: skip
        running.base = f"http://127.0.0.1:{running.http_port}"  # type: ignore[attr-defined]
        yield running


def get_token(base: str, user: str, password: str | None = None, scope: str = "") -> httpx.Response:
    form = {"grant_type": "password", "username": user, "password": password or PASSWORDS[user], "scope": scope}
    return httpx.post(f"{base}/token", data=form)


def test_the_password_grant_answers_a_bearer_token(servers):
    answer = get_token(servers.base, "alice")
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["token_type"] == "bearer" and body["scope"] == "infer" and body["expires_in"] == 3600
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    called = httpx.post(f"{servers.base}/predict", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert called.status_code == 200 and called.json() == {"by": "alice"}


def test_a_wrong_password_gets_401_and_no_token(servers):
    answer = get_token(servers.base, "alice", "guessed password")
    assert answer.status_code == 401 and "access_token" not in answer.text
    assert answer.headers["www-authenticate"] == "Bearer"
    assert "guessed password" not in answer.text


@pytest.mark.parametrize(
    ("form", "status"),
    [({"grant_type": "client_credentials", "username": "alice", "password": "x"}, 400),
     ({"grant_type": "password", "username": "alice"}, 400),
     ({"grant_type": "password", "username": "alice", "password": PASSWORDS["alice"], "scope": "root"}, 400),
     ({"grant_type": "password", "username": "alice", "password": PASSWORDS["alice"], "scope": "admin"}, 403)],
)  # fmt: skip
def test_a_bad_token_request_is_a_4xx_with_a_reason(servers, form, status):
    answer = httpx.post(f"{servers.base}/token", data=form)
    assert answer.status_code == status and answer.json()["error"]
    assert httpx.post(f"{servers.base}/token", json=form).status_code == 400  # not a form


def _token(claims: dict, key: str, kid: str) -> str:
    now = int(time.time())
    return jwt.encode({"iss": "mlrm", "sub": "alice", "scope": "infer", "iat": now, "exp": now + 60, **claims},
                      key, algorithm="HS256", headers={"kid": kid})  # fmt: skip


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer nonsense", "Token abc",
     "Bearer " + _token({"exp": int(time.time()) - 3600}, KEYS["k2"], "k2"),  # expired
     "Bearer " + _token({}, "an attacker's key of enough length " + "x" * 20, "k2"),  # wrongly signed
     "Bearer " + _token({}, "a retired key that is long enough " + "r" * 20, "k0")],  # rotated out
    ids=["missing", "empty", "malformed", "other scheme", "expired", "wrongly signed", "retired key"],
)  # fmt: skip
def test_missing_or_invalid_credentials_are_401(servers, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    answer = httpx.post(f"{servers.base}/predict", headers=headers)
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
    credential = (authorization or "").partition(" ")[2]
    assert answer.json()["error"] and (not credential or credential not in answer.text)


def test_a_token_of_a_still_listed_older_key_is_accepted(servers):
    older = Tokens(lambda: SigningKeys({"k1": KEYS["k1"]}))  # signed before k2 was put first
    token, _ = older.issue("alice", ["infer"])
    assert httpx.post(f"{servers.base}/predict", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_a_valid_token_without_the_scope_is_403(servers):
    token = get_token(servers.base, "alice").json()["access_token"]
    answer = httpx.delete(f"{servers.base}/things", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 403 and "'admin' scope" in answer.json()["error"]
    root = get_token(servers.base, "root").json()["access_token"]
    assert httpx.delete(f"{servers.base}/things", headers={"Authorization": f"Bearer {root}"}).status_code == 200


def test_api_keys_with_and_without_the_scope_and_revoked(servers):
    store = servers.security.store
    key_id, key = store.create_key("ci", ["infer"])
    assert httpx.post(f"{servers.base}/predict", headers={"X-API-Key": key}).json() == {"by": f"key:{key_id}"}
    assert httpx.post(f"{servers.base}/predict", headers={"Authorization": f"ApiKey {key}"}).status_code == 200
    assert httpx.delete(f"{servers.base}/things", headers={"X-API-Key": key}).status_code == 403
    store.revoke_key(key_id)
    answer = httpx.post(f"{servers.base}/predict", headers={"X-API-Key": key})
    assert answer.status_code == 401 and "revoked" in answer.json()["error"] and key not in answer.text


def test_open_endpoints_need_nothing(servers):
    assert httpx.get(f"{servers.base}/health").json() == {"ok": True}


def _call(servers, method: str, metadata=()) -> grpc.RpcError | bytes:
    with grpc.insecure_channel(f"127.0.0.1:{servers.grpc_port}") as channel:
        try:
            return channel.unary_unary(f"{SERVICE}{method}")(b"ping", metadata=metadata, timeout=10)
        except grpc.RpcError as exc:
            return exc


def test_grpc_checks_the_same_credentials_in_call_metadata(servers):
    token = get_token(servers.base, "alice").json()["access_token"]
    _, key = servers.security.store.create_key("ci", ["read"])
    assert _call(servers, "Health") == b"ping"
    assert _call(servers, "Predict", [("authorization", f"Bearer {token}")]) == b"ping"
    assert _call(servers, "Read", [("x-api-key", key)]) == b"ping"
    refused = {
        "no metadata": (_call(servers, "Predict"), grpc.StatusCode.UNAUTHENTICATED),
        "bad token": (_call(servers, "Predict", [("authorization", "Bearer x.y.z")]), grpc.StatusCode.UNAUTHENTICATED),
        "no scope": (_call(servers, "Read", [("authorization", f"Bearer {token}")]), grpc.StatusCode.PERMISSION_DENIED),
        "key without scope": (_call(servers, "Predict", [("x-api-key", key)]), grpc.StatusCode.PERMISSION_DENIED),
        "unlisted method: admin": (_call(servers, "Unlisted", [("x-api-key", key)]), grpc.StatusCode.PERMISSION_DENIED),
    }  # fmt: skip
    for case, (answer, code) in refused.items():
        assert isinstance(answer, grpc.RpcError) and answer.code() == code, case
        assert token not in answer.details() and key not in answer.details()


def test_nothing_secret_reaches_the_log(servers, caplog):
    caplog.set_level(logging.DEBUG)
    token = get_token(servers.base, "alice").json()["access_token"]
    _, key = servers.security.store.create_key("ci", ["infer"])
    httpx.post(f"{servers.base}/predict", headers={"Authorization": f"Bearer {token}x"})
    httpx.post(f"{servers.base}/predict", headers={"X-API-Key": key + "x"})
    get_token(servers.base, "alice", "wrong password")
    _call(servers, "Predict", [("authorization", f"Bearer {token}x")])
    for secret in (token, key, PASSWORDS["alice"], "wrong password", KEYS["k2"]):
        assert secret not in caplog.text
    assert KEYS["k2"] not in repr(servers.security.tokens.keys())


def test_an_endpoint_without_a_scope_marker_is_refused_when_security_is_on(tmp_path, cheap_argon2):  # noqa: F811
    async def forgot(request: Request) -> Response:
        return json_response({})

    app = Starlette(routes=[Route("/forgot", forgot)])
    with pytest.raises(MlrmError, match="/forgot"):
        secure(app, make_security(tmp_path))


def test_without_security_everything_is_open():
    app = Starlette(routes=[Route("/predict", guarded(predict), methods=["POST"]), *token_routes()])
    with ApiServers(rest=app, http_port=0) as running:
        base = f"http://127.0.0.1:{running.http_port}"
        assert httpx.post(f"{base}/token", data={"grant_type": "password"}).status_code == 404


def test_the_openapi_document_says_which_operations_need_credentials(tmp_path, cheap_argon2):  # noqa: F811
    from mlrm.web.openapi import openapi_routes

    @requires("infer")
    async def documented(request: Request) -> Response:
        """Predict.
        ---
        responses:
          "200": {description: the answer}
        """
        return await predict(request)

    routes = [Route("/predict", guarded(documented), methods=["POST"]), Route("/health", guarded(health))]
    app = secure(Starlette(routes=[*routes, *openapi_routes("t", routes)]), make_security(tmp_path))
    with ApiServers(rest=app, http_port=0) as running:
        spec = httpx.get(f"http://127.0.0.1:{running.http_port}/openapi.json").json()  # open: no credentials
    operation = spec["paths"]["/predict"]["post"]
    assert operation["security"] == [{"bearer": ["infer"]}, {"apiKey": ["infer"]}]
    assert {"200", "401", "403"} <= set(operation["responses"])
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey"}


def test_a_mounted_application_gets_the_same_security(tmp_path, cheap_argon2):  # noqa: F811
    from starlette.routing import Mount

    inner = Starlette(routes=[Route("/predict", guarded(predict), methods=["POST"])])
    app = Starlette(routes=[Mount("/api", app=inner), Mount("/more", routes=[Route("/things", guarded(delete))])])
    with ApiServers(rest=app, http_port=0, security=make_security(tmp_path)) as running:
        base = f"http://127.0.0.1:{running.http_port}"
        assert httpx.post(f"{base}/api/predict").status_code == 401
        assert httpx.get(f"{base}/more/things").status_code == 401
    with pytest.raises(MlrmError, match="/api/forgot"):
        secure(Starlette(routes=[Mount("/api", routes=[Route("/forgot", health.__wrapped__)])]),
               make_security(tmp_path))  # fmt: skip


def test_a_refusal_is_answered_whichever_way_round_the_wrappers_are(tmp_path, cheap_argon2):  # noqa: F811
    async def plain(request: Request) -> Response:
        return json_response({})

    app = Starlette(routes=[Route("/reversed", requires("read")(guarded(plain)))])
    with ApiServers(rest=app, http_port=0, security=make_security(tmp_path)) as running:
        answer = httpx.get(f"http://127.0.0.1:{running.http_port}/reversed")
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
