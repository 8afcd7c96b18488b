"""Step types: the building blocks a service config lists, in one registry keyed by YAML name.

A step type is a pydantic model (its fields are the step's YAML options) with a
``step`` field whose ``Literal`` value is the name written in YAML::

    @register
    class DropNa(TransformStep):
        \"\"\"Drop rows with missing values.\"\"\"
        step: Literal["drop_na"]
        columns: list[str] | None = None

        def transform(self, df, state):
            return df.dropna(subset=self.columns)

Users add their own without forking by writing the dotted path as the step name
(``step: mypkg.steps:MyStep``); the class is imported when the config is validated.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union, get_args

import pandas as pd
from pydantic import AfterValidator, ConfigDict, Discriminator, Field, PlainSerializer, Tag

from mlrm.config import Section
from mlrm.errors import ConfigError
from mlrm.extensions import load_plugins
from mlrm.imports import import_string

if TYPE_CHECKING:
    from mlrm.context import StepContext

Kind = Literal["source", "handler", "features", "sink"]


class Step(Section):
    """Base of every step type. Subclasses narrow ``step`` to a ``Literal`` of their YAML name."""

    model_config = ConfigDict(frozen=True)

    kind: ClassVar[Kind]
    example: ClassVar[dict[str, Any] | None] = None
    """Options of an instance that runs on :func:`mlrm.testing.sample_frame` (shown by `mlrm steps`,
    and what the conformance suite checks every registered step with)."""
    reaches_out: ClassVar[bool] = False
    """True for a step that calls a live system (an HTTP server, a nameko service): the conformance
    suite then checks its config contract only; its own tests cover the rest."""
    step: str
    """The step type: a registered name such as `drop_na`, or `package.module:Class` for your own."""
    name: str | None = None
    """Optional label; keys the statistics this step learns (defaults to its position and type)."""


class TransformStep(Step):
    """A step that turns a DataFrame into a DataFrame (handler and features steps).

    Stateless steps implement :meth:`transform` only. Steps that learn statistics
    (a scaler's means) set ``stateful = True`` and implement :meth:`fit`, which
    returns JSON-serialisable state; at prediction time the state stored with the
    model is passed to :meth:`transform` unchanged.

    The handler and features steps of a training route become the model version's
    *inference pipeline* (applied to every prediction, batch or direct), except steps
    that curate the training data (``curates``: they drop rows, like ``filter``), unless
    their ``inference`` option says otherwise. On a direct request a step sees the
    request's rows as one complete stream (a ``sort`` sorts them, a ``lag`` looks back
    within them).
    """

    stateful: ClassVar[bool] = False
    curates: ClassVar[bool] = False  # drops rows: training-data curation, left out of inference by default
    regroups: ClassVar[bool] = False
    """True for a step that turns rows into fewer rows by a fixed rule (a sliding window: 672 readings ->
    one window). A direct request is then answered per row the step makes, as :meth:`postprocess` says."""

    @property
    def postprocesses(self) -> bool:
        """True for a step whose :meth:`postprocess` changes the model's outputs (de-normalising a forecast):
        the outputs of a version whose steps all say False are the model's own, untouched."""
        return False

    inference: bool | None = None
    """Apply this step to prediction requests as part of the model's inference pipeline. Default: yes,
    except for steps that drop rows (`drop_na`, `filter`, `dedupe`), which curate training data."""

    def in_inference(self) -> bool:
        """Whether this step belongs to the inference pipeline of a model trained behind it."""
        return self.inference if self.inference is not None else not self.curates

    def keeps_rows(self) -> bool:
        """True if every input row gives exactly one output row (a direct request gets one answer per row)."""
        return not self.curates

    def state_config(self) -> dict[str, Any]:
        """The options that must match between fitting and applying learned statistics."""
        return self.model_dump(mode="json", exclude={"inference"})

    def needs_whole_stream(self, fitting: bool) -> bool:
        """True if this step must see every row at once (sorting, windows, fitting)."""
        return self.stateful and fitting

    def fit(self, df: pd.DataFrame) -> dict[str, Any]:
        return {}

    def postprocess(self, outputs: pd.DataFrame, features: pd.DataFrame, state: dict[str, Any] | None) -> pd.DataFrame:
        """The model's ``outputs`` after this step's inverse (only if :attr:`postprocesses`).

        The inference pipeline runs its steps' post-processing in reverse order after the model.
        ``features`` are the rows the model saw (one per row of the first post-processing step's
        ``outputs``); ``state`` is this step's stored statistics."""
        return outputs

    def forecasts(self) -> list[str]:
        """Columns whose future values this step's post-processing turns the model's outputs into."""
        return []

    def transform(self, df: pd.DataFrame, state: dict[str, Any] | None) -> pd.DataFrame:
        raise NotImplementedError

    def check_columns(self, df: pd.DataFrame, columns: list[str] | None) -> list[str]:
        """The named columns (all when None), or a MissingColumnsError (a DataError) naming the missing ones."""
        from mlrm.errors import MissingColumnsError

        if columns is None:
            return list(df.columns)
        missing = [c for c in columns if c not in df.columns]
        if missing:
            have = ", ".join(map(str, df.columns))
            raise MissingColumnsError(
                f"step '{self.step}': column(s) {', '.join(missing)} not in the data (columns: {have})", missing
            )
        return list(columns)


