"""JSON Web Tokens (HS256): issued by ``POST /token``, checked on every call.

Signing keys are named (``kid``) secrets in order: the first signs new tokens, every listed key
verifies, so a key is rotated by putting a new one first and dropping the old one once its tokens
have expired. They come from ``MLRM_JWT_KEYS`` (``kid:secret,kid:secret``) or a YAML file
(``MLRM_JWT_KEYS_FILE``, default ``.mlrm/jwt-keys.yaml``; `mlrm auth init-key` writes it)::

    k20261129a: 5f0c...   # signs
    k20261001a: 9ab1...   # still verifies

A token carries ``iss`` (checked), ``sub`` (the user), ``scope`` (space separated), ``iat`` and ``exp``.
A verified token is remembered (up to :data:`CACHE` of them) until it expires or the keys change, so
a client sending the same token again costs a dictionary lookup, not a signature check.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import yaml

from mlrm.auth.files import Watched, warn_if_shared, write_private
from mlrm.errors import ConfigError, Location, UnauthorizedError
from mlrm.yamlio import load_yaml

ALGORITHM = "HS256"
MIN_SECRET = 32
KID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
CACHE = 4096


class SigningKeys:
    """Named secrets in order; the first signs. Its ``repr`` names the keys, never their secrets."""

    def __init__(self, keys: dict[str, str], source: str = "the JWT keys") -> None:
        if not keys:
            raise ConfigError(f"{source} lists no key")
        for kid, secret in keys.items():
            if not KID.fullmatch(kid):
                raise ConfigError(f"{source}: key id {kid!r} must be 1-64 letters, digits or _.-")
            if len(secret.encode()) < MIN_SECRET:
                raise ConfigError(f"{source}: key {kid!r} is shorter than {MIN_SECRET} bytes (`mlrm auth init-key` "
                                  "makes one)")  # fmt: skip
        self._keys = {kid: secret.encode() for kid, secret in keys.items()}
        self.signing = next(iter(self._keys))

    def __repr__(self) -> str:
        return f"SigningKeys({list(self._keys)})"

    @property
    def ids(self) -> list[str]:
        return list(self._keys)

    def secret(self, kid: str) -> bytes | None:
        return self._keys.get(kid)

    def to_yaml(self) -> str:
        body = yaml.safe_dump({k: v.decode() for k, v in self._keys.items()}, sort_keys=False)
        return "# mlrm JWT signing keys: the first signs, every one verifies (`mlrm auth rotate-key`)\n" + body


def new_key() -> tuple[str, str]:
    """A fresh ``(kid, secret)``: 256 random bits, named by date and a random suffix."""
    return f"k{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(3)}", secrets.token_hex(32)


def keys_from_text(text: str, source: str = "MLRM_JWT_KEYS") -> SigningKeys:
    """``kid:secret,kid:secret`` (a lone ``secret`` is named by its fingerprint)."""
    keys: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        kid, sep, secret = part.partition(":")
        if not sep:
            kid, secret = "k" + hashlib.sha256(part.encode()).hexdigest()[:8], part
        keys[kid.strip()] = secret.strip()
    return SigningKeys(keys, source)


def read_keys_file(path: Path) -> SigningKeys:
    doc = load_yaml(path, env={})
    if not isinstance(doc.data, dict) or not all(isinstance(v, str) for v in doc.data.values()):
        raise ConfigError("a JWT keys file is a mapping of key id: secret (the first signs)", doc.locate(()))
    warn_if_shared(path)
    try:
        return SigningKeys({str(k): v for k, v in doc.data.items()}, str(path))
    except ConfigError as exc:
        raise ConfigError(exc.reason.removeprefix(f"{path}: "), Location(str(path))) from None


def write_keys_file(path: Path, keys: SigningKeys) -> None:
    write_private(path, keys.to_yaml())


@dataclass(frozen=True)
class Claims:
    subject: str
    scopes: tuple[str, ...]
    expires: float


class Tokens:
    """Issue and verify tokens with the keys ``keys()`` returns now (a file is re-read when it changes)."""

    def __init__(self, keys: Callable[[], SigningKeys], *, issuer: str = "mlrm", ttl: float = 3600,
                 leeway: float = 10) -> None:  # fmt: skip
        self.keys, self.issuer, self.ttl, self.leeway = keys, issuer, ttl, leeway
        self._verified: dict[str, tuple[SigningKeys, Claims]] = {}

    @classmethod
    def from_file(cls, path: Path, **kwargs: Any) -> Tokens:
        def missing() -> SigningKeys:
            raise ConfigError("the JWT keys file is missing (`mlrm auth init-key` writes it)", Location(str(path)))

        return cls(Watched(path, read_keys_file, missing).get, **kwargs)

    def issue(self, subject: str, scopes: tuple[str, ...] | list[str], ttl: float | None = None) -> tuple[str, int]:
        """A signed token and its lifetime in seconds."""
        keys = self.keys()
        now = int(time.time())
        life = int(ttl if ttl is not None else self.ttl)
        claims = {"iss": self.issuer, "sub": subject, "scope": " ".join(scopes), "iat": now, "exp": now + life}
        secret = keys.secret(keys.signing)
        assert secret is not None
        return jwt.encode(claims, secret, algorithm=ALGORITHM, headers={"kid": keys.signing}), life

    def verify(self, token: str) -> Claims:
        """The token's claims; UnauthorizedError (with a reason, never the token) if it is not valid."""
        keys = self.keys()
        known = self._verified.get(token)
        if known is not None and known[0] is keys and time.time() <= known[1].expires + self.leeway:
            return known[1]
        self._verified.pop(token, None)
        claims = self._verify(token, keys)
        if len(self._verified) >= CACHE:
            self._verified.clear()
        self._verified[token] = (keys, claims)
        return claims

    def _verify(self, token: str, keys: SigningKeys) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise UnauthorizedError("malformed token") from None
        if header.get("alg") != ALGORITHM:
            raise UnauthorizedError(f"token algorithm must be {ALGORITHM}")
        kid = header.get("kid")
        secret = keys.secret(kid) if isinstance(kid, str) else None
        if secret is None:
            raise UnauthorizedError("token signed by an unknown key (retired, or not one of this server's)")
        try:
            claims = jwt.decode(
                token, secret, algorithms=[ALGORITHM], issuer=self.issuer, leeway=self.leeway,
                options={"require": ["exp", "iat", "iss", "sub"]},
            )  # fmt: skip
        except jwt.ExpiredSignatureError:
            raise UnauthorizedError("token expired: ask POST /token for a new one") from None
        except jwt.InvalidSignatureError:
            raise UnauthorizedError("token signature is invalid") from None
        except jwt.InvalidIssuerError:
            raise UnauthorizedError("token issued by someone else") from None
        except jwt.InvalidTokenError as exc:
            raise UnauthorizedError(f"invalid token ({type(exc).__name__})") from None
        scope = claims.get("scope", "")
        if not isinstance(scope, str) or not isinstance(claims["sub"], str):
            raise UnauthorizedError("invalid token (claims)")
        return Claims(claims["sub"], tuple(scope.split()), float(claims["exp"]))
