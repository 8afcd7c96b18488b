"""Bounded, safe YAML loading that remembers where every value came from.

Config files are user input, so loading them is defensive: only plain data is
built (no Python objects from tags), files and alias expansions are bounded,
duplicate keys are errors, and every value keeps its ``line:column`` so later
validation errors (pydantic's ``loc``) can point at the right spot in the file.

The pipeline is: parse and compose the node graph -> check its expanded size
(alias bombs, recursive aliases) -> check keys and interpolate ``${VAR}`` in
string values -> construct plain data -> record marks by walking nodes and data
in parallel.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from mlrm.errors import ConfigError, Location, NotFoundError

MAX_BYTES = 1_000_000
MAX_NODES = 100_000

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_MERGE = "tag:yaml.org,2002:merge"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_VALUE = "tag:yaml.org,2002:value"  # the `=` scalar, which SafeLoader cannot construct
# Tags whose constructors build something other than dict/list/str/int/float/bool/None.
_NON_PLAIN = {_TIMESTAMP, *(f"tag:yaml.org,2002:{t}" for t in ("binary", "set", "omap", "pairs"))}
_REF = re.compile(r"\$\$\{|\$\{(?:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\})?")
_KEYLIKE = re.compile(r"[A-Za-z_][\w-]*")


class _Problem(Exception):
    """An error found while loading, with the YAML mark it belongs to."""

    def __init__(self, message: str, mark: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


def _loader_class(base: type) -> type:
    """A loader on ``base`` that builds plain data only; identical for the C and pure parsers."""

    def construct_undefined(self: Any, node: Node) -> Any:
        raise _Problem(f"tag {node.tag!r} is not allowed (config files hold plain data only)", node.start_mark)

    constructors = {t: c for t, c in base.yaml_constructors.items() if t not in _NON_PLAIN}
    constructors[None] = construct_undefined
    construct_int = constructors[_INT]

    def construct_bounded_int(self: Any, node: Node) -> Any:
        try:
            return construct_int(self, node)
        except ValueError:  # Python refuses to convert integers of more than 4300 digits
            digits = sum(c.isdigit() for c in str(node.value))
            raise _Problem(f"a number with {digits} digits is too long for a config", node.start_mark) from None

    constructors[_INT] = construct_bounded_int
    # Dates and `=` stay strings: the resolver (pure Python for both parsers) never tags them.
    resolvers = {
        ch: [(tag, rx) for tag, rx in rs if tag not in (_TIMESTAMP, _VALUE)]
        for ch, rs in base.yaml_implicit_resolvers.items()
    }
    attrs = {
        "yaml_constructors": constructors,
        "yaml_multi_constructors": {},
        "yaml_implicit_resolvers": resolvers,
    }
    return type(f"_Mlrm{base.__name__}", (base,), attrs)


_PureLoader = _loader_class(yaml.SafeLoader)
_Loader = _loader_class(getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@dataclass
class Document:
    """Loaded YAML data plus the ``(line, column)`` of every value, keyed by path."""

    data: Any
    file: str
    marks: dict[tuple, tuple[int, int]] = dc_field(default_factory=dict)

    def locate(self, loc: Sequence[str | int], field: str | None = None) -> Location:
        """The best location for a pydantic-style error ``loc``.

        Elements not present in the data (union tags pydantic inserts, such as
        ``'fill_na'`` or ``'function-after[...]'``) are skipped; the result is the
        mark of the deepest path that exists. A missing final key (a required
        field) points at the mapping lacking it but is named in ``field``, which
        defaults to a path like ``steps[1].strategy``.
        """
        node, path, text = self.data, (), ""
        for i, elem in enumerate(loc):
            if isinstance(node, dict):
                key = _find_key(node, elem)
                if key is not _MISSING:
                    node, path, text = node[key], (*path, key), f"{text}.{key}" if text else str(key)
                    continue
                # A missing required field: point at the mapping that lacks it.
                if i == len(loc) - 1 and isinstance(elem, str) and _KEYLIKE.fullmatch(elem):
                    text = f"{text}.{elem}" if text else elem
            elif isinstance(node, list) and _is_index(elem) and 0 <= int(elem) < len(node):
                node, path, text = node[int(elem)], (*path, int(elem)), f"{text}[{int(elem)}]"
            # Anything else is not in the data (a union tag such as 'function-after[...]'): skip it.
        line, column = self.marks.get(path, (None, None))
        return Location(self.file, line, column, field if field is not None else (text or None))


_MISSING = object()


def _find_key(mapping: dict, elem: str | int) -> Any:
    if not isinstance(elem, bool) and elem in mapping:
        return elem
    # YAML may have parsed `1:` as an int key while pydantic reports '1' (or vice versa).
    return next((k for k in mapping if str(k) == str(elem)), _MISSING)


def _is_index(elem: Any) -> bool:
    return (isinstance(elem, int) and not isinstance(elem, bool)) or (isinstance(elem, str) and elem.isdigit())


def load_yaml(path: str | os.PathLike, *, env: Mapping[str, str] | None = None) -> Document:
    """Load one YAML config file (at most ``MAX_BYTES``) into a :class:`Document`."""
    file = os.fspath(path)
    try:
        size = os.stat(file).st_size  # check the size before reading anything
        if os.path.isdir(file):
            raise ConfigError("is a directory, not a config file", Location(file))
        if size > MAX_BYTES:
            raise ConfigError(f"file is {size} bytes, over the limit of {MAX_BYTES} bytes", Location(file))
        with open(file, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise NotFoundError(f"config file not found: {file}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", Location(file)) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"file is not valid UTF-8 (byte {exc.start})", Location(file)) from None
    return loads_yaml(text, file, env=env)


def loads_yaml(text: str, file: str = "<string>", *, env: Mapping[str, str] | None = None) -> Document:
    """Load YAML from a string; ``file`` is only used in error messages."""
    if len(text) > MAX_BYTES or len(text.encode("utf-8")) > MAX_BYTES:
        raise ConfigError(f"document is over the limit of {MAX_BYTES} bytes", Location(file))
    env = os.environ if env is None else env
    try:
        loader, node = _compose(text, _Loader)
    except _Problem as problem:
        raise _config_error(_pure_problem(text) or problem, file) from None
    try:
        if node is None:
            return Document(None, file, {})
        _check_expansion(node)
        node = _Prepare(loader, env).value(node)  # a root scalar may be replaced
        data = loader.construct_document(node)
        marks: dict[tuple, tuple[int, int]] = {}
        _record_marks(loader.construct_object, node, data, (), marks)
        return Document(data, file, marks)
    except _Problem as problem:
        raise _config_error(problem, file) from None
    except yaml.MarkedYAMLError as exc:
        raise _config_error(_yaml_problem(exc), file) from None
    except RecursionError:
        raise ConfigError("document is nested too deeply", Location(file)) from None
    finally:
        loader.dispose()


def _compose(text: str, loader_cls: type) -> tuple[Any, Node | None]:
    """Parse ``text`` into a single node graph (no Python objects are built yet)."""
    try:
        loader = loader_cls(text)  # the pure loader's reader may already reject characters
    except yaml.YAMLError as exc:
        raise _yaml_problem(exc, text) from None
    try:
        node = loader.get_node() if loader.check_node() else None
        if node is not None and loader.check_node():
            raise _Problem("expected a single YAML document, found several", loader.peek_event().start_mark)
        return loader, node
    except yaml.YAMLError as exc:
        loader.dispose()
        raise _yaml_problem(exc, text) from None
    except _Problem:
        loader.dispose()
        raise
    except RecursionError:
        loader.dispose()
        raise _Problem("document is nested too deeply") from None


def _pure_problem(text: str) -> _Problem | None:
    """The pure-Python parser's error for ``text``: libyaml words (and places) errors differently."""
    if _Loader is _PureLoader:
        return None
    try:
        _compose(text, _PureLoader)[0].dispose()
    except _Problem as problem:
        return problem
    return None


