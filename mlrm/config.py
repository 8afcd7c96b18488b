"""Config files: the pydantic models are the only schema, and errors name file, line and field.

Every config file starts with ``kind:`` naming its model (``Workflow``,
``CollectorConfig``, ``HandlerConfig``, ...). Each model registers itself in
:data:`kinds` under that name when its class is defined (services and the
orchestrator define theirs), so the kernel names none of them.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from mlrm.errors import ConfigError, ConfigErrors, Location, MlrmError
from mlrm.extensions import Registry
from mlrm.yamlio import Document, load_yaml

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def as_value_error(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn`` inside a pydantic validator: a ConfigError becomes a located validation error."""
    try:
        return fn(*args, **kwargs)
    except ConfigError as exc:
        raise ValueError(exc.reason) from None


def reject_unknown_fields(cls: type[BaseModel], data: Any) -> Any:
    """Turn a typo'd key into an error that suggests the field it was meant to be."""
    if not isinstance(data, dict) or cls.model_config.get("extra") != "forbid":
        return data
    known = set(cls.model_fields) | {f.alias for f in cls.model_fields.values() if f.alias}
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; allowed: {', '.join(sorted(known))}"
            raise PydanticCustomError("unknown_field", "unknown field '{field}'" + hint, {"field": key})
    return data


class Section(BaseModel):
    """Base of every config model: unknown keys are errors (with a suggestion), never silently ignored."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    @model_validator(mode="before")
    @classmethod
    def _unknown_fields(cls, data: Any) -> Any:
        return reject_unknown_fields(cls, data)


class ConfigModel(Section):
    """Base of every config file: a `Section` whose `kind` names the model.

    A subclass whose ``kind`` has a default (``kind: Literal["TrainConfig"] = "TrainConfig"``)
    registers itself in :data:`kinds` under it.
    """

    model_config = ConfigDict(validate_by_name=True, serialize_by_alias=True)
    kind: str
    schema_file: ClassVar[str | None] = None  # file name of its JSON Schema (default from the kind)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        kind = cls.model_fields["kind"].default
        if isinstance(kind, str):
            kinds.register(kind, cls)

    def check_references(self, path: Path) -> None:
        """Validate what this config refers to (a workflow: the configs of its steps); raise ConfigErrors."""


kinds: Registry[type[ConfigModel]] = Registry("kind")


def config_class(kind: str) -> type[ConfigModel]:
    return kinds.get(kind)


def parse_document(doc: Document, expected: type[M] | None = None) -> M:
    """Validate a loaded YAML document against the model its ``kind`` names (and ``expected``)."""
    data = doc.data
    if not isinstance(data, dict):
        what = "empty" if data is None else f"a {type(data).__name__}"
        raise ConfigError(f"a config file must be a mapping with a 'kind', but this one is {what}", doc.locate(()))
    kind = data.get("kind")
    if kind is None:
        hint = f"'{expected.model_fields['kind'].default}'" if expected else f"one of {', '.join(kinds.names())}"
        raise ConfigError(f"missing 'kind' (expected {hint})", doc.locate((), field="kind"))
    if not isinstance(kind, str):
        raise ConfigError("'kind' must be a string", doc.locate(("kind",)))
    try:
        cls = config_class(kind)
    except ConfigError as exc:
        raise ConfigError(exc.message, doc.locate(("kind",))) from None
    if expected is not None and not issubclass(cls, expected):
        want = expected.model_fields["kind"].default
        raise ConfigError(f"expected a config of kind '{want}', got '{kind}'", doc.locate(("kind",)))
    try:
        return cls.model_validate(data)  # type: ignore[return-value]
    except ValidationError as exc:
        raise validation_errors(exc, doc) from None


def load_config(path: str | Path, expected: type[M] | None = None) -> M:
    return parse_document(load_yaml(path), expected)


def validation_errors(exc: ValidationError, doc: Document) -> ConfigErrors:
    """One ConfigError per pydantic error, each naming file, line, column and field."""
    errors: list[ConfigError] = []
    for err in exc.errors(include_url=False):
        kind = err["type"]
        loc = _data_loc(tuple(err["loc"]), doc.data, keep_last=kind == "missing")
        ctx = err.get("ctx") or {}
        if kind == "unknown_field":
            loc = (*loc, ctx["field"])
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            loc = (*loc, "step")
        location = doc.locate(loc)
        if kind == "unknown_field":  # point at the key itself, not its value
            key = doc.locate(loc)
            line_col = _key_mark(doc, loc)
            if line_col:
                location = type(key)(key.file, *line_col, key.field)
        errors.append(ConfigError(_message(err), location))
    return ConfigErrors(errors)


def _data_loc(loc: tuple, data: Any, *, keep_last: bool) -> tuple:
    """Drop the elements pydantic adds that are not in the data (union tags like 'clip')."""
    out: list = []
    node = data
    for i, elem in enumerate(loc):
        in_dict = isinstance(node, dict) and elem in node
        if in_dict or (isinstance(node, list) and isinstance(elem, int) and 0 <= elem < len(node)):
            node = node[elem]
        elif not (keep_last and i == len(loc) - 1):
            continue
        out.append(elem)
    return tuple(out)


def _key_mark(doc: Document, loc: tuple) -> tuple[int, int] | None:
    for path, mark in doc.marks.items():
        if len(path) == len(loc) + 1 and path[-1] == "__key__" and [str(p) for p in path[:-1]] == [str(x) for x in loc]:
            return mark
    return None


def _message(err: Any) -> str:
    kind, msg, ctx = err["type"], err["msg"], err.get("ctx") or {}
    if kind == "missing":
        return f"missing required field '{err['loc'][-1]}'"
    if kind == "union_tag_invalid":
        tags = [t.strip("'") for t in str(ctx.get("expected_tags", "")).split(", ") if t.strip("'") != "custom"]
        tag = ctx.get("tag")
        close = difflib.get_close_matches(str(tag), tags, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return f"unknown step '{tag}'; {hint}known steps: {', '.join(tags)} (or package.module:Class for your own)"
    if kind == "union_tag_not_found":
        return "missing 'step' (the step type, e.g. 'drop_na')"
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    value = err.get("input")
    if kind.endswith(("_type", "_parsing", "literal_error")) and isinstance(value, str | int | float | bool):
        msg = f"{msg}; got {value!r}"
    return msg


def validate_files(paths: list[str | Path]) -> list[ConfigError]:
    """Every error in every file (and, for workflows, in the configs they reference)."""
    found: list[ConfigError] = []
    for path in paths:
        try:
            parse_document(load_yaml(path)).check_references(Path(path))
        except ConfigErrors as exc:
            found.extend(exc.errors)
        except ConfigError as exc:
            found.append(exc)
        except MlrmError as exc:  # NotFoundError for a missing file, etc.
            found.append(ConfigError(exc.message, Location(str(path))))
    return found
