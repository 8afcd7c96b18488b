"""Table codecs: every format round-trips a table, and every bad body is refused with its status and a reason."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlrm.errors import DataError, NotAcceptableError, TooLargeError, UnsupportedMediaTypeError
from mlrm.web import tables

FRAME = pd.DataFrame({"x": [1.5, np.nan, -2.25], "n": [1, 2, 3], "s": ["a", None, "c"], "b": [True, False, True]})


@pytest.mark.parametrize("media", tables.MEDIA_TYPES)
def test_each_format_round_trips_values_and_nulls(media):
    back = tables.decode(tables.encode(FRAME, media), media)
    assert list(back.columns) == list(FRAME.columns)
    assert back["x"].tolist()[0] == 1.5 and np.isnan(back["x"].tolist()[1]) and back["x"].tolist()[2] == -2.25
    assert back["n"].tolist() == [1, 2, 3]
    assert back["s"].tolist()[0] == "a" and pd.isna(back["s"].tolist()[1])
    assert back["b"].tolist() == [True, False, True]


def test_content_type_parameters_and_aliases_are_understood():
    csv = b"a,b\n1,x\n"
    assert tables.decode(csv, "text/csv; charset=utf-8")["a"].tolist() == [1]
    sink = io.BytesIO()
    pq.write_table(pa.table({"a": [1]}), sink)
    assert tables.decode(sink.getvalue(), "application/x-parquet")["a"].tolist() == [1]


@pytest.mark.parametrize("content_type", [None, "", "text/plain", "application/xml", "multipart/form-data"])
def test_a_format_that_is_no_table_is_415_naming_the_formats(content_type):
    with pytest.raises(UnsupportedMediaTypeError, match="text/csv") as info:
        tables.decode(b"a\n1\n", content_type)
    assert info.value.http_status == 415


@pytest.mark.parametrize(
    ("body", "media", "reason"),
    [
        (b"{not json", tables.JSON, "not valid JSON"),
        (b'{"a": 1}', tables.JSON, "list of records"),
        (b"[1, 2]", tables.JSON, "list of records"),
        (b'[{"a": {"nested": 1}}]', tables.JSON, "nested"),
        (b"", tables.CSV, "not a valid CSV"),
        (b'a,b\n1,2,3\n"', tables.CSV, "not a valid CSV"),
        (b"PAR1 not really", tables.PARQUET, "not a valid Parquet"),
        (b"\xff\xff\xff\xff garbage", tables.ARROW, "not a valid Arrow"),
    ],
)
def test_a_body_that_does_not_decode_is_400_with_the_reason(body, media, reason):
    with pytest.raises(DataError, match=reason) as info:
        tables.decode(body, media)
    assert info.value.http_status == 400


def test_a_small_body_holding_a_huge_table_is_refused_before_it_is_built():
    sink = io.BytesIO()
    pq.write_table(pa.table({"a": np.zeros(100_000)}), sink, compression="zstd")
    assert len(sink.getvalue()) < 10_000  # zeros compress well
    with pytest.raises(TooLargeError, match="limit is 1000"):
        tables.decode(sink.getvalue(), tables.PARQUET, max_cells=1000)
    arrow = tables.encode(pd.DataFrame({"a": np.zeros(5000)}), tables.ARROW)
    with pytest.raises(TooLargeError):
        tables.decode(arrow, tables.ARROW, max_cells=1000)


@pytest.mark.parametrize(
    ("accept", "answer"),
    [
        (None, tables.CSV),
        ("*/*", tables.CSV),
        ("application/json", tables.JSON),
        ("text/csv;q=0.5, application/vnd.apache.parquet", tables.PARQUET),
        ("text/html, application/vnd.apache.arrow.stream;q=0.1", tables.ARROW),
        ("application/*", tables.JSON),
    ],
)
def test_the_answer_is_in_the_format_accept_prefers(accept, answer):
    assert tables.negotiate(accept, tables.CSV) == answer


def test_an_accept_header_that_takes_no_table_format_is_406():
    with pytest.raises(NotAcceptableError) as info:
        tables.negotiate("text/html, image/png", tables.CSV)
    assert info.value.http_status == 406
