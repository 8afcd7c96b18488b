"""The ``csv`` source: delimited text, parsed by pyarrow one row-aligned chunk at a time.

pyarrow's own streaming reader (``open_csv``) reads about 32 blocks ahead of the
consumer in a background thread, so its memory is 32x its block size. Cutting
the stream into chunks that end at a line break ourselves and parsing each with
``read_csv`` keeps exactly one chunk in memory, reads a network stream only as
fast as batches are consumed, and keeps row numbers exact across chunks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import IO, Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from pydantic import Field, field_validator, model_validator

from mlrm.errors import DataError
from mlrm.steps import register
from services.collector.sources.base import ARROW_TYPES, FileSource, arrow_reason, rechunk
from services.collector.sources.chunks import DEFAULT_MAX_LINE_BYTES, row_chunks

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
"""Bytes parsed at a time: a reader's memory is a small multiple of this."""


class _BadRows:
    """pyarrow's invalid_row_handler: remembers the first bad row, counts them all, skips them."""

    def __init__(self) -> None:
        self.first: tuple[int | None, int, int, str] | None = None
        self.count = 0
        self.offset = 0  # rows (header included) in the chunks before this one

    def __call__(self, row: Any) -> str:
        self.count += 1
        if self.first is None:
            number = None if row.number is None else row.number + self.offset
            self.first = (number, row.expected_columns, row.actual_columns, row.text)
        return "skip"


