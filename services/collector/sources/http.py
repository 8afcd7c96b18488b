"""The ``http`` source: GET a URL and read JSON, JSON Lines or CSV from the response.

Built on httpx, which checks what a hand-written client forgets: a body shorter than its
``Content-Length`` is an error, not data; ``gzip``/``deflate`` bodies are decoded; URLs
with non-ASCII characters are encoded. On top of it this source

- follows redirects itself (at most ``MAX_REDIRECTS``), only to ``http://`` and ``https://``
  URLs and never from ``https`` down to ``http``; the configured ``headers`` and the
  credentials written in the URL go to the URL's own origin only, not to another host;
- enforces ``deadline`` on the whole request, including while waiting for the next bytes of
  a body that trickles in (``timeout`` bounds one wait; a slow server could stretch the
  total without end);
- never shows a password written in the URL: messages say ``user:***@``.

CSV and JSON Lines stream from the response with the file sources' code; a JSON document
is parsed whole, so it is bounded by ``max_bytes`` like everything else.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any, Literal

import pandas as pd
from pydantic import ConfigDict, Field, field_validator, model_validator

from mlrm.errors import INPUT_EXCEPTIONS, DataError, MlrmError, one_line
from mlrm.steps import register
from services.collector.sources.base import TabularSource, records_in_batches
from services.collector.sources.chunks import DEFAULT_MAX_LINE_BYTES
from services.collector.sources.delimited import CsvSource
from services.collector.sources.jsonl import json_reason, read_jsonl

if TYPE_CHECKING:  # httpx is imported where it is used: at import it costs every process a third of a second
    import httpx

    from mlrm.context import StepContext

MAX_REDIRECTS = 10
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110: what a header name may be made of
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/@?#]*)@")


def redact(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part replaced by ``***``."""
    match = _USERINFO.match(url)
    if match is None or ":" not in match.group(2):
        return url
    user = match.group(2).split(":", 1)[0]
    return f"{match.group(1)}{user}:***@{url[match.end() :]}"


