"""The ``csv`` source: delimited text streamed with pyarrow's block reader."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import IO, Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from pydantic import Field, model_validator

from mlrm.errors import DataError
from mlrm.steps import register
from services.collector.sources.base import ARROW_TYPES, FileSource, arrow_reason, rechunk

log = logging.getLogger(__name__)

BLOCK_SIZE = 4 << 20
"""Bytes pyarrow parses at a time: memory per reader is a small multiple of this."""


class _BadRows:
    """pyarrow's invalid_row_handler: remembers the first bad row, counts them all, skips them."""

    def __init__(self) -> None:
        self.first: Any = None
        self.count = 0

    def __call__(self, row: Any) -> str:
        self.count += 1
        if self.first is None:
            self.first = row
        return "skip"


@register
class CsvSource(FileSource):
    """Read a CSV (or other delimited) file in batches, a few MB at a time."""

    step: Literal["csv"]
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    """The field separator: one character, such as `,`, `;` or a tab."""
    header: bool = True
    """Whether the first line holds the column names."""
    column_names: list[str] | None = Field(default=None, min_length=1)
    """Column names: required without a header; with one, they replace the file's names."""
    null_values: list[str] | None = None
    """Strings read as missing values (default: pyarrow's list: empty, `NA`, `NULL`, `NaN`...)."""
    on_bad_rows: Literal["error", "skip"] = "error"
    """Rows with the wrong number of fields: `error` stops with the line number, `skip` drops them."""

    @model_validator(mode="after")
    def _names_without_header(self) -> CsvSource:
        if not self.header and self.column_names is None:
            raise ValueError("a CSV without a header needs 'column_names'")
        return self

    def read_stream(self, stream: IO[bytes], where: str, batch_size: int) -> Iterator[pd.DataFrame]:
        bad = _BadRows()
        reader = self._open(stream, where, bad)
        self.check_columns(reader.schema.names, where)
        yield from rechunk(self._batches(reader, where, bad), batch_size, reader.schema)
        if bad.count:
            log.warning("%s: skipped %d row(s) with the wrong number of fields", where, bad.count)

    def _options(self, bad: _BadRows | None, selected: bool) -> dict[str, Any]:
        read = pacsv.ReadOptions(
            block_size=BLOCK_SIZE,
            use_threads=self.on_bad_rows == "skip",  # single-threaded parsing knows line numbers
            column_names=self.column_names,
            skip_rows=1 if self.header and self.column_names else 0,
        )
        parse = pacsv.ParseOptions(delimiter=self.delimiter, invalid_row_handler=bad)
        convert = pacsv.ConvertOptions(strings_can_be_null=True)
        if self.null_values is not None:
            convert.null_values = self.null_values
        if selected:
            convert.include_columns = self.columns or []
            convert.column_types = {c: ARROW_TYPES[t] for c, t in (self.dtypes or {}).items()}
        return {"read_options": read, "parse_options": parse, "convert_options": convert}

    def _open(self, stream: IO[bytes], where: str, bad: _BadRows) -> pacsv.CSVStreamingReader:
        try:
            return pacsv.open_csv(stream, **self._options(bad, selected=True))
        except pa.ArrowKeyError as exc:  # a column in `columns` is not in the file
            if not stream.seekable():
                raise DataError(f"{where}: {arrow_reason(exc)}") from None
            stream.seek(0)
            names = pacsv.open_csv(stream, **self._options(_BadRows(), selected=False)).schema.names
            self.check_columns(names, where)
            raise  # unreachable unless pyarrow and we disagree
        except pa.ArrowInvalid as exc:
            self._raise_bad_row(bad, where)
            raise DataError(f"{where}: {arrow_reason(exc)}") from None

    def _batches(self, reader: pacsv.CSVStreamingReader, where: str, bad: _BadRows) -> Iterator[pa.RecordBatch]:
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowInvalid as exc:
                self._raise_bad_row(bad, where)
                raise DataError(f"{where}: {arrow_reason(exc)}") from None
            self._raise_bad_row(bad, where)
            yield batch

    def _raise_bad_row(self, bad: _BadRows, where: str) -> None:
        if self.on_bad_rows == "error" and bad.first is not None:
            row = bad.first
            text = row.text if len(row.text) <= 80 else row.text[:77] + "..."
            raise DataError(
                f"{where}: line {row.number}: expected {row.expected_columns} columns, "
                f"got {row.actual_columns} ({text!r})"
            )
