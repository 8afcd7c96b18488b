"""The embedded volume: a folder on the local disk (``volume/`` by default).

The volume never follows a symbolic link below its root: a link planted in the folder
(``models -> /etc``) must not let a key read or write outside it. Every operation walks
the key one segment at a time with directory descriptors opened ``O_NOFOLLOW``, so the
check and the use are the same system calls (no window for a link to be swapped in
between), and a link anywhere on the way (or at the key itself) is refused with a
VolumeRefusedError (a VolumeError that is not retried) naming the key. The root itself
may be a link: it is resolved once, here.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from mlrm.errors import InvalidKeyError, NotFoundError, VolumeError, VolumeRefusedError
from mlrm.volume.base import ObjectInfo, Volume, check_key, check_prefix

# Temporary files live beside their target (same filesystem, so rename is atomic)
# under a name no valid key can collide with listing-wise, which names the writing
# process: `mlrm gc` removes those whose writer was killed (collect_temporary).
_TMP_SUFFIX = ".mlrm-tmp"
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_NOFOLLOW | os.O_CLOEXEC
_MISSING = (errno.ENOENT, errno.ENOTDIR)
_FOREIGN_TMP_AGE = 3600.0  # a temporary file of a process gc cannot check is stale after this long untouched


class LocalVolume(Volume):
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.url = f"file://{self.root}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VolumeError(f"cannot create the volume folder {self.root}: {exc.strerror}") from exc

    # -- walking a key without following links --------------------------------------------
    def _link_error(self, key: str, parts: list[str]) -> VolumeRefusedError:
        where = "/".join(parts)
        what = "is" if where == key else f"goes through '{where}', which is"
        return VolumeRefusedError(
            f"object name '{key}' {what} a symbolic link in volume {self.url}; the volume does not follow links"
        )

    def _is_link(self, dir_fd: int, name: str) -> bool:
        try:
            return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
        except OSError:
            return False

    def _open_dir(self, dir_fd: int, name: str, key: str, parts: list[str], *, create: bool) -> int:
        """Open the folder ``name`` under ``dir_fd`` (creating it if asked), never through a link."""
        for _ in range(3):  # a concurrent delete may prune a folder between our mkdir and open
            try:
                return os.open(name, _DIR, dir_fd=dir_fd)
            except OSError as exc:
                if self._is_link(dir_fd, name):
                    raise self._link_error(key, parts) from None
                if create and exc.errno == errno.ENOTDIR:  # an object holds the name a folder needs
                    raise InvalidKeyError(
                        f"cannot write object '{key}' in volume {self.url}: "
                        f"'{'/'.join(parts)}' is an object, so it cannot hold others"
                    ) from None
                if not (create and exc.errno == errno.ENOENT):
                    raise
            with suppress(FileExistsError):
                os.mkdir(name, 0o777, dir_fd=dir_fd)
        return os.open(name, _DIR, dir_fd=dir_fd)

    @contextmanager
    def _folders(self, key: str, *, create: bool = False) -> Iterator[tuple[list[int], list[str]]]:
        """Descriptors of the root and of every folder on the way to ``key``, and its segments.

        Raises OSError (ENOENT/ENOTDIR) when a folder is missing and ``create`` is false.
        """
        parts = check_key(key).split("/")
        fds = [os.open(self.root, _DIR)]
        try:
            for i, part in enumerate(parts[:-1]):
                fds.append(self._open_dir(fds[-1], part, key, parts[: i + 1], create=create))
            yield fds, parts
        finally:
            for fd in fds:
                os.close(fd)

    def _refuse_link(self, dir_fd: int, key: str, parts: list[str]) -> None:
        if self._is_link(dir_fd, parts[-1]):
            raise self._link_error(key, parts)

    def _tmp(self, dir_fd: int, name: str) -> tuple[str, int]:
        from mlrm.lease import process_tag

        # Within the file system's name limit; names the writing process, so `mlrm gc` can remove
        # what a writer killed mid-write left (collect_temporary).
        short = name.encode()[:160].decode(errors="ignore")
        tmp = f".{short}.{process_tag()}.{secrets.token_hex(4)}{_TMP_SUFFIX}"
        return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FILE, 0o600, dir_fd=dir_fd)

    # -- the Volume operations --------------------------------------------------------------
    def open_read(self, key: str) -> IO[bytes]:
        try:
            with self._folders(key) as (fds, parts):
                # O_NONBLOCK: opening a FIFO planted in the folder must not hang the reader.
                fd = os.open(parts[-1], os.O_RDONLY | os.O_NONBLOCK | _FILE, dir_fd=fds[-1])
                mode = os.fstat(fd).st_mode
                if not stat.S_ISREG(mode):  # a folder, a device...: not an object
                    os.close(fd)
                    if stat.S_ISDIR(mode):
                        raise NotFoundError(
                            f"object '{key}' not found in volume {self.url} (the name is a folder of other objects)"
                        )
                    raise FileNotFoundError(errno.ENOENT, "not a file")
                os.set_blocking(fd, True)
                return os.fdopen(fd, "rb")
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self._link_error(key, key.split("/")) from None
            if exc.errno in (*_MISSING, errno.EISDIR):
                raise NotFoundError(f"object '{key}' not found in volume {self.url}") from None
            raise

    def _refuse_folder(self, dir_fd: int, key: str, name: str) -> None:
        """A folder cannot hold an object of the same name as a folder of other objects (``a/b``, ``a/b/c``)."""
        with suppress(OSError):
            if stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                raise InvalidKeyError(
                    f"cannot write object '{key}' in volume {self.url}: the name is a folder of other objects"
                )

    @contextmanager
    def open_write(self, key: str) -> Iterator[IO[bytes]]:
        with self._folders(key, create=True) as (fds, parts):
            folder, name = fds[-1], parts[-1]
            self._refuse_link(folder, key, parts)
            self._refuse_folder(folder, key, name)
            tmp, fd = self._tmp(folder, name)
            try:
                with os.fdopen(fd, "wb") as f:
                    yield f
                os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)  # replaces a link, never follows it
            except BaseException:
                self._unlink_quietly(folder, tmp)
                raise

    def create(self, key: str, data: bytes) -> bool:
        with self._folders(key, create=True) as (fds, parts):
            folder, name = fds[-1], parts[-1]
            self._refuse_folder(folder, key, name)
            # Write a temporary file, then hard-link it into place: link() fails if the target
            # exists, so the create is exclusive AND a reader never sees it half-written.
            tmp, fd = self._tmp(folder, name)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.link(tmp, name, src_dir_fd=folder, dst_dir_fd=folder, follow_symlinks=False)
            except FileExistsError:
                self._refuse_link(folder, key, parts)
                return False
            finally:
                self._unlink_quietly(folder, tmp)
            return True

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            with self._folders(key) as (fds, parts):
                st = os.stat(parts[-1], dir_fd=fds[-1], follow_symlinks=False)
        except OSError as exc:
            if exc.errno in _MISSING:
                return None
            raise
        if stat.S_ISLNK(st.st_mode):
            raise self._link_error(key, key.split("/"))
        if not stat.S_ISREG(st.st_mode):
            return None
        return ObjectInfo(key, st.st_size, st.st_mtime)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        # Walk only the deepest folder the prefix names, not the whole volume.
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        found: list[ObjectInfo] = []
        try:
            with self._folders(f"{base}/x" if base else "x") as (fds, _):
                self._walk(fds[-1], f"{base}/" if base else "", prefix, found)
        except OSError as exc:
            if exc.errno not in _MISSING:
                raise
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

    def _walk(self, dir_fd: int, rel: str, prefix: str, found: list[ObjectInfo]) -> None:
        """Collect the objects under ``dir_fd`` (key prefix ``rel``) matching ``prefix``; links are refused."""
        with os.scandir(dir_fd) as entries:
            for entry in entries:
                key = rel + entry.name
                if entry.is_symlink():
                    if key.startswith(prefix) or prefix.startswith(f"{key}/"):
                        raise self._link_error(key, key.split("/"))
                elif entry.is_dir(follow_symlinks=False):
                    if (f"{key}/").startswith(prefix) or prefix.startswith(f"{key}/"):
                        try:
                            child = os.open(entry.name, _DIR, dir_fd=dir_fd)
                        except OSError as exc:
                            if self._is_link(dir_fd, entry.name):  # swapped for a link since scandir
                                raise self._link_error(key, key.split("/")) from None
                            if exc.errno in _MISSING:  # deleted meanwhile
                                continue
                            raise
                        try:
                            self._walk(child, f"{key}/", prefix, found)
                        finally:
                            os.close(child)
                elif entry.is_file(follow_symlinks=False) and key.startswith(prefix):
                    if entry.name.endswith(_TMP_SUFFIX):
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:  # deleted meanwhile
                        continue
                    found.append(ObjectInfo(key, st.st_size, st.st_mtime))

    def delete(self, key: str) -> None:
        try:
            with self._folders(key) as (fds, parts):
                self._refuse_link(fds[-1], key, parts)
                with suppress(FileNotFoundError):
                    os.unlink(parts[-1], dir_fd=fds[-1])
                # Prune empty folders so listings stay tidy, never above the root.
                for i in range(len(parts) - 2, -1, -1):
                    try:
                        os.rmdir(parts[i], dir_fd=fds[i])
                    except OSError:
                        break
        except OSError as exc:
            if exc.errno not in _MISSING:
                raise

    @staticmethod
    def _unlink_quietly(dir_fd: int, name: str) -> None:
        with suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dir_fd)
