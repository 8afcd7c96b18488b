"""The RabbitMQ bus against a real broker: confirms, acks, redelivery counts, dead-lettering,
prefetch, heartbeats during long handlers, surviving dropped connections, competing consumers."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pandas as pd
import pytest

from mlrm.bus import Envelope, Hop, dead_letter_queue, events_queue, open_bus
from mlrm.bus.amqp import AmqpBus
from mlrm.bus.base import Bus
from mlrm.bus.memory import MemoryBus
from mlrm.errors import BusError, ConfigError
from tests.support import BROKER_URL, HAS_RABBITMQCTL, HOST, PORT, broker_up, rabbitmqctl, wait_for

URL = BROKER_URL


pytestmark = [
    pytest.mark.amqp,
    pytest.mark.skipif(not broker_up(), reason=f"no RabbitMQ broker accepts connections on {HOST}:{PORT}"),
]


needs_rabbitmqctl = pytest.mark.skipif(not HAS_RABBITMQCTL, reason="rabbitmqctl is not available")


@dataclass
class Broker:
    url: str
    vhost: str

    def count(self, queue: str) -> int:
        """Messages the broker holds for ``queue``, ready or delivered and not yet acked."""
        out = rabbitmqctl("list_queues", "-p", self.vhost, "name", "messages")
        return int(dict(line.split("\t") for line in out.splitlines() if "\t" in line)[queue])

    def close_all_connections(self) -> None:
        rabbitmqctl("close_all_connections", "--vhost", self.vhost, "test")


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    """A private vhost (with rabbitmqctl), so dropping its connections disturbs nobody else."""
    if not HAS_RABBITMQCTL:
        yield Broker(URL, "/")
        return
    vhost = f"mlrm-bus-test-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield Broker(f"amqp://guest:guest@{HOST}:{PORT}/{vhost}", vhost)
    finally:
        rabbitmqctl("delete_vhost", vhost)


def env(i: int | str, **kw) -> Envelope:
    return Envelope(id=f"r/s/{i}", run_id="r", **kw)


@pytest.fixture
def queue(broker: Broker) -> Iterator[str]:
    """A fresh queue name; the queue and its dead-letter queue are deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    with AmqpBus(broker.url) as admin:
        for q in (name, f"{name}.dlq", f"{name}.out", f"{name}.out.dlq"):
            admin.delete_queue(q)


@pytest.fixture
def make_bus(broker: Broker, queue: str) -> Iterator[Callable[..., AmqpBus]]:
    """Buses on the test vhost (``make_bus("?heartbeat=2")`` adds URL options), closed before
    the queue fixture deletes the queues (a live consumer would declare them again)."""
    buses: list[AmqpBus] = []

    def make(query: str = "", **kw) -> AmqpBus:
        bus = AmqpBus(broker.url + query, **kw)
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        bus.close()


def test_round_trip_of_an_envelope_with_a_frame(make_bus, queue):
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", None, "z"], "c": [0.5, 1.5, float("nan")]})
    route = [Hop("s", "handler", {"steps": []}, "/tmp")]
    got: list = []
    bus = make_bus()

    def handler(d):
        got.append((d.envelope, d.delivery_count))
        d.ack()

    bus.subscribe(queue, handler)
    bus.start()
    bus.publish(queue, env(0, route=route, payload=frame, context={"mode": "predict"}, seq=4, last=False))
    wait_for(lambda: got, what="the message")
    back, count = got[0]
    assert count == 1
    assert (back.id, back.seq, back.last, back.context, back.route) == ("r/s/0", 4, False, {"mode": "predict"}, route)
    pd.testing.assert_frame_equal(back.payload, frame)
    wait_for(lambda: bus.depth(queue) == 0)


def test_publish_returns_once_the_broker_has_the_message(make_bus, queue):
    producer, observer = make_bus(), make_bus()
    for i in range(3):
        producer.publish(queue, env(i))
        assert observer.depth(queue) == i + 1  # a different connection sees it at once: confirmed
    assert observer.depth(f"{queue}.dlq") == 0  # declared alongside


