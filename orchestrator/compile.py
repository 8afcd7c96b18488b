"""Compiling a workflow file into a route: every config loaded, validated and inlined."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlrm.bus import Hop
from mlrm.config import SERVICES, config_class, parse_document
from mlrm.errors import ConfigError, ConfigErrors, MlrmError
from mlrm.yamlio import Document, load_yaml
from orchestrator.config import Workflow


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
    services = {h.service for h in route}
    return "train" if "train" in services else "predict" if "predict" in services else "transform"


def compile_workflow(path: str | Path) -> CompiledWorkflow:
    """Load a workflow and every config it names; report all errors at once."""
    path = Path(path)
    doc = load_yaml(path)
    workflow = parse_document(doc, Workflow)
    base = path.resolve().parent
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
        kind = SERVICES[service][0]
        try:
            config, config_dir = _step_config(doc, i, config_source, kind, base)
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
        hops.append(Hop(step.name, service, config.model_dump(mode="json"), str(config_dir)))
    if errors:
        raise ConfigErrors(errors)
    return CompiledWorkflow(workflow.name, str(path), hops, configs)


def _step_config(doc: Document, index: int, config: str | dict[str, Any], kind: str, base: Path) -> tuple[Any, Path]:
    expected = config_class(kind)
    if isinstance(config, str):
        file = (base / config).resolve()
        if not file.is_file():
            raise ConfigError(f"config file not found: {file}", doc.locate(("steps", index, "config")))
        return parse_document(load_yaml(file), expected), file.parent
    # An inline config: its errors point into the workflow file itself.
    inline = Document({"kind": kind, **config}, doc.file, doc.marks)
    prefix = ("steps", index, "config")
    inline.marks = {k[len(prefix) :]: v for k, v in doc.marks.items() if k[: len(prefix)] == prefix}
    return parse_document(inline, expected), base
