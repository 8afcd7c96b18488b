"""nameko compatibility against a real RabbitMQ and real nameko.

nameko as client: nameko's own ``ClusterRpcProxy`` calls an mlrm :class:`NamekoResponder`.
nameko as peer: a real nameko service, run by ``python -m nameko run`` in a subprocess
(eventlet's monkey-patching stays out of the pytest process), is called by
:class:`NamekoRpcClient`, and itself calls an mlrm responder through nameko's ``RpcProxy``.
Service names carry a random suffix so parallel or repeated runs never share a queue.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pika.exceptions as px
import pytest

from mlrm.amqp import Backoff
from mlrm.errors import BusError, ConfigError, DataError, Location, NotFoundError, StepError
from mlrm.integrations.nameko import (
    NamekoCallError,
    NamekoResponder,
    NamekoRpcClient,
    is_nameko_target,
    parse_nameko_target,
    remote_error,
    serialize_error,
)
from tests.support import BROKER_URL, HOST, PORT, broker_up, consumers, wait_for

URL = BROKER_URL

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # eventlet announces its deprecation on import
    try:
        from nameko.exceptions import IncorrectSignature, MethodNotFound, RemoteError
        from nameko.standalone.rpc import ClusterRpcProxy

        NAMEKO_MISSING = ""
    except Exception as exc:
        NAMEKO_MISSING = f"nameko cannot be imported: {type(exc).__name__}: {exc}"

pytestmark = pytest.mark.amqp


def _need_nameko() -> None:
    if NAMEKO_MISSING:
        pytest.skip(NAMEKO_MISSING)


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def _admin(action: Callable[[Any], Any]) -> Any:
    conn = pika.BlockingConnection(pika.URLParameters(URL))
    try:
        return action(conn.channel())
    finally:
        conn.close()


def _delete_queues(*names: str) -> None:
    for name in names:
        with contextlib.suppress(px.AMQPError):
            _admin(lambda ch, name=name: ch.queue_delete(name))


# -- the mlrm side ----------------------------------------------------------------------
def infer(rows: list[dict[str, float]], factor: float = 2.0) -> dict[str, Any]:
    return {"predictions": [row["x"] * factor for row in rows]}


def fail() -> None:
    raise DataError("bad rows: column 'x' is missing")


def missing(model: str) -> None:
    raise NotFoundError(f"no model named '{model}'")


WHERE = Location("model.yaml", 7, 3, "model.hyperparameters")


def misconfigured() -> None:
    raise ConfigError("unknown argument 'n_estimator'", WHERE)


def opaque() -> object:
    return object()


def nap(seconds: float) -> str:
    time.sleep(seconds)
    return "rested"


METHODS: dict[str, Callable[..., Any]] = {
    "infer": infer, "fail": fail, "missing": missing, "misconfigured": misconfigured, "opaque": opaque, "nap": nap,
}  # fmt: skip


@pytest.fixture(scope="module")
def url() -> str:
    if not broker_up():
        pytest.skip(f"no RabbitMQ broker accepts connections on {HOST}:{PORT}")
    return URL


@pytest.fixture
def make_responder(url: str) -> Iterator[Callable[..., NamekoResponder]]:
    """Started responders with unique names; stopped and their queues deleted afterwards."""
    made: list[NamekoResponder] = []

    def make(name: str | None = None, **kw: Any) -> NamekoResponder:
        responder = NamekoResponder(url, name or _unique("predict"), METHODS, **kw)
        made.append(responder)
        return responder.start()

    yield make
    for responder in made:
        responder.stop()
    _delete_queues(*(r.queue for r in made))


@pytest.fixture
def proxy(url: str) -> Iterator[Any]:
    """nameko's standalone cluster proxy; its reply queue (kept 5 min by nameko) is deleted afterwards."""
    _need_nameko()
    cluster = ClusterRpcProxy({"AMQP_URI": url}, timeout=10)
    yield cluster.start()
    cluster.stop()
    _delete_queues(cluster._reply_listener.queue.name)


@pytest.fixture
def client(url: str) -> Iterator[NamekoRpcClient]:
    with NamekoRpcClient(url, timeout=10) as rpc:
        yield rpc


