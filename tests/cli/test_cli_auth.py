"""`mlrm users`, `mlrm keys`, `mlrm auth` and the security `mlrm serve` starts with: files 0600 with
hashes only, secrets printed once and never listed; a server on a shared bus without a signing key
refuses to start unless told --insecure; a secured `mlrm serve predict` asks for credentials (over TLS too)."""

from __future__ import annotations

import json
import os
import signal
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import trustme
import yaml
from typer.testing import CliRunner

from cli import app

PASSWORD = "a long enough password"


@pytest.fixture
def mlrm(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default files: .mlrm/auth.yaml, .mlrm/jwt-keys.yaml
    for name in ("MLRM_AUTH_FILE", "MLRM_JWT_KEYS", "MLRM_JWT_KEYS_FILE"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        result = runner.invoke(app, list(args), input=input)
        assert not (result.exception and not isinstance(result.exception, SystemExit)), result.exception
        return result

    return invoke


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_users_are_kept_hashed_in_an_owner_only_file_and_listed_without_hashes(mlrm, tmp_path):
    added = mlrm("users", "add", "alice", "--scope", "read,infer", "--password-stdin", input=PASSWORD + "\n")
    assert added.exit_code == 0, added.stderr
    prompted = mlrm("users", "add", "bob", "-s", "admin", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert prompted.exit_code == 0, prompted.stderr
    path = tmp_path / ".mlrm" / "auth.yaml"
    assert _mode(path) == 0o600 and PASSWORD not in path.read_text()
    users = yaml.safe_load(path.read_text())["users"]
    assert users["alice"]["password"].startswith("$argon2id$") and users["alice"]["scopes"] == ["infer", "read"]
    listed = mlrm("users", "list", "--json")
    assert json.loads(listed.stdout)[0] | {"created": None} == {"name": "alice", "scopes": ["infer", "read"],
                                                                "created": None}  # fmt: skip
    assert "argon2" not in listed.stdout + mlrm("users", "list").stdout
    assert mlrm("users", "passwd", "alice", "--password-stdin", input="another password\n").exit_code == 0
    assert yaml.safe_load(path.read_text())["users"]["alice"]["password"] != users["alice"]["password"]
    assert mlrm("users", "remove", "bob").exit_code == 0
    assert [u["name"] for u in json.loads(mlrm("users", "list", "--json").stdout)] == ["alice"]


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [(("users", "add", "carol", "-s", "root", "--password-stdin"), PASSWORD, "unknown scope 'root'"),
     (("users", "add", "carol", "-s", "read", "--password-stdin"), "short", "at least 8 characters"),
     (("users", "remove", "nobody"), None, "no user 'nobody'"),
     (("keys", "revoke", "0123456789ab"), None, "no API key '0123456789ab'")],
)  # fmt: skip
def test_bad_commands_say_why(mlrm, args, stdin, message):
    result = mlrm(*args, input=None if stdin is None else stdin + "\n")
    assert result.exit_code != 0 and message in result.stderr and "Traceback" not in result.stderr


def test_an_api_key_is_printed_once_and_never_listed(mlrm, tmp_path):
    created = mlrm("keys", "create", "--name", "ci", "--scope", "infer")
    assert created.exit_code == 0, created.stderr
    key = created.stdout.strip()
    key_id, secret = key.split("_")[1], key.split("_", 2)[2]
    path = tmp_path / ".mlrm" / "auth.yaml"
    assert _mode(path) == 0o600 and secret not in path.read_text()
    listed = mlrm("keys", "list", "--json")
    assert json.loads(listed.stdout)[0]["id"] == key_id and json.loads(listed.stdout)[0]["revoked"] is False
    for text in (listed.stdout, mlrm("keys", "list").stdout):
        assert secret not in text and "sha256" not in text
    assert mlrm("keys", "revoke", key_id).exit_code == 0
    assert json.loads(mlrm("keys", "list", "--json").stdout)[0]["revoked"] is True


def test_signing_keys_are_created_rotated_and_kept_private(mlrm, tmp_path):
    assert mlrm("auth", "init-key").exit_code == 0
    path = tmp_path / ".mlrm" / "jwt-keys.yaml"
    assert _mode(path) == 0o600
    first = list(yaml.safe_load(path.read_text()))
    again = mlrm("auth", "init-key")
    assert again.exit_code != 0 and "rotate-key" in again.stderr
    assert mlrm("auth", "rotate-key").exit_code == 0
    keys = list(yaml.safe_load(path.read_text()))
    assert len(keys) == 2 and keys[1] == first[0]
    assert mlrm("auth", "rotate-key").exit_code == 0
    assert list(yaml.safe_load(path.read_text()))[1:] == keys[:1]  # the oldest is retired (--keep 1)
    token = mlrm("auth", "token", "deployer", "-s", "admin", "--ttl", "10m")
    assert token.exit_code == 0 and token.stdout.count(".") == 2
    for secret in yaml.safe_load(path.read_text()).values():
        assert secret not in token.stdout + token.stderr


# -- mlrm serve ---------------------------------------------------------------------------------------
def _serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLRM_JWT", "MLRM_AUTH", "MLRM_TLS"))}
    base |= {"MLRM_VOLUME": str(tmp_path / "volume"), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "mlrm", "serve", "predict", *args], cwd=tmp_path, env=base,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_serve_on_a_shared_bus_without_a_signing_key_refuses_to_start(tmp_path):
    # an unreachable broker: the refusal comes before anything connects or listens
    proc = _serve(tmp_path, env={"MLRM_BUS": "amqp://guest:guest@127.0.0.1:1/%2F"})
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2, stderr
    assert "refusing to open ports without authentication" in stderr
    assert "MLRM_JWT_KEYS" in stderr and "--insecure" in stderr and "Traceback" not in stderr


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(proc: subprocess.Popen, url: str, **options) -> None:
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the server did not start"
        try:
            if httpx.get(url, **options).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    return stderr


def test_standalone_serve_without_a_key_runs_open_with_a_notice(tmp_path):
    port = _free_port()
    proc = _serve(tmp_path, "--no-bus", "--http-port", str(port), "--grpc-port", "0")
    try:
        _wait_ready(proc, f"http://127.0.0.1:{port}/v2/health/ready")
        assert httpx.post(f"http://127.0.0.1:{port}/v2/repository/index").status_code == 200
    finally:
        stderr = _stop(proc)
    assert "no authentication" in stderr and "mlrm auth init-key" in stderr


def test_serve_with_a_signing_key_asks_for_credentials_over_tls(mlrm, tmp_path):
    assert mlrm("auth", "init-key").exit_code == 0  # .mlrm/jwt-keys.yaml: found by default
    assert mlrm("users", "add", "alice", "-s", "read", "--password-stdin", input=PASSWORD + "\n").exit_code == 0
    key = mlrm("keys", "create", "--name", "ci", "-s", "read").stdout.strip()
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    port = _free_port()
    proc = _serve(tmp_path, "--no-bus", "--http-port", str(port), "--grpc-port", "0", "--tls-cert", "server.pem",
                  env={"MLRM_TLS_KEY": str(tmp_path / "server.key")})  # fmt: skip
    base, verify = f"https://127.0.0.1:{port}", ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    try:
        _wait_ready(proc, f"{base}/v2/health/ready", verify=verify)
        index = f"{base}/v2/repository/index"
        assert httpx.post(index, verify=verify).status_code == 401
        assert httpx.post(index, headers={"X-API-Key": key}, verify=verify).status_code == 200
        form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
        access = httpx.post(f"{base}/token", data=form, verify=verify).json()["access_token"]
        assert httpx.post(index, headers={"Authorization": f"Bearer {access}"}, verify=verify).status_code == 200
    finally:
        stderr = _stop(proc)
    assert "authentication on" in stderr and f"REST https://127.0.0.1:{port}" in stderr
    assert key not in stderr and access not in stderr and PASSWORD not in stderr


def test_insecure_turns_authentication_off_even_with_a_key(mlrm, tmp_path):
    assert mlrm("auth", "init-key").exit_code == 0
    port = _free_port()
    proc = _serve(tmp_path, "--no-bus", "--insecure", "--http-port", str(port), "--grpc-port", "0")
    try:
        _wait_ready(proc, f"http://127.0.0.1:{port}/v2/health/ready")
        assert httpx.post(f"http://127.0.0.1:{port}/v2/repository/index").status_code == 200
    finally:
        stderr = _stop(proc)
    assert "authentication is OFF (--insecure)" in stderr
