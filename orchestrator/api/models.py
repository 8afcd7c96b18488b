"""The bodies of the control-plane API: the single source of their schemas (OpenAPI components, and the
JSON that gRPC messages carry is validated by the same models)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlrm.errors import ConfigError, ConfigErrors, Location


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubmitRequest(Body):
    """A workflow to run: exactly one of `workflow` (as JSON), `yaml` (its text) or `name` (a workflow file
    under the server's configs folder). Config files a workflow names are read from that folder too."""

    workflow: dict[str, Any] | None = None
    """The workflow document (`kind: Workflow`), configs inline or as files under the configs folder."""
    yaml: str | None = Field(None, max_length=1_000_000)
    """The workflow as YAML text."""
    name: str | None = Field(None, min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$")
    """A workflow file under the server's configs folder, e.g. `iris/train.yaml`."""
    overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per step name, fields merged into that step's config, e.g. `{"collect": {"batch_size": 10}}`."""

    @model_validator(mode="after")
    def _one_source(self) -> SubmitRequest:
        given = [k for k in ("workflow", "yaml", "name") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'workflow', 'yaml' or 'name'")
        return self


class Submitted(Body):
    run_id: str
    status: str = "running"


class StepStatus(Body):
    idx: int
    name: str
    service: str
    status: str
    started: float | None = None
    finished: float | None = None
    seconds: float | None = None
    busy: float = 0.0
    batches_in: int = 0
    batches_out: int = 0
    rows_in: int = 0
    rows_out: int = 0
    error: str | None = None
    result: dict[str, Any] | None = None
    workers: dict[str, int] = Field(default_factory=dict)


class RunStatus(Body):
    """A run and each of its steps: status, timings, rows, results, errors."""

    id: str
    workflow: str
    path: str | None = None
    mode: str
    status: str
    """running, succeeded, failed, cancelled or abandoned."""
    created: float
    finished: float | None = None
    seconds: float | None = None
    error: str | None = None
    steps: list[StepStatus] = Field(default_factory=list)


class RunSummary(Body):
    id: str
    workflow: str
    mode: str
    status: str
    created: float
    finished: float | None = None
    seconds: float | None = None
    error: str | None = None


class RunPage(Body):
    runs: list[RunSummary]
    next: str | None = None
    """The cursor of the next page (give it as `cursor`); none on the last page."""


class Results(Body):
    id: str
    status: str
    results: dict[str, dict[str, Any] | None]
    """Per step name, what it reported (a training's model, version and metrics; a prediction's output)."""


class ModelSummary(Body):
    model: str
    kind: str
    versions: list[int]
    aliases: dict[str, int]
    latest: dict[str, Any]


class AliasRequest(Body):
    version: int = Field(ge=1, le=2**31 - 1)


class AliasSet(Body):
    model: str
    alias: str
    version: int


class DecommissionRequest(Body):
    delete: bool = False
    """The second step: also delete the version (refused while an alias or another deployment uses it)."""


class Registered(Body):
    model: str
    version: int
    card: dict[str, Any]


class Health(Body):
    status: str


class ErrorBody(Body):
    error: str
    detail: dict[str, Any] | None = None


def parse(model: type[Body] | Any, data: Any, what: str = "request body") -> Any:
    """``data`` validated by ``model``; its errors as a 422 naming each field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            ConfigError(err["msg"], Location(what, field=".".join(str(p) for p in err["loc"]) or None))
            for err in exc.errors(include_url=False)
        ]
        raise ConfigErrors(errors) from None