@needs_rabbitmqctl
def test_queues_are_durable_quorum_queues_with_a_dead_letter_queue(make_bus, queue, broker):
    make_bus(delivery_limit=7).publish(queue, env(0))
    out = rabbitmqctl("list_queues", "-p", broker.vhost, "name", "type", "durable", "arguments")
    rows = {line.split("\t")[0]: line for line in out.splitlines()}
    main, dlq = rows[queue], rows[f"{queue}.dlq"]
    assert "\tquorum\ttrue\t" in main and "\tquorum\ttrue\t" in dlq
    for arg in (
        '{"x-dead-letter-exchange",[]}',
        f'{{"x-dead-letter-routing-key","{queue}.dlq"}}',
        '{"x-delivery-limit",7}',
        '{"x-dead-letter-strategy","at-least-once"}',
        '{"x-overflow","reject-publish"}',
    ):
        assert arg in main
    assert "x-dead-letter" not in dlq


def test_ack_removes_the_message_for_good(make_bus, queue):
    seen: list[str] = []
    bus = make_bus()
    bus.subscribe(queue, lambda d: (seen.append(d.envelope.id), d.ack()))
    bus.start()
    for i in range(5):
        bus.publish(queue, env(i))
    wait_for(lambda: len(seen) == 5)
    bus.close()  # anything un-acked would be given back now
    assert make_bus().depth(queue) == 0
    assert seen == [f"r/s/{i}" for i in range(5)]  # one worker per subscription: in order


@pytest.mark.parametrize("queue_type", ["quorum", "classic"])  # classic queues count in the process
def test_reject_with_requeue_redelivers_with_growing_counts(make_bus, queue, queue_type):
    counts: list[int] = []
    bus = make_bus(queue_type=queue_type)

    def handler(d):
        counts.append(d.delivery_count)
        d.reject(requeue=True) if d.delivery_count < 3 else d.ack()

    bus.subscribe(queue, handler)
    bus.start()
    bus.publish(queue, env(0))
    wait_for(lambda: counts[-1:] == [3])
    assert counts == [1, 2, 3]
    wait_for(lambda: bus.depth(queue) == 0)


def test_the_broker_dead_letters_a_message_given_back_too_often(make_bus, queue):
    counts: list[int] = []
    bus = make_bus("?delivery_limit=2")

    def always_reject(d):
        counts.append(d.delivery_count)
        d.reject(requeue=True)

    bus.subscribe(queue, always_reject)
    bus.start()
    bus.publish(queue, env(0, body={"k": 1}))
    wait_for(lambda: bus.depth(f"{queue}.dlq") == 1, what="dead-lettering")
    assert counts == [1, 2, 3]  # given back more than delivery_limit (2) times
    assert bus.depth(queue) == 0
    dead = bus.drain(f"{queue}.dlq")
    assert [(e.id, e.body) for e in dead] == [("r/s/0", {"k": 1})]


def test_prefetch_bounds_the_unacked_messages(make_bus, queue):
    release = threading.Event()
    handled: list[str] = []
    bus = make_bus()

    def blocking(d):
        release.wait(10)
        handled.append(d.envelope.id)
        d.ack()

    bus.subscribe(queue, blocking, prefetch=2)
    bus.start()
    for i in range(5):
        bus.publish(queue, env(i))
    wait_for(lambda: bus.depth(queue) == 3, what="two messages fetched")
    time.sleep(0.3)
    assert bus.depth(queue) == 3  # still: 2 unacked at most (1 in the handler, 1 waiting)
    release.set()
    wait_for(lambda: len(handled) == 5)
    wait_for(lambda: bus.depth(queue) == 0)


