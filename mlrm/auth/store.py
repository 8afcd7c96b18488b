"""Users and API keys, in one YAML file readable by its owner only.

    users:
      alice:
        password: $argon2id$v=19$m=65536,t=3,p=4$...    # argon2id hash, never the password
        scopes: [read, submit]
    keys:
      3f9c0a1b2c4d:                                     # the key's id (public: it is in the key)
        name: ci
        hash: sha256:8d5e...                            # of the secret part, never the key
        scopes: [infer]
        created: '2026-11-29T23:40:00+00:00'
        revoked: false

An API key reads ``mlrm_<id>_<secret>``: a server finds the entry by id and compares the SHA-256
of the secret in constant time. The secret is 256 random bits, so a fast hash is as safe as a slow
one there; passwords, chosen by people, get argon2id, checked only when a token is asked for.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import Field, ValidationError, field_validator

from mlrm.auth.files import Watched, locked, warn_if_shared, write_private
from mlrm.auth.scopes import Scope, check_scopes
from mlrm.config import Section, validation_errors
from mlrm.errors import ConfigError, NotFoundError, UnauthorizedError
from mlrm.yamlio import load_yaml

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
KEY = re.compile(r"mlrm_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
MIN_PASSWORD = 8
_hasher = PasswordHasher()  # argon2id, RFC 9106's second recommended parameters (64 MiB, 3 passes)


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


class User(Section):
    """One user who may ask ``POST /token`` for a token."""

    password: str = Field(pattern=r"^\$argon2id\$")
    """The argon2id hash of the password (`mlrm users add` / `mlrm users passwd` write it)."""
    scopes: list[Scope] = Field(default_factory=list)
    """What the user's tokens may do: infer, submit, read, admin (admin implies the others)."""
    created: str = Field(default_factory=_now)


class ApiKey(Section):
    """One API key: a credential for programs, sent as `X-API-Key: mlrm_<id>_<secret>`."""

    name: str
    """What the key is for (shown by `mlrm keys list`)."""
    hash: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    """SHA-256 of the key's secret part."""
    scopes: list[Scope] = Field(default_factory=list)
    created: str = Field(default_factory=_now)
    revoked: bool = False
    """A revoked key is refused (401) from the next request on."""
    revoked_at: str | None = None


class AuthFile(Section):
    """The users-and-keys file."""

    users: dict[str, User] = Field(default_factory=dict)
    keys: dict[str, ApiKey] = Field(default_factory=dict)

    @field_validator("users")
    @classmethod
    def _names(cls, value: dict[str, User]) -> dict[str, User]:
        for name in value:
            if not NAME.fullmatch(name):
                raise ValueError(f"user name {name!r} must be 1-64 letters, digits or _.@- (starting alnum)")
        return value

    @field_validator("keys")
    @classmethod
    def _ids(cls, value: dict[str, ApiKey]) -> dict[str, ApiKey]:
        for key_id in value:
            if not re.fullmatch(r"[0-9a-f]{12}", str(key_id)):
                raise ValueError(f"key id {key_id!r} must be 12 hexadecimal digits")
        return value