@register
class HttpSource(TabularSource):
    """Fetch rows from an HTTP(S) URL with GET: a JSON document, JSON Lines or CSV (comma, header line)."""

    model_config = ConfigDict(hide_input_in_errors=True)  # the URL may hold a password, headers a token

    example = {"url": "http://127.0.0.1:9/rows.json"}
    reaches_out = True  # calls a live system: its own tests cover it
    step: Literal["http"]
    """Step type: `http`."""
    url: str
    """The `http://` or `https://` URL to GET; `https://user:password@host/...` sends basic authentication."""
    format: Literal["json", "jsonl", "csv"] = "json"
    """How the response body is read: a JSON document holding a list of records, JSON Lines, or CSV."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Request headers, e.g. `{Authorization: "Bearer ${API_TOKEN}"}`; sent to the URL's own host only,
    not to another one a redirect points to."""
    timeout: float = Field(default=30, gt=0, allow_inf_nan=False)
    """Seconds to wait for the connection and for each read."""
    deadline: float | None = Field(default=600, gt=0, allow_inf_nan=False)
    """Seconds the whole request may take, redirects and reading the body included (default 600)."""
    records_path: str | None = None
    """For `json`: dotted path to the list of records inside the document, e.g. `data.items`."""
    max_bytes: int = Field(default=100_000_000, gt=0)
    """Refuse responses larger than this many bytes (after decoding a compressed body)."""
    max_line_bytes: int = Field(default=DEFAULT_MAX_LINE_BYTES, gt=0)
    """For `csv` and `jsonl`: the longest line accepted, in bytes (16 MiB by default)."""

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        import httpx

        try:
            parts = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise ValueError(f"{redact(url)!r} is not a valid URL ({one_line(redact(str(exc)))})") from None
        if parts.scheme not in ("http", "https") or not parts.host:
            raise ValueError(f"url must be an http:// or https:// URL, got {redact(url)!r}")
        return url

    @field_validator("headers")
    @classmethod
    def _clean_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _TOKEN.match(name):
                raise ValueError(f"header name {name!r} is not a valid HTTP header name")
            if any(c in value for c in "\r\n\x00"):  # would end the header and start another (injection)
                raise ValueError(f"header {name}: the value holds a line break or a NUL character")
            try:
                value.encode("latin-1")
            except UnicodeEncodeError:
                raise ValueError(f"header {name}: the value holds characters HTTP headers cannot carry") from None
        return headers

    @model_validator(mode="after")
    def _records_path_for_json(self) -> HttpSource:
        if self.records_path is not None and self.format != "json":
            raise ValueError("records_path applies only to format: json")
        return self

    # -- reading -------------------------------------------------------------------------------
    def read(self, ctx: StepContext, batch_size: int) -> Iterator[pd.DataFrame]:
        import httpx

        where = redact(self.url)
        clock = _Deadline(self.deadline)
        with httpx.Client(follow_redirects=False, trust_env=True) as client:
            try:
                with self._response(client, clock) as response, clock.watch(response):
                    size = response.headers.get("Content-Length")
                    if size is not None and size.isdigit() and int(size) > self.max_bytes:
                        raise DataError(f"{where}: response is {size} bytes, larger than max_bytes ({self.max_bytes})")
                    reader = BodyReader(response.iter_bytes(), self.max_bytes, where, clock)
                    with io.BufferedReader(reader, 1 << 20) as body:
                        yield from self._parse(body, where, batch_size)
            except MlrmError:
                raise
            except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, OSError) as exc:
                raise self._error(exc, clock) from None
            except INPUT_EXCEPTIONS as exc:  # what a parser raised for data it cannot read
                raise DataError(f"{where}: cannot read the response: {one_line(str(exc))}") from None

    @contextlib.contextmanager
    def _response(self, client: httpx.Client, clock: _Deadline) -> Iterator[httpx.Response]:
        """The final response (redirects followed), open for streaming; DataError for an HTTP error status."""
        import httpx

        url = httpx.URL(self.url)
        origin = _origin(url)
        explicit = any(name.lower() == "authorization" for name in self.headers)  # the configured header wins
        auth = httpx.BasicAuth(url.username, url.password) if (url.username or url.password) and not explicit else None
        url = url.copy_with(username=None, password=None)
        for _ in range(MAX_REDIRECTS + 1):
            own = _origin(url) == origin  # headers and credentials are for the configured host only
            request = client.build_request(
                "GET", url, headers=self.headers if own else None, timeout=clock.timeout(self.timeout)
            )
            response = client.send(request, stream=True, auth=auth if own else None)
            try:
                if response.is_redirect:
                    url = self._redirect(url, response)
                    continue
                if response.status_code >= 400:
                    raise DataError(f"GET {self._shown(url)}: HTTP {response.status_code} {response.reason_phrase}")
                yield response
                return
            finally:
                response.close()
        raise DataError(f"GET {redact(self.url)}: more than {MAX_REDIRECTS} redirects")

    def _redirect(self, url: httpx.URL, response: httpx.Response) -> httpx.URL:
        import httpx

        location = response.headers.get("Location", "")
        try:
            target = url.join(location)
        except httpx.InvalidURL as exc:
            raise DataError(f"GET {self._shown(url)}: redirected to an invalid URL {location!r} ({exc})") from None
        if target.scheme not in ("http", "https"):
            raise DataError(f"GET {self._shown(url)}: redirected to {redact(str(target))}, not an http(s):// URL")
        if url.scheme == "https" and target.scheme == "http":
            raise DataError(f"GET {self._shown(url)}: redirected from https:// to http:// ({redact(str(target))})")
        return target

    def _shown(self, url: httpx.URL) -> str:
        """The URL for a message: the configured one (password redacted) until a redirect changed it."""
        import httpx

        configured = httpx.URL(self.url).copy_with(username=None, password=None)
        return redact(self.url) if url == configured else redact(str(url))

    def _error(self, exc: Exception, clock: _Deadline) -> DataError:
        import httpx

        where = redact(self.url)
        if clock.expired():
            return DataError(f"GET {where}: did not finish within its deadline of {self.deadline:g}s")
        if isinstance(exc, httpx.TimeoutException):
            reason = f"no answer within the timeout of {self.timeout:g}s ({type(exc).__name__})"
        elif isinstance(exc, httpx.DecodingError):
            reason = f"the response's Content-Encoding could not be decoded ({exc})"
        elif isinstance(exc, httpx.RemoteProtocolError) and "message body" in str(exc):
            reason = f"the response ended early: {exc}"  # shorter than its Content-Length said
        else:
            reason = str(exc) or type(exc).__name__
        password = httpx.URL(self.url).password
        if password:
            reason = reason.replace(password, "***")
        return DataError(f"GET {where}: {one_line(redact(reason))}")

    def _parse(self, body: IO[bytes], where: str, batch_size: int) -> Iterator[pd.DataFrame]:
        if self.format == "csv":
            csv = CsvSource.model_construct(
                step="csv", columns=self.columns, dtypes=self.dtypes, max_line_bytes=self.max_line_bytes
            )
            yield from csv.read_stream(body, where, batch_size)
        elif self.format == "jsonl":
            yield from read_jsonl(self, body, where, batch_size, self.max_line_bytes)
        else:
            records = self._records(body.read(), where)
            self.check_columns(dict.fromkeys(key for record in records for key in record), where)
            for chunk in records_in_batches(records, batch_size):
                yield self.frame_from_records(chunk, where, strict=False)

    def _records(self, raw: bytes, where: str) -> list[dict[str, Any]]:
        try:
            document = json.loads(raw)
        except UnicodeDecodeError as exc:
            raise DataError(f"{where}: the response is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except (ValueError, RecursionError) as exc:
            raise DataError(f"{where}: the response is not valid JSON: {json_reason(exc)}") from None
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


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or {"http": 80, "https": 443}.get(url.scheme)


class _Deadline:
    """The end of a whole request; cuts the connection when it passes, even in the middle of a read."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.end = None if seconds is None else time.monotonic() + seconds

    def left(self) -> float | None:
        return None if self.end is None else self.end - time.monotonic()

    def expired(self) -> bool:
        left = self.left()
        return left is not None and left <= 0

    def timeout(self, timeout: float) -> httpx.Timeout:
        """Each wait: ``timeout``, or what is left of the deadline if that is less."""
        import httpx

        left = self.left()
        if left is not None and left <= 0:
            raise httpx.TimeoutException("deadline passed")
        return httpx.Timeout(timeout if left is None else max(0.001, min(timeout, left)))

    @contextlib.contextmanager
    def watch(self, response: httpx.Response) -> Iterator[None]:
        """While reading the body: at the deadline, shut the socket down, which ends any read at once."""
        left = self.left()
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if left is None or sock is None:
            yield
            return
        timer = threading.Timer(max(0.0, left), _shut_down, args=(sock,))
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()


def _shut_down(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


class BodyReader(io.RawIOBase):
    """The decoded body as a raw stream: DataError past ``limit`` bytes or past the deadline."""

    def __init__(self, chunks: Iterator[bytes], limit: int, where: str, clock: _Deadline) -> None:
        self.chunks, self.limit, self.where, self.clock = chunks, limit, where, clock
        self.count = 0
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self.pending:
            self.pending = next(self.chunks, b"")
            self.count += len(self.pending)
            if self.count > self.limit:
                raise DataError(f"{self.where}: response is larger than max_bytes ({self.limit} bytes)")
            if self.clock.expired():  # also when the cut connection looked like the end of the body
                raise DataError(f"GET {self.where}: did not finish within its deadline of {self.clock.seconds:g}s")
        size = min(len(buffer), len(self.pending))
        buffer[:size] = self.pending[:size]
        self.pending = self.pending[size:]
        return size
