"""An embedded mlrm with its control plane served on free ports, and a configs folder of its own."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlrm.settings import Settings
from orchestrator.api.serve import ControlServers
from orchestrator.embedded import Embedded

ROOT = Path(__file__).resolve().parents[3]
STEPS = ROOT / "tests" / "distributed"  # faulty_steps: a slow handler step and a slow classifier


@pytest.fixture
def configs(tmp_path: Path) -> Path:
    folder = tmp_path / "configs"
    shutil.copytree(ROOT / "configs" / "iris", folder / "iris")
    return folder


@pytest.fixture
def embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Embedded]:
    monkeypatch.syspath_prepend(str(STEPS))
    settings = Settings(volume=str(tmp_path / "volume"), state=str(tmp_path / "runs.sqlite"), retries=1)
    with Embedded(settings) as runtime:
        runtime.orchestrator.cancel_sweep = 1.0  # past the services' cache of "not cancelled" (0.5 s)
        yield runtime
    sys.modules.pop("faulty_steps", None)


@pytest.fixture
def servers(embedded: Embedded, configs: Path) -> Iterator[ControlServers]:
    with ControlServers(embedded.orchestrator, configs=configs, http_port=0, grpc_port=0) as running:
        yield running


@pytest.fixture
def client(servers: ControlServers) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{servers.http_port}", timeout=30) as http:
        yield http


def slow_workflow(folder: Path, rows: int = 3000, batch: int = 50, seconds: float = 0.02, fit: float = 0.0) -> str:
    """A training workflow that takes a while: a slow handler step per batch, and optionally a slow fit."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    data = folder / "slow.csv"
    pd.DataFrame({"x": rng.normal(size=rows), "y": rng.integers(0, 2, rows)}).to_csv(data, index=False)
    estimator = (
        f'{{estimator: "faulty_steps:SlowClassifier", hyperparameters: {{seconds: {fit}}}}}'
        if fit
        else "{estimator: sklearn.dummy.DummyClassifier}"
    )
    return f"""kind: Workflow
name: slow
steps:
  - {{name: collect, service: collector, config: {{source: {{step: csv, path: {data}}}, batch_size: {batch}}}}}
  - {{name: clean, service: handler, config: {{steps: [{{step: "faulty_steps:Slow", seconds: {seconds}}}]}}}}
  - name: train
    service: train
    config:
      model: {{name: slow, kind: classification, {estimator[1:-1]}}}
      target: y
"""
