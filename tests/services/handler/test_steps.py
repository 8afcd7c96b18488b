"""Built-in handler steps: conformance, options, and config validation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import TypeAdapter, ValidationError

import services.handler.steps as handler
from mlrm.errors import DataError
from mlrm.steps import registry
from mlrm.testing import check_transform_step

ALL = ["cast", "clip", "dedupe", "drop_columns", "drop_na", "fill_na", "filter", "nameko", "rename", "select", "sort"]


def make(config: dict) -> handler.HandlerStep:
    return registry.get("handler", config["step"]).model_validate(config)


@pytest.fixture
def df() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "a": [1.0, np.nan, 3.0, 4.0, 100.0, 3.0],
            "b": ["x", "y", None, "y", "z", None],
            "n": [5, 4, 3, 2, 1, 3],
            "s": ["1", "2", "3", "oops", "5", "3"],
        }
    )


CONFIGS = [
    {"step": "drop_na"},
    {"step": "drop_na", "columns": ["a", "b"], "how": "all"},
    {"step": "fill_na", "value": 0, "columns": ["a"]},
    {"step": "fill_na", "value": "missing"},
    {"step": "fill_na", "strategy": "mean"},
    {"step": "fill_na", "strategy": "median", "columns": ["a"]},
    {"step": "fill_na", "strategy": "mode"},
    {"step": "filter", "expr": "a > 2 and notnull(b)"},
    {"step": "rename", "columns": {"a": "alpha"}},
    {"step": "cast", "dtypes": {"n": "float", "a": "str", "b": "category"}},
    {"step": "cast", "dtypes": {"s": "int"}, "errors": "null"},
    {"step": "select", "columns": ["n", "a"]},
    {"step": "drop_columns", "columns": ["b", "zzz"], "missing": "ignore"},
    {"step": "dedupe", "columns": ["a"], "keep": "last"},
    {"step": "clip", "columns": ["a", "n"], "lower": 0, "upper": 10},
    {"step": "clip", "columns": ["a"], "quantiles": [0.1, 0.9]},
    {"step": "sort", "by": "a", "ascending": False},
]


def test_every_handler_step_is_registered() -> None:
    assert registry.names("handler") == ALL


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c["step"])
def test_conformance(config: dict, df: pd.DataFrame) -> None:
    check_transform_step(make(config), df)


def test_every_step_and_field_is_documented() -> None:
    for name in ALL:
        schema = registry.get("handler", name).model_json_schema()
        assert schema.get("description"), name
        undocumented = [f for f, spec in schema["properties"].items() if not spec.get("description")]
        assert not undocumented, f"{name}: {undocumented}"


# -- config validation ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"step": "fill_na"}, "The 'value' option of step 'fill_na' is required"),
        ({"step": "fill_na", "strategy": "mean", "value": 1}, "not allowed with strategy 'mean'"),
        ({"step": "clip", "columns": ["a"], "lower": 0, "quantiles": [0.1, 0.9]}, "'quantiles'"),
        ({"step": "clip", "columns": ["a"]}, "'quantiles'"),
        ({"step": "clip", "columns": ["a"], "quantiles": [0.9, 0.1]}, "0 <= low < high <= 1"),
        ({"step": "clip", "columns": ["a"], "lower": 2, "upper": 1}, "must not be above 'upper'"),
        ({"step": "filter", "expr": "__import__('os')"}, "The 'expr' option of step 'filter'"),
        ({"step": "filter", "expr": "a >"}, "invalid expression"),
        ({"step": "sort", "by": ["a", "b"], "ascending": [True]}, "one per 'by' column"),
        ({"step": "sort", "by": []}, "at least one column"),
        ({"step": "select", "columns": ["a", "a"]}, "more than once"),
        ({"step": "rename", "columns": {"a": "x", "b": "x"}}, "same new name 'x'"),
        ({"step": "cast", "dtypes": {"a": "int"}, "datetime_format": "%Y"}, "only applies"),
        ({"step": "cast", "dtypes": {"a": "integer"}}, "integer"),
        ({"step": "drop_na", "how": "some"}, "some"),
        ({"step": "drop_na", "colums": ["a"]}, "colums"),
    ],
)
def test_invalid_configs(config: dict, expected: str) -> None:
    with pytest.raises(ValidationError, match=expected):
        make(config)


def test_union_builds_step_instances() -> None:
    adapter = TypeAdapter(list[registry.union("handler")])
    steps = adapter.validate_python([{"step": "drop_na"}, {"step": "fill_na", "strategy": "mean", "columns": ["a"]}])
    assert isinstance(steps[0], handler.DropNa)
    assert isinstance(steps[1], handler.FillNa) and steps[1].columns == ["a"]
    with pytest.raises(ValidationError, match="fill_nan"):
        adapter.validate_python([{"step": "fill_nan"}])


# -- behaviour --------------------------------------------------------------------------
def test_drop_na(df: pd.DataFrame) -> None:
    out = make({"step": "drop_na"}).transform(df, None)
    assert out["a"].tolist() == [1.0, 4.0, 100.0]
    assert isinstance(out.index, pd.RangeIndex)
    out = make({"step": "drop_na", "columns": ["a", "b"], "how": "all"}).transform(df, None)
    assert len(out) == 6
    out = make({"step": "drop_na", "columns": ["b"]}).transform(df, None)
    assert out["n"].tolist() == [5, 4, 2, 1]


def test_fill_na_value(df: pd.DataFrame) -> None:
    step = make({"step": "fill_na", "value": 0, "columns": ["a"]})
    assert step.fit(df) == {}
    assert not step.needs_whole_stream(fitting=True)
    out = step.transform(df, None)
    assert out["a"].tolist() == [1.0, 0.0, 3.0, 4.0, 100.0, 3.0]
    assert out["b"].isna().sum() == 2  # other columns untouched
    text = make({"step": "fill_na", "value": "?"}).transform(df, None)
    assert text["b"].tolist() == ["x", "y", "?", "y", "z", "?"]
    assert text["a"].tolist()[1] == "?"  # a number column filled with text widens to object


def test_fill_na_mean_uses_stored_statistics(df: pd.DataFrame) -> None:
    step = make({"step": "fill_na", "strategy": "mean", "columns": ["a"]})
    assert step.needs_whole_stream(fitting=True) and not step.needs_whole_stream(fitting=False)
    state = step.fit(df)
    assert state == {"fill": {"a": pytest.approx(22.2)}}
    assert type(state["fill"]["a"]) is float
    assert step.transform(df, state)["a"][1] == pytest.approx(22.2)
    new = pd.DataFrame({"a": [1000.0, np.nan, 3000.0]})
    assert step.transform(new, state)["a"].tolist() == [1000.0, pytest.approx(22.2), 3000.0]


def test_fill_na_median_and_mode(df: pd.DataFrame) -> None:
    median = make({"step": "fill_na", "strategy": "median", "columns": ["a"]})
    assert median.fit(df) == {"fill": {"a": 3.0}}
    mode = make({"step": "fill_na", "strategy": "mode"})
    state = mode.fit(df)
    assert state["fill"]["b"] == "y" and state["fill"]["a"] == 3.0 and type(state["fill"]["n"]) is int
    assert mode.transform(df, state)["b"].tolist() == ["x", "y", "y", "y", "z", "y"]
    # without columns, mean applies to the numeric columns only
    assert set(make({"step": "fill_na", "strategy": "mean"}).fit(df)["fill"]) == {"a", "n"}


def test_fill_na_mean_of_nullable_ints_and_text_columns() -> None:
    ints = pd.DataFrame({"i": pd.array([1, None, 2], dtype="Int64")})
    step = make({"step": "fill_na", "strategy": "mean", "columns": ["i"]})
    assert step.transform(ints, step.fit(ints))["i"].tolist() == [1.0, 1.5, 2.0]
    with pytest.raises(DataError, match="column 'b'"):
        make({"step": "fill_na", "strategy": "median", "columns": ["b"]}).fit(pd.DataFrame({"b": ["x", None]}))


def test_fill_na_mode_of_datetimes_round_trips_through_json() -> None:
    df = pd.DataFrame({"t": pd.to_datetime(["2024-01-02", None, "2024-01-02", "2024-03-04"])})
    step = make({"step": "fill_na", "strategy": "mode"})
    state = json.loads(json.dumps(step.fit(df)))
    out = step.transform(df, state)
    assert out["t"].dtype == df["t"].dtype and out["t"][1] == pd.Timestamp("2024-01-02")


def test_filter(df: pd.DataFrame) -> None:
    out = make({"step": "filter", "expr": "a >= 3 and b in ['y', 'z']"}).transform(df, None)
    assert out["n"].tolist() == [2, 1]
    assert list(out.index) == [0, 1]
    assert len(make({"step": "filter", "expr": "isnull(b)"}).transform(df, None)) == 2
    with pytest.raises(DataError, match="missing_col"):
        make({"step": "filter", "expr": "missing_col > 1"}).transform(df, None)


def test_rename(df: pd.DataFrame) -> None:
    out = make({"step": "rename", "columns": {"a": "alpha", "b": "beta"}}).transform(df, None)
    assert list(out.columns) == ["alpha", "beta", "n", "s"]
    with pytest.raises(DataError, match="nope"):
        make({"step": "rename", "columns": {"nope": "x"}}).transform(df, None)
    with pytest.raises(DataError, match="more than once"):
        make({"step": "rename", "columns": {"a": "n"}}).transform(df, None)


def test_cast(df: pd.DataFrame) -> None:
    step = make({"step": "cast", "dtypes": {"n": "float", "a": "int", "b": "category"}, "errors": "null"})
    out = step.transform(df, step.fit(df))
    assert out["n"].dtype == "float64"
    assert out["a"].dtype == "Int64" and out["a"].tolist()[:3] == [1, pd.NA, 3]
    assert isinstance(out["b"].dtype, pd.CategoricalDtype)
    assert make({"step": "cast", "dtypes": {"n": "str"}}).transform(df, None)["n"].tolist()[0] == "5"
    ok = make({"step": "cast", "dtypes": {"s": "int"}}).transform(df.iloc[:3], None)
    assert ok["s"].dtype == "int64" and ok["s"].tolist() == [1, 2, 3]


def test_cast_errors_raise_names_column_and_value(df: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"column 's' has value 'oops' that cannot be converted to int"):
        make({"step": "cast", "dtypes": {"s": "int"}}).transform(df, None)
    with pytest.raises(DataError, match=r"value 2\.5 "):
        make({"step": "cast", "dtypes": {"x": "int"}}).transform(pd.DataFrame({"x": [1.0, 2.5]}), None)
    nulls = make({"step": "cast", "dtypes": {"s": "int"}, "errors": "null"}).transform(df, None)
    assert nulls["s"].dtype == "Int64" and nulls["s"].isna().tolist() == [False, False, False, True, False, False]


def test_cast_bool_and_datetime() -> None:
    df = pd.DataFrame(
        {
            "flag": ["Yes", "no", None, "TRUE"],
            "num": [1, 0, 1, 0],
            "when": ["2024-01-02", "2024-01-03T10:00:00", None, "2024-02-01"],
            "eu": ["02/01/2024", "03/01/2024", None, "01/02/2024"],
        }
    )
    step = make(
        {
            "step": "cast",
            "dtypes": {"flag": "bool", "num": "bool", "when": "datetime", "eu": "datetime"},
            "datetime_format": "%d/%m/%Y",
        }
    )
    with pytest.raises(DataError, match="column 'when'"):  # the format applies to every datetime column
        step.transform(df, None)
    step = make({"step": "cast", "dtypes": {"flag": "bool", "num": "bool", "when": "datetime"}})
    out = step.transform(df, None)
    assert out["flag"].dtype == "boolean" and out["flag"].tolist() == [True, False, pd.NA, True]
    assert out["num"].dtype == bool and out["num"].tolist() == [True, False, True, False]
    assert out["when"][1] == pd.Timestamp("2024-01-03 10:00") and pd.isna(out["when"][2])
    eu = make({"step": "cast", "dtypes": {"eu": "datetime"}, "datetime_format": "%d/%m/%Y"}).transform(df, None)
    assert eu["eu"][3] == pd.Timestamp("2024-02-01")
    with pytest.raises(DataError, match="'maybe'"):
        make({"step": "cast", "dtypes": {"x": "bool"}}).transform(pd.DataFrame({"x": ["yes", "maybe"]}), None)


def test_select_and_drop_columns(df: pd.DataFrame) -> None:
    assert list(make({"step": "select", "columns": ["n", "a"]}).transform(df, None).columns) == ["n", "a"]
    with pytest.raises(DataError, match="zzz"):
        make({"step": "select", "columns": ["zzz"]}).transform(df, None)
    assert list(make({"step": "drop_columns", "columns": ["b"]}).transform(df, None).columns) == ["a", "n", "s"]
    with pytest.raises(DataError, match="zzz"):
        make({"step": "drop_columns", "columns": ["b", "zzz"]}).transform(df, None)
    ignored = make({"step": "drop_columns", "columns": ["b", "zzz"], "missing": "ignore"}).transform(df, None)
    assert list(ignored.columns) == ["a", "n", "s"]


def test_dedupe(df: pd.DataFrame) -> None:
    step = make({"step": "dedupe", "columns": ["a"]})
    assert step.needs_whole_stream(fitting=False) and step.needs_whole_stream(fitting=True)
    assert step.transform(df, None)["n"].tolist() == [5, 4, 3, 2, 1]
    assert make({"step": "dedupe", "columns": ["a"], "keep": "last"}).transform(df, None)["n"].tolist() == [
        5,
        4,
        2,
        1,
        3,
    ]
    assert len(make({"step": "dedupe"}).transform(df, None)) == 5  # rows 2 and 5 are equal throughout


def test_clip_fixed_bounds(df: pd.DataFrame) -> None:
    step = make({"step": "clip", "columns": ["a"], "upper": 10})
    assert step.fit(df) == {} and not step.needs_whole_stream(fitting=True)
    assert step.transform(df, None)["a"].tolist()[-2:] == [10.0, 3.0]
    with pytest.raises(DataError, match="column 'b' must be numeric"):
        make({"step": "clip", "columns": ["b"], "lower": 0}).transform(df, None)


def test_clip_quantiles_are_learned_and_stored() -> None:
    train = pd.DataFrame({"x": np.arange(101, dtype=float)})
    step = make({"step": "clip", "columns": ["x"], "quantiles": [0.1, 0.9]})
    assert step.needs_whole_stream(fitting=True) and not step.needs_whole_stream(fitting=False)
    state = step.fit(train)
    assert state == {"bounds": {"x": [10.0, 90.0]}}
    out = step.transform(pd.DataFrame({"x": [-5.0, 50.0, 500.0]}), state)
    assert out["x"].tolist() == [10.0, 50.0, 90.0]


def test_sort_is_stable_and_resets_the_index(df: pd.DataFrame) -> None:
    step = make({"step": "sort", "by": "a"})
    assert step.by == ["a"] and step.needs_whole_stream(fitting=False)
    out = step.transform(df, None)
    assert out["n"].tolist() == [5, 3, 3, 2, 1, 4]  # the two 3.0 rows keep their order; NaN last
    assert isinstance(out.index, pd.RangeIndex)
    out = make({"step": "sort", "by": ["b", "n"], "ascending": [False, True]}).transform(df, None)
    assert out["n"].tolist() == [1, 2, 4, 5, 3, 3]
    desc = make({"step": "sort", "by": "a", "ascending": False}).transform(df, None)
    assert desc["n"].tolist() == [1, 2, 3, 3, 5, 4]


def test_cast_category_uses_the_learned_categories(df: pd.DataFrame) -> None:
    step = make({"step": "cast", "dtypes": {"b": "category"}})
    assert step.needs_whole_stream(fitting=True) and not step.needs_whole_stream(fitting=False)
    state = step.fit(df)
    assert state == {"categories": {"b": ["x", "y", "z"]}}
    batch = pd.DataFrame({"b": ["z", None]})
    assert list(step.transform(batch, state)["b"].cat.categories) == ["x", "y", "z"]
    with pytest.raises(DataError, match=r"value 'w' .*not one of the categories"):
        step.transform(pd.DataFrame({"b": ["w"]}), state)
    lenient = make({"step": "cast", "dtypes": {"b": "category"}, "errors": "null"})
    assert lenient.transform(pd.DataFrame({"b": ["w", "x"]}), state)["b"].isna().tolist() == [True, False]
    assert make({"step": "cast", "dtypes": {"n": "int"}}).fit(df) == {}


NAMES_NO_COLUMN = [  # configs that require no particular column
    {"step": "drop_na"},
    {"step": "fill_na", "value": "missing"},
    {"step": "fill_na", "strategy": "mean"},
    {"step": "fill_na", "strategy": "mode"},
    {"step": "drop_columns", "columns": ["b", "zzz"], "missing": "ignore"},
]


@pytest.mark.parametrize("config", [c for c in CONFIGS if c not in NAMES_NO_COLUMN], ids=lambda c: c["step"])
def test_missing_columns_are_data_errors(config: dict) -> None:
    with pytest.raises(DataError, match="not in the data"):
        make(config).transform(pd.DataFrame({"other": [1.0, 2.0]}), None)


def test_cast_numbers_to_datetime_as_text() -> None:
    df = pd.DataFrame({"day": [20240131.0, np.nan]})
    out = make({"step": "cast", "dtypes": {"day": "datetime"}, "datetime_format": "%Y%m%d"}).transform(df, None)
    assert out["day"][0] == pd.Timestamp("2024-01-31") and pd.isna(out["day"][1])


def test_fill_na_text_value_leaves_time_columns_as_objects() -> None:
    df = pd.DataFrame({"t": pd.to_datetime(["2024-01-02", None])})
    out = make({"step": "fill_na", "value": "unknown"}).transform(df, None)
    assert out["t"].tolist()[1] == "unknown"
