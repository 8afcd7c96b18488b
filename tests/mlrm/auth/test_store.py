"""The users-and-keys file: hashes only, owner-only, atomic; a revoked key is refused at once."""

from __future__ import annotations

import os
import stat

import pytest

from mlrm.auth.store import AuthStore, hash_password
from mlrm.errors import ConfigError, ConfigErrors, NotFoundError, UnauthorizedError
from tests.auth_support import cheap_argon2  # noqa: F401 - a fixture

PASSWORD = "correct horse battery"


@pytest.fixture
def store(tmp_path, cheap_argon2):  # noqa: F811 - the same algorithm with cheaper parameters
    return AuthStore(tmp_path / "secrets" / "auth.yaml")


def test_passwords_are_hashed_with_argon2id_at_rfc_9106_strength():
    assert hash_password(PASSWORD).startswith("$argon2id$v=19$m=65536,t=3,p=4$")


def test_a_user_is_stored_as_an_argon2id_hash_in_a_file_only_its_owner_can_read(store):
    store.add_user("alice", PASSWORD, ["read", "infer"])
    text = store.path.read_text()
    assert PASSWORD not in text and "$argon2id$" in text
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.path.parent).st_mode) == 0o700
    assert store.check_password("alice", PASSWORD).scopes == ["infer", "read"]


@pytest.mark.parametrize(("name", "password"), [("alice", "wrong password"), ("mallory", PASSWORD), ("alice", "")])
def test_a_wrong_password_or_an_unknown_user_is_refused_alike(store, name, password):
    store.add_user("alice", PASSWORD, ["read"])
    with pytest.raises(UnauthorizedError) as info:
        store.check_password(name, password)
    assert info.value.message == "wrong user name or password"


def test_passwd_replaces_the_password_and_remove_forgets_the_user(store):
    store.add_user("alice", PASSWORD, ["read"])
    store.set_password("alice", "a new passphrase")
    with pytest.raises(UnauthorizedError):
        store.check_password("alice", PASSWORD)
    assert store.check_password("alice", "a new passphrase")
    store.remove_user("alice")
    with pytest.raises(UnauthorizedError):
        store.check_password("alice", "a new passphrase")
    with pytest.raises(NotFoundError):
        store.remove_user("alice")


@pytest.mark.parametrize(
    ("name", "password", "scopes", "reason"),
    [("alice", "short", ["read"], "at least 8"), ("alice", PASSWORD, ["root"], "unknown scope 'root'"),
     ("../x", PASSWORD, ["read"], "user name"), ("bob", PASSWORD, ["read"], "exists already")],
)  # fmt: skip
def test_bad_users_are_refused_with_a_reason(store, name, password, scopes, reason):
    store.add_user("bob", PASSWORD, ["read"])
    with pytest.raises(ConfigError, match=reason):
        store.add_user(name, password, scopes)


def test_an_api_key_is_kept_only_as_a_hash_and_checked_by_id(store):
    key_id, key = store.create_key("ci", ["infer"])
    assert key.startswith(f"mlrm_{key_id}_")
    secret = key.rsplit("_", 1)[-1]
    text = store.path.read_text()
    assert secret not in text and key not in text and "sha256:" in text
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    found_id, entry = store.check_key(key)
    assert (found_id, entry.name, entry.scopes) == (key_id, "ci", ["infer"])


def test_a_key_with_a_wrong_secret_or_malformed_is_refused(store):
    _, key = store.create_key("ci", ["infer"])
    forged = key[:-1] + ("A" if key[-1] != "A" else "B")
    with pytest.raises(UnauthorizedError, match="unknown API key"):
        store.check_key(forged)
    with pytest.raises(UnauthorizedError, match="malformed"):
        store.check_key("not-a-key")


def test_a_revoked_key_is_refused_by_a_server_that_loaded_the_file_before(store, tmp_path):
    _, key = store.create_key("ci", ["infer"])
    server = AuthStore(store.path)  # another process's view: it loaded the file already
    assert server.check_key(key)
    key_id = key.split("_")[1]
    store.revoke_key(key_id)
    with pytest.raises(UnauthorizedError, match=f"API key {key_id} is revoked"):
        server.check_key(key)
    with pytest.raises(NotFoundError):
        store.revoke_key("000000000000")


def test_a_malformed_file_is_an_error_naming_file_line_and_field(store):
    store.path.parent.mkdir(parents=True)
    store.path.write_text("users:\n  alice:\n    password: plaintext\n    scopes: [read]\n")
    with pytest.raises(ConfigErrors) as info:
        store.load()
    assert f"{store.path}:3:" in info.value.message and "users.alice.password" in info.value.message
    store.path.write_text("keys: [\n")
    with pytest.raises(ConfigError, match=str(store.path)):
        AuthStore(store.path).load()


def test_a_missing_file_holds_no_users_and_no_keys(store):
    assert store.load().users == {} and store.load().keys == {}
    with pytest.raises(UnauthorizedError):
        store.check_password("alice", PASSWORD)