def test_a_long_handler_keeps_its_connection_alive(make_bus, queue, caplog):
    done: list[int] = []
    bus = make_bus("?heartbeat=2")
    out = f"{queue}.out"

    def long_handler(d):
        bus.publish(out, env("before"))
        time.sleep(5)  # > 2 heartbeat intervals without touching the connections
        bus.publish(out, env("after"))  # this thread's idle publisher was dropped: reconnects quietly
        d.ack()
        done.append(d.delivery_count)

    bus.subscribe(queue, long_handler)
    with caplog.at_level(logging.WARNING, logger="mlrm.bus.amqp"):
        bus.start()
        bus.publish(queue, env(0))
        wait_for(lambda: done, timeout=15, what="the long handler")
        wait_for(lambda: bus.depth(queue) == 0)
        time.sleep(0.5)
    assert done == [1]  # handled once: the consumer connection survived, the ack went through
    assert not [r for r in caplog.records if r.name == "mlrm.bus.amqp" and "lost" in r.getMessage()]
    assert [e.id for e in bus.drain(out)] == ["r/s/before", "r/s/after"]


@needs_rabbitmqctl
def test_consumption_survives_the_broker_closing_every_connection(make_bus, queue, broker, caplog):
    n = 30
    handled: list[str] = []
    bus = make_bus()

    def handler(d):
        time.sleep(0.02)
        handled.append(d.envelope.id)
        d.ack()

    bus.subscribe(queue, handler, prefetch=4)
    with caplog.at_level(logging.WARNING, logger="mlrm.bus.amqp"):
        bus.start()
        for i in range(n):
            bus.publish(queue, env(i))
        wait_for(lambda: len(handled) >= 5, what="some messages handled")
        broker.close_all_connections()
        wait_for(lambda: set(handled) >= {f"r/s/{i}" for i in range(n)}, timeout=20, what="every message")
        wait_for(lambda: bus.depth(queue) == 0, what="an empty queue")  # publisher reconnected too
        wait_for(lambda: broker.count(queue) == 0, what="every message acked")  # ready + unacked
    bus.close()
    lost = [r for r in caplog.records if r.name == "mlrm.bus.amqp" and "lost" in r.getMessage()]
    assert len(lost) == 1  # one warning per outage
    assert "guest" not in lost[0].getMessage()


@needs_rabbitmqctl
def test_settling_after_the_connection_was_lost_does_nothing_and_the_broker_redelivers(make_bus, queue, broker):
    entered, release = threading.Event(), threading.Event()
    counts: list[int] = []
    errors: list[Exception] = []
    bus = make_bus()

    def handler(d):
        counts.append(d.delivery_count)
        if d.delivery_count == 1:
            entered.set()
            release.wait(10)
        try:
            d.ack()  # on the first delivery: its connection is gone by now
        except Exception as exc:
            errors.append(exc)

    bus.subscribe(queue, handler)
    bus.start()
    bus.publish(queue, env(0))
    assert entered.wait(10)
    broker.close_all_connections()
    time.sleep(0.2)
    release.set()
    wait_for(lambda: counts == [1, 2], what="the redelivery")  # the unacked message came back
    wait_for(lambda: broker.count(queue) == 0, what="the second ack")
    assert errors == []


def test_a_handler_that_raises_gets_the_message_again(make_bus, queue):
    calls: list[int] = []
    bus = make_bus()

    def handler(d):
        calls.append(d.delivery_count)
        if d.delivery_count == 1:
            raise RuntimeError("crash before ack")
        d.ack()

    bus.subscribe(queue, handler)
    bus.start()
    bus.publish(queue, env(0))
    wait_for(lambda: calls == [1, 2])
    wait_for(lambda: bus.depth(queue) == 0)


def test_two_consumers_share_a_queue(make_bus, queue):
    got: dict[str, list[str]] = {"a": [], "b": []}
    buses = {name: make_bus() for name in got}
    for name, bus in buses.items():

        def handler(d, name=name):
            time.sleep(0.02)
            got[name].append(d.envelope.id)
            d.ack()

        bus.subscribe(queue, handler, prefetch=1)
        bus.start()
    for i in range(20):
        buses["a"].publish(queue, env(i))
    wait_for(lambda: len(got["a"]) + len(got["b"]) == 20)
    assert got["a"] and got["b"]
    assert sorted(got["a"] + got["b"]) == sorted(f"r/s/{i}" for i in range(20))


