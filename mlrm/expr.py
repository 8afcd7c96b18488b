"""A small, safe expression language for ``filter`` steps and ``when`` rules.

Expressions look like Python, but only a fixed subset is accepted: the text is
parsed with :mod:`ast` and checked against a whitelist once, when it is created;
nothing is ever handed to ``eval``. The same expression works over a table (names
are columns and the expression is evaluated for all rows at once) and over
scalars (names are metrics)::

    sepal_length > 5 and species in ['setosa', 'virginica']
    1 < petal_width <= 2.5 or notnull(comment)
    accuracy >= 0.9 and f1_macro > 0.8

The language:

* Values: numbers, ``'text'`` or ``"text"``, ``true`` / ``false`` / ``null``
  (``True`` / ``False`` / ``None`` work too) and names (columns or metrics). A name is
  taken exactly as written (``µg`` is the column ``µg``, not its Unicode normal form);
  a column whose name is not an identifier, or is a keyword, goes in backticks:
  `` `petal length (cm)` > 1 ``, `` `class` == 'a' ``, `` `null` > 0 ``.
* Arithmetic: ``+ - * / // % **`` and unary ``-`` / ``+``. Text supports only
  ``+`` (joining). The exponent of ``**`` must be a number written in place,
  between -100 and 100.
* Comparisons: ``== != < <= > >=``, chainable (``1 < x <= 5``); ``x in [...]``
  and ``x not in [...]`` against a list of literal values.
* Logic: ``and``, ``or``, ``not`` on true/false values; parentheses group.
* Functions: ``abs(x)``, ``round(x, n)``, ``min(a, b)``, ``max(a, b)``,
  ``log(x)``, ``sqrt(x)``, ``exp(x)`` (numbers only: text is an error, never a
  silent mismatch), ``isnull(x)``, ``notnull(x)``,
  ``lower(x)``, ``upper(x)``, ``len(x)`` (text length), ``startswith(x, 'p')``,
  ``endswith(x, 's')``, ``contains(x, 'sub')`` (plain substring, not a pattern).
* Missing values (NaN, None, ``null``): any comparison involving one is false,
  including ``!=`` and ``not in``, and a missing true/false value counts as
  false; test for them with ``isnull`` / ``notnull``. A filter keeps a row only
  where the expression is true.

Anything else (attribute access, subscripts, lambdas, comprehensions, keyword
arguments, ...) is rejected, as are inputs longer than 2000 characters, nested
deeper than 50 levels or made of more than 500 parts.
"""

from __future__ import annotations

import ast
import difflib
import functools
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from mlrm.errors import INPUT_EXCEPTIONS, ExpressionError, one_line

MAX_LENGTH, MAX_DEPTH, MAX_NODES, MAX_EXPONENT = 2000, 50, 500, 100
_CONSTANTS = {"true": True, "false": False, "null": None}
# fmt: off
_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt,
    ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
}
_FORBIDDEN = {  # what to call a rejected construct in the error message
    ast.Attribute: "attribute access", ast.Subscript: "subscripts", ast.Lambda: "lambda",
    ast.ListComp: "comprehensions", ast.SetComp: "comprehensions", ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions", ast.JoinedStr: "f-strings", ast.Starred: "starred arguments",
    ast.NamedExpr: "assignment (:=)", ast.IfExp: "conditional expressions", ast.Dict: "dicts",
    ast.Set: "sets", ast.Slice: "slices", ast.Is: "'is' comparisons", ast.IsNot: "'is' comparisons",
    ast.BitAnd: "operator '&'", ast.BitOr: "operator '|'", ast.BitXor: "operator '^'",
    ast.Invert: "operator '~'", ast.LShift: "operator '<<'", ast.RShift: "operator '>>'",
    ast.MatMult: "operator '@'", ast.List: "lists outside 'in [...]'",
    ast.Tuple: "tuples outside 'in (...)'",
}
# fmt: on


