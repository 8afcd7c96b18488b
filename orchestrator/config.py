"""The workflow file: an ordered list of steps, each a service with its config."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from mlrm.config import ConfigModel, Section

ServiceName = Literal["collector", "handler", "features", "train", "predict"]


class WorkflowStep(Section):
    """One step of a workflow: a service made specific by a config."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    """Step name, unique in the workflow (lower-case letters, digits, '_', '-')."""
    service: ServiceName | Annotated[str, Field(pattern=r"^nameko:[A-Za-z_]\w*\.[A-Za-z_]\w*$")]
    """The service that runs this step, or `nameko:SERVICE.METHOD` to call an existing nameko service
    with each batch (its `config` then holds the call's options: `kwargs`, `timeout`)."""
    config: str | dict[str, Any] | None = None
    """Path of the service's config file (relative to this workflow file), or the config inline."""

    @model_validator(mode="after")
    def _config_given(self) -> WorkflowStep:
        if self.config is None and not self.service.startswith("nameko:"):
            raise ValueError(f"step '{self.name}' needs a 'config' for the {self.service} service")
        return self


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
        services = [s.service for s in self.steps]
        if "train" in services and "predict" in services:
            raise ValueError("a workflow either trains or predicts; write one workflow for each")
        if "train" in services and services.index("train") != len(services) - 1:
            raise ValueError("train must be the last step")
        return self
