"""The ``http`` source: GET a URL and read JSON, JSON Lines or CSV from the response.

Uses the standard library (``urllib.request``). CSV and JSON Lines stream from the
response with the file sources' code; a JSON document is parsed whole, so it is
bounded by ``max_bytes`` like everything else.
"""

from __future__ import annotations

import http.client
import io
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import pandas as pd
from pydantic import Field, field_validator, model_validator

from mlrm.errors import DataError
from mlrm.steps import register
from services.collector.sources.base import TabularSource, records_in_batches
from services.collector.sources.delimited import CsvSource
from services.collector.sources.jsonl import read_jsonl

if TYPE_CHECKING:
    from mlrm.context import StepContext


@register
class HttpSource(TabularSource):
    """Fetch rows from an HTTP(S) URL with GET: a JSON document, JSON Lines or CSV (comma, header line)."""

    step: Literal["http"]
    """Step type: `http`."""
    url: str
    """The `http://` or `https://` URL to GET."""
    format: Literal["json", "jsonl", "csv"] = "json"
    """How the response body is read: a JSON document holding a list of records, JSON Lines, or CSV."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Request headers, e.g. `{Authorization: "Bearer ${API_TOKEN}"}`."""
    timeout: float = Field(default=30, gt=0)
    """Seconds to wait for the connection and for each read."""
    records_path: str | None = None
    """For `json`: dotted path to the list of records inside the document, e.g. `data.items`."""
    max_bytes: int = Field(default=100_000_000, gt=0)
    """Refuse responses larger than this many bytes."""

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"url must be an http:// or https:// URL, got {url!r}")
        return url

    @model_validator(mode="after")
    def _records_path_for_json(self) -> HttpSource:
        if self.records_path is not None and self.format != "json":
            raise ValueError("records_path applies only to format: json")
        return self

    def read(self, ctx: StepContext, batch_size: int) -> Iterator[pd.DataFrame]:
        where = self.url
        try:
            with self._get() as response:
                size = response.headers.get("Content-Length")
                if size is not None and size.isdigit() and int(size) > self.max_bytes:
                    raise DataError(f"{where}: response is {size} bytes, larger than max_bytes ({self.max_bytes})")
                with io.BufferedReader(LimitedReader(response, self.max_bytes, where), 1 << 20) as body:
                    yield from self._parse(body, where, batch_size)
        except (OSError, http.client.HTTPException) as exc:
            raise DataError(f"GET {self.url}: {type(exc).__name__}: {exc}") from None

    def _get(self) -> http.client.HTTPResponse:
        request = urllib.request.Request(self.url, headers=self.headers, method="GET")
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise DataError(f"GET {self.url}: HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise DataError(f"GET {self.url}: {exc.reason}") from None

    def _parse(self, body: IO[bytes], where: str, batch_size: int) -> Iterator[pd.DataFrame]:
        if self.format == "csv":
            csv = CsvSource.model_construct(step="csv", columns=self.columns, dtypes=self.dtypes)
            yield from csv.read_stream(body, where, batch_size)
        elif self.format == "jsonl":
            yield from read_jsonl(self, body, where, batch_size)
        else:
            records = self._records(body.read(), where)
            self.check_columns(dict.fromkeys(key for record in records for key in record), where)
            for chunk in records_in_batches(records, batch_size):
                yield self.frame_from_records(chunk, where, strict=False)

    def _records(self, raw: bytes, where: str) -> list[dict[str, Any]]:
        try:
            document = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{where}: the response is not valid JSON ({exc})") from None
        place = "the document"
        for part in self.records_path.split(".") if self.records_path else []:
            if isinstance(document, dict) and part in document:
                document = document[part]
            elif isinstance(document, list) and part.isdigit() and int(part) < len(document):
                document = document[int(part)]
            else:
                keys = ", ".join(map(str, document)) if isinstance(document, dict) else type(document).__name__
                raise DataError(f"{where}: records_path {self.records_path!r}: no {part!r} in {place} (has: {keys})")
            place = repr(part)
        if not isinstance(document, list):
            hint = "" if self.records_path else "; set records_path to the list inside it"
            raise DataError(f"{where}: expected a list of records in {place}, got {type(document).__name__}{hint}")
        for i, record in enumerate(document):
            if not isinstance(record, dict):
                raise DataError(f"{where}: record {i} is a {type(record).__name__}, not a JSON object")
        return document


class LimitedReader(io.RawIOBase):
    """Wraps a stream and raises DataError once more than ``limit`` bytes have been read."""

    def __init__(self, raw: IO[bytes], limit: int, where: str) -> None:
        self.raw, self.limit, self.where, self.count = raw, limit, where, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        self.count += len(data)
        if self.count > self.limit:
            raise DataError(f"{self.where}: response is larger than max_bytes ({self.limit} bytes)")
        buffer[: len(data)] = data
        return len(data)
