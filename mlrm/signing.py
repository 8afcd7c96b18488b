"""Signed model cards: what the registry publishes is signed, and loading checks the signature.

A card records the sha256 of every file of its version, so a valid signature over the
card vouches for the artefact and the learned statistics too. Without it, the hashes
only catch accidents: anyone who can write to the volume can rewrite an artefact and
the hash beside it. The signature is an HMAC-SHA256 over the card's canonical JSON
(sorted keys, no spaces, the ``signature`` field left out), with a secret key that
the trainers and the predict replicas share and the volume never holds::

    MLRM_SIGNING_KEY=...           # the key itself (at least 32 characters), or
    MLRM_SIGNING_KEY_FILE=/path    # a file holding it (a Kubernetes secret, say)

With a key configured, a version that is unsigned or signed with another key is
refused. Without one, versions are published unsigned and loaded as before; the
artefact's types are then checked against a fixed list only (see :mod:`mlrm.trust`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlrm.errors import ConfigError, RegistryError

ALGORITHM = "HMAC-SHA256"
FIELD = "signature"
MIN_KEY_LENGTH = 32


def canonical(card: dict[str, Any]) -> bytes:
    """The bytes a signature covers: the card without its signature, as canonical JSON."""
    body = {k: v for k, v in card.items() if k != FIELD}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str).encode()


@dataclass(frozen=True)
class Signer:
    """Signs and verifies cards with one secret key."""

    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) < MIN_KEY_LENGTH:
            raise ConfigError(
                f"the signing key must be at least {MIN_KEY_LENGTH} bytes long (e.g. `openssl rand -hex 32`)"
            )

    def __repr__(self) -> str:  # never show the key
        return f"Signer(key_id={self.key_id!r})"

    @property
    def key_id(self) -> str:
        """A short, public fingerprint of the key: says which key signed, never reveals it."""
        return hashlib.sha256(b"mlrm-key-id:" + self.key).hexdigest()[:12]

    def sign(self, card: dict[str, Any]) -> dict[str, Any]:
        digest = hmac.new(self.key, canonical(card), hashlib.sha256).hexdigest()
        return {**card, FIELD: {"algorithm": ALGORITHM, "key_id": self.key_id, "value": digest}}

    def verify(self, card: dict[str, Any], what: str) -> None:
        """Raise RegistryError unless ``card`` carries a valid signature made with this key."""
        signature = card.get(FIELD)
        if not isinstance(signature, dict) or not signature.get("value"):
            raise RegistryError(
                f"{what} is not signed, and a signing key is configured: refusing to load it "
                "(it was published without MLRM_SIGNING_KEY, or its card was rewritten)"
            )
        expected = hmac.new(self.key, canonical(card), hashlib.sha256).hexdigest()
        if signature.get("algorithm") != ALGORITHM or not hmac.compare_digest(str(signature["value"]), expected):
            other = signature.get("key_id")
            hint = f" (signed with key {other}, not {self.key_id})" if other and other != self.key_id else ""
            raise RegistryError(
                f"{what} has an invalid signature{hint}: its card or files were modified after it "
                "was published; refusing to load it"
            )


def signer_from_env(environ: dict[str, str] | None = None) -> Signer | None:
    """The signer ``MLRM_SIGNING_KEY`` or ``MLRM_SIGNING_KEY_FILE`` configures, or None."""
    env = os.environ if environ is None else environ
    key, file = env.get("MLRM_SIGNING_KEY"), env.get("MLRM_SIGNING_KEY_FILE")
    if key and file:
        raise ConfigError("set MLRM_SIGNING_KEY or MLRM_SIGNING_KEY_FILE, not both")
    if file:
        try:
            key = Path(file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read MLRM_SIGNING_KEY_FILE {file}: {exc.strerror or exc}") from None
    return Signer(key.encode()) if key else None
