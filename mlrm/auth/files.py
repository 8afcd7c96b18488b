"""Private files: written atomically with mode 0600, edited under a lock, re-read when they change."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step (a reader sees the old file or the new, never half);
    the file is readable by its owner only (0600), and so is a folder this creates."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock for a read-modify-write of ``path`` (a ``.lock`` file beside it)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def warn_if_shared(path: Path) -> None:
    """Log a warning when a secrets file can be read by other users than its owner."""
    with contextlib.suppress(OSError):
        mode = os.stat(path).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("%s can be read by other users (mode %o): chmod 600 it", path, stat.S_IMODE(mode))


class Watched(Generic[T]):
    """The parsed content of a file, parsed again whenever the file changes (checked on every ``get``:
    one ``stat``). A file that became invalid fails every ``get`` until it is fixed (never the stale
    content: a key revoked by an edit must not stay valid because the edit broke the file)."""

    def __init__(self, path: Path, parse: Callable[[Path], T], missing: Callable[[], T]) -> None:
        self.path, self._parse, self._missing = path, parse, missing
        self._signature: object = ()
        self._value: T | None = None
        self._error: Exception | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        try:
            st = os.stat(self.path)
            signature: object = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            signature = None
        if signature != self._signature:
            with self._lock:
                if signature != self._signature:
                    try:
                        self._value, self._error = (self._parse(self.path) if signature else self._missing()), None
                    except Exception as exc:
                        self._value, self._error = None, exc
                    self._signature = signature
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]
