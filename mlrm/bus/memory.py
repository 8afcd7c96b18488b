"""The embedded bus: in-process queues served by worker threads.

Queues are bounded so a fast producer (the collector reading a 1 GB file) blocks
instead of filling memory; redeliveries bypass the bound so a consumer never
waits on itself. Nothing is serialised: DataFrames are handed over as they are.
Events are copied into the queue of every subscriber group (``mlrm.events.<group>``),
each group with its own copy of the event's body, so one group cannot change what
another sees.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections import deque
from dataclasses import dataclass, field, replace

from mlrm.bus.base import Bus, Delivery, Handler, events_queue
from mlrm.bus.envelope import Envelope
from mlrm.errors import BusError

log = logging.getLogger(__name__)


@dataclass
class _Item:
    envelope: Envelope
    delivery_count: int = 1


@dataclass
class _Queue:
    capacity: int  # 0 = unbounded; only queues someone consumes are bounded (a DLQ just holds)
    items: deque[_Item] = field(default_factory=deque)
    cond: threading.Condition = field(default_factory=threading.Condition)


class _MemoryDelivery(Delivery):
    def __init__(self, bus: MemoryBus, queue: str, item: _Item) -> None:
        self._bus, self._queue, self._item = bus, queue, item
        self.envelope = item.envelope
        self.delivery_count = item.delivery_count
        self._settled = False

    def _settle(self) -> None:
        if self._settled:
            raise BusError(f"message {self.envelope.id} was already acknowledged or rejected")
        self._settled = True

    def ack(self) -> None:
        self._settle()

    def reject(self, requeue: bool) -> None:
        self._settle()
        if requeue:
            self._bus._put(self._queue, _Item(self.envelope, self._item.delivery_count + 1), front=False, force=True)


class MemoryBus(Bus):
    """``memory://`` — queues live as long as the process."""

    def __init__(self, url: str = "memory://", *, capacity: int = 8) -> None:
        self.url = url
        self.capacity = capacity
        self._queues: dict[str, _Queue] = {}
        self._subs: list[tuple[str, Handler, int]] = []
        self._groups: dict[str, None] = {}  # the queues of event subscriber groups, in subscription order
        self._threads: list[threading.Thread] = []
        self._closed = threading.Event()
        self._lock = threading.Lock()

    def _queue(self, name: str) -> _Queue:
        with self._lock:
            q = self._queues.get(name)
            if q is None:
                q = self._queues[name] = _Queue(0)
            return q

    def _put(self, name: str, item: _Item, *, front: bool = False, force: bool = False) -> None:
        q = self._queue(name)
        with q.cond:
            while not force and 0 < q.capacity <= len(q.items) and not self._closed.is_set():
                q.cond.wait(0.1)
            if self._closed.is_set():
                raise BusError(f"bus {self.url} is closed")
            (q.items.appendleft if front else q.items.append)(item)
            q.cond.notify_all()

    def publish(self, queue: str, envelope: Envelope) -> None:
        self._put(queue, _Item(envelope))

    def publish_event(self, envelope: Envelope) -> None:
        if self._closed.is_set():
            raise BusError(f"bus {self.url} is closed")
        with self._lock:
            queues = list(self._groups)
        for queue in queues:
            self._put(queue, _Item(replace(envelope, body=copy.deepcopy(envelope.body))))

    def subscribe_events(self, group: str, handler: Handler, *, prefetch: int = 1) -> None:
        queue = events_queue(group)
        with self._lock:
            self._groups[queue] = None
        self.subscribe(queue, handler, prefetch=prefetch)

    def depth(self, queue: str) -> int:
        return len(self._queue(queue).items)

    def peek(self, queue: str, limit: int = 100) -> list[Envelope]:
        """Up to ``limit`` messages from the head of a queue, left where they are."""
        q = self._queue(queue)
        with q.cond:
            return [i.envelope for i, _ in zip(q.items, range(max(0, limit)), strict=False)]

    def drain(self, queue: str) -> list[Envelope]:
        """Take every message off a queue (used to read dead-letter queues)."""
        q = self._queue(queue)
        with q.cond:
            items = [i.envelope for i in q.items]
            q.items.clear()
            q.cond.notify_all()
        return items

    def subscribe(self, queue: str, handler: Handler, *, prefetch: int = 1) -> None:
        self._subs.append((queue, handler, max(1, prefetch)))
        self._queue(queue).capacity = self.capacity
        if self._threads:  # already started: serve the new subscription at once
            self._spawn(queue, handler)

    def start(self) -> None:
        if self._threads:
            return
        for queue, handler, _prefetch in self._subs:
            self._spawn(queue, handler)

    def _spawn(self, queue: str, handler: Handler) -> None:
        t = threading.Thread(target=self._serve, args=(queue, handler), name=f"bus:{queue}", daemon=True)
        self._threads.append(t)
        t.start()

    def _serve(self, name: str, handler: Handler) -> None:
        q = self._queue(name)
        while not self._closed.is_set():
            with q.cond:
                while not q.items and not self._closed.is_set():
                    q.cond.wait(0.1)
                if self._closed.is_set():
                    return
                item = q.items.popleft()
                q.cond.notify_all()
            delivery = _MemoryDelivery(self, name, item)
            try:
                handler(delivery)
            except Exception:  # a handler must settle its own messages; never kill the worker
                if self._closed.is_set():
                    return  # shutting down: the message would be redelivered by a durable bus
                log.exception("consumer of %s raised; requeueing %s", name, item.envelope.id)
                if not delivery._settled:
                    delivery.reject(requeue=True)

    def close(self) -> None:
        self._closed.set()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=5)
