"""The volume: where services share data and model artefacts.

A volume is a flat object store addressed by ``/``-separated keys, like S3. The
embedded default is a local folder (:mod:`mlrm.volume.local`); the distributed one
is an S3 bucket. Code outside this package only ever sees :class:`Volume`.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO, Annotated, Any

from pydantic import AfterValidator

from mlrm.errors import ConfigError, CorruptRecordError, InvalidKeyError, VolumeError

_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")
MAX_SEGMENT = 255
"""Bytes (UTF-8) between two ``/`` of a key: the longest file name common file systems allow."""

# The top-level folders mlrm keeps for itself, and what it keeps there. Outputs a user's config
# names (a sink's `key`) may go anywhere else, never here: one write could replace a model version.
RESERVED_PREFIXES: dict[str, str] = {
    "models/": "the model registry",
    "runs/": "the runs' own data (gathered batches, statistics, job and status records)",
    "deployments/": "the deployment records",
    "monitoring/": "the prediction logs, feedback and drift checks of monitoring",
}


def check_key(key: str) -> str:
    """Refuse keys that could escape the volume or confuse a backend.

    Keys are relative, ``/``-separated, with no ``.``/``..`` segments, no empty
    segments, no segment longer than a file name may be, and no control characters
    or backslashes. A refused name is the caller's mistake, never worth retrying.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKeyError("object name must be a non-empty string")
    if key.startswith("/") or re.match(r"^[A-Za-z]:", key):
        raise InvalidKeyError(f"object name {_shorten(key)!r} is absolute; names are relative to the volume")
    if _BAD_CHARS.search(key):
        raise InvalidKeyError(f"object name {_shorten(key)!r} contains control characters or a backslash")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts[:-1]) or parts[-1] in (".", ".."):
        raise InvalidKeyError(f"object name {key!r} has an empty, '.' or '..' segment")
    if len(key) > 1024:
        raise InvalidKeyError(f"object name {_shorten(key)!r} is longer than 1024 characters")
    long = next((p for p in parts if len(p.encode()) > MAX_SEGMENT), None)
    if long is not None:  # a file system refuses longer names; S3 would not, but keys must work on both
        raise InvalidKeyError(
            f"object name {_shorten(key)!r} has a segment of {len(long.encode())} bytes; "
            f"the limit is {MAX_SEGMENT} bytes between two '/'"
        )
    return key


def _valid_key(key: str) -> str:
    try:
        return check_key(key)
    except InvalidKeyError as exc:
        raise ValueError(exc.message) from None  # pydantic locates it: file, line and field


VolumeKey = Annotated[str, AfterValidator(_valid_key)]
"""A config field naming an object in the volume, checked with :func:`check_key` when the config is validated."""


def check_output_key(key: str) -> str:
    """A key a user's config names as an output: valid, and outside :data:`RESERVED_PREFIXES`.

    Raises ConfigError (not the VolumeError of :func:`check_key`): the config is wrong, and
    retrying cannot help. Compared case-insensitively, as a case-insensitive disk would.
    """
    try:
        check_key(key)
    except VolumeError as exc:
        raise ConfigError(exc.message) from None
    top = key.split("/", 1)[0].casefold() + "/"
    if top in RESERVED_PREFIXES:
        raise ConfigError(
            f"key '{key}' is under '{top}', which mlrm keeps for {RESERVED_PREFIXES[top]}; "
            "write outputs elsewhere, e.g. predictions/..."
        )
    return key


def _shorten(key: str) -> str:
    return key if len(key) <= 80 else f"{key[:60]}...{key[-17:]}"


def check_prefix(prefix: str) -> str:
    """Like :func:`check_key`, but an empty prefix (the whole volume) and a trailing ``/`` are fine."""
    if prefix == "":
        return prefix
    check_key(prefix.rstrip("/") or "x")
    return prefix


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: float  # seconds since the epoch


class Volume(ABC):
    """An object store. Implementations validate keys with :func:`check_key`."""

    url: str

    # -- the template methods a backend implements ------------------------------------
    @abstractmethod
    def open_read(self, key: str) -> IO[bytes]:
        """A readable binary stream; raises NotFoundError if the object is missing."""

    @abstractmethod
    def open_write(self, key: str) -> AbstractContextManager[IO[bytes]]:
        """A writable binary stream; the object appears (atomically) only when the block exits cleanly."""

    @abstractmethod
    def create(self, key: str, data: bytes) -> bool:
        """Write ``data`` only if ``key`` does not exist yet; True if this call created it."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo | None:
        """Size and modification time, or None if the object does not exist."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in key order."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object; deleting a missing object is not an error."""

    # -- conveniences built on them ----------------------------------------------------
    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    def get_bytes(self, key: str) -> bytes:
        with self.open_read(key) as f:
            return f.read()

    def put_bytes(self, key: str, data: bytes) -> None:
        with self.open_write(key) as f:
            f.write(data)

    def get_json(self, key: str) -> Any:
        """The object parsed as JSON; CorruptRecordError (naming the key) if it is not valid JSON."""
        data = self.get_bytes(key)
        try:
            return json.loads(data)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            reason = str(exc).splitlines()[0][:200]
        except RecursionError:
            reason = "nested too deeply"
        raise CorruptRecordError(f"'{key}' in volume {self.url} is not valid JSON ({reason})", key)

    def put_json(self, key: str, value: Any) -> None:
        self.put_bytes(key, json.dumps(value, indent=2, sort_keys=True, default=str).encode())

    def delete_prefix(self, prefix: str) -> int:
        keys = [o.key for o in self.list(check_prefix(prefix))]
        for key in keys:
            self.delete(key)
        return len(keys)

    def collect_temporary(self, older_than: float) -> int:
        """Delete what writers killed mid-write left (temporary files, unfinished uploads); returns how many."""
        return 0

    def close(self) -> None:  # noqa: B027 - optional hook, most volumes hold nothing to release
        """Release connections; the local volume has none."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
