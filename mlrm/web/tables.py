"""Tables over HTTP and gRPC: decode a request body into a DataFrame and encode one back, by media type.

    df = decode(body, request.headers.get("content-type"))
    media = negotiate(request.headers.get("accept"), default=media_type_of(content_type))
    return Response(encode(df, media), media_type=media)

Four formats, all read and written with pyarrow (orjson for JSON):

========================================  =========================================================
``application/json``                      records: ``[{"column": value, ...}, ...]``
``text/csv``                              a header line, then one row a line
``application/vnd.apache.arrow.stream``   Arrow IPC stream (what gRPC carries too)
``application/vnd.apache.parquet``        Parquet (``application/x-parquet`` is read as well)
========================================  =========================================================

Errors are the one mapping's: a format not listed is 415 (:class:`UnsupportedMediaTypeError`), an
``Accept`` header that takes none of them 406, a body that does not decode 400 with the parser's reason,
a table that decodes to more than ``max_cells`` values 413 (a small Parquet file can hold a large table).
"""

from __future__ import annotations

import io
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from mlrm.errors import (
    INPUT_EXCEPTIONS,
    DataError,
    NotAcceptableError,
    TooLargeError,
    UnsupportedMediaTypeError,
    one_line,
)

JSON = "application/json"
CSV = "text/csv"
ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"
MEDIA_TYPES: tuple[str, ...] = (JSON, CSV, ARROW, PARQUET)
ALIASES = {"application/x-parquet": PARQUET, "application/parquet": PARQUET, "application/csv": CSV}

MAX_CELLS = 50_000_000
"""Values (rows x columns) a decoded table may hold by default."""


def media_type_of(content_type: str | None) -> str:
    """The table format a ``Content-Type`` names, or 415 naming the ones understood."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    media = ALIASES.get(media, media)
    if media not in MEDIA_TYPES:
        given = f"Content-Type {media!r}" if media else "no Content-Type"
        raise UnsupportedMediaTypeError(f"a table is expected, got {given}; send one of: {', '.join(MEDIA_TYPES)}")
    return media


def negotiate(accept: str | None, default: str) -> str:
    """The format to answer in: the ``Accept`` header's most preferred one that is supported, else ``default``."""
    if not accept or not accept.strip():
        return default
    choices: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0 and media:
            choices.append((-q, i, media.lower()))
    for _, _, media in sorted(choices):
        if media in ("*/*", "application/*", "text/*"):
            if media == "*/*" or default.startswith(media[:-1]):
                return default
            return next(m for m in MEDIA_TYPES if m.startswith(media[:-1]))
        media = ALIASES.get(media, media)
        if media in MEDIA_TYPES:
            return media
    raise NotAcceptableError(f"cannot answer in {accept!r}; the formats are: {', '.join(MEDIA_TYPES)}")


def decode(body: bytes, content_type: str | None, *, max_cells: int = MAX_CELLS) -> pd.DataFrame:
    """The table a request body holds, in the format its ``Content-Type`` names."""
    media = media_type_of(content_type)
    try:
        df = _from_json(body) if media == JSON else _from_arrow(_read_arrow(media, body, max_cells))
    except (DataError, TooLargeError):
        raise
    except (*INPUT_EXCEPTIONS, pa.ArrowException, OSError) as exc:
        reason = one_line(str(exc)) or type(exc).__name__
        raise DataError(f"the body is not a valid {_NAMES[media]} table: {reason}") from None
    _check_cells(df.shape[0] * max(df.shape[1], 1), max_cells)
    return df


def encode(df: pd.DataFrame, media: str) -> bytes:
    """``df`` in the format ``media`` (one of :data:`MEDIA_TYPES`)."""
    if media == JSON:
        return orjson.dumps(_records(df), default=_json_default,
                            option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)  # fmt: skip
    if media == CSV:
        return df.to_csv(index=False).encode()
    table = to_arrow(df)
    sink = io.BytesIO()
    if media == ARROW:
        with ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    elif media == PARQUET:
        pq.write_table(table, sink)
    else:  # pragma: no cover - negotiate() only returns known types
        raise NotAcceptableError(f"cannot write {media!r}")
    return sink.getvalue()


def to_arrow(df: pd.DataFrame) -> pa.Table:
    """``df`` as an Arrow table, without its index; a column of values Arrow cannot hold is a DataError."""
    try:
        return pa.Table.from_pandas(_plain_columns(df), preserve_index=False)
    except (pa.ArrowException, *INPUT_EXCEPTIONS) as exc:
        raise DataError(f"the result cannot be written as a table: {one_line(str(exc))}") from None


def from_ipc(data: bytes, *, max_cells: int = MAX_CELLS) -> pd.DataFrame:
    """An Arrow IPC stream (gRPC's table payload) as a DataFrame."""
    return decode(data, ARROW, max_cells=max_cells)


def to_ipc(df: pd.DataFrame) -> bytes:
    return encode(df, ARROW)


_NAMES = {JSON: "JSON records", CSV: "CSV", ARROW: "Arrow IPC stream", PARQUET: "Parquet"}


def _check_cells(cells: int, max_cells: int) -> None:
    if cells > max_cells:
        raise TooLargeError(f"the table holds {cells} values; the limit is {max_cells}")


def _from_json(body: bytes) -> pd.DataFrame:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DataError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise DataError('a JSON table is a list of records: [{"column": value, ...}, ...]')
    for record in value:
        for key, cell in record.items():
            if isinstance(cell, dict | list):
                raise DataError(f"column {key!r}: a value is a nested {type(cell).__name__}; cells hold scalars")
    return pd.DataFrame.from_records(value) if value else pd.DataFrame()


def _read_arrow(media: str, body: bytes, max_cells: int) -> pa.Table:
    if media == CSV:
        # as the collector's csv source reads: an empty field is null, whatever the column's type
        return pacsv.read_csv(io.BytesIO(body), convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    if media == PARQUET:
        meta = pq.ParquetFile(io.BytesIO(body)).metadata
        _check_cells(meta.num_rows * max(meta.num_columns, 1), max_cells)
        return pq.read_table(io.BytesIO(body))
    reader = ipc.open_stream(pa.BufferReader(body))
    batches, cells = [], 0
    for batch in reader:  # batch by batch, so a compressed stream stops at the limit, not after inflating
        cells += batch.num_rows * max(batch.num_columns, 1)
        _check_cells(cells, max_cells)
        batches.append(batch)
    return pa.Table.from_batches(batches, schema=reader.schema)


def _from_arrow(table: pa.Table) -> pd.DataFrame:
    # The columns' values only: a schema's pandas metadata (an index, extension types) is the sender's
    # business, not ours to rebuild.
    return table.replace_schema_metadata(None).to_pandas()


def _plain_columns(df: pd.DataFrame) -> pd.DataFrame:
    if all(isinstance(c, str) for c in df.columns):
        return df
    return df.set_axis([str(c) for c in df.columns], axis=1)


def _json_default(value: Any) -> Any:
    if isinstance(value, pd.Timestamp | pd.Timedelta):
        return value.isoformat()
    if hasattr(value, "item"):  # a numpy scalar orjson does not take as is
        return value.item()
    return str(value)


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    out = _plain_columns(df).astype(object).where(df.notna().to_numpy(), None)
    return out.to_dict("records")
