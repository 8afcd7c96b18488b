"""The embedded volume: a folder on the local disk (``volume/`` by default)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from mlrm.errors import KeyRefusedError, NotFoundError, VolumeError
from mlrm.volume.base import ObjectInfo, Volume, check_key, check_prefix

# Temporary files live beside their target (same filesystem, so rename is atomic)
# under a name no valid key can collide with listing-wise.
_TMP_SUFFIX = ".mlrm-tmp"


class LocalVolume(Volume):
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.url = f"file://{self.root}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VolumeError(f"cannot create the volume folder {self.root}: {exc.strerror}") from exc

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _writable(self, key: str) -> Path:
        """The file for ``key``, its folder created; refused if the name is taken by a folder or an object.

        A folder cannot hold an object of the same name as a folder of other objects (``a/b`` and
        ``a/b/c``), which an object store can: say which name is in the way, not what the OS said.
        """
        path = self._path(key)
        if path.is_dir():
            raise KeyRefusedError(
                f"cannot write object '{key}' in volume {self.url}: the name is a folder of other objects"
            )
        for parent in reversed(path.relative_to(self.root).parents[:-1]):  # a/, a/b/, ... (not the root)
            if (self.root / parent).is_file():
                raise KeyRefusedError(
                    f"cannot write object '{key}' in volume {self.url}: "
                    f"'{parent.as_posix()}' is an object, so it cannot hold others"
                )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VolumeError(f"cannot create the folder of object '{key}' in {self.url}: {exc.strerror}") from None
        return path

    @staticmethod
    def _temporary(path: Path) -> tuple[int, str]:
        # The name is cut so that the temporary file's name stays within the file system's limit.
        name = path.name.encode()[:200].decode(errors="ignore")
        return tempfile.mkstemp(dir=path.parent, prefix=f".{name}.", suffix=_TMP_SUFFIX)

    def open_read(self, key: str) -> IO[bytes]:
        try:
            return open(self._path(key), "rb")
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"object '{key}' not found in volume {self.url}") from None
        except IsADirectoryError:
            raise NotFoundError(
                f"object '{key}' not found in volume {self.url} (the name is a folder of other objects)"
            ) from None

    @contextmanager
    def open_write(self, key: str) -> Iterator[IO[bytes]]:
        path = self._writable(key)
        fd, tmp = self._temporary(path)
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def create(self, key: str, data: bytes) -> bool:
        path = self._writable(key)
        # Write a temporary file, then hard-link it into place: link() fails if the target
        # exists, so the create is exclusive AND a reader never sees it half-written.
        fd, tmp = self._temporary(path)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            Path(tmp).unlink(missing_ok=True)
        return True

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            st = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not os.path.isfile(self._path(key)):
            return None
        return ObjectInfo(key, st.st_size, st.st_mtime)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        # Walk only the deepest folder the prefix names, not the whole volume.
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not base.is_dir():
            return
        found: list[ObjectInfo] = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, self.root)
            for name in filenames:
                if name.endswith(_TMP_SUFFIX):
                    continue
                key = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
                if key.startswith(prefix):
                    st = os.stat(os.path.join(dirpath, name))
                    found.append(ObjectInfo(key, st.st_size, st.st_mtime))
        yield from sorted(found, key=lambda o: o.key)

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        # Prune empty folders so listings stay tidy, never above the root.
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
