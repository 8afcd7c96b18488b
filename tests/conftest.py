"""Shared fixtures: a fresh volume and run store per test, and an embedded mlrm around them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlrm.settings import Settings
from mlrm.volume.local import LocalVolume
from orchestrator.embedded import Embedded
from tests.s3server import s3_bucket, s3_env, s3_volume, seaweedfs, seaweedfs_factory  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(volume=str(tmp_path / "volume"), state=str(tmp_path / "runs.sqlite"), retries=1)


@pytest.fixture
def volume(tmp_path: Path) -> LocalVolume:
    return LocalVolume(tmp_path / "volume")


@pytest.fixture(params=["local", "s3"])
def any_volume(request: pytest.FixtureRequest, tmp_path: Path):
    """The local folder and a real S3 server (SeaweedFS): suites that must hold on both use this."""
    if request.param == "s3":
        return request.getfixturevalue("s3_volume")
    return LocalVolume(tmp_path / "volume")


@pytest.fixture
def mlrm(settings: Settings) -> Iterator[Embedded]:
    with Embedded(settings) as runtime:
        yield runtime


@pytest.fixture(scope="session")
def energy_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The energy example's data, generated once per session by the example's own script."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("energy_generate", CONFIGS / "energy" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate(tmp_path_factory.mktemp("energy"))
