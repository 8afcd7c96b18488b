"""A request's credentials: a bearer token or an API key, with scopes; admin implies the others."""

from __future__ import annotations

import pytest

from mlrm.auth import AuthSettings, Security
from mlrm.auth.store import AuthStore
from mlrm.errors import ConfigError, DataError, ForbiddenError, MlrmError, UnauthorizedError
from tests.auth_support import cheap_argon2  # noqa: F401 - a fixture

KEYS = "k1:" + "s" * 48


@pytest.fixture
def security(tmp_path, cheap_argon2):  # noqa: F811
    store = AuthStore(tmp_path / "auth.yaml")
    store.add_user("alice", "alice's password", ["read", "infer"])
    store.add_user("root", "root's password", ["admin"])
    found = Security.from_settings(AuthSettings(jwt_keys=KEYS, auth_file=str(store.path)))
    assert found is not None
    return found


def bearer(security: Security, user: str, password: str, scope: str = "") -> dict[str, str]:
    return {"authorization": "Bearer " + security.password_grant(user, password, scope)["access_token"]}


def test_no_signing_key_means_no_security(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Security.from_settings(AuthSettings(_env_file=None)) is None
    with pytest.raises(ConfigError, match="not both"):
        Security.from_settings(AuthSettings(jwt_keys=KEYS, jwt_keys_file=str(tmp_path / "k.yaml")))


def test_a_token_from_the_password_grant_authenticates_with_the_users_scopes(security):
    answer = security.password_grant("alice", "alice's password")
    assert answer["token_type"] == "bearer" and answer["scope"] == "infer read" and answer["expires_in"] == 3600
    principal = security.authenticate(bearer(security, "alice", "alice's password"))
    assert (principal.subject, principal.scopes, principal.via) == ("alice", {"infer", "read"}, "token")
    security.authorize(principal, "infer")
    with pytest.raises(ForbiddenError, match="'admin' scope"):
        security.authorize(principal, "admin")


def test_asked_scopes_are_limited_to_the_users(security):
    assert security.password_grant("alice", "alice's password", "read admin")["scope"] == "read"
    assert security.password_grant("root", "root's password", "infer")["scope"] == "infer"
    with pytest.raises(ForbiddenError):
        security.password_grant("alice", "alice's password", "admin")
    with pytest.raises(DataError, match="unknown scope"):
        security.password_grant("alice", "alice's password", "everything")


def test_a_wrong_password_gets_no_token(security):
    with pytest.raises(UnauthorizedError):
        security.password_grant("alice", "not alice's password")


def test_admin_implies_every_scope(security):
    principal = security.authenticate(bearer(security, "root", "root's password"))
    for scope in ("infer", "submit", "read", "admin"):
        security.authorize(principal, scope)


def test_api_keys_in_either_header(security):
    _, key = security.store.create_key("ci", ["infer"])
    for headers in ({"x-api-key": key}, {"authorization": f"ApiKey {key}"}):
        principal = security.authenticate(headers)
        assert principal.via == "api-key" and principal.scopes == {"infer"}
    with pytest.raises(ForbiddenError):
        security.check({"x-api-key": key}, "read")


@pytest.mark.parametrize("headers", [{}, {"authorization": "Basic YWxpY2U6cHc="}, {"authorization": "Bearer "},
                                     {"authorization": "Bearer not.a.token"}, {"x-api-key": "mlrm_nope"}])  # fmt: skip
def test_missing_or_malformed_credentials_are_401(security, headers):
    with pytest.raises(UnauthorizedError):
        security.authenticate(headers)


def test_an_open_endpoint_needs_no_credentials(security):
    assert security.check({}, None) is None


def test_a_users_file_broken_while_serving_fails_closed_without_telling_the_caller_where(security, caplog):
    _, key = security.store.create_key("ci", ["infer"])
    security.store.path.write_text("keys: {broken: [\n")
    with pytest.raises(MlrmError) as info:
        security.authenticate({"x-api-key": key})
    assert info.value.http_status == 500 and str(security.store.path) not in info.value.message
    assert str(security.store.path) in caplog.text
