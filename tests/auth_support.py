"""What the authentication tests share: cheaper argon2id parameters (the same algorithm; the hash
records its parameters, so verification is unchanged), users, keys and a Security on tmp files."""

from __future__ import annotations

from pathlib import Path

import pytest
from argon2 import PasswordHasher

import mlrm.auth.store
from mlrm.auth import AuthSettings, Security
from mlrm.auth.store import AuthStore

KEYS = {"k2": "current-signing-key-" + "c" * 40, "k1": "previous-signing-key-" + "p" * 40}
PASSWORDS = {"alice": "alice's password", "reader": "reader's password", "root": "root's password"}
SCOPES = {"alice": ["infer"], "reader": ["read"], "root": ["admin"]}


@pytest.fixture
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mlrm.auth.store, "_hasher", PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))


def make_security(tmp: Path, keys: dict[str, str] | None = None) -> Security:
    store = AuthStore(tmp / "auth.yaml")
    for user, password in PASSWORDS.items():
        if user not in store.load().users:
            store.add_user(user, password, SCOPES[user])
    text = ",".join(f"{k}:{v}" for k, v in (keys or KEYS).items())
    security = Security.from_settings(AuthSettings(jwt_keys=text, auth_file=str(store.path)))
    assert security is not None
    return security