# -- nameko as client ---------------------------------------------------------------------
def test_nameko_proxy_calls_an_mlrm_method(make_responder, proxy):
    predict = proxy[make_responder().service]
    assert predict.infer(rows=[{"x": 1.0}, {"x": 2.5}]) == {"predictions": [2.0, 5.0]}
    assert predict.infer([{"x": 1}], 10) == {"predictions": [10]}


def test_an_exception_becomes_nameko_remote_error(make_responder, proxy):
    predict = proxy[make_responder().service]
    with pytest.raises(RemoteError) as info:
        predict.fail()
    assert info.value.exc_type == "DataError"
    assert str(info.value) == "DataError bad rows: column 'x' is missing"
    with pytest.raises(RemoteError) as info:  # the error's data rides along; nameko's client ignores it
        predict.misconfigured()
    assert info.value.exc_type == "ConfigError"
    assert str(info.value) == "ConfigError model.yaml:7:3: model.hyperparameters: unknown argument 'n_estimator'"


def test_an_mlrm_error_reply_is_nameko_s_error_dict_plus_the_error_as_data(make_responder):
    responder = make_responder()
    conn = pika.BlockingConnection(pika.URLParameters(URL))
    try:
        ch = conn.channel()
        queue = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(queue, "nameko-rpc", routing_key=queue)
        props = pika.BasicProperties(content_type="application/json", reply_to=queue, correlation_id="c")
        ch.basic_publish("nameko-rpc", f"{responder.service}.missing", b'{"args": ["iris"], "kwargs": {}}', props)
        got: list[Any] = []

        def collect() -> bool:
            conn.process_data_events(time_limit=0.05)
            method, _props, body = ch.basic_get(queue, auto_ack=True)
            if method is not None:
                got.append(json.loads(body))
            return bool(got)

        wait_for(collect, what="the error reply")
    finally:
        conn.close()
    assert got[0] == {"result": None, "error": {
        "exc_type": "NotFoundError", "exc_path": "mlrm.errors.NotFoundError",
        "exc_args": ["no model named 'iris'"], "value": "no model named 'iris'",
        "mlrm": {"type": "NotFoundError", "message": "no model named 'iris'"},
    }}  # fmt: skip


def test_nameko_gets_its_own_errors_for_bad_calls(make_responder, proxy):
    predict = proxy[make_responder().service]
    with pytest.raises(MethodNotFound, match="nope"):
        predict.nope()
    with pytest.raises(IncorrectSignature, match="rows"):
        predict.infer()
    with pytest.raises(RemoteError) as info:
        predict.opaque()
    assert info.value.exc_type == "UnserializableValueError"
    assert "Unserializable value: `<object object" in str(info.value)
    assert predict.infer(rows=[{"x": 3}]) == {"predictions": [6]}  # the consumer lives on


def test_malformed_requests_get_malformed_request_replies(make_responder, client):
    responder = make_responder()
    reply_key = str(uuid.uuid4())
    conn = pika.BlockingConnection(pika.URLParameters(URL))
    try:
        ch = conn.channel()
        queue = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(queue, "nameko-rpc", routing_key=reply_key)
        bodies = {
            "not-json": (b"{nope", "application/json"),
            "no-kwargs": (b'{"args": []}', "application/json"),
            "list": (b"[1, 2]", "application/json"),
            "bad-args": (b'{"args": 1, "kwargs": {}}', "application/json"),
            "pickle": (b"\x80\x04N.", "application/x-python-serialize"),
        }
        for cid, (body, content_type) in bodies.items():
            props = pika.BasicProperties(content_type=content_type, reply_to=reply_key, correlation_id=cid)
            ch.basic_publish("nameko-rpc", f"{responder.service}.infer", body, props)
        ch.basic_publish("nameko-rpc", f"{responder.service}.infer", b'{"args": [], "kwargs": {}}')  # no reply_to
        replies: dict[str, dict[str, Any]] = {}

        def collect() -> bool:
            conn.process_data_events(time_limit=0.05)
            while (got := ch.basic_get(queue, auto_ack=True))[0] is not None:
                replies[got[1].correlation_id] = json.loads(got[2])
            return len(replies) == len(bodies)

        wait_for(collect, what="the error replies")
    finally:
        conn.close()
    for cid, reply in replies.items():
        assert reply["result"] is None, cid
        assert reply["error"]["exc_type"] == "MalformedRequest", cid
        assert reply["error"]["exc_path"] == "nameko.exceptions.MalformedRequest", cid
    assert replies["no-kwargs"]["error"]["value"] == "Message missing `args` or `kwargs`"
    wait_for(lambda: _admin(lambda c: c.queue_declare(responder.queue, passive=True)).method.message_count == 0)
    assert client.call(responder.service, "infer", rows=[{"x": 1}]) == {"predictions": [2]}


