"""RabbitMQ as the bus (``amqp://`` / ``amqps://``), with pika.

URL: ``amqp://user:password@host:5672/%2F?heartbeat=30&prefetch=8&queue_type=quorum&delivery_limit=10``.
pika's own query options (``heartbeat``, ``connection_attempts``, ``socket_timeout``,
``blocked_connection_timeout``, ``ssl_options``...) pass through; ``prefetch``,
``queue_type`` and ``delivery_limit`` are ours (constructor keywords override them).
The stored ``url`` never carries the credentials (``mlrm/amqp.py`` parses and redacts it,
opens the connections and owns the reconnect policy every loop here follows).

Queues are durable quorum queues (classic on request, or on brokers older than 3.8),
declared on first use by every connection, each with a dead-letter queue ``<queue>.dlq``
the broker moves a message to once it was given back more than ``delivery_limit``
times (a safety net: the service runtime dead-letters failed messages itself).
Publishing waits for the broker's confirm.

Events go to the durable fanout exchange ``mlrm.events``; every subscriber group has a
durable queue ``mlrm.events.<group>`` (with its dead-letter queue, like any queue) bound to
it, so each group gets every event and the consumers of one group compete. A group's queue
is declared and bound by its consumers and stays when they go (a restarted orchestrator
reads the events it missed); :meth:`AmqpBus.start` binds the event groups before it
starts any other consumer, so events caused by the work a process takes are not missed.

Threads: pika connections are not thread-safe, so

- every thread that publishes gets its own connection (thread-local, opened lazily,
  reopened with backoff when it fails);
- every subscription gets a consumer thread owning its connection (the I/O thread: it
  alone touches that connection, so heartbeats flow while a handler trains for an hour)
  and one worker thread running the handler: a subscription handles its messages one
  at a time, in order, like the embedded bus; up to ``prefetch`` wait client-side;
- ``ack``/``reject`` are handed to the I/O thread (``add_callback_threadsafe``). After
  the connection was lost they do nothing: the broker gives the message again.

``Delivery.delivery_count``: quorum queues count every give-back (a reject, and also a
consumer's connection closing with the message unacked) in ``x-delivery-count``;
classic queues only flag ``redelivered``, so the count is kept per message id in this
process (exact when one process consumes; attempts seen by other consumers are not
counted, a redelivery is at least 2).

A lost connection is retried under :data:`mlrm.amqp.RECONNECT` and logged at WARNING once
per outage (a consumer) or once per call (publishing); the further attempts at DEBUG.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pika
import pika.exceptions as px

from mlrm.amqp import RECONNECT, Broker
from mlrm.bus.base import EVENTS_EXCHANGE, Bus, Delivery, Handler, dead_letter_queue, events_queue
from mlrm.bus.envelope import Envelope, decode, encode
from mlrm.errors import BusError, ConfigError

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/x-mlrm"
QUEUE_TYPES = ("quorum", "classic")
OPTIONS = ("prefetch", "queue_type", "delivery_limit")
_DLQ_SUFFIX = dead_letter_queue("")  # ".dlq"
_ACCESS_REFUSED, _NOT_FOUND, _PRECONDITION_FAILED = 403, 404, 406
_SEEN_MAX = 100_000  # classic queues: message ids whose deliveries this process counts

T = TypeVar("T")


class _Lost(Exception):
    """The connection or the consumer went away; the consumer loop reconnects."""


def _positive_int(name: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise ConfigError(f"bus option {name} must be a positive integer, not {value!r}")
    return number


def _version(server_properties: dict[str, Any] | None) -> tuple[int, ...]:
    raw = (server_properties or {}).get("version", "")
    raw = raw.decode() if isinstance(raw, bytes) else str(raw)
    numbers: list[int] = []
    for part in raw.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers) or (99,)  # unknown: assume a modern broker


class _Link:
    """One connection and its channel, used by one thread (the lock guards against close())."""

    def __init__(self, bus: AmqpBus, role: str, *, confirm: bool) -> None:
        self.thread = threading.current_thread()
        self.lock = threading.Lock()
        self.confirm = confirm
        self.declared: set[str] = set()
        self.conn = bus._broker.connect(f"mlrm {role} ({self.thread.name})")  # a refused login: BusError
        try:
            self.ch = self._open_channel()
            self.version = _version(self.conn._impl.server_properties)
        except BaseException:
            self.close()
            raise

    def _open_channel(self) -> Any:
        ch = self.conn.channel()
        if self.confirm:
            ch.confirm_delivery()
        return ch

    def channel(self) -> Any:
        """The link's channel, reopened if the broker closed it (after a 406, say)."""
        if not self.ch.is_open:
            self.ch = self._open_channel()
        return self.ch

    @property
    def alive(self) -> bool:
        return bool(self.conn.is_open)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.conn.is_open:
                self.conn.close()


