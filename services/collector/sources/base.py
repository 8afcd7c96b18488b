"""Shared reading code for the collector sources: options, opening, columns, dtypes, re-chunking.

Every source streams: it holds one parsed chunk (about 1 MB) or one batch at a time, never the
whole input. File sources read a local ``path`` or a volume ``key`` through the
same code, so a 1 GB object costs the same memory as a 1 MB one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, Literal

import pandas as pd
import pyarrow as pa
from pydantic import Field, model_validator

from mlrm.errors import INPUT_EXCEPTIONS, DataError, MissingColumnsError, MlrmError, NotFoundError, one_line
from mlrm.steps import SourceStep
from mlrm.volume.base import VolumeKey

if TYPE_CHECKING:
    from mlrm.context import StepContext

Dtype = Literal["int", "float", "str", "bool", "datetime"]

ARROW_TYPES: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "str": pa.string(),
    "bool": pa.bool_(),
    "datetime": pa.timestamp("us"),  # pandas 3's default resolution
}


class TabularSource(SourceStep):
    """Options every source shares: which columns to keep and which types to force."""

    columns: list[str] | None = Field(default=None, min_length=1)
    """Read only these columns, in this order (default: every column the data has)."""
    dtypes: dict[str, Dtype] | None = None
    """Force column types at read time: `int`, `float`, `str`, `bool` or `datetime`."""

    @model_validator(mode="after")
    def _dtypes_in_columns(self) -> TabularSource:
        if self.columns is not None and self.dtypes:
            extra = [c for c in self.dtypes if c not in self.columns]
            if extra:
                raise ValueError(f"dtypes name column(s) not listed in columns: {', '.join(extra)}")
        return self

    def check_columns(self, have: Iterable[str], where: str) -> None:
        """DataError naming any requested column (in `columns` or `dtypes`) the data lacks."""
        have = list(have)
        wanted = [*(self.columns or []), *(self.dtypes or {})]
        missing = list(dict.fromkeys(c for c in wanted if c not in have))
        if missing:
            raise MissingColumnsError(
                f"{where}: column(s) {', '.join(missing)} not found (the data has: {', '.join(have)})", missing
            )

    def conform(self, df: pd.DataFrame, where: str) -> pd.DataFrame:
        """A table read elsewhere (a direct request), held to this source's `columns` and `dtypes`."""
        self.check_columns(df.columns, where)
        if self.columns is not None and list(df.columns) != self.columns:
            df = df[self.columns]
        for col, dtype in (self.dtypes or {}).items():
            df = df.assign(**{col: _to_arrow(df[col], ARROW_TYPES[dtype], col, where).to_pandas().set_axis(df.index)})
        return df

    def frame_from_records(self, records: list[dict[str, Any]], where: str, strict: bool = True) -> pd.DataFrame:
        """A DataFrame from parsed records, with `columns` and `dtypes` applied like Arrow reads do.

        ``strict``: a requested column absent from these records is an error; otherwise it is all null
        (a later batch of a stream whose first batch had the column).
        """
        df = pd.DataFrame.from_records(records) if records else pd.DataFrame()
        if strict:
            self.check_columns(df.columns, where)
        wanted = self.columns or [*df.columns, *(c for c in self.dtypes or {} if c not in df.columns)]
        if list(df.columns) != wanted:
            df = df.reindex(columns=wanted)
        for col, dtype in (self.dtypes or {}).items():
            df[col] = _to_arrow(df[col], ARROW_TYPES[dtype], col, where).to_pandas().set_axis(df.index)
        return df


def _to_arrow(values: pd.Series, target: pa.DataType, col: str, where: str) -> pa.Array:
    """Convert one column of Python values; a safe cast, so 1.5 never silently becomes 1."""
    try:
        try:
            arr = pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            if target != pa.string():
                raise
            arr = pa.array([None if pd.isna(v) else str(v) for v in values], type=pa.string())
        return arr.cast(target)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise DataError(f"{where}: column {col!r}: {arrow_reason(exc)}") from None


def arrow_reason(exc: BaseException) -> str:
    """Pyarrow's message on one line, without the control characters of a binary "row" it may quote."""
    return one_line(str(exc)) or type(exc).__name__


class FileSource(TabularSource):
    """A source reading one file: a local `path` or a volume `key` (exactly one)."""

    path: str | None = None
    """Local file to read, relative to the config file's folder."""
    key: VolumeKey | None = None
    """Object in the volume to read (streamed, never loaded whole)."""

    @model_validator(mode="after")
    def _path_or_key(self) -> FileSource:
        if (self.path is None) == (self.key is None):
            raise ValueError("give exactly one of 'path' (a local file) or 'key' (an object in the volume)")
        return self

    def where(self, ctx: StepContext) -> str:
        return f"volume:{self.key}" if self.key is not None else str(ctx.resolve_path(self.path or ""))

    @contextmanager
    def open(self, ctx: StepContext) -> Iterator[IO[bytes]]:
        """The input as a binary stream, closed when the block exits."""
        if self.key is not None:
            stream = ctx.volume.open_read(self.key)
        else:
            path = ctx.resolve_path(self.path or "")
            try:
                stream = open(path, "rb")  # noqa: SIM115 - closed below
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                raise NotFoundError(f"data file not found: {path}") from None
            except OSError as exc:
                raise DataError(f"cannot read {path}: {exc.strerror}") from None
        with stream:
            yield stream

    def read(self, ctx: StepContext, batch_size: int) -> Iterator[pd.DataFrame]:
        where = self.where(ctx)
        with self.open(ctx) as stream:
            try:
                yield from self.read_stream(stream, where, batch_size)
            except MlrmError:
                raise
            except INPUT_EXCEPTIONS as exc:  # what a parser raised for data it cannot read
                raise DataError(f"{where}: cannot read it: {one_line(str(exc)) or type(exc).__name__}") from None

    def read_stream(self, stream: IO[bytes], where: str, batch_size: int) -> Iterator[pd.DataFrame]:
        """Yield the stream's rows in frames of `batch_size` (the last may be shorter)."""
        raise NotImplementedError


def rechunk(tables: Iterable[pa.Table], batch_size: int, schema: pa.Schema | None = None) -> Iterator[pd.DataFrame]:
    """Regroup Arrow tables of any size into frames of exactly ``batch_size`` rows (the last may be shorter).

    With no rows at all, yields one empty frame (with the columns, when a schema is known).
    """
    check_batch_size(batch_size)
    pending: pa.Table | None = None
    emitted = False
    for table in tables:
        pending = table if pending is None else pa.concat_tables([pending, table], promote_options="default")
        while pending.num_rows >= batch_size:
            yield pending.slice(0, batch_size).to_pandas()
            emitted = True
            pending = pending.slice(batch_size)
        pending = pending.combine_chunks()  # a copy of the few rows left, so the chunk they came from is freed
    if pending is not None and (pending.num_rows or not emitted):
        yield pending.to_pandas()
    elif pending is None and schema is not None:
        yield schema.empty_table().to_pandas()


def check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")


def records_in_batches(records: Iterable[dict[str, Any]], batch_size: int) -> Iterator[list[dict[str, Any]]]:
    """Group records into lists of ``batch_size``."""
    check_batch_size(batch_size)
    chunk: list[dict[str, Any]] = []
    for record in records:
        chunk.append(record)
        if len(chunk) >= batch_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
