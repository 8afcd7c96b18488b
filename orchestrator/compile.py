"""The workflow file, and compiling it into a route: every config loaded, validated and inlined."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mlrm.bus import Hop
from mlrm.config import ConfigModel, Section, as_value_error, parse_document
from mlrm.errors import ConfigError, ConfigErrors, MlrmError
from mlrm.service import services
from mlrm.yamlio import Document, load_yaml

NAMEKO_TARGET = r"^nameko:[A-Za-z_]\w*\.[A-Za-z_]\w*$"


def _service_names(schema: dict[str, Any]) -> None:
    schema["anyOf"] = [{"enum": services.names()}, {"type": "string", "pattern": NAMEKO_TARGET}]


class WorkflowStep(Section):
    """One step of a workflow: a service made specific by a config."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    """Step name, unique in the workflow (lower-case letters, digits, '_', '-')."""
    service: str = Field(json_schema_extra=_service_names)
    """The service that runs this step (`collector`, `handler`, `features`, `train`, `predict`, or a
    plug-in's), or `nameko:SERVICE.METHOD` to call an existing nameko service with each batch (its
    `config` then holds the call's options: `kwargs`, `timeout`)."""
    config: str | dict[str, Any] | None = None
    """Path of the service's config file (relative to this workflow file), or the config inline."""

    @field_validator("service")
    @classmethod
    def _known_service(cls, v: str) -> str:
        if v.startswith("nameko:"):
            return as_value_error(_nameko_target, v)
        as_value_error(services.get, v)
        return v

    @model_validator(mode="after")
    def _config_given(self) -> WorkflowStep:
        if self.config is None and not self.service.startswith("nameko:"):
            raise ValueError(f"step '{self.name}' needs a 'config' for the {self.service} service")
        return self


def _nameko_target(v: str) -> str:
    if not re.fullmatch(NAMEKO_TARGET, v):
        raise ConfigError(f"a nameko step reads nameko:SERVICE.METHOD, not {v!r}")
    return v


class Workflow(ConfigModel):
    """A workflow: collector first, then handler/features steps, ending in train or predict (or neither)."""

    kind: Literal["Workflow"] = "Workflow"
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,127}$")
    """Workflow name, shown in run listings."""
    description: str = ""
    """What this workflow is for."""
    steps: list[WorkflowStep] = Field(min_length=1)
    """Steps in the order data flows through them."""

    @model_validator(mode="after")
    def _shape(self) -> Workflow:
        names = [s.name for s in self.steps]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"step names must be unique; repeated: {', '.join(dupes)}")
        if self.steps[0].service != "collector":
            raise ValueError("the first step must be a collector (it is where the data comes from)")
        if any(s.service == "collector" for s in self.steps[1:]):
            raise ValueError("only the first step can be a collector")
        services_used = [s.service for s in self.steps]
        if "train" in services_used and "predict" in services_used:
            raise ValueError("a workflow either trains or predicts; write one workflow for each")
        if "train" in services_used and services_used.index("train") != len(services_used) - 1:
            raise ValueError("train must be the last step")
        return self

    def check_references(self, path: Path) -> None:
        compile_workflow(path)


@dataclass
class CompiledWorkflow:
    name: str
    path: str
    route: list[Hop]
    configs: list[Any]  # the validated config models, in route order

    @property
    def mode(self) -> str:
        return route_mode(self.route)


def route_mode(route: list[Hop]) -> str:
    """``train`` fits statistics and a model; ``predict`` applies a pinned model's; ``transform`` fits its own."""
    used = {h.service for h in route}
    return "train" if "train" in used else "predict" if "predict" in used else "transform"


def compile_workflow(path: str | Path, overrides: dict[str, dict[str, Any]] | None = None) -> CompiledWorkflow:
    """Load a workflow and every config it names; report all errors at once.

    ``overrides``: per step name, fields merged into that step's config (mappings merge key by key).
    """
    path = Path(path)
    return compile_document(load_yaml(path), path.resolve().parent, overrides, path=str(path))


def compile_document(
    doc: Document, base: Path, overrides: dict[str, dict[str, Any]] | None = None, *, path: str = "",
    within: Path | None = None,
) -> CompiledWorkflow:  # fmt: skip
    """Compile a loaded workflow whose config files are relative to ``base``.

    ``within``: config files must lie inside this folder (a workflow sent over the API names no file
    elsewhere on the server).
    """
    workflow = parse_document(doc, Workflow)
    unknown = sorted(set(overrides or {}) - {s.name for s in workflow.steps})
    if unknown:
        raise ConfigError(f"overrides name no step of workflow '{workflow.name}': {', '.join(unknown)}",
                          doc.locate(("steps",)))  # fmt: skip
    errors: list[ConfigError] = []
    hops: list[Hop] = []
    configs: list[Any] = []
    for i, step in enumerate(workflow.steps):
        service, config_source = step.service, step.config
        if service.startswith("nameko:"):  # sugar for a handler running one `nameko` step
            if isinstance(config_source, str):
                errors.append(ConfigError("a nameko step takes its options inline", doc.locate(("steps", i, "config"))))
                continue
            call = {"step": "nameko", "target": service.removeprefix("nameko:"), **(config_source or {})}
            service, config_source = "handler", {"steps": [call]}
        expected = services.get(service).config_model
        try:
            config, config_dir = _step_config(doc, i, config_source, expected, base, (overrides or {}).get(step.name),
                                              within)  # fmt: skip
        except ConfigErrors as exc:
            errors.extend(exc.errors)
            continue
        except ConfigError as exc:
            errors.append(exc)
            continue
        except MlrmError as exc:  # a missing config file
            errors.append(ConfigError(exc.message, doc.locate(("steps", i, "config"))))
            continue
        configs.append(config)
        hops.append(Hop(step.name, service, config.model_dump(mode="json"), str(config_dir), validated=config))
    if errors:
        raise ConfigErrors(errors)
    return CompiledWorkflow(workflow.name, path, hops, configs)


def _step_config(
    doc: Document, index: int, config: str | dict[str, Any], expected: type[ConfigModel], base: Path,
    override: dict[str, Any] | None = None, within: Path | None = None,
) -> tuple[Any, Path]:  # fmt: skip
    kind = expected.model_fields["kind"].default
    if isinstance(config, str):
        file = (base / config).resolve()
        if within is not None and not file.is_relative_to(within.resolve()):
            raise ConfigError(f"config file {config!r} is outside the server's configs folder",
                              doc.locate(("steps", index, "config")))  # fmt: skip
        if not file.is_file():
            raise ConfigError(f"config file not found: {file}", doc.locate(("steps", index, "config")))
        loaded = load_yaml(file)
        if override:
            loaded.data = merged(loaded.data, override)
        return parse_document(loaded, expected), file.parent
    # An inline config: its errors point into the workflow file itself.
    inline = Document(merged({"kind": kind, **config}, override or {}), doc.file, doc.marks)
    prefix = ("steps", index, "config")
    inline.marks = {k[len(prefix) :]: v for k, v in doc.marks.items() if k[: len(prefix)] == prefix}
    return parse_document(inline, expected), base


def merged(data: Any, override: dict[str, Any]) -> Any:
    """``data`` with ``override``'s fields put in: mappings merge key by key, anything else is replaced."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for key, value in override.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
