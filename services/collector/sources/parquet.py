"""The ``parquet`` source: row groups streamed with ``ParquetFile.iter_batches``."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from typing import IO, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlrm.errors import DataError
from mlrm.steps import register
from services.collector.sources.base import ARROW_TYPES, FileSource, arrow_reason, rechunk

SPOOL_IN_MEMORY = 16 << 20
"""A non-seekable volume stream is copied to a temporary file (kept in memory up to this size)."""


@register
class ParquetSource(FileSource):
    """Read a Parquet file in batches, one row group at a time; only the listed columns are decoded."""

    example = {"key": "conformance/sample.parquet"}
    step: Literal["parquet"]
    """Step type: `parquet`."""

    def read_stream(self, stream: IO[bytes], where: str, batch_size: int) -> Iterator[pd.DataFrame]:
        if stream.seekable():
            yield from self._read_seekable(stream, where, batch_size)
            return
        # Parquet keeps its index at the end of the file: it needs random access.
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
            shutil.copyfileobj(stream, spool, length=1 << 20)
            spool.seek(0)
            yield from self._read_seekable(spool, where, batch_size)

    def _read_seekable(self, stream: IO[bytes], where: str, batch_size: int) -> Iterator[pd.DataFrame]:
        try:
            # pre_buffer (the default) would read every row group ahead: the whole file.
            file = pq.ParquetFile(stream, pre_buffer=False, buffer_size=1 << 20)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"{where}: not a readable Parquet file ({arrow_reason(exc)})") from None
        with file:
            schema = file.schema_arrow
            self.check_columns(schema.names, where)
            index = (schema.pandas_metadata or {}).get("index_columns", [])
            names = self.columns or [n for n in schema.names if n not in index]  # no pandas index columns
            target = pa.schema([self._field(schema.field(name)) for name in names])
            batches = self._batches(file, batch_size, names, where)
            yield from rechunk(self._cast(batches, target, where), batch_size, target)

    @staticmethod
    def _batches(file: pq.ParquetFile, batch_size: int, names: list[str], where: str) -> Iterator[pa.RecordBatch]:
        """Record batches, one row group at a time, so that corrupt data is reported with its row group."""
        groups = file.metadata.num_row_groups
        for group in range(groups):
            batches = file.iter_batches(batch_size=batch_size, row_groups=[group], columns=names,
                                        use_pandas_metadata=False)  # fmt: skip
            try:
                yield from batches
            except (pa.ArrowException, OSError) as exc:  # pyarrow reports corrupt pages as OSError
                raise DataError(
                    f"{where}: row group {group + 1} of {groups} is corrupt or unreadable ({arrow_reason(exc)})"
                ) from None

    def _field(self, field: pa.Field) -> pa.Field:
        dtype = (self.dtypes or {}).get(field.name)
        return field if dtype is None else field.with_type(ARROW_TYPES[dtype])

    def _cast(self, batches: Iterator[pa.RecordBatch], target: pa.Schema, where: str) -> Iterator[pa.Table]:
        for batch in batches:
            table = pa.Table.from_batches([batch.select(target.names)])  # in the order asked for
            for name, dtype in (self.dtypes or {}).items():
                index = table.schema.get_field_index(name)
                try:
                    table = table.set_column(index, target.field(name), table.column(index).cast(ARROW_TYPES[dtype]))
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                    raise DataError(f"{where}: column {name!r}: {arrow_reason(exc)}") from None
            yield table
