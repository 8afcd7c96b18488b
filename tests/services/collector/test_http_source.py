"""The ``http`` source against a real local HTTP server."""

from __future__ import annotations

import base64
import gzip
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from mlrm.context import StepContext
from mlrm.errors import DataError
from mlrm.volume.local import LocalVolume
from services.collector.sources import HttpSource

ROWS = [{"id": i, "name": f"n{i}", "score": i / 2} for i in range(7)]
CSV = "id,name,score\n" + "".join(f"{r['id']},{r['name']},{r['score']}\n" for r in ROWS)

# path -> (status, body, send Content-Length)
ROUTES: dict[str, tuple[int, bytes, bool]] = {
    "/items.json": (200, json.dumps({"data": {"items": ROWS}, "total": 7}).encode(), True),
    "/list.json": (200, json.dumps(ROWS).encode(), True),
    "/items.csv": (200, CSV.encode(), True),
    "/items.jsonl": (200, "".join(json.dumps(r) + "\n" for r in ROWS).encode(), False),
    "/big.csv": (200, CSV.encode() * 50, True),
    "/big-unsized.csv": (200, CSV.encode() * 50, False),
}


# path -> where it redirects ({other} is this server under another host name: localhost)
REDIRECTS = {
    "/to-other-host": "http://{other}/items.json",
    "/to-same-host": "/items.json",
    "/loop": "/loop",
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        seen_headers.append(dict(self.headers))
        if self.path in REDIRECTS:
            other = f"localhost:{self.server.server_address[1]}"
            self.send_response(302)
            self.send_header("Location", REDIRECTS[self.path].format(other=other))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/gzip.json":
            body = gzip.compress(json.dumps(ROWS).encode())
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        status, body, sized = ROUTES.get(self.path, (404, b"no such page", True))
        self.send_response(status)
        if sized:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass


seen_headers: list[dict[str, str]] = []


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def ctx(tmp_path: Path) -> StepContext:
    return StepContext(volume=LocalVolume(tmp_path / "vol"), run_id="r1", step="collect", base_dir=tmp_path)


def read(source: HttpSource, ctx: StepContext, batch_size: int = 3) -> list[pd.DataFrame]:
    return list(source.read(ctx, batch_size))


def test_json_with_records_path_and_headers(base_url: str, ctx: StepContext) -> None:
    source = HttpSource(
        step="http", url=f"{base_url}/items.json", records_path="data.items", headers={"X-Token": "secret"}
    )
    frames = read(source, ctx)
    assert [len(f) for f in frames] == [3, 3, 1]
    assert pd.concat(frames, ignore_index=True).to_dict("records") == ROWS
    assert seen_headers[-1]["X-Token"] == "secret"


def test_json_list_with_columns_and_dtypes(base_url: str, ctx: StepContext) -> None:
    source = HttpSource(step="http", url=f"{base_url}/list.json", columns=["score", "id"], dtypes={"id": "str"})
    df = pd.concat(read(source, ctx), ignore_index=True)
    assert list(df.columns) == ["score", "id"]
    assert df["id"].tolist() == [str(i) for i in range(7)]


@pytest.mark.parametrize(("path", "fmt"), [("/items.csv", "csv"), ("/items.jsonl", "jsonl")])
def test_streamed_formats(base_url: str, ctx: StepContext, path: str, fmt: str) -> None:
    frames = read(HttpSource(step="http", url=base_url + path, format=fmt), ctx)
    assert [len(f) for f in frames] == [3, 3, 1]
    assert pd.concat(frames, ignore_index=True).to_dict("records") == ROWS


def test_http_error_names_url_and_status(base_url: str, ctx: StepContext) -> None:
    with pytest.raises(DataError) as err:
        read(HttpSource(step="http", url=f"{base_url}/missing"), ctx)
    assert "404" in str(err.value) and f"{base_url}/missing" in str(err.value)


@pytest.mark.parametrize("path", ["/big.csv", "/big-unsized.csv"])
def test_oversize_response_rejected(base_url: str, ctx: StepContext, path: str) -> None:
    with pytest.raises(DataError, match="max_bytes"):
        read(HttpSource(step="http", url=base_url + path, format="csv", max_bytes=1000), ctx)


def test_bad_records_path(base_url: str, ctx: StepContext) -> None:
    with pytest.raises(DataError, match=r"records_path 'data\.rows': no 'rows' in 'data' \(has: items\)"):
        read(HttpSource(step="http", url=f"{base_url}/items.json", records_path="data.rows"), ctx)
    with pytest.raises(DataError, match="set records_path"):
        read(HttpSource(step="http", url=f"{base_url}/items.json"), ctx)


def test_connection_refused(ctx: StepContext) -> None:
    with pytest.raises(DataError, match=r"GET http://127\.0\.0\.1:9/x"):
        read(HttpSource(step="http", url="http://127.0.0.1:9/x", timeout=5), ctx)


def test_headers_and_credentials_stay_with_their_host(base_url: str, ctx: StepContext) -> None:
    url = base_url.replace("http://", "http://user:pw@")
    headers = {"Authorization": "Bearer token", "X-Api-Key": "key"}
    same = read(HttpSource(step="http", url=f"{url}/to-same-host", records_path="data.items", headers=headers), ctx)
    assert pd.concat(same, ignore_index=True).to_dict("records") == ROWS
    assert seen_headers[-1]["Authorization"] == "Bearer token" and seen_headers[-1]["X-Api-Key"] == "key"
    assert "localhost" not in seen_headers[-1]["Host"]

    seen_headers.clear()
    read(HttpSource(step="http", url=f"{url}/to-other-host", records_path="data.items", headers=headers), ctx)
    first, redirected = seen_headers
    assert first["Authorization"] == "Bearer token"
    assert redirected["Host"].startswith("localhost:")
    assert "Authorization" not in redirected and "X-Api-Key" not in redirected

    seen_headers.clear()
    read(HttpSource(step="http", url=f"{url}/to-other-host", records_path="data.items"), ctx)
    assert seen_headers[0]["Authorization"] == "Basic " + base64.b64encode(b"user:pw").decode()  # from the URL
    assert "Authorization" not in seen_headers[1]


def test_redirect_loop_is_bounded(base_url: str, ctx: StepContext) -> None:
    with pytest.raises(DataError, match="more than 10 redirects"):
        read(HttpSource(step="http", url=f"{base_url}/loop"), ctx)


def test_gzip_body_is_decoded(base_url: str, ctx: StepContext) -> None:
    frames = read(HttpSource(step="http", url=f"{base_url}/gzip.json"), ctx)
    assert pd.concat(frames, ignore_index=True).to_dict("records") == ROWS


def test_password_never_shown(base_url: str, ctx: StepContext) -> None:
    url = base_url.replace("http://", "http://user:s3cret@")
    with pytest.raises(DataError) as err:
        read(HttpSource(step="http", url=f"{url}/missing"), ctx)
    assert "s3cret" not in str(err.value) and "user:***@" in str(err.value) and "404" in str(err.value)
    with pytest.raises(ValidationError) as invalid:
        HttpSource(step="http", url="ftp://user:s3cret@host/x")
    assert "s3cret" not in str(invalid.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "file:///etc/passwd"}, "http:// or https://"),
        ({"url": "http://"}, "http:// or https://"),
        ({"url": "http://[::1"}, "not a valid URL"),
        ({"url": "http://x/y.csv", "format": "csv", "records_path": "a"}, "only to format: json"),
        ({"url": "http://x/y", "timeout": 0}, "timeout"),
        ({"url": "http://x/y", "deadline": 0}, "deadline"),
        ({"url": "http://x/y", "timeout": "nan"}, "timeout"),
        ({"url": "http://x/y", "headers": {"X-A": "a\r\nX-B: b"}}, "line break"),
        ({"url": "http://x/y", "headers": {"X A": "a"}}, "header name"),
        ({"url": "http://x/y", "headers": {"X-A": "é€"}}, "cannot carry"),
    ],
)
def test_options_are_validated(options: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        HttpSource(step="http", **options)