def _shorten(source: str) -> str:
    return source if len(source) <= 200 else source[:200] + "..."


def _is_na(value: Any) -> bool:
    return not isinstance(value, pd.Series) and bool(pd.isna(value))


def _is_text(value: Any) -> bool:
    if isinstance(value, pd.Series):
        dtype = value.dtype.categories.dtype if isinstance(value.dtype, pd.CategoricalDtype) else value.dtype
        return pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)
    return isinstance(value, str)


def _truth(value: Any) -> Any:
    """A true/false value (plain bool or bool Series) where missing counts as False."""
    if isinstance(value, pd.Series):
        if not pd.api.types.is_bool_dtype(value.dtype):
            raise TypeError(f"expected true/false values, got {value.dtype} values")
        return value if value.dtype == bool else value.fillna(False).astype(bool)
    if _is_na(value):
        return False
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"expected true/false, got {type(value).__name__} {value!r}")
    return bool(value)


def _compare(op: Callable[[Any, Any], Any], left: Any, right: Any) -> Any:
    series = [v for v in (left, right) if isinstance(v, pd.Series)]
    if not series:
        return False if _is_na(left) or _is_na(right) else bool(op(left, right))
    if _is_na(left) or _is_na(right):  # Series vs null: pandas would raise for < >
        return pd.Series(False, index=series[0].index)
    result = op(left, right)
    for side in series:  # NaN != x is True in numpy; our rule says missing -> False
        result = result & side.notna()
    return _truth(result)


def _isin(left: Any, values: list[Any], negate: bool) -> Any:
    if isinstance(left, pd.Series):  # missing stays False for 'not in' too
        found = left.isin(values)
        return _truth((~found if negate else found) & left.notna())
    return not _is_na(left) and (left in values) != negate


def _arith(op_type: type, left: Any, right: Any) -> Any:
    if op_type is not ast.Add and (_is_text(left) or _is_text(right)):
        raise TypeError("text supports only + (joining)")  # 'x' * 10**9 would eat memory
    if op_type is ast.Pow and not isinstance(left, pd.Series):
        return math.pow(float(left), float(right))  # float pow: huge ints overflow, not hang
    return _BINARY[op_type](left, right)


def _text(value: Any, on_series: Callable[[Any], Any], on_str: Callable[[str], Any], na: Any) -> Any:
    if isinstance(value, pd.Series):
        if not _is_text(value):  # pandas would say "Can only use .str accessor ..."
            raise TypeError(f"expected text, got {value.dtype} values")
        return on_series(value.str)
    if _is_na(value):
        return na
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__} {value!r}")
    return on_str(value)


def _find(how: str) -> Callable[[Any, Any], Any]:
    """startswith / endswith / contains: plain text tests that are False for missing values."""
    pandas_options = {"regex": False} if how == "contains" else {}  # a literal, never a regex
    on_str = getattr(str, "__contains__" if how == "contains" else how)

    def find(value: Any, needle: Any) -> Any:
        if not isinstance(needle, str):
            raise TypeError(f"{how}() looks for 'quoted text', got {needle!r}")
        return _text(
            value, lambda s: getattr(s, how)(needle, na=False, **pandas_options), lambda v: on_str(v, needle), False
        )

    return find


def _holds_text(value: Any) -> bool:
    """Text, or a column holding text (an object column of numbers and nulls does not)."""
    if isinstance(value, pd.Series) and pd.api.types.is_object_dtype(value.dtype):
        return pd.api.types.infer_dtype(value, skipna=True) in ("string", "bytes", "mixed", "mixed-integer")
    return _is_text(value) or isinstance(value, bytes)


def _as_numbers(value: Any) -> Any:
    if isinstance(value, pd.Series) and pd.api.types.is_object_dtype(value.dtype):
        return pd.to_numeric(value)
    return value


