"""One exception root for the whole framework.

Every error a user can cause derives from :class:`MlrmError`. Each class carries
the exit code the CLI uses and the HTTP status a REST layer maps it to, so the
mapping is written once, here. Errors that cross the bus travel as data
(:meth:`MlrmError.to_dict`) and are rebuilt only for known types
(:func:`error_from_dict`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


class MlrmError(Exception):
    """Root of every error mlrm raises on purpose."""

    exit_code: ClassVar[int] = 1
    http_status: ClassVar[int] = 500
    transient: ClassVar[bool] = False  # infrastructure trouble: worth retrying, unlike bad input

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "message": self.message}


@dataclass(frozen=True)
class Location:
    """A place in a config file: ``file:line:column`` plus the field path."""

    file: str
    line: int | None = None
    column: int | None = None
    field: str | None = None

    def __str__(self) -> str:
        place = self.file
        if self.line is not None:
            place += f":{self.line}"
            if self.column is not None:
                place += f":{self.column}"
        return place


class ConfigError(MlrmError):
    """A config file (or an inline config) is malformed or invalid."""

    exit_code = 2
    http_status = 422

    def __init__(self, message: str, location: Location | None = None) -> None:
        self.location = location
        self.reason = message
        if location is not None:
            field = f" {location.field}:" if location.field else ""
            message = f"{location}:{field} {message}"
        super().__init__(message)


class ConfigErrors(ConfigError):
    """Several config errors found at once (``mlrm validate`` reports them all)."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(e.message for e in errors))


class ExpressionError(ConfigError):
    """An expression in a ``filter`` or ``when`` clause is not allowed or invalid."""


class NotFoundError(MlrmError):
    """A file, object, model, version, alias or run does not exist."""

    exit_code = 3
    http_status = 404


class DataError(MlrmError):
    """The data does not fit what the config asks of it (missing column, bad rows)."""

    http_status = 400


class StepError(MlrmError):
    """A step failed while processing a message."""


class RegistryError(MlrmError):
    """The model registry refused an operation (tampered artefact, untrusted types...)."""

    http_status = 409


class VolumeError(MlrmError):
    """The volume (local folder or object store) refused or failed an operation."""

    http_status = 503
    transient = True


class KeyRefusedError(VolumeError):
    """An object name the volume cannot hold (escapes it, too long, a folder of other objects):
    the name is wrong, so retrying cannot help."""

    http_status = 400
    transient = False


class BusError(MlrmError):
    """The message bus failed or refused an operation."""

    http_status = 503
    transient = True


_KNOWN: dict[str, type[MlrmError]] = {
    cls.__name__: cls
    for cls in (
        MlrmError,
        ConfigError,
        ExpressionError,
        NotFoundError,
        DataError,
        StepError,
        RegistryError,
        VolumeError,
        KeyRefusedError,
        BusError,
    )
}


def error_from_dict(data: dict[str, Any]) -> MlrmError:
    """Rebuild an error that travelled over the bus; unknown types become :class:`StepError`."""
    cls = _KNOWN.get(str(data.get("type")), StepError)
    err = cls.__new__(cls)
    MlrmError.__init__(err, str(data.get("message", "unknown error")))
    return err


# What libraries raise for input they cannot handle: pyarrow's ArrowInvalid is a ValueError, its
# ArrowTypeError a TypeError, ArrowNotImplementedError (no kernel for these types) a NotImplementedError,
# and json gives RecursionError for data nested too deeply. Deterministic: retrying cannot help.
INPUT_EXCEPTIONS: tuple[type[BaseException], ...] = (
    ValueError, TypeError, KeyError, IndexError, ArithmeticError, NotImplementedError, RecursionError,
)  # fmt: skip


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line, without control characters, cut to ``limit`` characters (for error messages)."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def describe(exc: BaseException) -> str:
    """A one-line description of any exception, for run records and the CLI."""
    if isinstance(exc, MlrmError):
        return exc.message
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"