def _digest(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"a password needs at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


class AuthStore:
    """The users-and-keys file at ``path`` (missing: no users, no keys)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._watched = Watched(self.path, self._read, AuthFile)
        self._dummy: str | None = None

    def __repr__(self) -> str:
        return f"AuthStore({str(self.path)!r})"

    # -- reading ---------------------------------------------------------------------------------
    def _read(self, path: Path) -> AuthFile:
        doc = load_yaml(path, env={})
        if doc.data is None:
            return AuthFile()
        if not isinstance(doc.data, dict):
            raise ConfigError("the users-and-keys file must be a mapping with 'users' and 'keys'", doc.locate(()))
        try:
            data = AuthFile.model_validate(doc.data)
        except ValidationError as exc:
            raise validation_errors(exc, doc) from None
        warn_if_shared(path)
        return data

    def load(self) -> AuthFile:
        """The file's content now (re-read when it changed since the last call)."""
        return self._watched.get()

    # -- writing ---------------------------------------------------------------------------------
    @contextmanager
    def edit(self) -> Iterator[AuthFile]:
        """Read, change and write the file back atomically (0600), under a lock."""
        with locked(self.path):
            data = self._read(self.path) if self.path.exists() else AuthFile()
            yield data
            text = yaml.safe_dump(data.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
            write_private(self.path, "# mlrm users and API keys: edit with `mlrm users` and `mlrm keys`\n" + text)

    def add_user(self, name: str, password: str, scopes: list[str]) -> None:
        if not NAME.fullmatch(name):
            raise ConfigError(f"user name {name!r} must be 1-64 letters, digits or _.@- (starting alnum)")
        hashed = hash_password(password)
        with self.edit() as data:
            if name in data.users:
                raise ConfigError(f"user {name!r} exists already in {self.path} (`mlrm users passwd` changes it)")
            data.users[name] = User(password=hashed, scopes=list(check_scopes(scopes)))

    def set_password(self, name: str, password: str) -> None:
        hashed = hash_password(password)
        with self.edit() as data:
            self._user(data, name).password = hashed

    def set_scopes(self, name: str, scopes: list[str]) -> None:
        with self.edit() as data:
            self._user(data, name).scopes = list(check_scopes(scopes))

    def remove_user(self, name: str) -> None:
        with self.edit() as data:
            self._user(data, name)
            del data.users[name]

    def create_key(self, name: str, scopes: list[str]) -> tuple[str, str]:
        """A new key: ``(id, key)``. The key is shown to its owner once; only its hash is kept."""
        checked = list(check_scopes(scopes))
        with self.edit() as data:
            key_id = secrets.token_hex(6)
            while key_id in data.keys:
                key_id = secrets.token_hex(6)
            secret = secrets.token_urlsafe(32)
            data.keys[key_id] = ApiKey(name=name, hash=_digest(secret), scopes=checked)
        return key_id, f"mlrm_{key_id}_{secret}"

    def revoke_key(self, key_id: str) -> None:
        with self.edit() as data:
            key = data.keys.get(key_id)
            if key is None:
                raise NotFoundError(f"no API key {key_id!r} in {self.path}")
            key.revoked, key.revoked_at = True, key.revoked_at or _now()

    def _user(self, data: AuthFile, name: str) -> User:
        user = data.users.get(name)
        if user is None:
            raise NotFoundError(f"no user {name!r} in {self.path}")
        return user

    # -- checking credentials ------------------------------------------------------------------
    def check_key(self, key: str) -> tuple[str, ApiKey]:
        """The ``(id, entry)`` of a valid, unrevoked API key; UnauthorizedError otherwise."""
        match = KEY.fullmatch(key.strip())
        if match is None:
            raise UnauthorizedError("malformed API key (expected mlrm_<id>_<secret>)")
        key_id, secret = match.groups()
        entry = self.load().keys.get(key_id)
        if entry is None or not hmac.compare_digest(entry.hash, _digest(secret)):
            raise UnauthorizedError("unknown API key")
        if entry.revoked:
            raise UnauthorizedError(f"API key {key_id} is revoked")
        return key_id, entry

    def check_password(self, name: str, password: str) -> User:
        """The user, if ``password`` is theirs; UnauthorizedError otherwise (as slow for an unknown
        user as for a wrong password, so the answer's timing does not say which names exist)."""
        user = self.load().users.get(name)
        if self._dummy is None:
            self._dummy = _hasher.hash(secrets.token_hex(16))
        try:
            _hasher.verify(user.password if user else self._dummy, password)
        except (VerificationError, InvalidHashError):
            user = None
        if user is None:
            raise UnauthorizedError("wrong user name or password")
        return user
