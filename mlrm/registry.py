"""The model registry, kept in the volume.

Layout::

    models/<name>/<version>/model.skops    the artefact, in its flavour's format (skops: loading runs no code)
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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Annotated, Any

from pydantic import AfterValidator

from mlrm.card import ModelCard
from mlrm.config import as_value_error
from mlrm.errors import ConfigError, CorruptRecordError, NotFoundError, RefusedError, RegistryError
from mlrm.flavours import flavour
from mlrm.signing import Signer, signer_from_env
from mlrm.volume import Volume

# \Z, not $: Python's $ also matches before a trailing newline, so "production\n" would pass.
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}\Z")
ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,63}\Z")
ARTEFACT = "model.skops"  # the sklearn flavour's artefact file
CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelRef:
    """A model version pinned for a whole run (an alias is resolved once, at submission)."""

    name: str
    version: int

    @property
    def prefix(self) -> str:
        return f"models/{self.name}/{self.version}/"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(
            f"model name {name!r} is not valid: use lower-case letters, digits, '.', '_' and '-' (max 128)"
        )
    return name


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not ALIAS.match(alias):
        raise ConfigError(
            f"alias {alias!r} is not valid: lower-case letters, digits, '_' and '-', starting with a letter (max 64)"
        )
    return alias


ModelName = Annotated[str, AfterValidator(lambda v: as_value_error(check_name, v))]
"""A config field holding a model name: checked by :func:`check_name`, the error located in its file."""
AliasName = Annotated[str, AfterValidator(lambda v: as_value_error(check_alias, v))]
"""A config field holding an alias: checked by :func:`check_alias`."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _copy_hashing(src: IO[bytes], dst: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := src.read(CHUNK):
        digest.update(chunk)
        dst.write(chunk)
    return digest.hexdigest()


_FROM_ENV: Any = object()

# What a listing does with a record it cannot read: None raises it; a callable receives it
# (to report it) and the listing carries on with the others.
OnCorrupt = Callable[[CorruptRecordError], None] | None


def skip_or_raise(exc: CorruptRecordError, on_corrupt: OnCorrupt) -> None:
    if on_corrupt is None:
        raise exc
    on_corrupt(exc)


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
        key = f"{ref.prefix}card.json"
        try:
            card = self.volume.get_json(key)
        except NotFoundError:
            raise NotFoundError(f"model '{ref.name}' has no version {ref.version}") from None
        if not isinstance(card, dict):
            raise CorruptRecordError(f"'{key}' in volume {self.volume.url} is not a model card (not an object)", key)
        return card

    def cards(self, on_corrupt: OnCorrupt = None) -> Iterable[dict[str, Any]]:
        """Every published version's card, by model name then version (unreadable ones: see OnCorrupt)."""
        for name in self.names():
            for version in self.versions(name):
                try:
                    yield self.card(ModelRef(name, version))
                except CorruptRecordError as exc:
                    skip_or_raise(exc, on_corrupt)

    def aliases(self, name: str, on_corrupt: OnCorrupt = None) -> dict[str, int]:
        """Every alias of a model and the version it points at (unreadable ones: see OnCorrupt)."""
        prefix = f"models/{check_name(name)}/aliases/"
        out = {}
        for obj in self.volume.list(prefix):
            try:
                out[obj.key[len(prefix) :].removesuffix(".json")] = self._alias_target(obj.key)
            except CorruptRecordError as exc:
                skip_or_raise(exc, on_corrupt)
        return out

    def _alias_target(self, key: str) -> int:
        record = self.volume.get_json(key)
        version = record.get("version") if isinstance(record, dict) else None
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise CorruptRecordError(
                f"'{key}' in volume {self.volume.url} is not an alias record (no version number in it)", key
            )
        return version

    def _alias_key(self, name: str, alias: str) -> str:
        return f"models/{name}/aliases/{alias}.json"

    def resolve(self, name: str, *, alias: str | None = None, version: int | None = None) -> ModelRef:
        """Pin a model version: by number, by alias, or the latest when neither is given."""
        check_name(name)
        if version is not None:
            ref = ModelRef(name, version)
            self.card(ref)  # raises NotFoundError if it does not exist
            return ref
        if alias is not None:
            missing = NotFoundError(f"model '{name}' has no version with alias '{alias}'; train and register one first")
            if not ALIAS.match(alias):
                raise missing
            try:  # only this alias's record: another one being unreadable does not matter here
                target = self._alias_target(self._alias_key(name, alias))
            except NotFoundError:
                raise missing from None
            ref = ModelRef(name, target)
            if self.volume.stat(f"{ref.prefix}card.json") is None:
                raise NotFoundError(
                    f"alias '{alias}' of model '{name}' points at version {target}, which does not exist; "
                    f"point it at an existing version: mlrm models alias {name} {alias} VERSION"
                )
            return ref
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

    def model_card(self, ref: ModelRef) -> ModelCard:
        """The typed card (signature checked when a key is configured), upgraded from older schemas."""
        return ModelCard.parse(self.verified_card(ref), f"model '{ref.name}' version {ref.version}")

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

    def load_artefact(self, ref: ModelRef, *, trusted: Iterable[str] = (), runtime: str = "auto") -> Any:
        """Load and verify a model: its card's signature (with a key), its sha256, then its flavour's checks.

        The artefact streams to a temporary file (never one in-memory blob) and is
        hashed on the way. The flavour the card names loads it; for skops, every type
        skops does not trust itself must be named exactly: by :data:`mlrm.trust.TRUSTED_TYPES`,
        by ``trusted``, or by the card of a version whose signature was verified. ``runtime``
        picks which of the version's artefacts (:meth:`mlrm.card.Inference.runtime`): ``auto``
        is the fastest exact one, e.g. its ONNX conversion.
        """
        raw = self.verified_card(ref)
        what = f"model '{ref.name}' version {ref.version}"
        card = ModelCard.parse(raw, what)
        try:
            artefact = card.inference.runtime(runtime)
        except RefusedError as exc:
            raise RefusedError(f"{what}: {exc.message}") from None
        loader = flavour(artefact.flavour)
        signed = card.trusted_types if self.signer is not None else []
        with tempfile.TemporaryFile(prefix="mlrm-model-") as file:  # nameless: a killed process leaves nothing
            with self.volume.open_read(f"{ref.prefix}{artefact.file}") as src:
                digest = _copy_hashing(src, file)
            self._check(ref, artefact.file, raw, digest)
            file.seek(0)
            return loader.load(file, trusted=[*trusted, *signed], what=what, classes=card.inference.classes)

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
        self, ref: ModelRef, files: dict[str, bytes | Path | IO[bytes]], card: dict[str, Any] | ModelCard
    ) -> dict[str, Any]:
        """Write a version's files (bytes, paths or open files, streamed), then its card last (signed, with a key)."""
        if isinstance(card, ModelCard):
            card = card.model_dump(mode="json", exclude_none=True)
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
        check_name(name)
        check_alias(alias)
        self.card(ModelRef(name, version))
        self.volume.put_json(self._alias_key(name, alias), {"version": version})

    def remove_alias(self, name: str, alias: str) -> None:
        """Remove an alias (an unreadable alias record too: removing it is how it is repaired)."""
        check_name(name)
        if not ALIAS.match(alias) or not self.volume.exists(self._alias_key(name, alias)):
            raise NotFoundError(f"model '{name}' has no alias '{alias}'")
        self.volume.delete(self._alias_key(name, alias))

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