def test_the_mlrm_client_talks_to_the_mlrm_responder(make_responder, client):
    name = make_responder().service
    assert client.call(name, "infer", [{"x": 4}], factor=0.5) == {"predictions": [2.0]}
    with pytest.raises(DataError) as failed:  # rebuilt as itself, noted with the call it came from
        client.call(name, "fail")
    assert str(failed.value) == "bad rows: column 'x' is missing"
    assert failed.value.__notes__ == [f"raised by nameko {name}.fail"]
    with pytest.raises(NamekoCallError) as info:
        client.call(name, "nope")
    assert (info.value.exc_type, info.value.exc_path) == ("MethodNotFound", "nameko.exceptions.MethodNotFound")
    with pytest.raises(DataError, match="not JSON-serialisable"):
        client.call(name, "infer", rows={1, 2})


def test_the_mlrm_client_rebuilds_mlrm_errors_as_themselves(make_responder, client):
    name = make_responder().service
    with pytest.raises(NotFoundError) as missing:
        client.call(name, "missing", "iris")
    assert type(missing.value) is NotFoundError and missing.value.message == "no model named 'iris'"
    with pytest.raises(ConfigError) as bad:
        client.call(name, "misconfigured")
    assert bad.value.location == WHERE and bad.value.reason == "unknown argument 'n_estimator'"
    assert str(bad.value) == "model.yaml:7:3: model.hyperparameters: unknown argument 'n_estimator'"
    assert bad.value.exit_code == 2 and bad.value.http_status == 422


def test_error_replies_are_rebuilt_only_for_known_mlrm_types():
    nested = NamekoCallError("enricher", "tag", {"exc_type": "ValueError", "exc_path": "builtins.ValueError",
                                                 "exc_args": ["no"], "value": "no"})  # fmt: skip
    back = remote_error("predict", "infer", json.loads(json.dumps(serialize_error(nested))))
    assert type(back) is NamekoCallError
    assert (back.service, back.method, back.exc_type) == ("enricher", "tag", "ValueError")
    assert str(back) == "nameko enricher.tag failed: ValueError: no"
    plugin = {"exc_type": "QuotaError", "exc_path": "plugin.QuotaError", "exc_args": ["over"], "value": "over",
              "mlrm": {"type": "QuotaError", "message": "over"}}  # fmt: skip
    unknown = remote_error("predict", "infer", plugin)  # a type this process does not know: nameko's description
    assert type(unknown) is NamekoCallError and str(unknown) == "nameko predict.infer failed: QuotaError: over"
    assert type(remote_error("s", "m", serialize_error(ValueError("x")))) is NamekoCallError


