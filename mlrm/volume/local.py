"""The embedded volume: a folder on the local disk (``volume/`` by default)."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from mlrm.errors import NotFoundError, VolumeError
from mlrm.volume.base import ObjectInfo, Volume, check_key, check_prefix

# Temporary files live beside their target (same filesystem, so rename is atomic)
# under a name no valid key can collide with listing-wise, which names the writing
# process: `mlrm gc` removes those whose writer was killed (collect_temporary).
_TMP_SUFFIX = ".mlrm-tmp"
_FOREIGN_TMP_AGE = 3600.0  # a temporary file of a process gc cannot check is stale after this long untouched


def _tmp_prefix(path: Path) -> str:
    from mlrm.lease import process_tag

    return f".{path.name}.{process_tag()}."


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

    def open_read(self, key: str) -> IO[bytes]:
        try:
            return open(self._path(key), "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFoundError(f"object '{key}' not found in volume {self.url}") from None

    @contextmanager
    def open_write(self, key: str) -> Iterator[IO[bytes]]:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_tmp_prefix(path), suffix=_TMP_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def create(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write a temporary file, then hard-link it into place: link() fails if the target
        # exists, so the create is exclusive AND a reader never sees it half-written.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_tmp_prefix(path), suffix=_TMP_SUFFIX)
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

    def collect_temporary(self, older_than: float, now: float | None = None) -> int:
        """Delete temporary files of writers that died mid-write; returns how many."""
        from mlrm.lease import tagged_process_gone

        now = time.time() if now is None else now
        removed = 0
        for dirpath, _dirnames, filenames in os.walk(self.root):
            for name in filenames:
                if not name.endswith(_TMP_SUFFIX):
                    continue
                path = Path(dirpath, name)
                parts = name.removesuffix(_TMP_SUFFIX).rsplit(".", 2)
                try:
                    age = now - path.stat().st_mtime
                except FileNotFoundError:
                    continue  # renamed into place meanwhile
                gone = len(parts) == 3 and tagged_process_gone(parts[1])
                if (gone and age >= older_than) or age >= max(older_than, _FOREIGN_TMP_AGE):
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed

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
