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
from typing import IO, Any

from mlrm.errors import VolumeError

_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


def check_key(key: str) -> str:
    """Refuse keys that could escape the volume or confuse a backend.

    Keys are relative, ``/``-separated, with no ``.``/``..`` segments, no empty
    segments and no control characters or backslashes.
    """
    if not isinstance(key, str) or not key:
        raise VolumeError("object name must be a non-empty string")
    if key.startswith("/") or re.match(r"^[A-Za-z]:", key):
        raise VolumeError(f"object name {key!r} is absolute; names are relative to the volume")
    if _BAD_CHARS.search(key):
        raise VolumeError(f"object name {key!r} contains control characters or a backslash")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts[:-1]) or parts[-1] in (".", ".."):
        raise VolumeError(f"object name {key!r} has an empty, '.' or '..' segment")
    if len(key) > 1024:
        raise VolumeError("object name is longer than 1024 characters")
    return key


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
        return json.loads(self.get_bytes(key))

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