@pytest.mark.parametrize("kind", ["memory", "amqp"])
def test_peek_leaves_messages_queued_and_drain_empties(make_bus, queue, kind):
    bus: Bus = MemoryBus() if kind == "memory" else make_bus()
    for i in range(3):
        bus.publish(queue, env(i))
    assert [e.id for e in bus.peek(queue)] == ["r/s/0", "r/s/1", "r/s/2"]
    assert [e.id for e in bus.peek(queue, limit=2)] == ["r/s/0", "r/s/1"]
    assert bus.depth(queue) == 3
    # a quorum queue puts given-back messages behind the others: peeking may reorder, never loses
    assert sorted(e.id for e in bus.drain(queue)) == ["r/s/0", "r/s/1", "r/s/2"]
    assert bus.depth(queue) == 0
    assert bus.peek(queue) == [] and bus.drain(queue) == []


def test_purge_delete_and_publishing_after_a_queue_vanished(make_bus, queue):
    bus, other = make_bus(), make_bus()
    bus.publish(queue, env(0))
    bus.purge(queue)
    assert bus.depth(queue) == 0
    other.delete_queue(queue)  # behind the publisher's back: its declaration cache is stale
    assert bus.depth(queue) == 0 and bus.peek(queue) == []  # a missing queue is empty
    bus.publish(queue, env(1))  # the mandatory publish is returned, the queue declared again
    assert other.depth(queue) == 1


def test_url_options_and_credentials():
    bus = open_bus(f"{URL}?heartbeat=5&prefetch=3&queue_type=classic&delivery_limit=4")
    try:
        assert isinstance(bus, AmqpBus)
        assert (bus.prefetch, bus.queue_type, bus.delivery_limit) == (3, "classic", 4)
        assert "guest" not in bus.url and "guest" not in repr(bus)
        assert bus.url == "amqp://***@127.0.0.1:5672/%2F?heartbeat=5&prefetch=3&queue_type=classic&delivery_limit=4"
    finally:
        bus.close()
    assert AmqpBus(URL, prefetch=2, queue_type="quorum").prefetch == 2
    with pytest.raises(ConfigError, match="queue_type"):
        AmqpBus(f"{URL}?queue_type=stream")
    with pytest.raises(ConfigError, match="prefetch"):
        AmqpBus(f"{URL}?prefetch=0")
    with pytest.raises(ConfigError, match="bad bus URL") as info:
        AmqpBus(f"{URL}?no_such_option=1")
    assert "guest" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        open_bus("carrier://user:secret@coop")
    assert "secret" not in str(info.value)


def test_closed_bus_refuses_to_publish(make_bus, queue):
    bus = make_bus()
    bus.publish(queue, env(0))
    bus.close()
    with pytest.raises(BusError, match="closed"):
        bus.publish(queue, env(1))


