"""The file sinks: ``csv``, ``jsonl`` and ``parquet``, each written batch by batch."""

from __future__ import annotations

import io
import json
import math
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date, datetime, time, timedelta
from typing import IO, Any, ClassVar, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from mlrm.errors import DataError
from mlrm.steps import register
from services.predict.sinks.base import FileSink


@register
class CsvSink(FileSink):
    """Write the rows as CSV: a header line, then one line per row (no index column)."""

    example = {"key": "conformance/sample.csv"}
    step: Literal["csv"]
    """Step type: `csv`."""
    takes_arrow: ClassVar[bool] = True

    def write_stream(self, stream: IO[bytes], batches: Iterator[pd.DataFrame | pa.Table], where: str) -> None:
        # Arrow's writer is ~10x faster than pandas'; pandas handles what Arrow cannot type. Arrow lets go of
        # the GIL while it formats, so later batches are formatted on two threads while this one reads the
        # next and writes each in order.
        schema: pa.Schema | None = None
        text: io.TextIOWrapper | None = None
        formatting: deque[Future[bytes]] = deque()
        try:
            with ThreadPoolExecutor(2, thread_name_prefix="mlrm-csv") as pool:
                for number, batch in enumerate(batches):
                    if text is None:
                        try:
                            table = _table(batch, schema)
                            if schema is None:  # the first batch, here: if Arrow cannot write it, pandas does
                                stream.write(_csv(table, header=True))
                                schema = table.schema
                            else:
                                formatting.append(pool.submit(_csv, table, header=False))
                                while len(formatting) > 2 or formatting[0].done():
                                    stream.write(formatting.popleft().result())
                                    if not formatting:
                                        break
                            continue
                        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                            if schema is not None:
                                raise
                            text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
                    frame = batch.to_pandas() if isinstance(batch, pa.Table) else batch
                    frame.to_csv(text, header=number == 0, index=False)
                while formatting:
                    stream.write(formatting.popleft().result())
            if text is not None:
                text.flush()
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DataError(f"{where}: batch does not fit the columns of the first batch: {exc}") from None
        finally:
            for pending in formatting:
                pending.cancel()
            if text is not None:
                text.detach()  # leave the byte stream to its owner


def _csv(table: pa.Table, header: bool) -> bytes:
    out = pa.BufferOutputStream()
    pa_csv.write_csv(table, out, pa_csv.WriteOptions(include_header=header))
    return out.getvalue().to_pybytes()


def _table(batch: pd.DataFrame | pa.Table, schema: pa.Schema | None) -> pa.Table:
    """A batch as an Arrow table, of ``schema`` when given (that of the first batch)."""
    if not isinstance(batch, pa.Table):
        return pa.Table.from_pandas(batch, schema=schema, preserve_index=False)
    if schema is None or batch.schema.equals(schema, check_metadata=False):
        return batch
    return batch.select(schema.names).cast(schema)  # as from_pandas(schema=...) would (ArrowInvalid if not)


@register
class JsonlSink(FileSink):
    """Write the rows as JSON Lines: one object per row; missing values (NaN, NaT) become `null`."""

    example = {"key": "conformance/sample.jsonl"}
    step: Literal["jsonl"]
    """Step type: `jsonl`."""

    def write_stream(self, stream: IO[bytes], batches: Iterator[pd.DataFrame], where: str) -> None:
        for batch in batches:
            rows = batch.astype(object).where(batch.notna(), None).to_dict("records")
            lines = "".join(json.dumps(row, default=_json_value, ensure_ascii=False) + "\n" for row in rows)
            stream.write(lines.encode())


def _json_value(value: Any) -> Any:
    """JSON for the values ``json`` does not know: timestamps, numpy scalars and arrays."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, np.generic):
        item = value.item()
        return None if isinstance(item, float) and math.isnan(item) else item
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


@register
class ParquetSink(FileSink):
    """Write the rows as one Parquet file; the first batch fixes the schema, later batches are cast to it."""

    example = {"key": "conformance/sample.parquet"}
    step: Literal["parquet"]
    """Step type: `parquet`."""
    takes_arrow: ClassVar[bool] = True

    def write_stream(self, stream: IO[bytes], batches: Iterator[pd.DataFrame | pa.Table], where: str) -> None:
        writer: pq.ParquetWriter | None = None
        try:
            for number, batch in enumerate(batches, start=1):
                schema = writer.schema if writer is not None else None
                try:
                    table = _table(batch, schema)
                except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                    reason = " ".join(str(exc).split())
                    what = "the schema of the first batch" if schema is not None else "Parquet"
                    raise DataError(f"{where}: batch {number} does not convert to {what}: {reason}") from None
                if writer is None:
                    writer = pq.ParquetWriter(stream, table.schema)
                writer.write_table(table)
            if writer is None:  # no batches at all: a valid file with no columns
                writer = pq.ParquetWriter(stream, pa.schema([]))
        finally:
            if writer is not None:
                writer.close()
