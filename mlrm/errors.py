"""One exception root for the whole framework.

Every error a user can cause derives from :class:`MlrmError`. Each class carries
the exit code the CLI exits with, the HTTP status a REST server answers with and the
gRPC status code a gRPC server answers with, so the mapping is written once, here,
and every front end (CLI, nameko responder, REST, gRPC) reads it from the error.
Errors that cross the bus or an RPC travel as data (:meth:`MlrmError.to_dict`) and
are rebuilt only for known types (:func:`error_from_dict`); anything else becomes a
:class:`StepError` carrying the original message.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar


class MlrmError(Exception):
    """Root of every error mlrm raises on purpose."""

    exit_code: ClassVar[int] = 1
    http_status: ClassVar[int] = 500
    grpc_status: ClassVar[str] = "INTERNAL"  # a grpc.StatusCode name (the kernel does not import grpc)
    transient: ClassVar[bool] = False  # infrastructure trouble: worth retrying, unlike bad input

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "message": self.message}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MlrmError:
        err = cls.__new__(cls)
        MlrmError.__init__(err, str(data.get("message", "unknown error")))
        return err


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
    grpc_status = "INVALID_ARGUMENT"

    def __init__(self, message: str, location: Location | None = None) -> None:
        self.location = location
        self.reason = message
        if location is not None:
            field = f" {location.field}:" if location.field else ""
            message = f"{location}:{field} {message}"
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        out = {**super().to_dict(), "reason": self.reason}
        if self.location is not None:
            out["location"] = asdict(self.location)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MlrmError:
        place = data.get("location")
        location = Location(**place) if isinstance(place, dict) else None
        err = cls(str(data.get("reason", data.get("message", "unknown error"))), location)
        err.message = str(data.get("message", err.message))
        return err


class ConfigErrors(ConfigError):
    """Several config errors found at once (``mlrm validate`` reports them all)."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(e.message for e in errors))

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "errors": [e.to_dict() for e in self.errors]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MlrmError:
        errors = [ConfigError.from_dict(e) for e in data.get("errors") or [] if isinstance(e, dict)]
        return cls(errors) if errors else ConfigError.from_dict(data)


class ExpressionError(ConfigError):
    """An expression in a ``filter`` or ``when`` clause is not allowed or invalid."""


class NotFoundError(MlrmError):
    """A file, object, model, version, alias or run does not exist."""

    exit_code = 3
    http_status = 404
    grpc_status = "NOT_FOUND"


class DataError(MlrmError):
    """The data does not fit what the config asks of it (missing column, bad rows, a malformed request)."""

    http_status = 400
    grpc_status = "INVALID_ARGUMENT"


class StepError(MlrmError):
    """A step failed while processing a message."""


class RegistryError(MlrmError):
    """The model registry refused an operation (tampered artefact, untrusted types...)."""

    http_status = 409
    grpc_status = "FAILED_PRECONDITION"


class RefusedError(MlrmError):
    """Refused at run time by policy, not by a bad config: a strict deployment asked of a replica on
    another node, a model version that does not serve direct requests."""

    exit_code = 4
    http_status = 409
    grpc_status = "FAILED_PRECONDITION"


class UnauthorizedError(MlrmError):
    """No valid credentials (a missing, expired or wrongly signed token, a revoked key)."""

    exit_code = 5
    http_status = 401
    grpc_status = "UNAUTHENTICATED"


class ForbiddenError(MlrmError):
    """Valid credentials without the scope the operation needs."""

    exit_code = 5
    http_status = 403
    grpc_status = "PERMISSION_DENIED"


class TooLargeError(DataError):
    """A request body or message over the configured limit."""

    http_status = 413
    grpc_status = "RESOURCE_EXHAUSTED"


class UnsupportedMediaTypeError(DataError):
    """A request body in a format the endpoint does not read (its Content-Type)."""

    http_status = 415
    grpc_status = "INVALID_ARGUMENT"


class NotAcceptableError(DataError):
    """No format the endpoint answers in is one the request's Accept header takes."""

    http_status = 406
    grpc_status = "INVALID_ARGUMENT"


class MissingColumnsError(DataError):
    """The data lacks columns a step needs; ``columns`` names them."""

    http_status = 422
    grpc_status = "INVALID_ARGUMENT"

    def __init__(self, message: str, columns: list[str] | None = None) -> None:
        super().__init__(message)
        self.columns = list(columns or [])

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "columns": self.columns}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MlrmError:
        columns = data.get("columns")
        return cls(str(data.get("message", "unknown error")), [str(c) for c in columns or [] if isinstance(c, str)])


class OverloadedError(MlrmError):
    """Too much work in flight; answered at once rather than queued without end."""

    http_status = 429
    grpc_status = "RESOURCE_EXHAUSTED"
    transient = True


class VolumeError(MlrmError):
    """The volume (local folder or object store) refused or failed an operation."""

    http_status = 503
    grpc_status = "UNAVAILABLE"
    transient = True


class VolumeRefusedError(VolumeError):
    """The volume refused what it was asked to do (e.g. go through a symbolic link): retrying cannot help."""

    http_status = 400
    grpc_status = "FAILED_PRECONDITION"
    transient = False


class InvalidKeyError(VolumeRefusedError):
    """An object name the volume refuses (``../x``, ``/etc/passwd``, a NUL...): the user's mistake, not an outage.

    A :class:`VolumeError`, so code handling volume failures still catches it, but not transient:
    a message whose key is bad fails at once instead of being retried.
    """

    exit_code = 2
    grpc_status = "INVALID_ARGUMENT"


class CorruptRecordError(MlrmError):
    """A record kept in the volume (model card, alias, deployment, job) is not valid JSON or not of its shape.

    ``key`` names the record, so a listing can report it and carry on with the others.
    """

    http_status = 500
    grpc_status = "DATA_LOSS"
    key: str | None = None

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class BusError(MlrmError):
    """The message bus failed or refused an operation."""

    http_status = 503
    grpc_status = "UNAVAILABLE"
    transient = True


def _known() -> dict[str, type[MlrmError]]:
    found: dict[str, type[MlrmError]] = {}
    stack: list[type[MlrmError]] = [MlrmError]
    while stack:
        cls = stack.pop()
        found[cls.__name__] = cls
        stack.extend(cls.__subclasses__())
    return found


def error_from_dict(data: dict[str, Any]) -> MlrmError:
    """Rebuild an error that travelled as data; types unknown here become :class:`StepError`.

    Known types are the error root and every subclass defined by the time this is called
    (the kernel's, and those of services and plug-ins imported in this process).
    """
    cls = _known().get(str(data.get("type")), StepError)
    try:
        return cls.from_dict(data)
    except Exception:  # a subclass whose data does not fit: keep the message, lose the type
        return StepError.from_dict(data)


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
