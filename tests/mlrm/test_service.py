"""The service runtime: configs validated once per run (not per message), failures as data, events for every group."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, model_validator

from mlrm.bus import Envelope, Hop, dead_letter_queue, message_id
from mlrm.bus.envelope import decode, encode
from mlrm.bus.memory import MemoryBus
from mlrm.context import StepContext
from mlrm.errors import ConfigError, Location, NotFoundError, error_from_dict
from mlrm.service import Batch, Service
from tests.conftest import CONFIGS
from tests.support import wait_for


class EchoConfig(BaseModel):
    """Counts its validations (a plain model: a ConfigModel would register its kind for every test)."""

    validations: ClassVar[int] = 0
    fail: str | None = None

    @model_validator(mode="after")
    def _count(self) -> EchoConfig:
        type(self).validations += 1
        return self


class Echo(Service):
    """Passes batches on; raises the error its config names (not registered: a test's own service)."""

    name = "echo"
    config_model = EchoConfig

    def process(self, env: Envelope, config: Any, ctx: StepContext) -> Iterator[Batch]:
        if config.fail == "config":
            raise ConfigError("bad option", Location("echo.yaml", 3, 5, "fail"))
        if config.fail == "missing":
            raise NotFoundError("no such thing")
        yield Batch(env.payload, env.seq, env.last)


@pytest.fixture
def echo(volume) -> Iterator[tuple[MemoryBus, list[dict[str, Any]]]]:
    """A started Echo service on a memory bus, and the events it published (as group `test`)."""
    EchoConfig.validations = 0
    bus = MemoryBus()
    events: list[dict[str, Any]] = []
    bus.subscribe_events("test", lambda d: (events.append(d.envelope.body), d.ack()))
    Echo(bus, volume, retries=0).start()
    bus.start()
    yield bus, events
    bus.close()


def messages(run_id: str, config: dict[str, Any], n: int, *, validated: Any = None) -> list[Envelope]:
    route = [Hop("echo", "echo", config, validated=validated)]
    return [Envelope(id=message_id(run_id, "echo", i), run_id=run_id, route=route, seq=i, last=i == n - 1)
            for i in range(n)]  # fmt: skip


def test_a_remote_route_is_validated_once_per_run_not_per_message(echo):
    bus, events = echo
    for run in ("run-1", "run-2"):
        for env in messages(run, {}, 5):
            bus.publish("mlrm.echo", decode(encode(env)))  # as it arrives over a remote bus: JSON only
    wait_for(lambda: len(events) == 10, what="ten events")
    assert EchoConfig.validations == 2  # once for each run


def test_an_in_process_route_carries_its_validated_config(echo):
    bus, events = echo
    compiled = EchoConfig()  # what the orchestrator validated when it compiled the workflow
    EchoConfig.validations = 0
    for env in messages("run-1", {}, 5, validated=compiled):
        bus.publish("mlrm.echo", env)
    wait_for(lambda: len(events) == 5, what="five events")
    assert EchoConfig.validations == 0


def test_the_validated_config_never_travels():
    env = messages("r", {"fail": None}, 1, validated=EchoConfig())[0]
    assert env.route[0].to_dict() == {"name": "echo", "service": "echo", "config": {"fail": None}, "base_dir": ".",
                                      "node": None}  # fmt: skip
    back = decode(encode(env)).route[0]
    assert back.validated is None and back == env.route[0]


@pytest.mark.parametrize(
    ("fail", "expected"),
    [
        ("config", ConfigError("bad option", Location("echo.yaml", 3, 5, "fail"))),
        ("missing", NotFoundError("no such thing")),
    ],
)
def test_a_failure_carries_the_error_as_data_in_the_event_and_the_dead_letter(echo, fail, expected):
    bus, events = echo
    bus.publish("mlrm.echo", decode(encode(messages("run-1", {"fail": fail}, 1)[0])))
    wait_for(lambda: events, what="the failed event")
    (event,) = events
    assert event["event"] == "failed"
    assert event["error"] == f"step 'echo' (echo): {expected.message}"  # the one line run records show
    (dead,) = bus.drain(dead_letter_queue("mlrm.echo"))
    for data in (event["error_data"], decode(encode(dead)).body["error_data"]):  # as a remote reader gets them
        rebuilt = error_from_dict(data)
        assert type(rebuilt) is type(expected) and rebuilt.message == expected.message
        assert getattr(rebuilt, "location", None) == getattr(expected, "location", None)


# -- training builds its estimator once ------------------------------------------------------
def test_an_iris_training_builds_its_estimator_once(mlrm, monkeypatch):
    """Compiling validates the train config without instantiating; the service reuses that validation."""
    from sklearn.ensemble import RandomForestClassifier

    built: list[int] = []

    class CountingForest(RandomForestClassifier):
        def __new__(cls, *args: Any, **kwargs: Any) -> CountingForest:
            built.append(1)
            return super().__new__(cls)

    monkeypatch.setattr("sklearn.ensemble.RandomForestClassifier", CountingForest)  # the name model.yaml gives
    run = mlrm.run(CONFIGS / "iris" / "train.yaml", timeout=120)
    assert run.status == "succeeded", run.error
    assert run.result("train")["metrics"]["accuracy"] >= 0.9
    assert len(built) == 1  # the one it fits (a hold-out evaluation without refit)