@dataclass
class _Subscription:
    queue: str
    handler: Handler
    prefetch: int
    exchange: str | None = None  # events: the queue is bound to this fanout exchange
    thread: threading.Thread | None = None
    workers: ThreadPoolExecutor | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    stopping: bool = False
    busy: int = 0  # deliveries handed to the worker and not finished
    lock: threading.Lock = field(default_factory=threading.Lock)


class _AmqpDelivery(Delivery):
    def __init__(self, link: _Link, channel: Any, tag: int, envelope: Envelope, delivery_count: int) -> None:
        self._link, self._ch, self._tag = link, channel, tag
        self.envelope = envelope
        self.delivery_count = delivery_count
        self._settled = False

    @property
    def stale(self) -> bool:
        """The channel it came on is gone: settling is pointless, the broker gives it again."""
        return not self._ch.is_open

    def _settle(self, op: Callable[[], None]) -> None:
        if self._settled:
            raise BusError(f"message {self.envelope.id} was already acknowledged or rejected")
        self._settled = True
        ch, message = self._ch, self.envelope.id

        def on_io_thread() -> None:
            if ch.is_open:  # a delivery tag belongs to its channel: never settle on a newer one
                try:
                    op()
                except px.AMQPError as exc:
                    log.debug("could not settle %s (%s); the broker will redeliver it", message, exc)

        try:
            self._link.conn.add_callback_threadsafe(on_io_thread)
        except (px.AMQPError, OSError, RuntimeError, ValueError):  # connection gone: the broker redelivers
            log.debug("connection gone before settling %s; the broker will redeliver it", message)

    def ack(self) -> None:
        self._settle(lambda: self._ch.basic_ack(delivery_tag=self._tag))

    def reject(self, requeue: bool) -> None:
        # basic.reject, not basic.nack: on RabbitMQ 4 a nack does not count towards x-delivery-limit
        self._settle(lambda: self._ch.basic_reject(delivery_tag=self._tag, requeue=requeue))


