"""Tests for the safe expression language (mlrm.expr)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlrm.errors import ConfigError, ExpressionError
from mlrm.expr import Expression, compile_expression, evaluate_condition, evaluate_mask


@pytest.fixture
def df() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sepal_length": [4.9, 5.5, np.nan, 7.1, 6.0],
            "species": ["setosa", "versicolor", None, "virginica", "Virginica"],
            "width": [1.0, 2.0, 3.0, 4.0, 5.0],
        },
        index=[10, 11, 12, 13, 14],
    )


def mask(source: str, frame: pd.DataFrame) -> list[bool]:
    result = evaluate_mask(compile_expression(source), frame)
    assert result.dtype == bool
    assert result.index.equals(frame.index)
    return result.tolist()


# --- filter masks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("sepal_length > 5", [False, True, False, True, True]),
        ("sepal_length <= 5.5", [True, True, False, False, False]),
        ("1 < width <= 3", [False, True, True, False, False]),
        ("5 < sepal_length < 7 < width + 3", [False, False, False, False, True]),
        ("species in ['setosa', 'virginica']", [True, False, False, True, False]),
        ("species in ('setosa',)", [True, False, False, False, False]),
        ("species not in ['setosa', 'virginica']", [False, True, False, False, True]),
        ("width in [1, -2, 3.0]", [True, False, True, False, False]),
        ("sepal_length > 5 and species in ['setosa', 'virginica']", [False, False, False, True, False]),
        ("sepal_length < 5 or width >= 5", [True, False, False, False, True]),
        ("not sepal_length > 5", [True, False, True, False, False]),
        ("not (width > 2 and width < 5) and notnull(species)", [True, True, False, False, True]),
        ("width > 4 or true", [True] * 5),
        ("false and width > 1", [False] * 5),
    ],
)
def test_filter_masks(df: pd.DataFrame, source: str, expected: list[bool]) -> None:
    assert mask(source, df) == expected


def test_missing_values_never_compare_true(df: pd.DataFrame) -> None:
    assert mask("sepal_length != 5.5", df) == [True, False, False, True, True]
    assert mask("species != 'setosa'", df) == [False, True, False, True, True]
    assert mask("species == null", df) == [False] * 5


def test_isnull_notnull_with_nan_and_none(df: pd.DataFrame) -> None:
    assert mask("isnull(sepal_length)", df) == [False, False, True, False, False]
    assert mask("isnull(species)", df) == [False, False, True, False, False]
    assert mask("notnull(sepal_length) and notnull(species)", df) == [True, True, False, True, True]
    objects = pd.DataFrame({"v": pd.Series([None, "a", np.nan], dtype=object)})
    assert mask("isnull(v)", objects) == [True, False, True]
    assert mask("not isnull(v)", objects) == [False, True, False]


def test_string_functions(df: pd.DataFrame) -> None:
    assert mask("lower(species) == 'virginica'", df) == [False, False, False, True, True]
    assert mask("upper(species) == 'SETOSA'", df) == [True, False, False, False, False]
    assert mask("len(species) > 6", df) == [False, True, False, True, True]
    assert mask("startswith(species, 'v')", df) == [False, True, False, True, False]
    assert mask("endswith(species, 'ca')", df) == [False, False, False, True, True]
    assert mask("contains(species, 'ir')", df) == [False, False, False, True, True]
    assert mask("contains(species, '.')", df) == [False] * 5  # literal, not a regex
    assert mask("species + '!' == 'setosa!'", df) == [True, False, False, False, False]


def test_nullable_and_categorical_columns() -> None:
    frame = pd.DataFrame(
        {
            "n": pd.array([1, None, 3], dtype="Int64"),
            "flag": pd.array([True, None, False], dtype="boolean"),
            "cat": pd.Categorical(["a", "B", None]),
        }
    )
    assert mask("n != 1", frame) == [False, False, True]
    assert mask("flag", frame) == [True, False, False]
    assert mask("flag or n > 2", frame) == [True, False, True]
    assert mask("lower(cat) == 'b' or cat in ['a']", frame) == [True, True, False]


def test_arithmetic_and_numeric_functions(df: pd.DataFrame) -> None:
    assert mask("width * 2 + 1 > 6", df) == [False, False, True, True, True]
    assert mask("width % 2 == 0 and width // 2 >= 1", df) == [False, True, False, True, False]
    assert mask("width ** 2 >= 16", df) == [False, False, False, True, True]
    assert mask("-width < -3 and abs(-width) == width", df) == [False, False, False, True, True]
    assert mask("round(width / 3, 1) == 0.7", df) == [False, True, False, False, False]
    assert mask("max(width, sepal_length) > 6.5", df) == [False, False, False, True, False]
    assert mask("min(width, 2) == 2", df) == [False, True, True, True, True]
    assert mask("sqrt(width) == 2 or log(width) == 0 or exp(width) < 0", df) == [True, False, False, True, False]


def test_scalar_result_is_broadcast(df: pd.DataFrame) -> None:
    assert mask("true", df) == [True] * 5
    assert mask("1 > 2", df) == [False] * 5
    assert mask("null", df) == [False] * 5


def test_multiline_source(df: pd.DataFrame) -> None:
    assert mask("  width > 1\n  and width < 3\n", df) == [False, True, False, False, False]


def test_non_boolean_filter_result(df: pd.DataFrame) -> None:
    with pytest.raises(ExpressionError, match=r"must be true or false for each row.*float64"):
        evaluate_mask(compile_expression("width + 1"), df)
    with pytest.raises(ExpressionError, match="must be true or false"):
        evaluate_mask(compile_expression("'text'"), df)
    with pytest.raises(ExpressionError, match="expected true/false"):
        evaluate_mask(compile_expression("width and species == 'setosa'"), df)


def test_evaluation_errors_name_the_expression(df: pd.DataFrame) -> None:
    with pytest.raises(ExpressionError, match=r"cannot evaluate expression 'species > 3'"):
        evaluate_mask(compile_expression("species > 3"), df)
    with pytest.raises(ExpressionError, match=r"text supports only \+"):
        evaluate_mask(compile_expression("species * 1000000000 == 'x'"), df)
    with pytest.raises(ExpressionError, match="expected text"):
        evaluate_mask(compile_expression("lower(width) == 'a'"), df)


# --- scalar conditions ----------------------------------------------------------------------


@pytest.mark.parametrize("function", ["abs(species)", "round(species)", "log(species)", "max(species, 1)"])
@pytest.mark.parametrize("text", ["object", "string[pyarrow]"])
def test_numeric_functions_refuse_text(df: pd.DataFrame, function: str, text: str) -> None:
    frame = df.astype({"species": text})
    with pytest.raises(ExpressionError, match=r"\(\) needs numbers, got text column 'species'"):
        mask(f"{function} == 1", frame)


def test_metric_conditions() -> None:
    rule = compile_expression("accuracy >= 0.9 and f1_macro > 0.8")
    assert evaluate_condition(rule, {"accuracy": 0.95, "f1_macro": 0.85}) is True
    assert evaluate_condition(rule, {"accuracy": 0.85, "f1_macro": 0.99}) is False
    assert evaluate_condition(compile_expression("accuracy >= 0.9"), {"accuracy": 0.9}) is True
    assert evaluate_condition(compile_expression("accuracy >= 0.9"), {"accuracy": 0.1}) is False
    assert evaluate_condition(compile_expression("0.5 < auc <= 1 or not rmse > 2"), {"auc": 0.4, "rmse": 1.5}) is True
    assert evaluate_condition(compile_expression("max(a, b) ** 2 > 0.8"), {"a": 0.5, "b": 0.95}) is True


def test_condition_short_circuits_and_handles_missing() -> None:
    rule = compile_expression("n > 0 and hits / n > 0.5")
    assert evaluate_condition(rule, {"n": 0, "hits": 0}) is False
    assert evaluate_condition(compile_expression("loss < 1"), {"loss": float("nan")}) is False
    assert evaluate_condition(compile_expression("isnull(loss)"), {"loss": None}) is True


def test_condition_errors() -> None:
    with pytest.raises(ExpressionError, match="must be true or false"):
        evaluate_condition(compile_expression("accuracy"), {"accuracy": 0.9})
    with pytest.raises(ExpressionError, match="division by zero"):
        evaluate_condition(compile_expression("1 / n > 0"), {"n": 0})
    with pytest.raises(ExpressionError, match="cannot evaluate"):
        evaluate_condition(compile_expression("(((9 ** 100) ** 100) ** 100) ** 100 > 1"), {})


# --- names and construction ---------------------------------------------------------------


def test_names_property() -> None:
    expr = Expression("a > b and isnull(c) or lower(d) in ['x', null] and true")
    assert expr.names == frozenset({"a", "b", "c", "d"})
    assert expr.source == "a > b and isnull(c) or lower(d) in ['x', null] and true"
    assert Expression("1 + 2 == 3").names == frozenset()


def test_compile_expression_is_cached() -> None:
    assert compile_expression("x > 1") is compile_expression("x > 1")


def test_unknown_name_lists_available(df: pd.DataFrame) -> None:
    with pytest.raises(ExpressionError) as info:
        evaluate_mask(compile_expression("sepal_lenght > 5"), df)
    message = str(info.value)
    assert "unknown name 'sepal_lenght' in expression 'sepal_lenght > 5'" in message
    assert "available: sepal_length, species, width" in message
    assert "did you mean 'sepal_length'?" in message
    with pytest.raises(ExpressionError, match=r"unknown name 'recall'.*available: accuracy"):
        evaluate_condition(compile_expression("recall > 0.5"), {"accuracy": 0.9})


# --- rejections -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("x.__class__", "uses attribute access, which is not allowed; allowed: comparisons"),
        ("x.lower()", "uses attribute access"),
        ("x[0] > 1", "uses subscripts"),
        ("(lambda: 1)() == 1", "uses lambda"),
        ("lambda: 1", "uses lambda"),
        ("[v for v in x]", "uses comprehensions"),
        ("f'{x}' == 'a'", "uses f-strings"),
        ("(y := 1) > 0", "uses assignment"),
        ("x if y else z", "uses conditional expressions"),
        ("x & y", "uses operator '&'"),
        ("x is None", "uses 'is' comparisons"),
        ("[1, 2] == x", "uses lists outside 'in"),
        ("{'a': 1}", "uses dicts"),
        ("round(x, ndigits=2) > 1", "uses keyword arguments"),
        ("max(*x) > 1", "uses starred arguments"),
        ("x in y", "need a list of values"),
        ("x in [y, 2]", "may only hold numbers"),
        ("1 < x in [1, 2]", "chained comparison"),
        ("abs(x, y) > 1", r"abs\(\) takes 1 argument, got 2"),
        ("startswith(x) == 1", r"startswith\(\) takes 2 arguments, got 1"),
        ("1j == x", "uses complex literals"),
    ],
)
def test_rejected_constructs(source: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        Expression(source)


def test_import_call_is_an_unknown_function() -> None:
    with pytest.raises(ExpressionError) as info:
        Expression("__import__('os').system('echo hi')")
    assert "attribute access" in str(info.value)
    with pytest.raises(ExpressionError) as info:
        Expression("__import__('os')")
    message = str(info.value)
    assert "unknown function '__import__'" in message
    assert "known functions: abs, contains" in message


def test_unknown_function_suggests_closest() -> None:
    with pytest.raises(ExpressionError, match=r"unknown function 'isnul'.*did you mean 'isnull'\?"):
        Expression("isnul(x)")


def test_input_bounds() -> None:
    with pytest.raises(ExpressionError, match="2001 characters long; the limit is 2000"):
        Expression("x" * 2001)
    with pytest.raises(ExpressionError, match="nested more than 50 levels"):
        Expression("-" * 60 + "x")
    with pytest.raises(ExpressionError, match="parts; the limit is 500"):
        Expression(" + ".join(["x"] * 300))
    with pytest.raises(ExpressionError, match="exponent of \\*\\* must be a number"):
        Expression("10 ** 10 ** 10")
    with pytest.raises(ExpressionError, match="between -100 and 100"):
        Expression("x ** 101")
    with pytest.raises(ExpressionError, match="exponent"):
        Expression("x ** y")
    assert Expression("x ** -2 > 0 and x ** 0.5 > 0").names == frozenset({"x"})


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("x >", "invalid expression 'x >': invalid syntax at column 4"),
        ("x > > 1", "invalid expression 'x > > 1': invalid syntax at column 5"),
        ("(x > 1", "was never closed at column 1"),
        ("x = 1", "invalid expression 'x = 1'"),
        ("   ", "it is empty"),
    ],
)
def test_syntax_errors(source: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        Expression(source)


def test_errors_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        compile_expression("x.y")


# --- numeric functions on text, and names as written -----------------------------------------

NUMERIC = ["abs({x})", "round({x})", "round({x}, 1)", "min({x}, 1)", "max(1, {x})", "log({x})", "sqrt({x})", "exp({x})"]


@pytest.mark.parametrize("call", NUMERIC)
@pytest.mark.parametrize(
    "text",
    [
        pd.Series(["a", "b"]),
        pd.Series(["a", "b"], dtype=object),
        pd.Series(["a", "b"], dtype="category"),
        pd.Series(["a", 1], dtype=object),
    ],
    ids=["str", "object", "category", "mixed"],
)
def test_every_numeric_function_refuses_text_instead_of_dropping_rows(call: str, text: pd.Series) -> None:
    """round(species) == 1 used to keep no row at all, silently, while log(species) was an error."""
    frame = pd.DataFrame({"species": text, "n": [1.0, 2.0]})
    with pytest.raises(ExpressionError, match=r"needs numbers, got text"):
        evaluate_mask(compile_expression(call.format(x="species") + " == 1"), frame)
    with pytest.raises(ExpressionError, match=r"needs numbers, got text \('s'\)"):
        evaluate_condition(compile_expression(call.format(x="'s'") + " == 1"), {})
    evaluate_mask(compile_expression(call.format(x="n") + " >= 0"), frame)  # numbers still work
    numbers = pd.DataFrame({"o": pd.Series([1, 2], dtype=object)})  # an object column of numbers is not text
    evaluate_mask(compile_expression(call.format(x="o") + " >= 0"), numbers)


@pytest.mark.parametrize(
    ("column", "source"),
    [
        ("µg", "µg > 1"),  # MICRO SIGN: Python's parser would fold it to GREEK SMALL LETTER MU
        ("ﬁx", "ﬁx > 1"),  # a ligature NFKC would split
        ("Ⅸ", "Ⅸ > 1"),
        ("µg", "`µg` > 1"),
        ("petal length (cm)", "`petal length (cm)` > 1"),
        ("class", "`class` > 1"),  # a keyword
        ("null", "`null` > 1"),  # a constant's name
        ("1st", "`1st` > 1"),
        ("a'b\"c", "`a'b\"c` > 1"),
        ("_q0", "`x y` > 1 and _q0 > 1"),  # a placeholder-like name of the user's own
    ],
)
def test_any_column_name_can_be_referenced(column: str, source: str) -> None:
    frame = pd.DataFrame({column: [0.5, 2.0], "μg": [9.0, 9.0], "x y": [5.0, 5.0]})  # μg: the folded spelling
    expr = compile_expression(source)
    assert column in expr.names
    assert mask(source, frame) == [False, True]


def test_quoted_names_errors() -> None:
    frame = pd.DataFrame({"a b": [1]})
    with pytest.raises(ExpressionError, match=r"unknown name 'a c' in expression '`a c` > 1'; available: a b"):
        evaluate_mask(compile_expression("`a c` > 1"), frame)
    for source, message in [
        ("x > `a", "unclosed ` at column 5"),
        ("`` > 1", "empty `` at column 1"),
        ("x`a b` > 1", "must be apart"),
        ("`a b` > > 1", "invalid syntax at column 9"),  # columns stay those of the text as written
    ]:
        with pytest.raises(ExpressionError, match=message):
            Expression(source)
    assert mask("'`' != `a b`", frame) == [True]  # a backtick inside a string is text
