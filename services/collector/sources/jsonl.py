"""The ``jsonl`` source: one JSON object per line, read line by line.

Lines are parsed with the standard library rather than pyarrow's block reader:
pyarrow infers the schema from the first block and fails when a later block
differs (a field first seen late, ints turning into floats), and its errors carry
no line numbers. Memory stays bounded by one batch of records.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import IO, Any, Literal

import pandas as pd

from mlrm.errors import DataError
from mlrm.steps import register
from services.collector.sources.base import FileSource, TabularSource, records_in_batches


def read_jsonl(source: TabularSource, stream: IO[bytes], where: str, batch_size: int) -> Iterator[pd.DataFrame]:
    """Frames of ``batch_size`` records from a JSON Lines byte stream (shared with the http source)."""
    first = True  # columns are checked on the first batch; later batches may lack some
    for records in records_in_batches(_records(stream, where), batch_size):
        yield source.frame_from_records(records, where, strict=first)
        first = False
    if first:  # no records at all: one empty frame
        yield source.frame_from_records([], where, strict=False)


def _records(stream: IO[bytes], where: str) -> Iterator[dict[str, Any]]:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline=None)
    try:
        for number, line in enumerate(text, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: line {number}: invalid JSON: {exc.msg} (column {exc.colno})") from None
            if not isinstance(record, dict):
                raise DataError(f"{where}: line {number}: expected a JSON object, got {type(record).__name__}")
            yield record
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start} of a chunk)") from None
    finally:
        text.detach()  # the caller owns (and closes) the byte stream


@register
class JsonlSource(FileSource):
    """Read a JSON Lines file (one JSON object per line) in batches; blank lines are ignored."""

    step: Literal["jsonl"]
    """Step type: `jsonl`."""

    def read_stream(self, stream: IO[bytes], where: str, batch_size: int) -> Iterator[pd.DataFrame]:
        yield from read_jsonl(self, stream, where, batch_size)