class AmqpBus(Bus):
    inline_limit = 16 * 1024 * 1024  # bigger batches go by claim check, far below the broker's message limit

    """``amqp://`` / ``amqps://`` — a RabbitMQ broker (3.8+; 3.10+ for at-least-once dead-lettering)."""

    def __init__(
        self,
        url: str,
        *,
        prefetch: int | None = None,
        queue_type: str | None = None,
        delivery_limit: int | None = None,
        publish_timeout: float = 30.0,
        close_timeout: float = 30.0,
    ) -> None:
        self._broker = Broker(url, options=OPTIONS, what="bus")
        self.url = self._broker.url
        options = self._broker.options
        self.prefetch = _positive_int("prefetch", prefetch if prefetch is not None else options.get("prefetch", 8))
        self.queue_type = str(queue_type or options.get("queue_type", "quorum")).lower()
        if self.queue_type not in QUEUE_TYPES:
            raise ConfigError(f"bus option queue_type must be one of {', '.join(QUEUE_TYPES)}, not {self.queue_type!r}")
        limit = delivery_limit if delivery_limit is not None else options.get("delivery_limit", 10)
        self.delivery_limit = _positive_int("delivery_limit", limit)
        self.publish_timeout = publish_timeout  # how long publish (and the extras) retry a lost broker
        self.close_timeout = close_timeout  # how long close() waits for running handlers
        self._stopping = threading.Event()  # consumers stop; running handlers may still publish
        self._closed = threading.Event()  # all done: publishing fails
        self._lock = threading.Lock()
        self._local = threading.local()
        self._links: list[_Link] = []  # publishing links of every thread, closed by close()
        self._subs: list[_Subscription] = []
        self._started = False
        self._seen: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._warned: set[str] = set()

    def __repr__(self) -> str:
        return f"AmqpBus({self.url!r}, queue_type={self.queue_type!r}, prefetch={self.prefetch})"

    # -- connections -----------------------------------------------------------------------
    def _publisher(self) -> _Link:
        """This thread's publishing link, opened on first use."""
        link: _Link | None = getattr(self._local, "link", None)
        if link is not None and link.alive:
            return link
        if link is not None:
            self._forget(link)
        link = _Link(self, "publisher", confirm=True)
        with self._lock:
            dead = [other for other in self._links if not other.thread.is_alive()]
            self._links = [other for other in self._links if other.thread.is_alive()]
            self._links.append(link)
        for other in dead:  # their threads are gone, so nobody uses them any more
            other.close()
        self._local.link = link
        return link

    def _forget(self, link: _Link) -> None:
        self._local.link = None
        with self._lock:
            if link in self._links:
                self._links.remove(link)
        link.close()

    def _retrying(self, what: str, op: Callable[[_Link], T]) -> T:
        """Run ``op`` on this thread's link, reconnecting (:data:`RECONNECT`) for up to ``publish_timeout``."""
        retry = RECONNECT.retry(self.publish_timeout)
        while True:
            if self._closed.is_set():
                raise BusError(f"bus {self.url} is closed")
            link: _Link | None = None
            try:
                link = self._publisher()
                with link.lock:
                    link.conn.process_data_events(0)  # notice a connection the broker dropped while idle
                    return op(link)
            except (px.UnroutableError, px.NackError):
                raise  # the broker has answered: not a connection problem
            except px.ChannelClosedByBroker as exc:
                if exc.reply_code in (_ACCESS_REFUSED, _NOT_FOUND, _PRECONDITION_FAILED):
                    raise BusError(f"{what}: the broker refused: {exc.reply_text}") from None
                error: Exception = exc
            except (px.AMQPError, OSError, ValueError) as exc:  # pika can raise ValueError on a dead connection
                error = exc
            if link is not None:
                self._forget(link)
            delay = retry.failed()
            if retry.spent:
                raise BusError(f"{what}: bus {self.url} unreachable ({self._broker.describe(error)})") from None
            # the first retry is routine (an idle link the broker dropped); a second failure is an outage: warn once
            log.log(logging.WARNING if retry.failures == 2 else logging.DEBUG, "%s: %s; reconnecting to %s in %.2fs",
                    what, type(error).__name__, self.url, delay)  # fmt: skip
            if self._closed.wait(delay):
                raise BusError(f"bus {self.url} is closed")

    # -- queues ----------------------------------------------------------------------------
    def _kind(self, link: _Link) -> tuple[bool, bool]:
        """(quorum queues, at-least-once dead-lettering) on this link's broker."""
        quorum = self.queue_type == "quorum" and link.version >= (3, 8)
        if self.queue_type == "quorum" and not quorum and "quorum" not in self._warned:
            self._warned.add("quorum")
            log.warning("broker %s is older than 3.8: using classic queues", ".".join(map(str, link.version)))
        return quorum, quorum and link.version >= (3, 10)

    def queue_arguments(self, queue: str, link: _Link) -> dict[str, Any]:
        """The ``x-`` arguments ``queue`` is declared with."""
        quorum, at_least_once = self._kind(link)
        args: dict[str, Any] = {"x-queue-type": "quorum" if quorum else "classic"}
        if queue.endswith(_DLQ_SUFFIX):
            return args  # a dead-letter queue only holds: no DLX, no delivery limit
        args["x-dead-letter-exchange"] = ""
        args["x-dead-letter-routing-key"] = dead_letter_queue(queue)
        if quorum:  # classic queues have no delivery limit (the argument would be ignored)
            args["x-delivery-limit"] = self.delivery_limit
        if at_least_once:
            args["x-dead-letter-strategy"] = "at-least-once"
            args["x-overflow"] = "reject-publish"  # required by at-least-once dead-lettering
        return args

    def _declare(self, link: _Link, queue: str) -> None:
        """Declare ``queue`` (its dead-letter queue first) once per connection."""
        if queue in link.declared:
            return
        names = [queue] if queue.endswith(_DLQ_SUFFIX) else [dead_letter_queue(queue), queue]
        for name in names:
            if name in link.declared:
                continue
            try:
                link.channel().queue_declare(name, durable=True, arguments=self.queue_arguments(name, link))
            except px.ChannelClosedByBroker as exc:
                if exc.reply_code != _PRECONDITION_FAILED:
                    raise
                link.channel().queue_declare(name, passive=True)  # it exists, declared otherwise: use it as is
                if name not in self._warned:
                    self._warned.add(name)
                    log.warning("queue %s exists with other arguments; using it as it is (%s)", name, exc.reply_text)
            link.declared.add(name)

    def _declare_exchange(self, link: _Link, exchange: str) -> None:
        """Declare the (durable, fanout) events exchange once per connection."""
        key = f"exchange:{exchange}"
        if key not in link.declared:
            link.channel().exchange_declare(exchange, exchange_type="fanout", durable=True)
            link.declared.add(key)

    def _bind(self, link: _Link, queue: str, exchange: str) -> None:
        """Declare a group's queue (and its dead-letter queue) bound to the events exchange."""
        key = f"bind:{queue}"
        self._declare_exchange(link, exchange)
        self._declare(link, queue)
        if key not in link.declared:
            link.channel().queue_bind(queue, exchange)
            link.declared.add(key)

    # -- publishing ------------------------------------------------------------------------
    @staticmethod
    def _properties(envelope: Envelope) -> pika.BasicProperties:
        return pika.BasicProperties(
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=envelope.id,
            content_type=CONTENT_TYPE,
            timestamp=int(time.time()),
        )

    def publish(self, queue: str, envelope: Envelope) -> None:
        body = encode(envelope)
        props = self._properties(envelope)

        def send(link: _Link) -> None:
            self._declare(link, queue)
            try:
                link.channel().basic_publish("", queue, body, props, mandatory=True)
            except px.UnroutableError:  # the queue was deleted behind our back: declare it again, once
                link.declared.discard(queue)
                self._declare(link, queue)
                link.channel().basic_publish("", queue, body, props, mandatory=True)

        try:
            self._retrying(f"publishing {envelope.id} to {queue}", send)
        except px.UnroutableError:
            raise BusError(f"message {envelope.id} to {queue} was returned: no such queue") from None
        except px.NackError:
            raise BusError(f"the broker refused message {envelope.id} to {queue} (nack)") from None

    def publish_event(self, envelope: Envelope) -> None:
        """Publish to the events exchange (confirmed); an event no group's queue is bound for is dropped."""
        body = encode(envelope)
        props = self._properties(envelope)

        def send(link: _Link) -> None:
            self._declare_exchange(link, EVENTS_EXCHANGE)
            try:
                link.channel().basic_publish(EVENTS_EXCHANGE, "", body, props, mandatory=True)
            except px.ChannelClosedByBroker as exc:  # the exchange was deleted behind our back: declare it again
                if exc.reply_code != _NOT_FOUND:
                    raise
                link.declared.discard(f"exchange:{EVENTS_EXCHANGE}")
                self._declare_exchange(link, EVENTS_EXCHANGE)
                link.channel().basic_publish(EVENTS_EXCHANGE, "", body, props, mandatory=True)

        try:
            self._retrying(f"publishing event {envelope.id}", send)
        except px.UnroutableError:  # nobody subscribes to events (yet): nothing to keep it for
            if "events-unroutable" not in self._warned:
                self._warned.add("events-unroutable")
                log.warning("no subscriber group is bound to %s on %s: events reach nobody", EVENTS_EXCHANGE, self.url)
        except px.NackError:
            raise BusError(f"the broker refused event {envelope.id} (nack)") from None

    # -- consuming -------------------------------------------------------------------------
    def subscribe(self, queue: str, handler: Handler, *, prefetch: int | None = None) -> None:
        """``prefetch`` defaults to the bus's: messages fetched ahead, handled one at a time."""
        self._add(_Subscription(queue, handler, _positive_int("prefetch", prefetch or self.prefetch)))

    def subscribe_events(self, group: str, handler: Handler, *, prefetch: int | None = None) -> None:
        """Consume the group's queue ``mlrm.events.<group>``, bound to the events exchange."""
        queue = events_queue(group)
        self._add(_Subscription(queue, handler, _positive_int("prefetch", prefetch or self.prefetch), EVENTS_EXCHANGE))

    def _add(self, sub: _Subscription) -> None:
        self._subs.append(sub)
        if self._started:  # already started: serve the new subscription at once
            self._spawn(sub)
            sub.ready.wait(5)

    def start(self, timeout: float = 5.0) -> None:
        """Start consuming; returns once every consumer is subscribed (or ``timeout`` passed).

        Event groups are bound first: work taken before its group's queue exists could cause
        events the group never receives.
        """
        if self._started:
            return
        self._started = True
        deadline = time.monotonic() + timeout
        events = [sub for sub in self._subs if sub.exchange is not None]
        for batch in (events, [sub for sub in self._subs if sub.exchange is None]):
            for sub in batch:
                self._spawn(sub)
            for sub in batch:
                sub.ready.wait(max(0.0, deadline - time.monotonic()))

    def _spawn(self, sub: _Subscription) -> None:
        sub.workers = ThreadPoolExecutor(1, thread_name_prefix=f"mlrm-bus-worker:{sub.queue}")
        sub.thread = threading.Thread(target=self._consume, args=(sub,), name=f"mlrm-bus:{sub.queue}", daemon=True)
        sub.thread.start()

    def _consume(self, sub: _Subscription) -> None:
        """The I/O thread of one subscription: connect, consume, reconnect (:data:`RECONNECT`) until closed."""
        retry = RECONNECT.retry()
        while not self._stopping.is_set():
            link: _Link | None = None
            try:
                link = _Link(self, f"consumer {sub.queue}", confirm=False)
                if sub.exchange is not None:
                    self._bind(link, sub.queue, sub.exchange)
                else:
                    self._declare(link, sub.queue)
                ch = link.channel()
                ch.basic_qos(prefetch_count=sub.prefetch)
                cancelled: list[Any] = []
                ch.add_on_cancel_callback(cancelled.append)
                track = not self._kind(link)[0]  # classic queues: redeliveries are counted here
                tag = ch.basic_consume(sub.queue, functools.partial(self._on_message, sub, link, track))
                outage = retry.succeeded()
                if outage is not None:
                    log.warning("consuming %s again after %.1fs", sub.queue, outage)
                sub.ready.set()
                while not self._stopping.is_set():
                    link.conn.process_data_events(time_limit=0.1)
                    if cancelled:
                        raise _Lost("the broker cancelled the consumer (queue deleted?)")
                    if not link.alive:
                        raise _Lost("connection closed")
                self._wind_down(sub, link, tag)
                return
            except Exception as exc:  # never let the consumer die: that would silently stop the service
                sub.ready.clear()
                if self._stopping.is_set():
                    return
                expected = isinstance(exc, _Lost | px.AMQPError | OSError | BusError)
                if link is not None and not link.alive:
                    expected = True  # pika may fail oddly (a ValueError) on a connection that just closed
                if not expected:
                    log.exception("consumer of %s failed; reconnecting", sub.queue)
                elif not retry.failures:  # once per outage
                    log.warning("consumer of %s lost %s (%s); reconnecting", sub.queue, self.url,
                                self._broker.describe(exc))  # fmt: skip
                self._stopping.wait(retry.failed())
            finally:
                if link is not None:
                    link.close()

    def _on_message(
        self, sub: _Subscription, link: _Link, track: bool, ch: Any, method: Any, props: Any, body: bytes
    ) -> None:
        try:
            envelope = decode(body)
        except Exception as exc:  # not ours, or corrupt: to the dead-letter queue
            log.error("%s: dead-lettering an undecodable message: %s", sub.queue, exc)
            ch.basic_reject(delivery_tag=method.delivery_tag, requeue=False)
            return
        count = self._delivery_count(sub.queue, envelope.id, method.redelivered, props.headers, track=track)
        delivery = _AmqpDelivery(link, ch, method.delivery_tag, envelope, count)
        with sub.lock:
            sub.busy += 1
        assert sub.workers is not None
        sub.workers.submit(self._handle, sub, delivery)

    def _delivery_count(
        self, queue: str, message_id: str, redelivered: bool, headers: dict[str, Any] | None, *, track: bool
    ) -> int:
        returned = (headers or {}).get("x-delivery-count")
        if returned is not None:  # quorum queues count every give-back
            return int(returned) + 1
        if not track:
            return 2 if redelivered else 1
        key = (queue, message_id)
        with self._lock:
            count = max(2, self._seen.get(key, 1) + 1) if redelivered else 1
            self._seen[key] = count
            self._seen.move_to_end(key)
            if len(self._seen) > _SEEN_MAX:
                self._seen.popitem(last=False)
        return count

    def _handle(self, sub: _Subscription, delivery: _AmqpDelivery) -> None:
        """The worker thread: run the handler on one message."""
        try:
            if delivery.stale or sub.stopping:
                return  # its channel is gone or closing: the broker gives it again
            try:
                sub.handler(delivery)
            except Exception:  # a handler must settle its own messages; never kill the worker
                log.exception("consumer of %s raised; requeueing %s", sub.queue, delivery.envelope.id)
                if not delivery._settled:
                    delivery.reject(requeue=True)
                return
            if not delivery._settled:
                log.warning("consumer of %s neither acked nor rejected %s; requeueing", sub.queue, delivery.envelope.id)
                delivery.reject(requeue=True)
        finally:
            with sub.lock:
                sub.busy -= 1

    def _wind_down(self, sub: _Subscription, link: _Link, tag: str) -> None:
        """Closing: no new deliveries; let the running handler finish (bounded) and flush its ack."""
        sub.stopping = True
        with contextlib.suppress(px.AMQPError, OSError, ValueError):
            link.ch.basic_cancel(tag)  # pika gives back what was fetched but not yet dispatched
            deadline = time.monotonic() + self.close_timeout
            while sub.busy and time.monotonic() < deadline:
                link.conn.process_data_events(time_limit=0.05)
            if sub.busy:
                log.warning("closing %s with a handler still running; its message stays queued", sub.queue)
            for _ in range(3):  # run the last acks the worker handed over
                link.conn.process_data_events(time_limit=0.01)

    # -- operator extras ---------------------------------------------------------------------
    def _on_channel(self, what: str, op: Callable[[Any], T], *, missing: T) -> T:
        """Run ``op`` on a throwaway channel (closing it gives back anything unacked)."""

        def run(link: _Link) -> T:
            ch = link.conn.channel()
            try:
                return op(ch)
            except px.ChannelClosedByBroker as exc:
                if exc.reply_code == _NOT_FOUND:
                    return missing
                raise
            finally:
                if ch.is_open:
                    ch.close()

        return self._retrying(what, run)

    def depth(self, queue: str) -> int:
        """Messages ready on ``queue`` (0 if it does not exist); unacked ones are not counted."""

        def count(ch: Any) -> int:
            return int(ch.queue_declare(queue, passive=True).method.message_count)

        return self._on_channel(f"measuring {queue}", count, missing=0)

    def peek(self, queue: str, limit: int = 100, *, settle: float = 2.0) -> list[Envelope]:
        """Up to ``limit`` messages from the head, given back when the channel closes.

        On a quorum queue this counts as a delivery (``x-delivery-count`` + 1) and puts the
        peeked messages behind the others: meant for dead-letter queues, not busy work queues.
        Returns once the broker shows them queued again (or after ``settle`` seconds).
        """

        def get(ch: Any) -> tuple[list[Envelope], int]:
            before = int(ch.queue_declare(queue, passive=True).method.message_count)
            out: list[Envelope] = []
            while len(out) < limit:
                method, _props, body = ch.basic_get(queue, auto_ack=False)
                if method is None:
                    break
                try:
                    out.append(decode(body))
                except Exception as exc:
                    log.warning("peek %s: skipping an undecodable message: %s", queue, exc)
            return out, before

        out, before = self._on_channel(f"peeking at {queue}", get, missing=([], 0))
        # the broker puts them back asynchronously: wait, so a drain right after sees them all
        deadline = time.monotonic() + settle
        while out and self.depth(queue) < before and time.monotonic() < deadline:
            time.sleep(0.01)
        return out

    def drain(self, queue: str) -> list[Envelope]:
        """Take every message off ``queue`` (undecodable ones are dropped with a warning)."""

        def take(ch: Any) -> list[Envelope]:
            out: list[Envelope] = []
            while True:
                method, _props, body = ch.basic_get(queue, auto_ack=False)
                if method is None:
                    return out
                try:
                    out.append(decode(body))
                except Exception as exc:
                    log.warning("drain %s: dropping an undecodable message: %s", queue, exc)
                ch.basic_ack(delivery_tag=method.delivery_tag)

        return self._on_channel(f"draining {queue}", take, missing=[])

    def purge(self, queue: str) -> None:
        """Drop every ready message of ``queue`` (a missing queue is fine)."""
        self._on_channel(f"purging {queue}", lambda ch: ch.queue_purge(queue), missing=None)

    def delete_queue(self, queue: str) -> None:
        """Delete ``queue`` and its messages (not its dead-letter queue; a missing queue is fine)."""

        def delete(ch: Any) -> None:
            ch.queue_delete(queue)

        self._on_channel(f"deleting {queue}", delete, missing=None)
        link: _Link | None = getattr(self._local, "link", None)
        if link is not None:
            link.declared.discard(queue)

    # -- shutting down -----------------------------------------------------------------------
    def close(self) -> None:
        """Stop consuming, let running handlers finish (bounded), close every connection."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        me = threading.current_thread()
        for sub in self._subs:  # each consumer waits for its running handler, up to close_timeout
            if sub.thread is not None and sub.thread is not me:
                sub.thread.join(self.close_timeout + 5)
            if sub.workers is not None:
                sub.workers.shutdown(wait=False, cancel_futures=True)
        self._closed.set()
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            owned = link.lock.acquire(timeout=1)
            try:
                if owned or not link.thread.is_alive():
                    link.close()
                # else a handler past close_timeout is publishing on it: it goes with its thread
            finally:
                if owned:
                    link.lock.release()