def test_methods_run_in_worker_threads_concurrently(make_responder, url):
    name = make_responder().service
    clients = [NamekoRpcClient(url, timeout=10) for _ in range(3)]
    for rpc in clients:  # connect first: only the calls are timed
        assert rpc.call(name, "nap", 0) == "rested"
    results: list[Any] = []

    def call(rpc: NamekoRpcClient) -> None:
        try:
            results.append(rpc.call(name, "nap", 1.0))
        except Exception as exc:
            results.append(exc)
        finally:
            rpc.close()

    started = time.monotonic()
    threads = [threading.Thread(target=call, args=(rpc,)) for rpc in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert results == ["rested"] * 3
    assert elapsed < 2.5, elapsed  # one after the other would take 3 s


def test_the_responder_redeclares_its_queue_when_it_is_deleted(make_responder, client, caplog):
    responder = make_responder()
    with caplog.at_level(logging.WARNING, logger="mlrm.integrations.nameko"):
        _delete_queues(responder.queue)
        wait_for(lambda: responder.connects >= 2 and responder.ready, what="the responder to come back")
    assert client.call(responder.service, "infer", rows=[{"x": 1}]) == {"predictions": [2]}
    said = [r.getMessage() for r in caplog.records if r.name == "mlrm.integrations.nameko"]
    assert len(said) == 2, said  # once per outage: lost, and back (redeclared at once: the first retry)
    assert "cancelled the consumer" in said[0] and "serving again" in said[1]


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="rabbitmqctl is not available")
def test_the_responder_reconnects_after_the_broker_drops_it(make_responder, client):
    responder = make_responder()
    assert client.call(responder.service, "infer", rows=[{"x": 1}]) == {"predictions": [2]}
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "pid", "client_properties"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    pids = [line.split("\t")[0] for line in listing.splitlines() if f"responder {responder.service}" in line]
    assert len(pids) == 1, listing
    subprocess.run(["rabbitmqctl", "-q", "close_connection", pids[0], "test"], check=True, timeout=30)
    wait_for(lambda: responder.connects >= 2 and responder.ready, what="the responder to reconnect")
    assert client.call(responder.service, "infer", rows=[{"x": 2}]) == {"predictions": [4]}


def test_unreachable_broker_is_a_clear_bus_error():
    dead = "amqp://guest:guest@127.0.0.1:1/%2F"
    with pytest.raises(BusError, match="could not start"):
        NamekoResponder(dead, "predict", METHODS, backoff=Backoff(0.1, 0.1)).start(timeout=0.5)
    with pytest.raises(BusError, match=r"cannot connect to the broker at amqp://\*\*\*@127\.0\.0\.1:1"):
        NamekoRpcClient(dead).call("predict", "infer")


def test_a_wrong_password_is_one_line_without_the_password(url):
    bad = f"amqp://guest:wrong-password@{HOST}:{PORT}/%2F"
    with pytest.raises(BusError, match=r"^the broker at amqp://\*\*\*@127\.0\.0\.1:5672/%2F refused the login") as info:
        NamekoRpcClient(bad).call("predict", "infer")
    with pytest.raises(BusError, match=r"could not start .* refused the login") as started:
        NamekoResponder(bad, _unique("predict"), METHODS).start(timeout=1)
    for error in (info.value, started.value):
        assert "wrong-password" not in str(error) and "\n" not in str(error)


# -- nameko as peer ---------------------------------------------------------------------
GREETER = """
import os

from nameko.extensions import DependencyProvider
from nameko.rpc import RpcProxy, rpc


class WorkerContext(DependencyProvider):
    def get_dependency(self, worker_ctx):
        return worker_ctx


class Greeter:
    name = os.environ["GREETER_NAME"]
    predict = RpcProxy(os.environ["PREDICT_NAME"])
    ctx = WorkerContext()

    @rpc
    def hello(self, who, punctuation="!"):
        return "hello " + who + punctuation

    @rpc
    def fail(self):
        raise ValueError("no greeting today")

    @rpc
    def slow(self, seconds):
        import eventlet

        eventlet.sleep(seconds)
        return "late"

    @rpc
    def context(self):
        return {"call_id_stack": self.ctx.call_id_stack, "data": self.ctx.data}

    @rpc
    def relay(self, rows):
        return self.predict.infer(rows=rows)

    @rpc
    def relay_missing(self, model):
        from nameko.exceptions import RemoteError

        try:
            self.predict.missing(model)
        except RemoteError as exc:
            return [exc.exc_type, exc.value, str(exc)]
"""


