"""The built-in file and inline sources: batches, columns, dtypes, volume keys and error messages."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from mlrm.context import StepContext
from mlrm.errors import DataError, NotFoundError
from mlrm.steps import registry
from mlrm.volume.local import LocalVolume
from services.collector.sources import CsvSource, JsonlSource, ParquetSource, RecordsSource
from services.collector.sources.chunks import row_chunks


@pytest.fixture
def ctx(tmp_path: Path) -> StepContext:
    return StepContext(volume=LocalVolume(tmp_path / "vol"), run_id="r1", step="collect", base_dir=tmp_path)


def rows(n: int = 10) -> pd.DataFrame:
    return pd.DataFrame({"id": range(n), "score": [i * 1.5 for i in range(n)], "label": [f"l{i}" for i in range(n)]})


def read(source, ctx: StepContext, batch_size: int = 3) -> list[pd.DataFrame]:
    return list(source.read(ctx, batch_size))


def joined(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True)


def test_every_source_is_registered() -> None:
    assert {"csv", "jsonl", "parquet", "records", "http"} <= set(registry.names("source"))
    assert registry.get("source", "csv") is CsvSource


# -- csv ---------------------------------------------------------------------------------
def test_csv_reads_in_batches_of_the_requested_size(ctx: StepContext, tmp_path: Path) -> None:
    rows().to_csv(tmp_path / "data.csv", index=False)
    frames = read(CsvSource(step="csv", path="data.csv"), ctx)
    assert [len(f) for f in frames] == [3, 3, 3, 1]
    pd.testing.assert_frame_equal(joined(frames), rows())


def test_csv_columns_and_dtypes(ctx: StepContext, tmp_path: Path) -> None:
    rows().to_csv(tmp_path / "data.csv", index=False)
    source = CsvSource(step="csv", path="data.csv", columns=["label", "id"], dtypes={"id": "float", "label": "str"})
    df = joined(read(source, ctx))
    assert list(df.columns) == ["label", "id"]
    assert df["id"].dtype == "float64"
    assert df["id"].tolist() == [float(i) for i in range(10)]


def test_csv_from_a_volume_key(ctx: StepContext) -> None:
    ctx.volume.put_bytes("raw/data.csv", rows().to_csv(index=False).encode())
    frames = read(CsvSource(step="csv", key="raw/data.csv"), ctx, batch_size=4)
    assert [len(f) for f in frames] == [4, 4, 2]
    pd.testing.assert_frame_equal(joined(frames), rows())


def test_csv_options_delimiter_nulls_and_no_header(ctx: StepContext, tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("1;-\n2;b\n")
    source = CsvSource(
        step="csv", path="data.txt", delimiter=";", header=False, column_names=["n", "s"], null_values=["-"]
    )
    df = joined(read(source, ctx))
    assert df["n"].tolist() == [1, 2]
    assert df["s"].isna().tolist() == [True, False]


def test_csv_blank_lines_are_ignored(ctx: StepContext, tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("\n\na,b\n1,2\n\n3,4\n")
    df = joined(read(CsvSource(step="csv", path="data.csv", columns=["b"]), ctx))
    assert df.to_dict("list") == {"b": [2, 4]}


def test_csv_header_renamed_by_column_names(ctx: StepContext, tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    df = joined(read(CsvSource(step="csv", path="data.csv", column_names=["x", "y"]), ctx))
    assert df.to_dict("records") == [{"x": 1, "y": 2}]


def test_csv_bad_row_is_an_error_naming_file_and_line(ctx: StepContext, tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a,b\n1,2\n3,4\n5\n6,7\n")
    with pytest.raises(DataError) as err:
        read(CsvSource(step="csv", path="data.csv"), ctx)
    assert "data.csv" in str(err.value)
    assert "line 4: expected 2 columns, got 1" in str(err.value)


def test_csv_bad_row_line_number_counts_earlier_chunks(ctx: StepContext, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("services.collector.sources.delimited.CHUNK_SIZE", 64)
    lines = ["a,b", *(f"{i},{i}" for i in range(100))]
    lines[80] = "oops"
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="line 81: expected 2 columns, got 1"):
        read(CsvSource(step="csv", path="data.csv"), ctx)


def test_csv_bad_rows_skipped_with_a_warning(ctx: StepContext, tmp_path: Path, caplog) -> None:
    (tmp_path / "data.csv").write_text("a,b\n1,2\n3\n4,5,6\n7,8\n")
    with caplog.at_level(logging.WARNING):
        df = joined(read(CsvSource(step="csv", path="data.csv", on_bad_rows="skip"), ctx))
    assert df.to_dict("records") == [{"a": 1, "b": 2}, {"a": 7, "b": 8}]
    assert "skipped 2 row(s)" in caplog.text


def test_csv_conversion_error_names_the_file(ctx: StepContext, tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a,b\n1,2\nx,3\n")
    with pytest.raises(DataError) as err:
        read(CsvSource(step="csv", path="data.csv", dtypes={"a": "int"}), ctx)
    message = str(err.value)
    assert "data.csv" in message and "int64" in message and "'x'" in message
    assert "\n" not in message


def test_csv_type_change_after_the_first_chunk_suggests_dtypes(ctx: StepContext, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("services.collector.sources.delimited.CHUNK_SIZE", 32)
    (tmp_path / "data.csv").write_text("a\n" + "1\n" * 40 + "1.5\n")
    with pytest.raises(DataError, match="set dtypes"):
        read(CsvSource(step="csv", path="data.csv"), ctx)
    df = joined(read(CsvSource(step="csv", path="data.csv", dtypes={"a": "float"}), ctx, batch_size=100))
    assert len(df) == 41 and df["a"].iloc[-1] == 1.5


def test_csv_missing_file(ctx: StepContext, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"data file not found: .*nope\.csv"):
        read(CsvSource(step="csv", path="nope.csv"), ctx)


def test_missing_object_in_the_volume(ctx: StepContext) -> None:
    with pytest.raises(NotFoundError, match=r"nope\.csv"):
        read(CsvSource(step="csv", key="nope.csv"), ctx)


def test_csv_missing_column_lists_the_file_columns(ctx: StepContext, tmp_path: Path) -> None:
    rows().to_csv(tmp_path / "data.csv", index=False)
    with pytest.raises(DataError) as err:
        read(CsvSource(step="csv", path="data.csv", columns=["id", "nope"]), ctx)
    assert "nope" in str(err.value) and "id, score, label" in str(err.value)


def test_csv_empty_and_header_only(ctx: StepContext, tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("a,b\n")
    assert [f.shape for f in read(CsvSource(step="csv", path="empty.csv"), ctx)] == [(0, 0)]
    [frame] = read(CsvSource(step="csv", path="header.csv"), ctx)
    assert list(frame.columns) == ["a", "b"] and frame.empty


def test_csv_quoted_line_breaks_across_chunks(ctx: StepContext, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("services.collector.sources.delimited.CHUNK_SIZE", 16)
    (tmp_path / "data.csv").write_text('n,text\n1,"first\nsecond\nthird"\n2,plain\n3,"a, b"\n')
    df = joined(read(CsvSource(step="csv", path="data.csv"), ctx))
    assert df["text"].tolist() == ["first\nsecond\nthird", "plain", "a, b"]


def test_row_chunks_end_at_row_boundaries() -> None:
    data = b"".join(b'%d,"x\ny"\n' % i for i in range(50))
    pieces = list(row_chunks(io.BytesIO(data), 20))
    assert b"".join(pieces) == data
    assert all(p.endswith(b'"\n') for p in pieces)
    assert list(row_chunks(io.BytesIO(b"a\rb\rc"), 2)) == [b"a\r", b"b\r", b"c"]


def test_csv_header_names_may_hold_quoted_line_breaks(ctx: StepContext, tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_bytes(b'"first\r\nname",b\n1,2\n')
    assert joined(read(CsvSource(step="csv", path="data.csv"), ctx)).to_dict("list") == {"first\r\nname": [1], "b": [2]}


@pytest.mark.parametrize("chunk", [1 << 20, 16])
def test_lines_longer_than_max_line_bytes(ctx: StepContext, tmp_path: Path, monkeypatch, chunk: int) -> None:
    monkeypatch.setattr("services.collector.sources.delimited.CHUNK_SIZE", chunk)
    monkeypatch.setattr("services.collector.sources.jsonl.CHUNK_SIZE", chunk)
    (tmp_path / "data.csv").write_text("a,b\nq,2\n" + "x" * 100 + ",3\nr,5\n")
    (tmp_path / "data.jsonl").write_text('{"a": 1}\n\n{"a": "' + "x" * 100 + '"}\n')
    with pytest.raises(DataError, match=r"data\.csv: line 3 is longer than 50 bytes \(max_line_bytes\)"):
        read(CsvSource(step="csv", path="data.csv", max_line_bytes=50), ctx)
    with pytest.raises(DataError, match=r"data\.jsonl: line 3 is longer than 50 bytes \(max_line_bytes\)"):
        read(JsonlSource(step="jsonl", path="data.jsonl", max_line_bytes=50), ctx)
    assert len(joined(read(CsvSource(step="csv", path="data.csv", max_line_bytes=200), ctx))) == 3


def test_row_chunks_bound_a_line_without_end() -> None:
    endless = io.BytesIO(b"a\n" + b"x" * 10_000)
    with pytest.raises(DataError, match=r"in\.csv: line 2 is longer than 100 bytes"):
        list(row_chunks(endless, 16, max_line=100, where="in.csv"))
    assert endless.tell() < 200  # stopped reading soon after the limit


def test_binary_file_is_not_csv(ctx: StepContext, tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_bytes(b"a,b\n1,2\n\x00\x01\x02\xff\n")
    with pytest.raises(DataError, match=r"data\.csv: line 3: not a UTF-8 text file"):
        read(CsvSource(step="csv", path="data.csv"), ctx)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "exactly one of 'path'"),
        ({"path": "a.csv", "key": "a.csv"}, "exactly one of 'path'"),
        ({"path": "a.csv", "header": False}, "needs 'column_names'"),
        ({"path": "a.csv", "columns": ["a"], "dtypes": {"b": "int"}}, "not listed in columns: b"),
        ({"path": "a.csv", "dtypes": {"a": "decimal"}}, "dtypes"),
        ({"path": "a.csv", "delimiter": ";;"}, "delimiter"),
        ({"path": "a.csv", "delimiter": "é"}, "one ASCII character"),
        ({"path": "a.csv", "delimiter": "\n"}, "one ASCII character"),
        ({"path": "a.csv", "delimiter": '"'}, "one ASCII character"),
        ({"path": "a.csv", "max_line_bytes": 0}, "max_line_bytes"),
    ],
)
def test_csv_options_are_validated(options: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CsvSource(step="csv", **options)


# -- jsonl -------------------------------------------------------------------------------
def test_jsonl_reads_in_batches(ctx: StepContext, tmp_path: Path) -> None:
    rows().to_json(tmp_path / "data.jsonl", orient="records", lines=True)
    frames = read(JsonlSource(step="jsonl", path="data.jsonl"), ctx)
    assert [len(f) for f in frames] == [3, 3, 3, 1]
    pd.testing.assert_frame_equal(joined(frames), rows())


def test_jsonl_columns_dtypes_and_key(ctx: StepContext) -> None:
    text = '{"a": 1, "b": "2024-01-02T03:04:05"}\n\n{"a": 2, "b": null, "c": true}\n'
    ctx.volume.put_bytes("in/data.jsonl", text.encode())
    source = JsonlSource(step="jsonl", key="in/data.jsonl", columns=["b", "a"], dtypes={"a": "float", "b": "datetime"})
    df = joined(read(source, ctx, batch_size=1))
    assert list(df.columns) == ["b", "a"]
    assert df["a"].dtype == "float64"
    assert df["b"].iloc[0] == pd.Timestamp("2024-01-02 03:04:05") and pd.isna(df["b"].iloc[1])


def test_jsonl_column_appearing_after_the_first_batch(ctx: StepContext, tmp_path: Path) -> None:
    (tmp_path / "data.jsonl").write_text('{"a": 1}\n{"a": 2}\n{"a": 3, "b": "x"}\n')
    source = JsonlSource(step="jsonl", path="data.jsonl", columns=["a", "b"])
    with pytest.raises(DataError, match="column"):  # the first batch decides which columns exist
        read(source, ctx, batch_size=2)
    (tmp_path / "data.jsonl").write_text('{"a": 1, "b": "y"}\n{"a": 2}\n{"a": 3, "b": "x"}\n')
    frames = read(source, ctx, batch_size=1)
    assert [list(f.columns) for f in frames] == [["a", "b"]] * 3
    assert joined(frames)["b"].isna().tolist() == [False, True, False]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1}\n{"a": 2,}\n', r"data\.jsonl: line 2: invalid JSON"),
        ('{"a": 1}\n\n[1, 2]\n', "line 3: expected a JSON object, got list"),
        ('{"a": 1}\r\n{"a": ' + "[" * 100_000 + "]" * 100_000 + "}\r\n", "line 2: invalid JSON: .* nested too deeply"),
        ('{"a": 1}\n{"a": ' + "9" * 10_000 + "}\n", "line 2: invalid JSON: a number has more than 4300 digits"),
        (b'{"a": 1}\n{"a": "\xff"}\n', "line 2: not UTF-8 text"),
    ],
)
def test_jsonl_bad_lines(ctx: StepContext, tmp_path: Path, text: str | bytes, message: str) -> None:
    (tmp_path / "data.jsonl").write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(DataError, match=message):
        read(JsonlSource(step="jsonl", path="data.jsonl"), ctx)


def test_jsonl_missing_column_and_bad_value(ctx: StepContext, tmp_path: Path) -> None:
    (tmp_path / "data.jsonl").write_text('{"a": 1, "b": 2}\n{"a": "x", "b": 3}\n')
    with pytest.raises(DataError, match=r"column\(s\) z not found \(the data has: a, b\)"):
        read(JsonlSource(step="jsonl", path="data.jsonl", columns=["z"]), ctx)
    with pytest.raises(DataError, match=r"data\.jsonl: column 'a': .*'x'"):
        read(JsonlSource(step="jsonl", path="data.jsonl", dtypes={"a": "int"}), ctx)


# -- parquet -----------------------------------------------------------------------------
def test_parquet_reads_in_batches_across_row_groups(ctx: StepContext, tmp_path: Path) -> None:
    pq.write_table(pa.Table.from_pandas(rows(), preserve_index=False), tmp_path / "data.parquet", row_group_size=4)
    frames = read(ParquetSource(step="parquet", path="data.parquet"), ctx)
    assert [len(f) for f in frames] == [3, 3, 3, 1]
    pd.testing.assert_frame_equal(joined(frames), rows())


def test_parquet_columns_dtypes_and_pandas_index(ctx: StepContext, tmp_path: Path) -> None:
    rows().set_index("label").to_parquet(tmp_path / "data.parquet")  # the index is stored as a column
    assert list(joined(read(ParquetSource(step="parquet", path="data.parquet"), ctx)).columns) == ["id", "score"]
    source = ParquetSource(step="parquet", path="data.parquet", columns=["score", "id"], dtypes={"id": "str"})
    df = joined(read(source, ctx))
    assert list(df.columns) == ["score", "id"]
    assert df["id"].tolist() == [str(i) for i in range(10)]


def test_parquet_from_a_non_seekable_volume_stream(ctx: StepContext, tmp_path: Path, monkeypatch) -> None:
    buffer = io.BytesIO()
    rows().to_parquet(buffer, index=False)
    ctx.volume.put_bytes("data.parquet", buffer.getvalue())

    class Unseekable(io.RawIOBase):
        def __init__(self, raw) -> None:
            self.raw = raw

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            data = self.raw.read(len(b))
            b[: len(data)] = data
            return len(data)

        def close(self) -> None:
            self.raw.close()
            super().close()

    real = ctx.volume.open_read
    monkeypatch.setattr(ctx.volume, "open_read", lambda key: Unseekable(real(key)))
    frames = read(ParquetSource(step="parquet", key="data.parquet"), ctx, batch_size=5)
    assert [len(f) for f in frames] == [5, 5]
    pd.testing.assert_frame_equal(joined(frames), rows())


def test_parquet_corrupt_row_group(ctx: StepContext, tmp_path: Path) -> None:
    pq.write_table(pa.table({"x": list(range(30_000))}), tmp_path / "data.parquet", row_group_size=10_000)
    page = pq.ParquetFile(tmp_path / "data.parquet").metadata.row_group(1).column(0).data_page_offset
    data = bytearray((tmp_path / "data.parquet").read_bytes())
    data[page : page + 64] = b"\xff" * 64  # the page header of the second row group
    (tmp_path / "data.parquet").write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"data\.parquet: row group 2 of 3 is corrupt or unreadable"):
        read(ParquetSource(step="parquet", path="data.parquet"), ctx, batch_size=1000)


def test_parquet_errors(ctx: StepContext, tmp_path: Path) -> None:
    rows().to_parquet(tmp_path / "data.parquet", index=False)
    (tmp_path / "fake.parquet").write_text("not parquet")
    with pytest.raises(DataError, match=r"column\(s\) nope not found \(the data has: id, score, label\)"):
        read(ParquetSource(step="parquet", path="data.parquet", columns=["nope"]), ctx)
    with pytest.raises(DataError, match=r"fake\.parquet: not a readable Parquet file"):
        read(ParquetSource(step="parquet", path="fake.parquet"), ctx)
    with pytest.raises(DataError, match=r"data\.parquet: column 'label': .*'l\d' as a scalar of type int64"):
        read(ParquetSource(step="parquet", path="data.parquet", dtypes={"label": "int"}), ctx)
    with pytest.raises(NotFoundError, match="data file not found"):
        read(ParquetSource(step="parquet", path="nope.parquet"), ctx)


# -- records -----------------------------------------------------------------------------
def test_records_in_batches_with_columns_and_dtypes(ctx: StepContext) -> None:
    records = rows(7).to_dict("records")
    frames = read(RecordsSource(step="records", records=records), ctx)
    assert [len(f) for f in frames] == [3, 3, 1]
    pd.testing.assert_frame_equal(joined(frames), rows(7))
    source = RecordsSource(step="records", records=[{"x": 1, "y": "a"}, {"x": "2"}], columns=["x"], dtypes={"x": "int"})
    df = joined(read(source, ctx, batch_size=1))
    assert df.to_dict("list") == {"x": [1, 2]}


def test_records_errors(ctx: StepContext) -> None:
    with pytest.raises(ValidationError, match="at least 1"):
        RecordsSource(step="records", records=[])
    with pytest.raises(DataError, match=r"records: column\(s\) z not found \(the data has: x\)"):
        read(RecordsSource(step="records", records=[{"x": 1}], columns=["z"]), ctx)
    with pytest.raises(DataError, match=r"column 'x'.*truncated"):
        read(RecordsSource(step="records", records=[{"x": 1.5}], dtypes={"x": "int"}), ctx)
