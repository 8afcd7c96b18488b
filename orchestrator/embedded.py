"""Everything in one process: in-memory bus, every service, the orchestrator. No servers needed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlrm.bus.memory import MemoryBus
from mlrm.service import Service, services
from mlrm.settings import Settings
from mlrm.volume import Volume, open_volume
from orchestrator.compile import compile_workflow
from orchestrator.orchestrator import Orchestrator
from orchestrator.store import RunRecord, RunStore


class Embedded:
    """``with Embedded() as mlrm: record = mlrm.run("configs/iris/train.yaml")``"""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        volume: Volume | None = None,
        store: RunStore | None = None,
        replicas: int = 1,
    ) -> None:
        self.settings = settings or Settings()
        self.bus = MemoryBus()
        self.volume = volume or open_volume(self.settings.volume)
        self.store = store or RunStore(self.settings.state)
        self.services: list[Service] = []
        for name, cls in services.items():
            for i in range(replicas):
                self.services.append(
                    cls(self.bus, self.volume, retries=self.settings.retries, worker=f"{name}-{i}", background=False)
                )
        # Its runs live and die with this process: a later `mlrm run` finds them abandoned, never adopts them.
        self.orchestrator = Orchestrator(self.bus, self.volume, self.store, name="embedded", publish_status=False)

    def __enter__(self) -> Embedded:
        for service in self.services:
            service.start()
        self.orchestrator.start()
        self.bus.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for service in self.services:
            service.stop()
        self.orchestrator.stop()
        self.bus.close()
        self.store.close()
        self.volume.close()

    def submit(self, workflow: str | Path) -> str:
        return self.orchestrator.submit(compile_workflow(workflow))

    def run(
        self,
        workflow: str | Path,
        *,
        timeout: float | None = None,
        on_change: Callable[[RunRecord], None] | None = None,
    ) -> RunRecord:
        """Compile, submit and wait for a workflow; returns its final run record."""
        run_id = self.submit(workflow)
        return self.orchestrator.wait(run_id, timeout=timeout, on_change=on_change)

    def service(self, name: str) -> Any:
        return next(s for s in self.services if s.name == name)
