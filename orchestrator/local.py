"""``mlrm up``: a whole distributed deployment on one machine, one process per replica.

The deployment file names the bus, the volume and how many replicas of each service
to run; a small supervisor starts ``mlrm orchestrator`` and ``mlrm serve SERVICE``
processes, restarts any that die (with backoff), and stops them all on Ctrl-C.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, field_validator

from mlrm.config import ConfigModel, Section, as_value_error
from mlrm.service import services as service_registry

log = logging.getLogger(__name__)


class ServiceReplicas(Section):
    """How to run one service."""

    replicas: int = Field(1, ge=0, le=64)
    """Processes to start; replicas compete on the service's queue."""
    node: str | None = None
    """Node label (predict: which strict deployments this replica may load)."""
    prefetch: int | None = Field(None, ge=1)
    """Messages a replica takes at once (default: the bus's)."""
    http_port: int | None = Field(None, ge=1, le=65535)
    """Serve the service's API over REST, replica i on this port + i (off when unset). predict: the Open
    Inference Protocol (V2); collector, handler, features: tables (with `config`); train: training jobs."""
    grpc_port: int | None = Field(None, ge=1, le=65535)
    """Serve it over gRPC, replica i on this port + i (off when unset)."""
    config: str | None = None
    """The config the service's API applies (`mlrm serve --config`): collector, handler, features; train: the
    default of jobs that name none. Relative to the folder `mlrm up` runs in."""


class LocalDeployment(ConfigModel):
    """Everything `mlrm up` starts: the orchestrator and N replicas of each service."""

    kind: Literal["LocalDeployment"] = "LocalDeployment"
    bus: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    """Message bus URL shared by every process."""
    volume: str = "volume"
    """Volume URL shared by every process (a folder on this machine, or s3://bucket)."""
    state: str = ".mlrm/runs.sqlite"
    """The orchestrator's run store."""
    services: dict[str, ServiceReplicas] = Field(default_factory=dict)
    """Replicas per service (`collector`, `handler`, ...); a service left out runs one replica."""
    insecure: bool = False
    """Serve the replicas' ports without authentication (`mlrm serve --insecure`). Otherwise a replica
    with ports needs a JWT signing key: MLRM_JWT_KEYS or MLRM_JWT_KEYS_FILE in `mlrm up`'s environment,
    or `.mlrm/jwt-keys.yaml` (`mlrm auth init-key`) in its working folder."""

    @field_validator("services")
    @classmethod
    def _known_services(cls, value: dict[str, ServiceReplicas]) -> dict[str, ServiceReplicas]:
        for name in value:
            as_value_error(service_registry.get, name)
        return value

    def commands(self) -> list[tuple[str, list[str]]]:
        mlrm = [sys.executable, "-m", "mlrm"]
        procs = [("orchestrator", [*mlrm, "orchestrator", *(["--insecure"] if self.insecure else [])])]
        for name in service_registry.names():
            spec = self.services.get(name, ServiceReplicas())  # type: ignore[call-overload]
            for i in range(spec.replicas):
                cmd = [*mlrm, "serve", name, "--worker", f"{name}-{i}"]
                if spec.node:
                    cmd += ["--node", spec.node]
                if spec.prefetch:
                    cmd += ["--prefetch", str(spec.prefetch)]
                # replicas on one machine cannot share a port: each its own, or none (0, whatever MLRM_HTTP_PORT says)
                cmd += ["--http-port", str(spec.http_port + i if spec.http_port else 0)]
                cmd += ["--grpc-port", str(spec.grpc_port + i if spec.grpc_port else 0)]
                if spec.config:
                    cmd += ["--config", spec.config]
                if self.insecure:
                    cmd.append("--insecure")
                procs.append((f"{name}-{i}", cmd))
        return procs

    def env(self) -> dict[str, str]:
        return {**os.environ, "MLRM_BUS": self.bus, "MLRM_VOLUME": self.volume, "MLRM_STATE": self.state}


@dataclass
class Child:
    name: str
    cmd: list[str]
    proc: subprocess.Popen | None = None
    restarts: int = 0
    next_start: float = 0.0
    started: float = 0.0  # time.monotonic() of the last start


@dataclass
class Supervisor:
    deployment: LocalDeployment
    children: list[Child] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    healthy_after: float = 60.0  # a child up this long has recovered: its next crash restarts it at once again
    output: str | None = None  # a file for the children's stdout and stderr (default: this process's)

    def start(self) -> None:
        """Start every process, and a thread that restarts any that die."""
        self.children = [Child(name, cmd) for name, cmd in self.deployment.commands()]
        for child in self.children:
            self._spawn(child)
        threading.Thread(target=self._monitor, name="supervisor", daemon=True).start()

    def _monitor(self) -> None:
        while not self.stopping.wait(0.2):
            self.poll()

    def _spawn(self, child: Child) -> None:
        child.started = time.monotonic()
        if self.output is None:
            child.proc = subprocess.Popen(child.cmd, env=self.deployment.env(), start_new_session=True)
            return
        with open(self.output, "ab") as out:
            child.proc = subprocess.Popen(child.cmd, env=self.deployment.env(), start_new_session=True,
                                          stdout=out, stderr=subprocess.STDOUT)  # fmt: skip

    def poll(self) -> None:
        """Restart children that died, with exponential backoff."""
        now = time.monotonic()
        for child in self.children:
            if self.stopping.is_set() or child.proc is None:
                continue
            if child.proc.poll() is None:
                if child.restarts and now - child.started >= self.healthy_after:
                    child.restarts = 0  # the backoff is for crash loops, not for a crash a day
                continue
            if child.next_start == 0.0:
                delay = min(30.0, 0.5 * 2 ** min(child.restarts, 6))
                child.next_start = now + delay
                log.warning("%s exited with %s; restarting in %.1fs", child.name, child.proc.returncode, delay)
            elif now >= child.next_start:
                child.restarts += 1
                child.next_start = 0.0
                self._spawn(child)

    def run(self) -> None:
        """Supervise until SIGINT/SIGTERM, then stop every child."""
        previous = {s: signal.signal(s, lambda *_: self.stopping.set()) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            self.stopping.wait()
        finally:
            self.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)

    def stop(self, timeout: float = 15.0) -> None:
        self.stopping.set()
        alive = [c.proc for c in self.children if c.proc is not None and c.proc.poll() is None]
        for proc in alive:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in alive:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def pids(self) -> dict[str, int]:
        return {c.name: c.proc.pid for c in self.children if c.proc is not None and c.proc.poll() is None}
