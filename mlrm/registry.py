"""The model registry, kept in the volume.

Layout::

    models/<name>/<version>/model.skops    the artefact (skops: loading runs no code)
    models/<name>/<version>/state/*.json   statistics learned by handler/features steps
    models/<name>/<version>/card.json      the model card, written LAST: a version exists
                                           for readers only once its card does
    models/<name>/<version>/.reserved      claims the version number (exclusive create)
    models/<name>/aliases/<alias>.json     {"version": N}; re-pointing is one object write

Every file of a version is verified against the sha256 recorded in its card when it
is read, so a modified or corrupted artefact is refused, never loaded. With a signing
key configured (:mod:`mlrm.signing`) the card itself is signed when it is published and
verified before anything of the version is loaded, so rewriting an artefact together
with the hash in its card is caught too. The types an artefact may contain are an
exact list (:mod:`mlrm.trust`).
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mlrm.context import ModelRef
from mlrm.errors import ConfigError, NotFoundError, RegistryError
from mlrm.signing import Signer, signer_from_env
from mlrm.trust import refused_types
from mlrm.volume import Volume

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
ARTEFACT = "model.skops"
CHUNK = 1 << 20


def check_name(name: str) -> str:
    if not NAME.match(name or ""):
        raise ConfigError(
            f"model name {name!r} is not valid: use lower-case letters, digits, '.', '_' and '-' (max 128)"
        )
    return name


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _copy_hashing(src: IO[bytes], dst: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := src.read(CHUNK):
        digest.update(chunk)
        dst.write(chunk)
    return digest.hexdigest()


_FROM_ENV: Any = object()


@dataclass
class ModelRegistry:
    """The registry in ``volume``; ``signer`` defaults to the key in the environment (``MLRM_SIGNING_KEY``)."""

    volume: Volume
    signer: Signer | None = _FROM_ENV

    def __post_init__(self) -> None:
        if self.signer is _FROM_ENV:
            self.signer = signer_from_env()

    # -- reading -----------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted({o.key.split("/")[1] for o in self.volume.list("models/") if o.key.endswith("/card.json")})

    def versions(self, name: str) -> list[int]:
        prefix = f"models/{check_name(name)}/"
        found = set()
        for obj in self.volume.list(prefix):
            version, _, rest = obj.key[len(prefix) :].partition("/")
            if rest == "card.json" and version.isdigit():
                found.add(int(version))
        return sorted(found)

    def card(self, ref: ModelRef) -> dict[str, Any]:
        try:
            return self.volume.get_json(f"{ref.prefix}card.json")
        except NotFoundError:
            raise NotFoundError(f"model '{ref.name}' has no version {ref.version}") from None

    def cards(self) -> Iterable[dict[str, Any]]:
        """Every published version's card, by model name then version."""
        for name in self.names():
            for version in self.versions(name):
                yield self.card(ModelRef(name, version))

    def aliases(self, name: str) -> dict[str, int]:
        prefix = f"models/{check_name(name)}/aliases/"
        out = {}
        for obj in self.volume.list(prefix):
            alias = obj.key[len(prefix) :].removesuffix(".json")
            out[alias] = int(self.volume.get_json(obj.key)["version"])
        return out

    def resolve(self, name: str, *, alias: str | None = None, version: int | None = None) -> ModelRef:
        """Pin a model version: by number, by alias, or the latest when neither is given."""
        check_name(name)
        if version is not None:
            ref = ModelRef(name, version)
            self.card(ref)  # raises NotFoundError if it does not exist
            return ref
        if alias is not None:
            target = self.aliases(name).get(alias)
            if target is None:
                raise NotFoundError(f"model '{name}' has no version with alias '{alias}'; train and register one first")
            return ModelRef(name, target)
        versions = self.versions(name)
        if not versions:
            raise NotFoundError(f"model '{name}' has no registered versions; train it first")
        return ModelRef(name, versions[-1])

    def verified_card(self, ref: ModelRef) -> dict[str, Any]:
        """The card, its signature checked when a signing key is configured: read this before loading files."""
        card = self.card(ref)
        if self.signer is not None:
            self.signer.verify(card, f"model '{ref.name}' version {ref.version}")
        return card

    def read_verified(self, ref: ModelRef, rel: str, card: dict[str, Any] | None = None) -> bytes:
        """A small file of a version (state JSON), checked against the (verified) card's sha256."""
        card = card or self.verified_card(ref)
        data = self.volume.get_bytes(f"{ref.prefix}{rel}")
        self._check(ref, rel, card, sha256(data))
        return data

    def _check(self, ref: ModelRef, rel: str, card: dict[str, Any], digest: str) -> None:
        expected = card.get("sha256", {}).get(rel)
        if digest != expected:
            raise RegistryError(
                f"model '{ref.name}' version {ref.version}: {rel} does not match the sha256 in its card "
                "(the file was modified or corrupted); refusing to load it"
            )

    def load_artefact(self, ref: ModelRef, *, trusted: Iterable[str] = ()) -> Any:
        """Load and verify a model: its card's signature (with a key), its sha256, and its types.

        The artefact streams to a temporary file (never one in-memory blob) and is
        hashed on the way. Every type skops does not trust itself must be named exactly:
        by :data:`mlrm.trust.TRUSTED_TYPES`, by ``trusted``, or by the card of a version
        whose signature was verified.
        """
        import skops.io as sio

        card = self.verified_card(ref)
        with tempfile.TemporaryFile(prefix="mlrm-model-") as path:  # nameless: a killed process leaves nothing
            with self.volume.open_read(f"{ref.prefix}{ARTEFACT}") as src:
                digest = _copy_hashing(src, path)
            self._check(ref, ARTEFACT, card, digest)
            try:
                untrusted = sio.get_untrusted_types(file=path)
            except Exception as exc:  # not a skops file, or a protocol this skops does not read
                raise RegistryError(
                    f"model '{ref.name}' version {ref.version}: {ARTEFACT} is not a readable skops file ({exc})"
                ) from None
            signed = card.get("trusted_types", []) if self.signer is not None else []
            refused = refused_types(untrusted, trusted, signed if isinstance(signed, list) else [])
            if refused:
                raise RegistryError(
                    f"model '{ref.name}' version {ref.version} contains types that are not trusted: "
                    f"{', '.join(refused)}; list them under trusted_types in the predict config if you trust them"
                )
            try:
                return sio.load(path, trusted=untrusted)
            except Exception as exc:
                raise RegistryError(f"model '{ref.name}' version {ref.version} could not be loaded: {exc}") from None

    # -- writing -----------------------------------------------------------------------
    def reserve_version(self, name: str) -> int:
        """Claim the next version number (safe against concurrent trainers)."""
        check_name(name)
        prefix = f"models/{name}/"
        taken = {
            int(o.key[len(prefix) :].split("/")[0])
            for o in self.volume.list(prefix)
            if o.key[len(prefix) :].split("/")[0].isdigit()
        }
        version = max(taken, default=0) + 1
        while not self.volume.create(f"{prefix}{version}/.reserved", b""):
            version += 1
        return version

    def publish(
        self, ref: ModelRef, files: dict[str, bytes | Path | IO[bytes]], card: dict[str, Any]
    ) -> dict[str, Any]:
        """Write a version's files (bytes, or paths and open files streamed from disk), then its card last."""
        digests: dict[str, str] = {}
        try:
            for rel, content in files.items():
                with self.volume.open_write(f"{ref.prefix}{rel}") as dst:
                    if isinstance(content, Path):
                        with open(content, "rb") as src:
                            digests[rel] = _copy_hashing(src, dst)
                    elif not isinstance(content, bytes):
                        content.seek(0)
                        digests[rel] = _copy_hashing(content, dst)
                    else:
                        dst.write(content)
                        digests[rel] = sha256(content)
            card = {**card, "modelname": ref.name, "version": ref.version, "sha256": digests}
            if self.signer is not None:
                card = self.signer.sign(card)
            self.volume.put_json(f"{ref.prefix}card.json", card)
        except BaseException:
            self.discard(ref)
            raise
        return card

    def discard(self, ref: ModelRef) -> None:
        """Remove a version that was never published, reservation included."""
        self.volume.delete_prefix(ref.prefix)

    def set_alias(self, name: str, alias: str, version: int) -> None:
        if not ALIAS.match(alias):
            raise ConfigError(f"alias {alias!r} is not valid: lower-case letters, digits, '_' and '-'")
        self.card(ModelRef(name, version))
        self.volume.put_json(f"models/{name}/aliases/{alias}.json", {"version": version})

    def remove_alias(self, name: str, alias: str) -> None:
        if alias not in self.aliases(name):
            raise NotFoundError(f"model '{name}' has no alias '{alias}'")
        self.volume.delete(f"models/{name}/aliases/{alias}.json")

    def delete_version(self, ref: ModelRef, *, referenced_by: Iterable[str] = ()) -> None:
        """Delete a version's files, card first so readers stop seeing it at once.

        Refused while an alias points at it or ``referenced_by`` (active deployments) is not empty.
        """
        self.card(ref)
        aliases = [a for a, v in self.aliases(ref.name).items() if v == ref.version]
        users = [f"alias '{a}'" for a in aliases] + [f"deployment {d}" for d in referenced_by]
        if users:
            raise RegistryError(
                f"model '{ref.name}' version {ref.version} is still referenced by {', '.join(users)}; "
                "re-point or decommission those first"
            )
        self.volume.delete(f"{ref.prefix}card.json")
        self.volume.delete_prefix(ref.prefix)


def spool(write: Any) -> IO[bytes]:
    """Run ``write(file)`` into a fresh temporary file and return it, open (the caller closes it).

    The file has no name (it is unlinked at once), so the system reclaims it even when the
    process is killed: a dead trainer leaves nothing in the temp folder.
    """
    file = tempfile.TemporaryFile(prefix="mlrm-artefact-")  # noqa: SIM115 - handed to the caller, open
    try:
        write(file)
        file.flush()
    except BaseException:
        file.close()
        raise
    return file
