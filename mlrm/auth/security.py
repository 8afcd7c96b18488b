"""A server's authentication: who is calling (a token or an API key) and whether they may.

    security = Security.from_settings(AuthSettings())   # None: no signing key, an open server
    principal = security.authenticate(request.headers)  # UnauthorizedError (401)
    security.authorize(principal, "infer")              # ForbiddenError (403)

Credentials are ``Authorization: Bearer <jwt>``, ``X-API-Key: <key>`` or ``Authorization: ApiKey <key>``.
Verifying a token is a signature check; an API key a SHA-256; passwords (argon2id, slow on
purpose) are checked only when a token is asked for (:meth:`Security.password_grant`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mlrm.auth.scopes import effective, parse_scopes
from mlrm.auth.settings import AuthSettings
from mlrm.auth.store import AuthStore
from mlrm.auth.tokens import Tokens, keys_from_text
from mlrm.errors import ConfigError, DataError, ForbiddenError, MlrmError, UnauthorizedError

log = logging.getLogger(__name__)

MISSING = "authentication required: send Authorization: Bearer <token> (from POST /token) or X-API-Key: <key>"


@dataclass(frozen=True)
class Principal:
    """Who is calling and what they may do (``scopes`` with ``admin`` expanded)."""

    subject: str
    scopes: frozenset[str]
    via: Literal["token", "api-key"]

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


@contextmanager
def _server_files() -> Iterator[None]:
    """A users-and-keys or keys file that became invalid while serving: the caller learns only that
    authentication is unavailable (500); the file, line and reason go to the server's log."""
    try:
        yield
    except ConfigError as exc:
        log.error("authentication is unavailable: %s", exc.message)
        raise MlrmError("authentication is unavailable: a server file is invalid (see the server's log)") from None


class Security:
    def __init__(self, tokens: Tokens, store: AuthStore) -> None:
        self.tokens, self.store = tokens, store

    def __repr__(self) -> str:
        return f"Security(issuer={self.tokens.issuer!r}, store={self.store!r})"

    @classmethod
    def from_settings(cls, settings: AuthSettings | None = None) -> Security | None:
        """The security ``settings`` describe, or None when no signing key is configured."""
        settings = settings or AuthSettings()
        options: dict[str, Any] = {"issuer": settings.jwt_issuer, "ttl": settings.jwt_ttl,
                                   "leeway": settings.jwt_leeway}  # fmt: skip
        text = settings.jwt_keys.get_secret_value() if settings.jwt_keys is not None else ""
        path = settings.keys_file()
        if text and settings.jwt_keys_file:
            raise ConfigError("set MLRM_JWT_KEYS or MLRM_JWT_KEYS_FILE, not both")
        if text:
            keys = keys_from_text(text)
            tokens = Tokens(lambda: keys, **options)
        elif path is not None:
            tokens = Tokens.from_file(path, **options)
            tokens.keys()  # a missing or malformed file fails now, not on the first request
        else:
            return None
        store = AuthStore(Path(settings.auth_file))
        store.load()
        return cls(tokens, store)

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """Who sent ``headers`` (case-insensitive, or lower-case keys); UnauthorizedError if no one valid."""
        authorization = headers.get("authorization")
        if authorization:
            scheme, _, credential = authorization.strip().partition(" ")
            scheme, credential = scheme.lower(), credential.strip()
            if scheme == "bearer" and credential:
                with _server_files():
                    claims = self.tokens.verify(credential)
                return Principal(claims.subject, effective(claims.scopes), "token")
            if scheme == "apikey" and credential:
                return self._key(credential)
            raise UnauthorizedError("the Authorization header must be 'Bearer <token>' or 'ApiKey <key>'")
        key = headers.get("x-api-key")
        if key:
            return self._key(key)
        raise UnauthorizedError(MISSING)

    def _key(self, key: str) -> Principal:
        with _server_files():
            key_id, entry = self.store.check_key(key)
        return Principal(f"key:{key_id}", effective(entry.scopes), "api-key")

    @staticmethod
    def authorize(principal: Principal, scope: str) -> None:
        if not principal.allows(scope):
            raise ForbiddenError(f"this needs the '{scope}' scope; {principal.subject} has "
                                 f"{', '.join(sorted(principal.scopes)) or 'none'}")  # fmt: skip

    def check(self, headers: Mapping[str, str], scope: str | None) -> Principal | None:
        """Authenticate and authorize in one call (``scope`` None: open, nothing checked)."""
        if scope is None:
            return None
        principal = self.authenticate(headers)
        self.authorize(principal, scope)
        return principal

    def password_grant(self, username: str, password: str, scope: str = "") -> dict[str, Any]:
        """OAuth2's password grant: a token for the user's scopes (those asked for, when ``scope``
        names some). A wrong password, or an unknown user, is an UnauthorizedError."""
        with _server_files():
            user = self.store.check_password(username, password)
        granted = set(user.scopes)
        try:
            asked = parse_scopes(scope) if scope.strip() else None
        except ConfigError as exc:
            raise DataError(exc.reason) from None
        if asked is not None:
            allowed = effective(granted)
            granted = {s for s in asked if s in allowed}
            if not granted:
                raise ForbiddenError(f"user {username} has none of the scopes asked for ({' '.join(asked)})")
        ordered = [s for s in ("infer", "submit", "read", "admin") if s in granted]
        with _server_files():
            token, life = self.tokens.issue(username, ordered)
        return {"access_token": token, "token_type": "bearer", "expires_in": life, "scope": " ".join(ordered)}