class SourceStep(Step):
    """A collector source: yields the data in batches, never all at once."""

    kind: ClassVar[Kind] = "source"
    deadline: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """Seconds the whole read may take; past it the run fails (default: no limit, except for `http`)."""

    def read(self, ctx: StepContext, batch_size: int) -> Iterator[pd.DataFrame]:
        raise NotImplementedError


class SinkStep(Step):
    """Writes a stream of DataFrames (in order) to a file or a volume object."""

    kind: ClassVar[Kind] = "sink"

    def write(self, ctx: StepContext, batches: Iterator[pd.DataFrame]) -> str:
        """Write every batch; return where the output went (for the run summary)."""
        raise NotImplementedError


@dataclass
class StepRegistry:
    """Step classes by kind and YAML name. Duplicates are rejected."""

    _steps: dict[str, dict[str, type[Step]]] = field(default_factory=dict)

    def register(self, cls: type[Step]) -> type[Step]:
        name = step_name(cls)
        kind = cls.kind
        known = self._steps.setdefault(kind, {})
        if name in known and known[name] is not cls:
            raise ValueError(f"{kind} step {name!r} is already registered by {known[name].__qualname__}")
        known[name] = cls
        return cls

    def names(self, kind: str) -> list[str]:
        """Every registered step of ``kind``, plug-ins included."""
        load_plugins()
        return sorted(self._steps.get(kind, {}))

    def get(self, kind: str, name: str) -> type[Step]:
        if ":" in name:
            cls = import_string(name, what=f"{kind} step")
            if not (isinstance(cls, type) and issubclass(cls, Step)):
                raise ConfigError(f"{kind} step {name!r} is not a subclass of mlrm.steps.Step")
            return cls
        if name not in self._steps.get(kind, {}):
            load_plugins()  # a plug-in may register it
        try:
            return self._steps[kind][name]
        except KeyError:
            raise ConfigError(unknown_step_message(kind, name, self.names(kind))) from None

    def union(self, kind: str) -> Any:
        """A pydantic type accepting any registered step of ``kind`` or a custom dotted path.

        Built-ins are validated (and appear in the JSON Schema) by their own model;
        a custom step is validated by the class its dotted path names.
        """
        classes = self._steps.get(kind, {})
        members = [Annotated[cls, Tag(name)] for name, cls in sorted(classes.items())]
        members.append(Annotated[_CustomStep, Tag("custom")])

        def tag(value: Any) -> str | None:
            name = value.get("step") if isinstance(value, dict) else getattr(value, "step", None)
            if isinstance(name, str) and ":" in name:
                return "custom"
            return name if isinstance(name, str) else None

        def resolve(value: Step) -> Step:
            if isinstance(value, _CustomStep):
                try:
                    cls = self.get(kind, value.step)
                except ConfigError as exc:
                    raise ValueError(exc.reason) from None
                if getattr(cls, "kind", kind) != kind:
                    raise ValueError(f"{value.step!r} is a {cls.kind} step, not a {kind} step")
                return cls.model_validate(value.model_dump(exclude_unset=True))
            return value

        return Annotated[
            Union[tuple(members)],  # noqa: UP007 - a runtime-built union needs the Union form
            Discriminator(tag),
            AfterValidator(resolve),
            # Each step serialises as its own class (a custom step is not a _CustomStep any more).
            PlainSerializer(lambda step: step.model_dump(mode="json"), return_type=dict),
        ]


class _CustomStep(Step):
    """A user's own step type, named by its dotted path; its class validates the options."""

    model_config = ConfigDict(extra="allow", frozen=True, title="CustomStep")
    step: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")]
    """Dotted path of your step class, e.g. `mypkg.steps:MyStep`."""


def step_name(cls: type[Step]) -> str:
    args = get_args(cls.model_fields["step"].annotation)
    if len(args) != 1 or not isinstance(args[0], str):
        raise TypeError(f"{cls.__qualname__}.step must be annotated as Literal['<yaml name>']")
    return args[0]


def unknown_step_message(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown {kind} step {name!r}; {hint}known steps: {', '.join(known)} (or package.module:Class for your own)"


registry = StepRegistry()
register = registry.register