def _numeric(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` for numbers only: text is refused with one message, whatever pandas or numpy would do with it."""

    def call(*args: Any) -> Any:
        for arg in args:
            if _holds_text(arg):
                got = f"column '{arg.name}'" if isinstance(arg, pd.Series) else f"({arg!r})"
                raise TypeError(f"{name}() needs numbers, got text {got}")
        # An object column of numbers and nulls (JSON input) works like a numeric one.
        return fn(*(_as_numbers(arg) for arg in args))

    return call


def _round(value: Any, digits: Any = 0) -> Any:
    if isinstance(digits, bool) or not isinstance(digits, (int, np.integer)) or abs(digits) > 100:
        raise ValueError(f"round() needs a whole number of digits between -100 and 100, got {digits!r}")
    return value.round(int(digits)) if isinstance(value, pd.Series) else round(value, int(digits))


# name -> (min args, max args, implementation); each accepts Series and scalars.
_FUNCTIONS: dict[str, tuple[int, int, Callable[..., Any]]] = {
    "abs": (1, 1, _numeric("abs", abs)),
    "isnull": (1, 1, pd.isna),
    "notnull": (1, 1, pd.notna),
    "lower": (1, 1, lambda x: _text(x, lambda s: s.lower(), str.lower, None)),
    "upper": (1, 1, lambda x: _text(x, lambda s: s.upper(), str.upper, None)),
    "len": (1, 1, lambda x: _text(x, lambda s: s.len(), len, None)),
    "startswith": (2, 2, _find("startswith")),
    "endswith": (2, 2, _find("endswith")),
    "contains": (2, 2, _find("contains")),
    "round": (1, 2, _numeric("round", _round)),
    "min": (2, 2, _numeric("min", np.minimum)),
    "max": (2, 2, _numeric("max", np.maximum)),
    "log": (1, 1, _numeric("log", np.log)),
    "sqrt": (1, 1, _numeric("sqrt", np.sqrt)),
    "exp": (1, 1, _numeric("exp", np.exp)),
}
_PREDICATES = {"isnull", "notnull", "startswith", "endswith", "contains"}  # the functions giving true/false
_ALLOWED = "comparisons, and/or/not, + - * / // % **, in/not in lists, functions " + ", ".join(sorted(_FUNCTIONS))


def _quote_names(text: str, label: str) -> tuple[str, dict[str, str]]:
    """Replace each `quoted name` outside string literals by an ASCII identifier of the same length.

    Returns the rewritten text (so columns in syntax errors stay right) and placeholder -> name.
    """
    taken = set(_IDENTIFIER.findall(text))
    placeholders: dict[str, str] = {}
    by_name: dict[str, str] = {}
    out: list[str] = []
    i, quote = 0, ""
    while i < len(text):
        char = text[i]
        if quote:  # inside a string literal: copy it, escapes included
            if char == "\\":
                out.append(text[i : i + 2])
                i += 2
                continue
            if text.startswith(quote, i):
                out.append(quote)
                i += len(quote)
                quote = ""
                continue
            out.append(char)
            i += 1
            continue
        if char in "'\"":
            quote = char * 3 if text.startswith(char * 3, i) else char
            out.append(quote)
            i += len(quote)
            continue
        if char != "`":
            out.append(char)
            i += 1
            continue
        end = text.find("`", i + 1)
        if end < 0:
            raise ExpressionError(f"invalid expression '{label}': unclosed ` at column {i + 1}")
        name = text[i + 1 : end]
        if not name:
            raise ExpressionError(f"invalid expression '{label}': empty `` at column {i + 1}")
        if (out and _WORD.match(out[-1][-1])) or _WORD.match(text[end + 1 : end + 2]):
            raise ExpressionError(
                f"invalid expression '{label}': a `quoted name` must be apart from the names around it, "
                f"at column {i + 1}"
            )
        if name not in by_name:
            number = len(placeholders)
            while (candidate := _placeholder(number, end - i + 1)) in taken:
                number += 1
            taken.add(candidate)
            by_name[name], placeholders[candidate] = candidate, name
        out.append(by_name[name])
        i = end + 1
    return "".join(out), placeholders


_IDENTIFIER = re.compile(r"\w+")
_WORD = re.compile(r"\w")
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _placeholder(number: int, width: int) -> str:
    """``_`` and ``number`` in base 62, padded with ``_`` to ``width`` when it fits."""
    digits = ""
    while True:
        number, rest = divmod(number, len(_DIGITS))
        digits = _DIGITS[rest] + digits
        if not number:
            break
    return ("_q" + digits).ljust(width, "_")


def _literal(node: ast.expr) -> Any:
    """The value of a list item, or raise LookupError if it is not a literal."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None))):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    raise LookupError


class Expression:
    """A parsed, validated expression; evaluate it as often as needed."""

    def __init__(self, source: str) -> None:
        if not isinstance(source, str):
            raise ExpressionError(f"an expression must be text, got {type(source).__name__}")
        self.source = source
        self._label = _shorten(source)
        if len(source) > MAX_LENGTH:
            raise ExpressionError(
                f"expression '{self._label}' is {len(source)} characters long; the limit is {MAX_LENGTH}"
            )
        if not source.strip():
            raise ExpressionError("invalid expression '': it is empty")
        # Newlines become spaces so YAML block strings work; leading blanks would be an
        # "unexpected indent". Both keep the reported column right.
        text = source.replace("\r", " ").replace("\n", " ")
        indent = len(text) - len(text.lstrip(" \t"))
        text, self._quoted = _quote_names(text, self._label)
        self._text = text[indent:]
        try:
            self._tree = ast.parse(self._text, mode="eval").body
        except SyntaxError as exc:
            reason = exc.msg.split(" (detected at")[0]
            column = indent + exc.offset if exc.offset else len(text.rstrip()) + 1  # 0: at the end
            raise ExpressionError(f"invalid expression '{self._label}': {reason} at column {column}") from None
        count = sum(isinstance(n, ast.expr) for n in ast.walk(self._tree))
        if count > MAX_NODES:
            raise ExpressionError(f"expression '{self._label}' has {count} parts; the limit is {MAX_NODES}")
        self._ordered: list[str] = []
        self._names: dict[int, str] = {}  # id(name node) -> the column or metric it names
        self._lists: dict[int, list[Any]] = {}  # id(list node) -> its values, built once
        self._check(self._tree, 1)
        self.names: frozenset[str] = frozenset(self._ordered)

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    def _reject(self, what: str) -> ExpressionError:
        return ExpressionError(f"expression '{self._label}' uses {what}, which is not allowed; allowed: {_ALLOWED}")

    def _check(self, node: ast.AST, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise ExpressionError(f"expression '{self._label}' is nested more than {MAX_DEPTH} levels deep")
        children: list[ast.expr] = []
        if isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float, str, bool, type(None))):
                raise self._reject(f"{type(node.value).__name__} literals")
        elif isinstance(node, ast.Name):
            if node.id not in _CONSTANTS or node.id in self._quoted:
                name = self._name(node)
                self._names[id(node)] = name
                if name not in self._ordered:
                    self._ordered.append(name)
        elif isinstance(node, ast.BoolOp):
            children = node.values
        elif isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.Invert):
                raise self._reject("operator '~' (use not)")
            children = [node.operand]
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINARY:
                hint = " (use and/or)" if isinstance(node.op, (ast.BitAnd, ast.BitOr)) else ""
                raise self._reject(_FORBIDDEN.get(type(node.op), "this operator") + hint)
            if isinstance(node.op, ast.Pow):
                self._check_exponent(node.right)
            children = [node.left, node.right]
        elif isinstance(node, ast.Compare):
            children = [node.left]
            for op, right in zip(node.ops, node.comparators, strict=True):
                if isinstance(op, (ast.In, ast.NotIn)):
                    if len(node.ops) > 1:  # Python's meaning of 'a in [1] < 2' surprises everyone
                        raise self._reject("'in' inside a chained comparison (use parentheses and 'and')")
                    self._check_list(right)
                elif type(op) in _COMPARE:
                    children.append(right)
                else:
                    raise self._reject(_FORBIDDEN.get(type(op), "this comparison") + " (use isnull/notnull)")
        elif isinstance(node, ast.Call):
            children = self._check_call(node)
        else:
            raise self._reject(_FORBIDDEN.get(type(node), type(node).__name__))
        for child in children:
            self._check(child, depth + 1)

    def _name(self, node: ast.Name) -> str:
        """The name as written: Python's parser folds identifiers to NFKC (µ becomes μ), columns are not folded."""
        if node.id in self._quoted:
            return self._quoted[node.id]
        return ast.get_source_segment(self._text, node) or node.id

    def _check_exponent(self, node: ast.expr) -> None:
        try:
            value = _literal(node)
        except LookupError:
            value = None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or abs(value) > MAX_EXPONENT:
            raise ExpressionError(
                f"expression '{self._label}': the exponent of ** must be a number "
                f"written in place, between -{MAX_EXPONENT} and {MAX_EXPONENT}"
            )

    def _check_list(self, node: ast.expr) -> None:
        if not isinstance(node, (ast.List, ast.Tuple)):
            raise ExpressionError(
                f"expression '{self._label}': 'in' and 'not in' need a list of "
                "values written in place, like x in ['a', 'b']"
            )
        try:
            self._lists[id(node)] = [_literal(item) for item in node.elts]
        except LookupError:
            raise ExpressionError(
                f"expression '{self._label}': the list after 'in' may only hold numbers, 'text', true, false and null"
            ) from None

    def _check_call(self, node: ast.Call) -> list[ast.expr]:
        if not isinstance(node.func, ast.Name):  # x.f(), (lambda: 1)(), ...
            raise self._reject(_FORBIDDEN.get(type(node.func), "calls of anything but a function name"))
        name = self._name(node.func)
        if name not in _FUNCTIONS:
            close = difflib.get_close_matches(name, _FUNCTIONS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ExpressionError(
                f"unknown function '{name}' in expression '{self._label}'; "
                f"known functions: {', '.join(sorted(_FUNCTIONS))}{hint}"
            )
        if node.keywords:
            raise self._reject("keyword arguments")
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            raise self._reject("starred arguments")
        low, high, _ = _FUNCTIONS[name]
        if not low <= len(node.args) <= high:
            wanted = str(low) if low == high else f"{low} or {high}"
            raise ExpressionError(
                f"expression '{self._label}': {name}() takes {wanted} "
                f"argument{'s' if high > 1 else ''}, got {len(node.args)}"
            )
        return list(node.args)

    def _require(self, available: Iterable[Any]) -> None:
        """Fail on the first referenced name that ``available`` lacks, listing what exists."""
        known = sorted(str(name) for name in available)
        for name in self._ordered:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                shown = ", ".join(known[:50]) + (", ..." if len(known) > 50 else "")
                raise ExpressionError(
                    f"unknown name '{name}' in expression '{self._label}'; available: {shown or '(none)'}{hint}"
                )

    def evaluate(self, namespace: Mapping[str, Any]) -> Any:
        """Evaluate over ``namespace`` (Series for tables, plain values for metrics)."""
        self._require(namespace.keys())
        try:
            with np.errstate(all="ignore"):  # log(0), 1/0 on Series: inf/NaN, not warnings
                return self._eval(self._tree, namespace)
        except (*INPUT_EXCEPTIONS, AttributeError) as exc:  # pyarrow-backed text raises NotImplementedError
            raise ExpressionError(f"cannot evaluate expression '{self._label}': {one_line(str(exc))}") from None

    def _eval(self, node: ast.expr, ns: Mapping[str, Any]) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return ns[self._names[id(node)]] if id(node) in self._names else _CONSTANTS[node.id]
        if isinstance(node, ast.BoolOp):
            is_and = isinstance(node.op, ast.And)
            result = _truth(self._eval(node.values[0], ns))
            for value in node.values[1:]:
                if result is (not is_and):  # a scalar already decides: short-circuit like Python
                    return result
                right = _truth(self._eval(value, ns))
                result = (result & right) if is_and else (result | right)
            return result
        if isinstance(node, ast.UnaryOp):
            value = self._eval(node.operand, ns)
            if isinstance(node.op, ast.Not):
                truth = _truth(value)
                return ~truth if isinstance(truth, pd.Series) else not truth
            return -value if isinstance(node.op, ast.USub) else +value
        if isinstance(node, ast.BinOp):
            return _arith(type(node.op), self._eval(node.left, ns), self._eval(node.right, ns))
        if isinstance(node, ast.Compare):
            left, result = self._eval(node.left, ns), True
            for op, comparator in zip(node.ops, node.comparators, strict=True):
                if isinstance(op, (ast.In, ast.NotIn)):
                    part = _isin(left, self._lists[id(comparator)], isinstance(op, ast.NotIn))
                else:
                    right = self._eval(comparator, ns)
                    part, left = _compare(_COMPARE[type(op)], left, right), right
                result = result & part  # chained: 1 < x <= 5 is (1 < x) and (x <= 5)
            return result
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)  # validated
        return _FUNCTIONS[node.func.id][2](*(self._eval(arg, ns) for arg in node.args))


@functools.lru_cache(maxsize=256)
def compile_expression(source: str) -> Expression:
    """Parse and validate ``source`` once; repeated configs reuse the result."""
    return Expression(source)


def evaluate_mask(expr: Expression, df: pd.DataFrame) -> pd.Series:
    """Rows of ``df`` where ``expr`` is true, as a bool Series on ``df.index``."""
    expr._require(df.columns)
    namespace = {name: df[name] for name in expr.names}
    for name, column in namespace.items():
        if isinstance(column, pd.DataFrame):
            raise ExpressionError(f"expression '{_shorten(expr.source)}': column '{name}' appears more than once")
    result = expr.evaluate(namespace)
    try:
        truth = _truth(result)
    except TypeError as exc:
        raise ExpressionError(
            f"filter expression '{_shorten(expr.source)}' must be true or false for each row: {exc}"
        ) from None
    if isinstance(truth, pd.Series):
        return pd.Series(truth.to_numpy(dtype=bool), index=df.index)
    return pd.Series(truth, index=df.index, dtype=bool)


def _gives_truth(node: ast.expr) -> bool:
    """Whether ``node`` is true/false by its form alone, whatever numbers its names stand for."""
    if isinstance(node, ast.Compare):
        return True
    if isinstance(node, ast.BoolOp):
        return all(_gives_truth(v) for v in node.values)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return _gives_truth(node.operand)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id in _PREDICATES
    if isinstance(node, ast.Constant):
        return isinstance(node.value, bool)
    return isinstance(node, ast.Name) and node.id in ("true", "false")


def compile_condition(source: str) -> Expression:
    """A condition over metrics (``when``, ``where``): an expression that is true or false by its form.

    Metrics are numbers, so ``accuracy`` or ``accuracy * 2`` can never be a condition; they are
    refused when the config is validated, not when a training has already finished.
    """
    expr = compile_expression(source)
    if not _gives_truth(expr._tree):
        raise ExpressionError(
            f"condition '{expr._label}' is not true or false: compare the metrics, e.g. 'accuracy >= 0.9'"
        )
    return expr


def evaluate_condition(expr: Expression, values: Mapping[str, float]) -> bool:
    """Whether ``expr`` holds for the scalar ``values`` (e.g. metrics)."""
    result = expr.evaluate(values)
    try:
        truth = _truth(result)
    except TypeError as exc:
        raise ExpressionError(f"condition '{_shorten(expr.source)}' must be true or false: {exc}") from None
    if isinstance(truth, pd.Series):
        raise ExpressionError(f"condition '{_shorten(expr.source)}' must give a single true or false value")
    return truth
