"""The broker helper: URL redaction of every shape, URL parsing, the reconnect policy's bounds,
and a refused login (against the real broker) as one line without the password."""

from __future__ import annotations

import pika
import pytest

from mlrm.amqp import RECONNECT, Backoff, Broker, redact
from mlrm.errors import BusError, ConfigError
from tests.support import HOST, PORT, broker_up

# (url, redacted, secrets that must be gone)
SHAPES = [
    ("amqp://guest:guest@127.0.0.1:5672/%2F", "amqp://***@127.0.0.1:5672/%2F", ["guest"]),
    ("amqp://alice:s3cr3t@rabbit:5672/prod", "amqp://***@rabbit:5672/prod", ["alice", "s3cr3t"]),
    ("amqp://alice@rabbit/prod", "amqp://***@rabbit/prod", ["alice"]),
    ("amqp://rabbit:5672/%2F", "amqp://rabbit:5672/%2F", []),
    ("amqp://rabbit", "amqp://rabbit", []),
    (
        "amqps://bob:pw@rabbit.example.com:5671/vh?heartbeat=30",
        "amqps://***@rabbit.example.com:5671/vh?heartbeat=30",
        ["bob", "pw@"],
    ),
    ("amqp://u:p%40ss%2Fword@rabbit/vh", "amqp://***@rabbit/vh", ["p%40ss", "word"]),  # escaped @ and /
    ("amqp://u:pa/ss@wo@rd@rabbit/vh", "amqp://***@rabbit/vh", ["pa/ss", "wo@rd"]),  # unescaped ones
    ("amqp://u:pw@rabbit/vh?note=a@b", "amqp://***@rabbit/vh?note=a@b", ["u:pw"]),  # an @ in the query
    ("amqp://rabbit/vh?note=a@b", "amqp://rabbit/vh?note=a@b", []),
    ("amqp://rabbit/%2F?heartbeat=5&password=hunter2", "amqp://rabbit/%2F?heartbeat=5&password=***", ["hunter2"]),
    (
        "amqp://u:pw@rabbit/?Token=t0k&api_key=k3y&x-signature=s1g&prefetch=8",
        "amqp://***@rabbit/?Token=***&api_key=***&x-signature=***&prefetch=8",
        ["t0k", "k3y", "s1g"],
    ),
    ("amqp://rabbit/?pass%77ord=hunter2", "amqp://rabbit/?pass%77ord=***", ["hunter2"]),  # an escaped key
    ("amqps://rabbit/?ssl_options=%7B%27password%27%3A+%27k3y%27%7D", "amqps://rabbit/?ssl_options=***", ["k3y"]),
    ("amqp://rabbit/?secret=x#frag", "amqp://rabbit/?secret=***", ["x#"]),
    ("carrier://user:secret@coop", "carrier://***@coop", ["user", "secret"]),
    ("user:secret@coop", "***@coop", ["user", "secret"]),  # no scheme at all
    ("memory://", "memory://", []),
]


@pytest.mark.parametrize(("url", "shown", "secrets"), SHAPES, ids=[s[0] for s in SHAPES])
def test_redact_every_url_shape(url: str, shown: str, secrets: list[str]) -> None:
    assert redact(url) == shown
    for secret in secrets:
        assert secret not in redact(url)
    assert redact(redact(url)) == redact(url)  # redacting twice changes nothing


def test_the_broker_keeps_only_the_redacted_url_and_splits_its_own_options() -> None:
    broker = Broker("amqp://u:pw@rabbit:5672/%2F?heartbeat=5&prefetch=3", options=("prefetch",))
    assert broker.url == "amqp://***@rabbit:5672/%2F?heartbeat=5&prefetch=3"
    assert "pw" not in repr(broker)
    assert broker.options == {"prefetch": "3"}
    params = broker.parameters("mlrm test")
    assert params.client_properties == {"connection_name": "mlrm test"}
    assert (params.host, params.port, params.virtual_host, params.heartbeat) == ("rabbit", 5672, "/", 5)
    assert isinstance(params.credentials, pika.PlainCredentials) and params.credentials.password == "pw"


@pytest.mark.parametrize(
    "url",
    [
        "amqp://u:hunter2@rabbit/?no_such_option=1",
        "amqp://u:hunter2@rabbit:port/",
        "amqp://u:hunter2@[::1/vh",
        "http://u:hunter2@rabbit/",
    ],
)
def test_a_bad_url_is_a_config_error_without_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        Broker(url, what="bus")
    assert "hunter2" not in str(info.value) and "\n" not in str(info.value)


def test_describe_is_one_line_without_the_password() -> None:
    broker = Broker("amqp://u:p%40ss@rabbit/?token=t0k", options=("token",))  # pika knows no token
    text = broker.describe(RuntimeError("login p@ss\nfailed, p%40ss, t0k"))
    assert text == "RuntimeError: login *** failed, ***, ***"


# -- the reconnect policy (pure: a fake clock) -------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_backoff_retries_at_once_then_grows_and_is_capped() -> None:
    assert [Backoff(0.25, 5.0).delay(n) for n in range(1, 10)] == [0, 0.25, 0.5, 1, 2, 4, 5, 5, 5]
    assert RECONNECT.delay(10_000) == RECONNECT.most  # no overflow, however long the outage
    for bad in ((0, 1), (-1, 1), (2, 1)):
        with pytest.raises(ConfigError):
            Backoff(*bad)


def test_a_retry_honours_its_deadline() -> None:
    clock = Clock()
    retry = Backoff(0.25, 5.0).retry(2.0, clock=clock)
    waited = 0.0
    while True:
        delay = retry.failed()
        if retry.spent:
            break
        clock.now += delay + 0.1  # the wait, then an attempt that takes 0.1 s
        waited += delay
    assert retry.failures == 4  # at once, 0.25, 0.5: the next 1 s would end past the deadline
    assert waited == 0.75
    assert clock.now + delay > retry.deadline >= clock.now


def test_the_first_retry_is_always_allowed() -> None:
    clock = Clock()
    retry = RECONNECT.retry(0.0, clock=clock)
    clock.now += 1  # the failed attempt took longer than the whole budget
    assert retry.failed() == 0 and not retry.spent
    retry.failed()
    assert retry.spent


def test_without_a_budget_a_retry_goes_on_and_success_starts_a_new_outage() -> None:
    clock = Clock()
    retry = Backoff(1.0, 3.0).retry(clock=clock)
    assert retry.succeeded() is None  # no outage yet
    for _ in range(50):
        clock.now += retry.failed()
        assert not retry.spent
    assert retry.failed() == 3.0
    assert retry.succeeded() == pytest.approx(2 * 0 + 1 + 2 + 3 * 47)
    assert (retry.failures, retry.failed()) == (0, 0.0)  # a new outage: at once again


# -- against the real broker ------------------------------------------------------------------
@pytest.mark.amqp
@pytest.mark.skipif(not broker_up(), reason=f"no RabbitMQ broker accepts connections on {HOST}:{PORT}")
def test_a_wrong_password_is_one_line_without_the_password() -> None:
    broker = Broker(f"amqp://guest:wrong-p%40ssword@{HOST}:{PORT}/%2F")
    with pytest.raises(BusError, match=r"^the broker at amqp://\*\*\*@127\.0\.0\.1:5672/%2F refused the login") as info:
        broker.connect("mlrm test")
    message = str(info.value)
    assert "\n" not in message and "wrong" not in message and "p@ssword" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no pika chain to print