@register
class CsvSource(FileSource):
    """Read a CSV (or other delimited) file in batches, a few MB at a time."""

    example = {"key": "conformance/sample.csv"}
    step: Literal["csv"]
    """Step type: `csv`."""
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    """The field separator: one ASCII character, such as `,`, `;` or a tab."""
    header: bool = True
    """Whether the first line holds the column names."""
    column_names: list[str] | None = Field(default=None, min_length=1)
    """Column names: required without a header; with one, they replace the file's names."""
    null_values: list[str] | None = None
    """Strings read as missing values (default: pyarrow's list: empty, `NA`, `NULL`, `NaN`...)."""
    on_bad_rows: Literal["error", "skip"] = "error"
    """Rows with the wrong number of fields: `error` stops with the line number, `skip` drops them."""
    max_line_bytes: int = Field(default=DEFAULT_MAX_LINE_BYTES, gt=0)
    """The longest line accepted, in bytes (16 MiB by default): a longer one stops the run with its
    line number, so one endless line cannot exhaust the memory (reading takes a few times this)."""

    @field_validator("delimiter")
    @classmethod
    def _one_ascii_character(cls, delimiter: str) -> str:
        if not (delimiter == "\t" or " " <= delimiter <= "~") or delimiter == '"':
            raise ValueError(
                f"delimiter must be one ASCII character other than a quote or a line break, got {delimiter!r}"
            )
        return delimiter

    @model_validator(mode="after")
    def _names_without_header(self) -> CsvSource:
        if not self.header and self.column_names is None:
            raise ValueError("a CSV without a header needs 'column_names'")
        return self

    def read_stream(self, stream: IO[bytes], where: str, batch_size: int) -> Iterator[pd.DataFrame]:
        bad = _BadRows()
        empty = pa.schema([(name, pa.null()) for name in self.columns or self.column_names or []])
        chunks = row_chunks(stream, CHUNK_SIZE, max_line=self.max_line_bytes, where=where)
        yield from rechunk(self._tables(chunks, bad, where), batch_size, empty)
        if bad.count:
            log.warning("%s: skipped %d row(s) with the wrong number of fields", where, bad.count)

    def _tables(self, chunks: Iterator[bytes], bad: _BadRows, where: str) -> Iterator[pa.Table]:
        """Each chunk parsed on its own; later chunks get the names and the column types of the first.

        No local outlives its chunk (hence no ``enumerate``, whose cached tuple would hold one).
        """
        read = self._read_options()
        types = {c: ARROW_TYPES[t] for c, t in (self.dtypes or {}).items()}
        first = True
        lines = 0  # line breaks in the chunks before this one
        for chunk in chunks:
            if b"\x00" in chunk:  # a binary file, or UTF-16 text: pyarrow would print it as a "row"
                line = lines + chunk.count(b"\n", 0, chunk.index(b"\x00")) + 1
                raise DataError(f"{where}: line {line}: not a UTF-8 text file (it holds NUL bytes); is it CSV?")
            lines += chunk.count(b"\n")
            if first:
                names = self.column_names or self._header(chunk, read, where)
                self.check_columns(names, where)
            count = bad.count
            table = self._convert(chunk, read, types, bad, where, later=not first)
            del chunk  # free the text before the consumer takes its time with the rows
            yield table
            bad.offset += table.num_rows + bad.count - count + (1 if first and self.header else 0)
            if first:
                read = self._read_options(names)
                first = False
            # Later chunks keep the types seen so far; a column with only nulls yet stays open.
            types.update((f.name, f.type) for f in table.schema if f.type != pa.null() and f.name not in types)

    def _header(self, chunk: bytes, read: pacsv.ReadOptions, where: str) -> list[str]:
        """The column names on the first line (blank lines before it are ignored; quoted names may hold line breaks)."""
        text = chunk.lstrip(b"\r\n")
        try:
            return self._parse(text[: _first_row_end(text) + 1] or text, read).column_names
        except pa.ArrowInvalid as exc:
            raise DataError(f"{where}: line 1: cannot read the header: {arrow_reason(exc)}") from None

    def _convert(
        self,
        data: bytes,
        read: pacsv.ReadOptions,
        types: dict[str, pa.DataType],
        bad: _BadRows,
        where: str,
        later: bool = False,
    ) -> pa.Table:
        try:
            table = self._parse(data, read, types, bad)
        except pa.ArrowInvalid as exc:
            self._raise_bad_row(bad, where)
            hint = "; column types are inferred from the first rows: set dtypes" if later else ""
            raise DataError(f"{where}: {arrow_reason(exc)}{hint}") from None
        self._raise_bad_row(bad, where)
        return table

    def _read_options(self, names: list[str] | None = None) -> pacsv.ReadOptions:
        """How to read the first chunk (header as configured) or, given ``names``, a later one (no header)."""
        return pacsv.ReadOptions(
            use_threads=self.on_bad_rows == "skip",  # single-threaded parsing knows line numbers
            column_names=names or self.column_names,
            skip_rows=1 if self.header and self.column_names and not names else 0,
        )

    def _parse(
        self,
        data: bytes,
        read: pacsv.ReadOptions,
        types: dict[str, pa.DataType] | None = None,
        bad: _BadRows | None = None,
    ) -> pa.Table:
        read.block_size = len(data) + 1  # one block: line numbers and quoted line breaks stay right
        parse = pacsv.ParseOptions(delimiter=self.delimiter, invalid_row_handler=bad)
        convert = pacsv.ConvertOptions(strings_can_be_null=True)
        if self.null_values is not None:
            convert.null_values = self.null_values
        if types is not None:
            convert.include_columns = self.columns or []
            convert.column_types = types
        return pacsv.read_csv(pa.py_buffer(data), read_options=read, parse_options=parse, convert_options=convert)

    def _raise_bad_row(self, bad: _BadRows, where: str) -> None:
        if self.on_bad_rows == "error" and bad.first is not None:
            number, expected, actual, text = bad.first
            text = text if len(text) <= 80 else text[:77] + "..."
            raise DataError(f"{where}: line {number}: expected {expected} columns, got {actual} ({text!r})")


def _first_row_end(text: bytes) -> int:
    """Index of the line break ending the first row (line breaks in quoted values do not), or -1."""
    newline = b"\n" if b"\n" in text else b"\r"
    start = quotes = 0
    while (end := text.find(newline, start)) >= 0:
        quotes += text.count(b'"', start, end)
        if quotes % 2 == 0:
            return end
        start = end + 1
    return -1
