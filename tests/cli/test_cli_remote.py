"""`mlrm submit`, `status` and `runs` with --url, against a real control plane; `mlrm api` as a process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

import cli.common as cli_module
from cli import app
from tests.orchestrator.api.conftest import configs, embedded, servers  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(cli_module, "out", Console(width=250))
    monkeypatch.setattr(cli_module, "err", Console(width=250, stderr=True))
    runner = CliRunner()

    def invoke(*args: object):
        result = runner.invoke(app, [str(a) for a in args])
        assert not (result.exception and not isinstance(result.exception, SystemExit)), result.exception
        return result

    return invoke


def test_submit_status_runs_with_url(cli, servers, tmp_path: Path) -> None:  # noqa: F811
    url = f"http://127.0.0.1:{servers.http_port}"
    # a local workflow file: compiled here, sent with its configs inlined and its data paths absolute
    done = cli("submit", ROOT / "configs" / "iris" / "train.yaml", "--url", url, "--timeout", "120")
    assert done.exit_code == 0, done.output
    assert "succeeded" in done.output and "iris-classifier" in done.output
    # a workflow under the server's configs folder, by name, not followed: prints the run id
    started = cli("submit", "iris/train", "--url", url, "--no-follow")
    assert started.exit_code == 0, started.output
    run_id = started.stdout.strip().splitlines()[-1]
    shown = cli("status", run_id, "--url", url, "--follow")
    assert shown.exit_code == 0 and "succeeded" in shown.output
    listed = cli("runs", "--url", url, "--json")
    assert listed.exit_code == 0 and listed.stdout.count('"iris-train"') == 2
    assert run_id in cli("runs", "--url", url).stdout
    missing = cli("status", "nope", "--url", url)
    assert missing.exit_code == 3 and "no run with id 'nope'" in missing.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Workflow\nname: bad\nsteps: []\n")
    refused = cli("submit", bad, "--url", url)
    assert refused.exit_code == 2 and "bad.yaml:3" in refused.output  # checked here, before sending
    ended = cli("cancel", run_id, "--url", url)
    assert ended.exit_code == 4 and "already ended succeeded" in ended.output
    nobody = cli("runs", "--url", "http://127.0.0.1:9")
    assert nobody.exit_code == 1 and "cannot reach the control plane" in nobody.output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlrm_api_serves_embedded_without_a_broker(tmp_path: Path) -> None:
    http, grpc = free_port(), free_port()
    env = {**os.environ, "MLRM_VOLUME": str(tmp_path / "volume"), "MLRM_STATE": str(tmp_path / "runs.sqlite"),
           "MLRM_BUS": "amqp://guest:guest@127.0.0.1:1/%2F"}  # no broker is used, even when one is configured
    cmd = [sys.executable, "-m", "mlrm", "api", "--http-port", str(http), "--grpc-port", str(grpc),
           "--configs", str(ROOT / "configs")]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{http}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.2)
        run_id = httpx.post(f"http://127.0.0.1:{http}/runs", json={"name": "iris/train"}).json()["run_id"]
        while (run := httpx.get(f"http://127.0.0.1:{http}/runs/{run_id}").json())["status"] == "running":
            assert time.monotonic() < deadline + 60
            time.sleep(0.2)
        assert run["status"] == "succeeded", run
    finally:
        proc.send_signal(signal.SIGINT)
        _, errors = proc.communicate(timeout=30)
    assert proc.returncode == 0, errors
    assert "no authentication" in errors and f"REST http://127.0.0.1:{http}" in errors


def test_url_commands_send_the_callers_credential(cli, embedded, configs, tmp_path, monkeypatch) -> None:  # noqa: F811
    """Against a control plane with authentication, --url commands carry MLRM_API_KEY or MLRM_TOKEN."""
    from mlrm.auth import AuthSettings, Security
    from orchestrator.api.serve import ControlServers

    store_file = tmp_path / "auth.yaml"
    security = Security.from_settings(AuthSettings(auth_file=str(store_file), jwt_keys="k1:" + "x" * 40))
    _, key = security.store.create_key("scripts", ["read"])
    with ControlServers(embedded.orchestrator, configs=configs, http_port=0, grpc_port=None,
                        security=security) as running:  # fmt: skip
        url = f"http://127.0.0.1:{running.http_port}"
        monkeypatch.delenv("MLRM_TOKEN", raising=False)
        monkeypatch.delenv("MLRM_API_KEY", raising=False)
        anonymous = cli("runs", "--url", url)
        assert anonymous.exit_code != 0 and "authentication required" in anonymous.output
        monkeypatch.setenv("MLRM_API_KEY", key)
        assert cli("runs", "--url", url, "--json").exit_code == 0
        refused = cli("submit", "iris/train", "--url", url, "--no-follow")  # a key without the submit scope
        assert refused.exit_code != 0 and "submit" in refused.output
        monkeypatch.delenv("MLRM_API_KEY")
        monkeypatch.setenv("MLRM_TOKEN", security.tokens.issue("alice", ["submit", "read"])[0])
        started = cli("submit", "iris/train", "--url", url, "--no-follow")
        assert started.exit_code == 0, started.output
        run_id = started.stdout.strip().splitlines()[-1]
        assert cli("status", run_id, "--url", url, "--follow").exit_code == 0  # read with the token too
        assert key not in anonymous.output + refused.output  # no secret in what the user sees