def _yaml_problem(exc: yaml.YAMLError, text: str = "") -> _Problem:
    if isinstance(exc, yaml.MarkedYAMLError):
        what = exc.problem or exc.context or "invalid YAML"
        if exc.context and "duplicate anchor" in exc.context:  # the problem text is just "second occurrence"
            what = exc.context.split(";")[0]
        return _Problem(f"could not parse YAML: {what}", exc.problem_mark or exc.context_mark)
    if isinstance(exc, yaml.reader.ReaderError) and isinstance(exc.position, int):
        # Reader errors carry only an offset; turn it into a line and column.
        before = text[: exc.position]
        line, column = before.count("\n"), exc.position - (before.rfind("\n") + 1)
        mark = yaml.Mark("", exc.position, line, column, None, None)
        return _Problem(f"could not parse YAML: unacceptable character #x{exc.character:04x}: {exc.reason}", mark)
    return _Problem(f"could not parse YAML: {' '.join(str(exc).split())}")


def _config_error(problem: _Problem, file: str) -> ConfigError:
    mark = problem.mark
    if mark is None:
        return ConfigError(problem.message, Location(file))
    return ConfigError(problem.message, Location(file, mark.line + 1, mark.column + 1))


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return node.value
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_expansion(root: Node) -> None:
    """Reject documents whose aliases expand past ``MAX_NODES`` or refer to themselves."""
    sizes: dict[int, int] = {}  # node id -> expanded size; memoised so bombs stay cheap to count
    active: set[int] = set()
    shared = False

    def size(node: Node) -> int:
        nonlocal shared
        if id(node) in sizes:
            shared = True
            return sizes[id(node)]
        if id(node) in active:
            raise _Problem("recursive alias: a node contains itself", node.start_mark)
        active.add(id(node))
        total = 1
        for child in _children(node):
            total += size(child)
            if total > MAX_NODES:  # stop as soon as the cap is passed
                how = " through aliases (a YAML alias bomb?)" if shared else ""
                raise _Problem(f"document expands to more than {MAX_NODES} nodes{how}", node.start_mark)
        active.discard(id(node))
        sizes[id(node)] = total
        return total

    size(root)