@pytest.fixture(scope="module")
def peers(url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(greeter, predict): a real nameko service in a subprocess, and the mlrm responder it relays to."""
    _need_nameko()
    greeter, predict = _unique("greeter"), _unique("predict")
    folder = tmp_path_factory.mktemp("nameko")
    (folder / "greeter_service.py").write_text(textwrap.dedent(GREETER))
    env = {**os.environ, "GREETER_NAME": greeter, "PREDICT_NAME": predict, "PYTHONWARNINGS": "ignore"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), env.get("PYTHONPATH")]))
    log = folder / "nameko.log"
    responder = NamekoResponder(url, predict, METHODS).start()
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "nameko", "run", "greeter_service", "--broker", url],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while consumers(URL, f"rpc-{greeter}") < 1:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the nameko service did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield greeter, predict
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        responder.stop()
        _delete_queues(f"rpc-{greeter}", f"rpc-{predict}", *_reply_queues(greeter))


def _reply_queues(service: str) -> list[str]:
    """The reply queues a nameko service's RpcProxy left (nameko lets them expire after 5 minutes)."""
    if shutil.which("rabbitmqctl") is None:
        return []
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name"], capture_output=True, text=True, timeout=30
    ).stdout
    return [name for name in listing.split() if name.startswith(f"rpc.reply-{service}-")]


def test_the_client_calls_a_real_nameko_service(peers, client):
    greeter, _ = peers
    assert client.call(greeter, "hello", "world") == "hello world!"
    assert client.call(greeter, "hello", who="nameko", punctuation="?") == "hello nameko?"


def test_a_nameko_exception_is_a_step_error(peers, client):
    greeter, _ = peers
    with pytest.raises(StepError) as info:
        client.call(greeter, "fail")
    assert str(info.value) == f"nameko {greeter}.fail failed: ValueError: no greeting today"
    with pytest.raises(StepError, match=rf"nameko {greeter}\.nope failed: MethodNotFound: nope"):
        client.call(greeter, "nope")


def test_nobody_listening_fails_fast(url, client):
    nobody = _unique("nobody")
    started = time.monotonic()
    with pytest.raises(BusError, match=f"^no nameko service '{nobody}' is listening on nameko-rpc$"):
        client.call(nobody, "hello", "world")
    assert time.monotonic() - started < 2


def test_a_slow_method_times_out_and_the_client_goes_on(peers, url):
    greeter, _ = peers
    with NamekoRpcClient(url, timeout=0.3) as rpc:
        started = time.monotonic()
        with pytest.raises(BusError, match=rf"nameko {greeter}\.slow did not reply within 0\.3s"):
            rpc.call(greeter, "slow", 0.6)
        assert time.monotonic() - started < 0.6
        time.sleep(0.5)  # the late reply arrives and is dropped
        assert rpc.call(greeter, "hello", "again") == "hello again!"


def test_nameko_sees_our_call_id_stack_and_context(peers, url):
    greeter, _ = peers
    with NamekoRpcClient(url, timeout=10, context_data={"user_id": "u-1"}) as rpc:
        seen = rpc.call(greeter, "context")
    first, last = seen["call_id_stack"]
    assert first.startswith("mlrm_rpc_client.call.")
    assert last.startswith(f"{greeter}.context.")
    assert seen["data"]["user_id"] == "u-1"


def test_a_nameko_service_calls_an_mlrm_responder(peers, client):
    greeter, _ = peers
    assert client.call(greeter, "relay", [{"x": 1.5}]) == {"predictions": [3.0]}
    # an mlrm error's reply (with its data) is an ordinary RemoteError to a nameko service too
    assert client.call(greeter, "relay_missing", "iris") == [
        "NotFoundError", "no model named 'iris'", "NotFoundError no model named 'iris'",
    ]  # fmt: skip


# -- the workflow syntax ------------------------------------------------------------------
def test_parse_nameko_target():
    assert parse_nameko_target("nameko:greeter.hello") == ("greeter", "hello")
    assert parse_nameko_target("  nameko:svc_2.run_it ") == ("svc_2", "run_it")
    assert is_nameko_target("nameko:a.b") and not is_nameko_target("predict")
    for bad in ("greeter.hello", "nameko:greeter", "nameko:a.b.c", "nameko:.x", "nameko:my-svc.x", "nameko:a.1x"):
        with pytest.raises(ConfigError, match="nameko"):
            parse_nameko_target(bad)


def test_names_are_checked_up_front(url):
    with pytest.raises(ConfigError, match="identifier"):
        NamekoResponder(url, "bad.name", METHODS)
    with pytest.raises(ConfigError, match="identifier"):
        NamekoRpcClient(url).call("greeter", "no-such")
    with pytest.raises(ConfigError, match="positive"):
        NamekoRpcClient(url, timeout=0)
