"""The ``jsonl`` source: one JSON object per line, read line by line.

Lines are parsed with the standard library rather than pyarrow's block reader:
pyarrow infers the schema from the first block and fails when a later block
differs (a field first seen late, ints turning into floats), and its errors carry
no line numbers. Memory stays bounded by one batch of records and one chunk of text (a line
longer than ``max_line_bytes`` is refused).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import IO, Any, Literal

import pandas as pd
from pydantic import Field

from mlrm.errors import DataError, one_line
from mlrm.steps import register
from services.collector.sources.base import FileSource, TabularSource, records_in_batches
from services.collector.sources.chunks import DEFAULT_MAX_LINE_BYTES, row_chunks

CHUNK_SIZE = 1 << 20
"""Bytes read at a time."""


def read_jsonl(
    source: TabularSource,
    stream: IO[bytes],
    where: str,
    batch_size: int,
    max_line: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[pd.DataFrame]:
    """Frames of ``batch_size`` records from a JSON Lines byte stream (shared with the http source)."""
    first = True  # columns are checked on the first batch; later batches may lack some
    for records in records_in_batches(_records(stream, where, max_line), batch_size):
        yield source.frame_from_records(records, where, strict=first)
        first = False
    if first:  # no records at all: one empty frame
        yield source.frame_from_records([], where, strict=False)


def _records(stream: IO[bytes], where: str, max_line: int) -> Iterator[dict[str, Any]]:
    number = 0  # lines before this piece
    # JSON text holds no raw line breaks, so any line break ends a record: no quote counting.
    for piece in row_chunks(stream, CHUNK_SIZE, max_line=max_line, quotes=False, where=where):
        if number == 0:
            piece = piece.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark
        try:
            text = piece.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = number + piece.count(b"\n", 0, exc.start) + 1
            raise DataError(f"{where}: line {line}: not UTF-8 text ({exc.reason})") from None
        del piece
        if "\r" in text:  # \r\n or a lone \r, like universal newlines (str.splitlines would split more)
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines = text.split("\n")
        del text
        if lines and not lines[-1]:  # the piece ended with a line break
            lines.pop()
        for line in lines:
            number += 1
            if line.strip():
                yield parse_json_line(line, where, number)


def parse_json_line(line: str, where: str, number: int) -> dict[str, Any]:
    """One JSON object, or a DataError naming the line."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise DataError(f"{where}: line {number}: invalid JSON: {json_reason(exc)}") from None
    if not isinstance(record, dict):
        raise DataError(f"{where}: line {number}: expected a JSON object, got {type(record).__name__}")
    return record


def json_reason(exc: ValueError | RecursionError) -> str:
    """Why ``json.loads`` refused a text, in words a user can act on."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} (column {exc.colno})"
    if isinstance(exc, RecursionError):
        return "it is nested too deeply"
    if "integer string conversion" in str(exc):  # Python refuses integers of more than 4300 digits
        return f"a number has more than {sys.get_int_max_str_digits()} digits"
    return one_line(str(exc))


@register
class JsonlSource(FileSource):
    """Read a JSON Lines file (one JSON object per line) in batches; blank lines are ignored."""

    example = {"key": "conformance/sample.jsonl"}
    step: Literal["jsonl"]
    """Step type: `jsonl`."""

    max_line_bytes: int = Field(default=DEFAULT_MAX_LINE_BYTES, gt=0)
    """The longest line accepted, in bytes (16 MiB by default): a longer one stops the run with its
    line number, so one endless line cannot exhaust the memory."""

    def read_stream(self, stream: IO[bytes], where: str, batch_size: int) -> Iterator[pd.DataFrame]:
        yield from read_jsonl(self, stream, where, batch_size, self.max_line_bytes)