def test_an_unreachable_broker_fails_publishing_after_the_retry_budget():
    bus = AmqpBus("amqp://guest:guest@127.0.0.1:1/%2F", publish_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(BusError, match="unreachable"):
        bus.publish("never", env(0))
    assert time.monotonic() - started < 5
    bus.subscribe("never", lambda d: d.ack())
    bus.start(timeout=0.5)  # returns; the consumer keeps retrying in the background
    started = time.monotonic()
    bus.close()
    assert time.monotonic() - started < 3


def test_wrong_credentials_fail_fast():
    bus = AmqpBus(f"amqp://guest:wrong-password@{HOST}:{PORT}/%2F")
    started = time.monotonic()
    with pytest.raises(BusError, match="refused the login") as info:
        bus.publish("never", env(0))
    assert time.monotonic() - started < 10
    assert "wrong-password" not in str(info.value)
    bus.close()


# -- events: a fanout exchange, a durable queue per subscriber group ----------------------------
@pytest.fixture
def groups(broker: Broker) -> Iterator[Callable[[str], str]]:
    """Unique group names; their queues are deleted afterwards. Request it before ``make_bus``, so
    it is torn down after the buses (a live consumer would declare its queue again)."""
    made: list[str] = []

    def make(prefix: str) -> str:
        made.append(f"{prefix}-{uuid.uuid4().hex[:10]}")
        return made[-1]

    yield make
    with AmqpBus(broker.url) as admin:
        for group in made:
            admin.delete_queue(events_queue(group))
            admin.delete_queue(dead_letter_queue(events_queue(group)))


def event(i: int) -> Envelope:
    return Envelope(id=f"r/s/{i}#processed", run_id="r", body={"seq": i})


def test_every_group_gets_every_event_and_a_groups_consumers_share_them(groups, make_bus):
    orchestrator, monitor = groups("orchestrator"), groups("monitor")
    both_busy = threading.Barrier(3)  # the monitor's two consumers and the test
    got: dict[str, list[str]] = {"orchestrator": [], "monitor-1": [], "monitor-2": []}

    def consumer(name: str):
        def handler(d):
            if not got[name] and name != "orchestrator":
                both_busy.wait(10)  # hold the first event (unacked) until the other consumer has one too
            got[name].append(d.envelope.id)
            d.ack()

        return handler

    for name, group in (("orchestrator", orchestrator), ("monitor-1", monitor), ("monitor-2", monitor)):
        bus = make_bus()  # one bus each: as in separate processes
        bus.subscribe_events(group, consumer(name), prefetch=1)
        bus.start()
    publisher = make_bus()
    for i in range(20):
        if i == 2:
            both_busy.wait(10)  # each monitor consumer holds one event: they compete, not both get all
        publisher.publish_event(event(i))
    wait_for(lambda: len(got["orchestrator"]) == 20 and len(got["monitor-1"]) + len(got["monitor-2"]) == 20)
    everything = [f"r/s/{i}#processed" for i in range(20)]
    assert got["orchestrator"] == everything  # one consumer: in order
    assert sorted(got["monitor-1"] + got["monitor-2"]) == sorted(everything)  # each once
    assert got["monitor-1"] and got["monitor-2"]
    for group in (orchestrator, monitor):
        wait_for(lambda group=group: publisher.depth(events_queue(group)) == 0)


def test_a_groups_queue_keeps_the_events_while_its_consumers_are_away(groups, make_bus):
    group = groups("orchestrator")
    first = make_bus()
    first.subscribe_events(group, lambda d: d.ack())
    first.start()
    first.close()  # the orchestrator stops; its queue stays bound
    publisher = make_bus()
    for i in range(3):
        publisher.publish_event(event(i))
    assert publisher.depth(events_queue(group)) == 3
    seen: list[int] = []
    restarted = make_bus()
    restarted.subscribe_events(group, lambda d: (seen.append(d.envelope.body["seq"]), d.ack()))
    restarted.start()
    wait_for(lambda: seen == [0, 1, 2], what="the events published while it was away")


@needs_rabbitmqctl
def test_group_queues_are_durable_quorum_queues_bound_to_a_durable_fanout_exchange(groups, make_bus, broker):
    group = groups("monitor")
    bus = make_bus(delivery_limit=7)
    bus.subscribe_events(group, lambda d: d.ack())
    bus.start()
    exchanges = rabbitmqctl("list_exchanges", "-p", broker.vhost, "name", "type", "durable")
    assert "mlrm.events\tfanout\ttrue" in exchanges.splitlines()
    bindings = rabbitmqctl("list_bindings", "-p", broker.vhost, "source_name", "destination_name")
    assert f"mlrm.events\t{events_queue(group)}" in bindings.splitlines()
    out = rabbitmqctl("list_queues", "-p", broker.vhost, "name", "type", "durable", "arguments")
    rows = {line.split("\t")[0]: line for line in out.splitlines()}
    queue = events_queue(group)
    assert "\tquorum\ttrue\t" in rows[queue] and "\tquorum\ttrue\t" in rows[dead_letter_queue(queue)]
    assert f'{{"x-dead-letter-routing-key","{queue}.dlq"}}' in rows[queue] and '{"x-delivery-limit",7}' in rows[queue]


def test_an_event_no_group_subscribes_to_is_not_an_error(make_bus):
    make_bus().publish_event(event(0))  # confirmed by the broker, routed to whichever groups exist
