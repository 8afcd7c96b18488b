"""Columns: rows as named arrays, a DataFrame only on demand, no dtype lost either way."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlrm.columns import Columns


def test_a_matrix_becomes_columns_without_a_copy_or_a_dataframe():
    matrix = np.arange(6, dtype="float64").reshape(3, 2)
    rows = Columns.of_matrix(matrix, ["a", "b"])
    assert rows.names == ["a", "b"] and len(rows) == 3 and "a" in rows and "c" not in rows
    assert np.shares_memory(rows.arrays["b"], matrix) and rows.arrays["b"].tolist() == [1.0, 3.0, 5.0]
    assert rows._frame is None  # nothing asked for one
    assert rows.frame.to_dict("list") == {"a": [0.0, 2.0, 4.0], "b": [1.0, 3.0, 5.0]}
    assert rows.frame is rows.frame  # built once


def test_a_frame_of_one_dtype_is_read_as_one_block_and_its_index_is_dropped():
    frame = pd.DataFrame({"x": [1.0, 2.0], "y": [3.0, 4.0]}, index=[7, 9])  # a pipeline that dropped rows
    rows = Columns.of(frame)
    assert rows.frame is frame and len(rows) == 2 and "y" in rows
    assert {k: v.tolist() for k, v in rows.arrays.items()} == {"x": [1.0, 2.0], "y": [3.0, 4.0]}
    numbers = Columns.of(pd.DataFrame({"i": [1, 2], "f": [0.5, 1.5]})).arrays  # as a concatenation would make them
    assert numbers["i"].dtype == "float64" and numbers["i"].tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    "column",
    [
        pd.Series(["a", None], dtype="string"),
        pd.Series([1, None], dtype="Int64"),
        pd.Series(["x", "y"], dtype="category"),
        pd.Series(pd.to_datetime(["2026-01-01", "2026-01-02"]).tz_localize("UTC")),
        pd.Series([{"a": 1}, 3], dtype=object),
    ],
    ids=["text", "nullable-int", "category", "tz-datetime", "objects"],
)
def test_mixed_and_extension_columns_keep_their_dtype_both_ways(column):
    frame = pd.DataFrame({"n": [1.0, 2.0], "c": column})
    rows = Columns.of(frame)
    assert rows.arrays["n"].tolist() == [1.0, 2.0]
    again = Columns(rows.arrays).frame
    assert again["c"].dtype == frame["c"].dtype and again["n"].dtype == "float64"
    pd.testing.assert_series_equal(again["c"], frame["c"])


def test_bare_keeps_the_arrays_and_lets_the_frame_go():
    frame = pd.DataFrame({"x": [1.0, 2.0]})
    bare = Columns.bare(frame)
    assert bare._frame is None and bare.arrays["x"].tolist() == [1.0, 2.0] and len(bare) == 2
    arrays_only = Columns({"x": np.zeros(2)})
    assert Columns.bare(arrays_only) is arrays_only


def test_columns_take_arrays_or_a_frame_not_both_or_neither():
    with pytest.raises(TypeError):
        Columns()
    with pytest.raises(TypeError):
        Columns({"x": np.zeros(1)}, frame=pd.DataFrame({"x": [0.0]}))
    assert len(Columns({})) == 0 and Columns({}).names == []
