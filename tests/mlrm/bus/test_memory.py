"""The embedded bus: at-least-once delivery, redelivery counts, backpressure."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

from mlrm.bus import Envelope, Hop, open_bus
from mlrm.bus.envelope import decode, encode
from mlrm.bus.memory import MemoryBus
from mlrm.errors import ConfigError
from tests.support import wait_for


def test_delivers_in_order_and_acks():
    bus = MemoryBus()
    seen: list[str] = []

    def handler(d):
        seen.append(d.envelope.id)
        d.ack()

    bus.subscribe("q", handler)
    bus.start()
    for i in range(20):
        bus.publish("q", Envelope(id=str(i), run_id="r"))
    wait_for(lambda: len(seen) == 20)
    assert seen == [str(i) for i in range(20)]
    bus.close()


def test_reject_with_requeue_redelivers_with_a_higher_count():
    bus = MemoryBus()
    counts: list[int] = []

    def handler(d):
        counts.append(d.delivery_count)
        if d.delivery_count < 3:
            d.reject(requeue=True)
        else:
            d.ack()

    bus.subscribe("q", handler)
    bus.start()
    bus.publish("q", Envelope(id="m", run_id="r"))
    wait_for(lambda: counts[-1:] == [3])
    assert counts == [1, 2, 3]
    bus.close()


def test_a_handler_that_raises_gets_the_message_again():
    bus = MemoryBus()
    calls: list[int] = []

    def handler(d):
        calls.append(d.delivery_count)
        if d.delivery_count == 1:
            raise RuntimeError("crash before ack")
        d.ack()

    bus.subscribe("q", handler)
    bus.start()
    bus.publish("q", Envelope(id="m", run_id="r"))
    wait_for(lambda: calls == [1, 2])
    bus.close()


def test_settling_twice_is_an_error():
    bus = MemoryBus()
    errors: list[Exception] = []

    def handler(d):
        d.ack()
        try:
            d.ack()
        except Exception as exc:
            errors.append(exc)

    bus.subscribe("q", handler)
    bus.start()
    bus.publish("q", Envelope(id="m", run_id="r"))
    wait_for(lambda: errors)
    assert "already acknowledged" in str(errors[0])
    bus.close()


def test_consumed_queues_are_bounded_so_producers_wait():
    bus = MemoryBus(capacity=2)
    release = threading.Event()

    def slow(d):
        release.wait(5)
        d.ack()

    bus.subscribe("q", slow)
    bus.start()
    published: list[int] = []

    def produce():
        for i in range(6):
            bus.publish("q", Envelope(id=str(i), run_id="r"))
            published.append(i)

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    time.sleep(0.3)
    assert len(published) <= 4  # one in the handler, two queued, one waiting at most
    release.set()
    t.join(5)
    assert published == list(range(6))
    bus.close()


def test_unconsumed_queues_hold_everything():
    bus = MemoryBus(capacity=1)
    for i in range(10):
        bus.publish("dead", Envelope(id=str(i), run_id="r"))
    assert [e.id for e in bus.drain("dead")] == [str(i) for i in range(10)]


def test_wire_format_round_trips_envelopes_with_frames():
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", None]})
    env = Envelope(
        id="r/s/0", run_id="r", route=[Hop("s", "handler", {"steps": []}, "/tmp")], seq=3, last=False,
        payload=frame, context={"mode": "predict"}, body={"k": 1},
    )  # fmt: skip
    back = decode(encode(env))
    assert (back.id, back.run_id, back.seq, back.last, back.context, back.body) == (
        "r/s/0",
        "r",
        3,
        False,
        {"mode": "predict"},
        {"k": 1},
    )
    assert back.route[0] == env.route[0]
    pd.testing.assert_frame_equal(back.payload, frame)


def test_open_bus_by_url():
    assert isinstance(open_bus("memory://"), MemoryBus)
    with pytest.raises(ConfigError, match="unsupported bus URL"):
        open_bus("carrier-pigeon://coop")


# -- events: every group gets every event, the consumers of one group share them ------------
def test_every_group_gets_every_event_and_a_groups_consumers_share_them():
    bus = MemoryBus()
    both_busy = threading.Barrier(3)  # the monitor's two consumers and the test
    got: dict[str, list[str]] = {"orchestrator": [], "monitor-1": [], "monitor-2": []}

    def consumer(name: str):
        def handler(d):
            if not got[name] and name != "orchestrator":
                both_busy.wait(10)  # hold the first event until the other consumer has one too
            got[name].append(d.envelope.id)
            d.ack()

        return handler

    bus.subscribe_events("orchestrator", consumer("orchestrator"))
    bus.subscribe_events("monitor", consumer("monitor-1"))
    bus.subscribe_events("monitor", consumer("monitor-2"))
    bus.start()
    for i in range(20):
        if i == 2:
            both_busy.wait(10)  # each monitor consumer holds one event: they compete, not both get all
        bus.publish_event(Envelope(id=f"r/s/{i}#processed", run_id="r", body={"seq": i}))
    wait_for(lambda: len(got["orchestrator"]) == 20 and len(got["monitor-1"]) + len(got["monitor-2"]) == 20)
    everything = [f"r/s/{i}#processed" for i in range(20)]
    assert got["orchestrator"] == everything
    assert sorted(got["monitor-1"] + got["monitor-2"], key=everything.index) == everything
    assert got["monitor-1"] and got["monitor-2"]
    bus.close()


def test_each_group_gets_its_own_copy_of_an_event():
    bus = MemoryBus()
    seen: dict[str, dict] = {}

    def handler(group: str):
        def handle(d):
            d.envelope.body["touched_by"] = group  # one group changing its event...
            seen[group] = d.envelope.body
            d.ack()

        return handle

    bus.subscribe_events("a", handler("a"))
    bus.subscribe_events("b", handler("b"))
    bus.start()
    event = Envelope(id="r/s/0#processed", run_id="r", body={"rows": [1, 2]})
    bus.publish_event(event)
    wait_for(lambda: len(seen) == 2)
    assert seen["a"]["touched_by"] == "a" and seen["b"]["touched_by"] == "b"  # ...changes nobody else's
    assert event.body == {"rows": [1, 2]}
    bus.close()


def test_events_before_any_group_reach_nobody_and_group_names_are_checked():
    bus = MemoryBus()
    bus.publish_event(Envelope(id="e", run_id="r"))  # nobody listens: fine, and nothing piles up
    assert bus.depth("mlrm.events") == 0
    for bad in ("", "Upper", "a.b", "x" * 65, "a/b"):
        with pytest.raises(ConfigError, match="subscriber group"):
            bus.subscribe_events(bad, lambda d: d.ack())