class _Prepare:
    """Pre-construction pass: duplicate keys and ``${VAR}`` interpolation in string values."""

    def __init__(self, loader: Any, env: Mapping[str, str]) -> None:
        self.key = loader.construct_object  # scalar keys only; cheap and memoised
        self.env = env
        self.seen: set[int] = set()  # containers shared by aliases are handled once

    def value(self, node: Node) -> Node:
        """Return ``node`` or, for an interpolated string scalar, a replacement node."""
        if isinstance(node, ScalarNode):
            return self.interpolate(node)
        if id(node) in self.seen:
            return node
        self.seen.add(id(node))
        if isinstance(node, SequenceNode):
            node.value[:] = [self.value(item) for item in node.value]
        elif isinstance(node, MappingNode):
            keys: set[Any] = set()
            for i, (key_node, value_node) in enumerate(node.value):
                if key_node.tag != _MERGE and isinstance(key_node, ScalarNode):
                    key = self.key(key_node, deep=True)
                    if key in keys:
                        raise _Problem(f"duplicate key {key!r}", key_node.start_mark)
                    keys.add(key)
                node.value[i] = (key_node, self.value(value_node))
        return node

    def interpolate(self, node: ScalarNode) -> ScalarNode:
        if node.tag != _STR or "$" not in node.value:
            return node

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            name, default = match.group(1), match.group(2)
            if name is None:
                raise _Problem("malformed '${' reference (write $${ for a literal '${')", node.start_mark)
            value = self.env.get(name)
            if default is not None and not value:
                return default
            if value is None:
                raise _Problem(
                    f"environment variable {name!r} is not set (use ${{{name}:-default}} for a default)",
                    node.start_mark,
                )
            return value

        text = _REF.sub(replace, node.value)
        # Same tag, so a plain `${PORT}` stays a string: types are never re-resolved.
        return ScalarNode(node.tag, text, node.start_mark, node.end_mark, node.style)


def _record_marks(
    key_of: Callable[..., Any], node: Node, data: Any, path: tuple, marks: dict[tuple, tuple[int, int]]
) -> None:
    """Walk the node graph and the data together, recording 1-based marks by path."""
    marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, MappingNode) and isinstance(data, dict):
        # Merged entries come first in node.value; later (own) entries win, as in the data.
        entries = {key_of(k, deep=True): (k, v) for k, v in node.value if isinstance(k, ScalarNode)}
        for key, (key_node, value_node) in entries.items():
            if key in data:
                marks[(*path, key, "__key__")] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                _record_marks(key_of, value_node, data[key], (*path, key), marks)
    elif isinstance(node, SequenceNode) and isinstance(data, list):
        for i, (item_node, item) in enumerate(zip(node.value, data, strict=False)):
            _record_marks(key_of, item_node, item, (*path, i), marks)
