"""A corpus of hostile inputs, each fed through the entry point a user would hit.

Every input must end in a one-line message naming the place (file, line, field, key
or URL) and a non-zero exit or a failed run, never in a traceback, on the console
or in the logs. Inputs that are valid once handled properly (a gzip-encoded body, a
quoted line break in a CSV header, a non-ASCII URL) must simply work.
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
import yaml
from rich.console import Console
from typer.testing import CliRunner

import cli.common as cli_module
from cli import app
from mlrm.settings import Settings
from mlrm.steps import SourceStep, TransformStep
from orchestrator.embedded import Embedded
from tests.conftest import CONFIGS

SECRET = "hunter2-secret"
IRIS_ROW = {"id": 1, "sepal_length": 5.0, "sepal_width": 3.0, "petal_length": 1.5, "petal_width": 0.2}


# -- a hostile HTTP server ------------------------------------------------------------------
class Hostile(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path
        if path == "/ftp":
            self._send(302, b"", Location="ftp://127.0.0.1/data.json")
        elif path == "/truncated":  # announces 1000 bytes, sends 70, hangs up
            self._send(200, b'[{"a": 1}' + b" " * 61, length=1000)
            self.close_connection = True
        elif path == "/trickle":  # one byte every 2 s: no read ever times out
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(1000):
                try:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(2)
        elif path == "/gzip":
            self._send(200, gzip.compress(json.dumps([{"a": 1}, {"a": 2}]).encode()), **{"Content-Encoding": "gzip"})
        elif path == "/bad-gzip":
            self._send(200, b"this is not gzip at all", **{"Content-Encoding": "gzip"})
        elif path == "/deep":
            self._send(200, b"[" * 100_000 + b"]" * 100_000)
        elif path == "/bigint":
            self._send(200, b'[{"a": ' + b"9" * 10_000 + b"}]")
        elif path == "/d%C3%A9j%C3%A0.json":  # the non-ASCII path, percent-encoded as it must be
            self._send(200, json.dumps([{"a": 1}]).encode())
        elif path == "/secret":
            self._send(500, b"boom")
        else:
            self._send(404, b"no such page")

    def _send(self, status: int, body: bytes, length: int | None = None, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client hanging up on a hostile answer is the point, not a server error to print


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = QuietServer(("127.0.0.1", 0), Hostile)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


# -- a volume holding a trained model, and hostile files --------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A volume with a trained iris model, and a folder of hostile files."""
    root = tmp_path_factory.mktemp("hostile")
    with Embedded(Settings(volume=str(root / "volume"), state=str(root / "train.sqlite"))) as mlrm:
        assert mlrm.run(CONFIGS / "iris" / "train.yaml", timeout=120).status == "succeeded"
    files = root / "files"
    files.mkdir()
    rng = np.random.default_rng(0)
    (files / "binary.csv").write_bytes(rng.bytes(5000))
    frame = pd.DataFrame({"a": np.arange(200_000), "b": rng.random(200_000)})
    frame.to_parquet(files / "corrupt.parquet", row_group_size=20_000)
    data = bytearray((files / "corrupt.parquet").read_bytes())
    data[len(data) // 2 : len(data) // 2 + 2000] = rng.bytes(2000)  # a row group in the middle
    (files / "corrupt.parquet").write_bytes(bytes(data))
    (files / "deep.jsonl").write_text('{"a": 1}\n{"a": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    (files / "bigint.jsonl").write_text('{"a": 1}\n{"a": ' + "9" * 10_000 + "}\n")
    (files / "long-line.csv").write_text("a,b\n1,2\n" + "x" * 5000 + ",3\n")
    (files / "long-line.jsonl").write_text('{"a": 1}\n{"a": "' + "x" * 5000 + '"}\n')
    (files / "crlf-header.csv").write_bytes(b'"first\r\nname",b\n1,2\n')
    (files / "inf.csv").write_text(
        "id,sepal_length,sepal_width,petal_length,petal_width\n1,5.0,3.0,1.5,0.2\n2,inf,3.0,1.5,0.2\n"
    )
    (files / "many-values.csv").write_text("city,v\n" + "".join(f"c{i},{i}\n" for i in range(1500)))
    (files / "a-folder").mkdir()
    (files / "a-file.txt").write_text("hello\n")
    (files / "garbage.sqlite").write_bytes(rng.bytes(4096))
    volume = root / "volume"
    (volume / "clash" / "a" / "b").mkdir(parents=True)
    (volume / "clash" / "a" / "b" / "c").write_text("an object\n")
    return root


# -- running the CLI ----------------------------------------------------------------------------
@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    logs: str
    exception: BaseException | None

    @property
    def everything(self) -> str:
        return "\n".join((self.stdout, self.stderr, self.logs))

    def errors(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


@pytest.fixture
def cli(world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    monkeypatch.setenv("MLRM_VOLUME", str(world / "volume"))
    monkeypatch.setenv("MLRM_STATE", str(tmp_path / "runs.sqlite"))
    monkeypatch.setenv("MLRM_RETRIES", "1")
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cli_module, "out", Console(width=200))
    caplog.set_level(logging.WARNING)  # what a user sees without -v
    runner = CliRunner()

    def invoke(*args: str | Path) -> Outcome:
        caplog.clear()
        result = runner.invoke(app, [str(a) for a in args])
        formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
        logs = "\n".join(formatter.format(record) for record in caplog.records)
        exception = None if isinstance(result.exception, SystemExit) else result.exception
        return Outcome(result.exit_code, result.stdout, result.stderr, logs, exception)

    return invoke


def workflow(tmp_path: Path, *steps: tuple[str, dict]) -> Path:
    """A workflow file of inline configs: (service, config) per step."""
    doc = {
        "kind": "Workflow",
        "name": "hostile",
        "steps": [{"name": f"s{i}-{service}", "service": service, "config": config} for i, (service, config) in
                  enumerate(steps)],
    }  # fmt: skip
    path = tmp_path / "workflow.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, width=10**9))
    return path


def collect(source: dict) -> tuple[str, dict]:
    return "collector", {"source": source, "batch_size": 1000}


def predict(**options: object) -> tuple[str, dict]:
    return "predict", {"model": {"name": "iris-classifier"}, **options}


def records(*rows: dict) -> dict:
    return {"step": "records", "records": list(rows) or [IRIS_ROW]}


class Explode(TransformStep):
    """A step with a bug: it raises what no one maps to an error."""

    kind = "handler"

    def transform(self, df: pd.DataFrame, state: dict | None) -> pd.DataFrame:
        raise RuntimeError("boom")


class Slow(SourceStep):
    """A source that takes its time: one row every 0.2 s."""

    def read(self, ctx: object, batch_size: int) -> Iterator[pd.DataFrame]:
        for i in range(50):
            time.sleep(0.2)
            yield pd.DataFrame({"i": [i]})


BIG_NUMBER_WORKFLOW = f"""kind: Workflow
name: hostile
steps:
  - {{name: collect, service: collector, config: {{source: {{step: records, records: [{{a: {"9" * 10_000}}}]}}}}}}
"""


def text_file(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# A case: given the test's tmp folder, the world and the server address, the CLI arguments;
# then the fragments the one error line must hold.
Args = Callable[[Path, Path, str], list[str | Path]]


def run(*steps: Callable[[Path, str], tuple[str, dict]]) -> Args:
    return lambda tmp, world, server: ["run", "-q", workflow(tmp, *(s(world / "files", server) for s in steps))]


FAILING: dict[str, tuple[Args, list[str]]] = {
    # expressions
    "filter abs(text)": (
        run(lambda f, s: collect(records({"species": "a", "x": 1})),
            lambda f, s: ("handler", {"steps": [{"step": "filter", "expr": "abs(species) > 1"}]})),
        ["step 's1-handler'", "abs(species) > 1", "species"],
    ),
    # predict input
    "inf in predict input": (
        run(lambda f, s: collect({"step": "csv", "path": str(f / "inf.csv")}), lambda f, s: predict(keep=["id"])),
        ["step 's1-predict'", "sepal_length", "infinite"],
    ),
    "keep: [id, id]": (
        run(lambda f, s: collect(records()), lambda f, s: predict(keep=["id", "id"])),
        ["workflow.yaml:", "keep", "'id'"],
    ),
    # files
    "binary file named .csv": (
        run(lambda f, s: collect({"step": "csv", "path": str(f / "binary.csv")})),
        ["binary.csv", "line 2", "not a UTF-8 text file"],
    ),
    "parquet corrupt in the middle": (
        run(lambda f, s: collect({"step": "parquet", "path": str(f / "corrupt.parquet")})),
        ["corrupt.parquet", "row group"],
    ),
    "JSON nested 100,000 deep": (
        run(lambda f, s: collect({"step": "jsonl", "path": str(f / "deep.jsonl")})), ["deep.jsonl", "line 2", "nested"]
    ),
    "10,000-digit integer in JSON Lines": (
        run(lambda f, s: collect({"step": "jsonl", "path": str(f / "bigint.jsonl")})),
        ["bigint.jsonl", "line 2", "digits"],
    ),
    "10,000-digit integer in YAML": (
        lambda tmp, world, s: ["run", text_file(tmp / "workflow.yaml", BIG_NUMBER_WORKFLOW)],
        ["workflow.yaml:4:", "10000 digits"],
    ),
    "CSV line over max_line_bytes": (
        run(lambda f, s: collect({"step": "csv", "path": str(f / "long-line.csv"), "max_line_bytes": 1000})),
        ["long-line.csv", "line 3", "max_line_bytes"],
    ),
    "JSON Lines line over max_line_bytes": (
        run(lambda f, s: collect({"step": "jsonl", "path": str(f / "long-line.jsonl"), "max_line_bytes": 1000})),
        ["long-line.jsonl", "line 2", "max_line_bytes"],
    ),
    "delimiter é": (
        run(lambda f, s: collect({"step": "csv", "path": str(f / "inf.csv"), "delimiter": "é"})),
        ["workflow.yaml:", "delimiter"],
    ),
    "delimiter newline": (
        run(lambda f, s: collect({"step": "csv", "path": str(f / "inf.csv"), "delimiter": "\n"})),
        ["workflow.yaml:", "delimiter"],
    ),
    "one_hot on 1,500 values": (
        run(lambda f, s: collect({"step": "csv", "path": str(f / "many-values.csv")}),
            lambda f, s: ("features", {"steps": [{"step": "one_hot", "columns": ["city"]}]})),
        ["one_hot", "'city'", "1500", "max_categories"],
    ),
    # volume keys
    "300-character key segment (read)": (
        run(lambda f, s: collect({"step": "csv", "key": "raw/" + "k" * 300 + ".csv"})), ["255", "kkkk"]
    ),
    "300-character key segment (write)": (
        run(lambda f, s: collect(records()), lambda f, s: predict(sink={"step": "csv", "key": "o/" + "k" * 300})),
        ["255", "kkkk"],
    ),
    "key that is a folder": (
        run(lambda f, s: collect(records()), lambda f, s: predict(sink={"step": "csv", "key": "clash/a/b"})),
        ["'clash/a/b'", "folder"],
    ),
    "key under an object": (
        run(lambda f, s: collect(records()), lambda f, s: predict(sink={"step": "csv", "key": "clash/a/b/c/d"})),
        ["'clash/a/b/c/d'", "'clash/a/b/c'"],
    ),
    "sink path that is a folder": (
        run(lambda f, s: collect(records()), lambda f, s: predict(sink={"step": "csv", "path": str(f / "a-folder")})),
        ["a-folder", "folder"],
    ),
    # http
    "redirect to ftp://": (
        run(lambda f, s: collect({"step": "http", "url": f"http://{s}/ftp"})), ["/ftp", "ftp://127.0.0.1/data.json"]
    ),
    "truncated body": (
        run(lambda f, s: collect({"step": "http", "url": f"http://{s}/truncated"})), ["/truncated", "1000"]
    ),
    "trickling server": (
        run(lambda f, s: collect({"step": "http", "url": f"http://{s}/trickle", "deadline": 1})),
        ["/trickle", "deadline"],
    ),
    "corrupt gzip body": (
        run(lambda f, s: collect({"step": "http", "url": f"http://{s}/bad-gzip"})), ["/bad-gzip", "Content-Encoding"]
    ),
    "JSON document nested 100,000 deep": (
        run(lambda f, s: collect({"step": "http", "url": f"http://{s}/deep"})), ["/deep", "nested"]
    ),
    "10,000-digit integer over HTTP": (
        run(lambda f, s: collect({"step": "http", "url": f"http://{s}/bigint"})), ["/bigint", "digits"]
    ),
    "password in the URL, HTTP error": (
        run(lambda f, s: collect({"step": "http", "url": f"http://user:{SECRET}@{s}/secret"})),
        ["/secret", "HTTP 500", "user:***@"],
    ),
    "password in the URL, connection refused": (
        run(lambda f, s: collect({"step": "http", "url": f"http://user:{SECRET}@127.0.0.1:9/x", "timeout": 5})),
        ["127.0.0.1:9/x", "user:***@"],
    ),
    "password in an invalid URL": (
        run(lambda f, s: collect({"step": "http", "url": f"ftp://user:{SECRET}@{s}/x"})), ["workflow.yaml:", "url"]
    ),
    "header value with CR/LF": (
        run(lambda f, s: collect({"step": "http", "url": f"http://{s}/x", "headers": {"X-A": "a\r\nX-Injected: 1"}})),
        ["workflow.yaml:", "X-A"],
    ),
    "header name with CR/LF": (
        run(lambda f, s: collect({"step": "http", "url": f"http://{s}/x", "headers": {"X-A\r\nB": "a"}})),
        ["workflow.yaml:", "header"],
    ),
    # what no one foresaw: a bug in a step, a source slower than its deadline
    "a step raising an unexpected exception": (
        run(lambda f, s: collect(records()), lambda f, s: ("handler", {"steps": [{"step": f"{__name__}:Explode"}]})),
        ["step 's1-handler'", "RuntimeError: boom"],
    ),
    "a source slower than its deadline": (
        run(lambda f, s: collect({"step": f"{__name__}:Slow", "deadline": 0.5})), ["Slow", "deadline of 0.5s"]
    ),
    # the run store and other options
    "--state is a folder": (lambda tmp, world, s: ["runs", "--state", world / "files" / "a-folder"], ["a-folder"]),
    "--state is garbage": (
        lambda tmp, world, s: ["runs", "--state", world / "files" / "garbage.sqlite"], ["garbage.sqlite", "SQLite"]
    ),
    "run --state is garbage": (
        lambda tmp, world, s: ["run", CONFIGS / "iris" / "train.yaml", "--state", world / "files" / "garbage.sqlite"],
        ["garbage.sqlite", "SQLite"],
    ),
    "schema --out onto a file": (
        lambda tmp, world, s: ["schema", "--out", world / "files" / "a-file.txt"], ["a-file.txt", "--out"]
    ),
}


@pytest.mark.parametrize("case", FAILING)
def test_hostile_input_gives_one_message(case: str, cli, world: Path, server: str, tmp_path: Path) -> None:
    args, fragments = FAILING[case]
    outcome = cli(*args(tmp_path, world, server))
    assert outcome.exception is None, repr(outcome.exception)
    assert "Traceback" not in outcome.everything, outcome.everything
    assert outcome.exit_code != 0, outcome.everything
    lines = outcome.errors()
    assert len(lines) == 1, outcome.everything
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert SECRET not in outcome.everything


HANDLED: dict[str, Args] = {
    "gzip-encoded body": run(lambda f, s: collect({"step": "http", "url": f"http://{s}/gzip"})),
    "non-ASCII URL": run(lambda f, s: collect({"step": "http", "url": f"http://{s}/déjà.json"})),
    "CSV header with CR/LF": run(lambda f, s: collect({"step": "csv", "path": str(f / "crlf-header.csv")})),
    "runs --limit 99999999999999999999": lambda tmp, world, s: ["runs", "--limit", "99999999999999999999"],
    "runs --state in a folder that does not exist": lambda tmp, world, s: ["runs", "--state", tmp / "no" / "dir" / "x"],
}


@pytest.mark.parametrize("case", HANDLED)
def test_input_that_is_valid_once_handled(case: str, cli, world: Path, server: str, tmp_path: Path) -> None:
    outcome = cli(*HANDLED[case](tmp_path, world, server))
    assert outcome.exception is None, repr(outcome.exception)
    assert "Traceback" not in outcome.everything, outcome.everything
    assert outcome.exit_code == 0, outcome.everything
    assert not (tmp_path / "no").exists()  # a read-only command creates nothing


def test_cli_reports_an_unexpected_error_on_one_line() -> None:
    """The CLI's boundary: a bug is one line too; its traceback only with -v."""
    app = typer.Typer()

    @app.command()
    @cli_module.user_errors
    def crash() -> None:
        raise RuntimeError("boom")

    result = CliRunner().invoke(app, [])
    assert result.exit_code == 1 and (result.exception is None or isinstance(result.exception, SystemExit))
    assert result.stderr.strip() == "error: unexpected RuntimeError: boom (run with -v for the traceback)"
