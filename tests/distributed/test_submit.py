"""`mlrm submit`: it checks everything before sending, says what it waits for, gives up, and a
submission it gave up on never runs behind its back."""

from __future__ import annotations

import pytest
from rich.console import Console
from typer.testing import CliRunner

import cli.common as cli_common
from cli import app
from mlrm.bus import open_bus
from orchestrator.orchestrator import SUBMIT_QUEUE
from tests.conftest import CONFIGS

IRIS = CONFIGS / "iris"


@pytest.fixture
def submit(vhost, monkeypatch, tmp_path):
    url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    monkeypatch.setenv("MLRM_BUS", url)
    monkeypatch.setenv("MLRM_VOLUME", str(tmp_path / "volume"))
    monkeypatch.setattr(cli_common, "out", Console(width=250))

    def run(*args: str):
        result = CliRunner().invoke(app, ["submit", *map(str, args)])
        assert not (result.exception and not isinstance(result.exception, SystemExit)), result.exception
        return result

    def queued() -> list[str]:  # run ids of the submissions waiting for an orchestrator
        bus = open_bus(url)
        try:
            return [env.run_id for env in bus.peek(SUBMIT_QUEUE)]
        finally:
            bus.close()

    run.queued = queued
    return run


def test_a_submit_that_cannot_reach_its_volume_sends_nothing(submit, s3_env, monkeypatch):
    monkeypatch.setenv("MLRM_VOLUME", "s3://no-such-bucket-here")
    result = submit(IRIS / "train.yaml", "--timeout", "30")
    assert result.exit_code != 0
    assert "bucket 'no-such-bucket-here' does not exist" in result.stderr
    assert "submitted run" not in result.stderr
    assert submit.queued() == []  # nothing an orchestrator could start later


def test_without_an_orchestrator_submit_says_so_gives_up_and_its_run_never_executes(submit, cluster_factory, tmp_path):
    result = submit(IRIS / "train.yaml", "--timeout", "3")  # no orchestrator is running yet
    assert result.exit_code != 0
    run_id = result.stderr.split("submitted run ")[1].split()[0]
    assert f"waiting for an orchestrator to start run {run_id}" in result.stderr
    assert submit.queued() == [run_id]

    cluster = cluster_factory()  # an orchestrator starts later, and finds the submission
    record = cluster.wait(run_id)
    assert record.status == "failed" and "expired" in record.error
    assert [s.batches_in for s in record.steps] == [0, 0, 0, 0]  # nothing executed
    assert not list(cluster.volume.list("models/"))


def test_submit_and_follow_with_an_orchestrator(submit, cluster_factory):
    cluster_factory()
    result = submit(IRIS / "train.yaml", "--timeout", "120")
    assert result.exit_code == 0, result.output
    assert "iris-classifier version 1" in result.stdout
