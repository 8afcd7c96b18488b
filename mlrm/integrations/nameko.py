"""nameko's RPC wire protocol, spoken with pika: nameko clients call mlrm, mlrm calls nameko.

nameko itself is not needed (nor imported): this module reproduces what nameko 2.x
(``nameko/rpc.py``, ``nameko/standalone/rpc.py``, ``nameko/amqp/publish.py``,
``nameko/messaging.py``, ``nameko/exceptions.py``, ``nameko/constants.py``) puts on the wire.

The protocol
    - one exchange, ``nameko-rpc`` (topic, durable);
    - a service ``S`` consumes the durable queue ``rpc-S``, bound with routing key ``S.*``;
    - a request is published to ``nameko-rpc`` with routing key ``S.METHOD``, body
      ``{"args": [...], "kwargs": {...}}`` (``content_type`` ``application/json``,
      ``content_encoding`` ``utf-8``), ``reply_to`` (a routing key: the caller's reply queue
      is bound to ``nameko-rpc`` under it), ``correlation_id``, and the context data as
      headers ``nameko.<key>`` (``nameko.call_id_stack`` = a list of call ids);
    - the reply goes to ``nameko-rpc`` with routing key ``reply_to`` and the same
      ``correlation_id``: ``{"result": ..., "error": null}`` or ``{"result": null, "error":
      {"exc_type": "ValueError", "exc_path": "builtins.ValueError", "exc_args": [...],
      "value": "..."}}``. nameko's client raises ``RemoteError(exc_type, value)`` for it, or
      an instance of its own class when ``exc_path`` names one it registered
      (``nameko.exceptions.MethodNotFound``, ``MalformedRequest``, ``IncorrectSignature``).
      It reads only those four keys, so an mlrm error also carries itself as data under
      ``"mlrm"`` (:meth:`mlrm.errors.MlrmError.to_dict`): nameko clients see the usual
      ``RemoteError("ConfigError <message>")``, mlrm's client rebuilds the error itself.

Only JSON is spoken (nameko's default serializer): arguments and results must be
JSON-serialisable (dicts with string keys, lists, strings, numbers, booleans, None; NaN
is allowed, as in nameko). A result that is not is answered with nameko's
``UnserializableValueError``.

Delivery is at-least-once, as in nameko: the responder acknowledges a request after its
reply is published, so a request in flight when the connection drops is given again by
the broker (to this responder once it has reconnected, or to another one).

Connections, URL redaction and the reconnect policy are the kernel's (:mod:`mlrm.amqp`),
shared with the bus.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import pika
import pika.exceptions as px

from mlrm.amqp import RECONNECT, Backoff, Broker, Retry
from mlrm.errors import BusError, ConfigError, DataError, MlrmError, StepError, error_from_dict

log = logging.getLogger(__name__)

RPC_EXCHANGE = "nameko-rpc"
TARGET_PREFIX = "nameko:"
CONTENT_TYPE = "application/json"
HEADER_PREFIX = "nameko."
CALL_ID_STACK = "call_id_stack"
_PERSISTENT = 2  # nameko publishes requests and replies persistent
_EXC_MODULE = "nameko.exceptions"  # nameko's client rebuilds its own errors from this path
ERROR_DATA = "mlrm"  # the key of an error reply holding an mlrm error as data (nameko ignores it)


# -- names ------------------------------------------------------------------------------
def _check_name(kind: str, name: Any) -> str:
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(f"nameko {kind} name must be a Python identifier, not {name!r}")
    return name


def is_nameko_target(text: Any) -> bool:
    """Whether a workflow step's ``service:`` names a nameko method (``nameko:...``)."""
    return isinstance(text, str) and text.strip().startswith(TARGET_PREFIX)


def parse_nameko_target(text: str) -> tuple[str, str]:
    """``"nameko:greeter.hello"`` -> ``("greeter", "hello")``; a :class:`ConfigError` otherwise."""
    if not is_nameko_target(text):
        raise ConfigError(f"a nameko target reads nameko:SERVICE.METHOD, not {text!r}")
    rest = text.strip()[len(TARGET_PREFIX) :]
    parts = rest.split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"a nameko target reads nameko:SERVICE.METHOD (one dot), not {text!r}")
    service, method = parts
    if not service.isidentifier():
        raise ConfigError(f"nameko target {text!r}: service {service!r} is not a Python identifier")
    if not method.isidentifier():
        raise ConfigError(f"nameko target {text!r}: method {method!r} is not a Python identifier")
    return service, method


# -- shared wire helpers ------------------------------------------------------------------
def _safe(value: Any) -> Any:
    """nameko's ``safe_for_serialization``: strings stay, mappings and iterables recurse, the rest is str()."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return {_safe(k): _safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_safe(v) for v in value]
    try:
        return str(value)
    except Exception:
        return "[__unicode__ failed]"


def serialize_error(exc: BaseException) -> dict[str, Any]:
    """An exception as nameko's error dict (``nameko.exceptions.serialize``); an mlrm error adds itself
    as data under :data:`ERROR_DATA`, which nameko's client ignores and mlrm's rebuilds it from."""
    cls = type(exc)
    error = {
        "exc_type": cls.__name__,
        "exc_path": f"{cls.__module__}.{cls.__name__}",
        "exc_args": [_safe(arg) for arg in exc.args],
        "value": _safe(exc),
    }
    if isinstance(exc, MlrmError):
        try:  # JSON as it is (a location's line stays a number), anything odd as its str()
            error[ERROR_DATA] = json.loads(json.dumps(exc.to_dict(), default=str))
        except Exception:  # a plug-in error whose to_dict fails: nameko's four keys still describe it
            log.warning("could not describe %s as data", cls.__name__, exc_info=True)
    return error


def _nameko_error(name: str, value: str, args: list[Any] | None = None) -> dict[str, Any]:
    """One of nameko's own errors (the client re-raises ``MethodNotFound`` & co. as themselves)."""
    return {
        "exc_type": name,
        "exc_path": f"{_EXC_MODULE}.{name}",
        "exc_args": [value] if args is None else args,
        "value": value,
    }


def _properties(correlation_id: str | None, **extra: Any) -> pika.BasicProperties:
    return pika.BasicProperties(
        content_type=CONTENT_TYPE,
        content_encoding="utf-8",
        correlation_id=correlation_id,
        delivery_mode=_PERSISTENT,
        priority=0,
        **extra,
    )


def _close_quietly(conn: Any) -> None:
    with contextlib.suppress(Exception):
        if conn is not None and conn.is_open:
            conn.close()


# -- mlrm answers nameko --------------------------------------------------------------------
class _BadRequest(Exception):
    """A request answered with an error at once, without running a method."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["value"])
        self.error = error


class _Session:
    """One connection of the responder and the requests handed to workers on it."""

    def __init__(self, conn: Any, ch: Any) -> None:
        self.conn, self.ch = conn, ch
        self.busy = 0
        self.cancelled = False
        self.lock = threading.Lock()

    def begin(self) -> None:
        with self.lock:
            self.busy += 1

    def end(self) -> None:
        with self.lock:
            self.busy -= 1


class NamekoResponder:
    """Serves ``methods`` as the nameko service ``service``: ``proxy.<service>.<method>(...)`` works.

    ``start()`` runs a background thread owning its own pika connection (so heartbeats keep
    flowing however long a method runs): it declares the ``nameko-rpc`` exchange and the
    durable queue ``rpc-<service>`` bound under ``<service>.*``, and consumes it. Each request
    runs ``methods[method](*args, **kwargs)`` in a worker thread (at most ``max_workers`` at
    once: the broker's prefetch); the reply is published, then the request acknowledged.

    Errors are replies, never crashes: an unknown method gets nameko's ``MethodNotFound``,
    arguments that do not fit the function's signature ``IncorrectSignature``, a body that
    is not JSON ``{"args": [...], "kwargs": {...}}`` ``MalformedRequest``, a result that
    is not JSON-serialisable ``UnserializableValueError``, and an exception raised by a
    method its class name and ``str(exc)`` (nameko's client raises
    ``RemoteError("<ExcType> <text>")``; an mlrm error also travels as data, which
    :class:`NamekoRpcClient` rebuilds it from). A dropped connection, or a broker-side consumer
    cancel (the queue was deleted), is followed by a reconnect under ``backoff``
    (:data:`mlrm.amqp.RECONNECT`: at once, then growing delays), logged once per outage.
    Another responder (or a nameko service) with the same name shares the queue: the broker
    balances the requests between them.
    """

    def __init__(
        self,
        url: str,
        service: str,
        methods: Mapping[str, Callable[..., Any]],
        *,
        exchange: str = RPC_EXCHANGE,
        max_workers: int = 10,
        backoff: Backoff = RECONNECT,
        grace: float = 10.0,
    ) -> None:
        self._broker = Broker(url, what="nameko")
        self.url = self._broker.url
        self.service = _check_name("service", service)
        self.methods: dict[str, Callable[..., Any]] = {}
        self._signatures: dict[str, inspect.Signature | None] = {}
        for name, fn in methods.items():
            if not callable(fn):
                raise ConfigError(f"nameko method {service}.{name} is not callable: {fn!r}")
            self.methods[_check_name("method", name)] = fn
            try:
                self._signatures[name] = inspect.signature(fn)
            except (TypeError, ValueError):  # builtins without a signature: not checked
                self._signatures[name] = None
        if max_workers < 1:
            raise ConfigError(f"max_workers must be at least 1, not {max_workers}")
        self.exchange = exchange
        self.queue = f"rpc-{service}"
        self.max_workers = max_workers
        self.grace = grace
        self.backoff = backoff
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._session: _Session | None = None
        self.last_error: BaseException | None = None
        self.connects = 0  # connections made so far (more than one: it reconnected)

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Connected and consuming (False while reconnecting)."""
        return self._ready.is_set()

    def start(self, timeout: float = 10.0) -> NamekoResponder:
        """Start serving; waits until the queue is consumed (a :class:`BusError` after ``timeout``)."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"nameko-responder-{self.service}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            error = self.last_error
            self.stop()
            raise BusError(
                f"nameko responder {self.service!r} could not start on {self.url} within {timeout:g}s"
                + (f": {self._broker.describe(error)}" if error else "")
            )
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop consuming; requests already running get ``grace`` seconds to send their reply."""
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.grace + 5 if timeout is None else timeout)

    def __enter__(self) -> NamekoResponder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the I/O thread -------------------------------------------------------------------
    def _run(self) -> None:
        retry = self.backoff.retry()
        while not self._stopping.is_set():
            delay = 0.0
            try:
                self._serve(retry)
            except Exception as exc:  # connection lost, consumer cancelled, broker refused...
                self.last_error = exc
                if not retry.failures:  # once per outage
                    log.warning("nameko responder %s on %s: %s; reconnecting", self.service, self.url,
                                self._broker.describe(exc))  # fmt: skip
                delay = retry.failed()
            finally:
                self._ready.clear()
                if self._session is not None:
                    _close_quietly(self._session.conn)
            if self._stopping.wait(delay):
                break

    def _serve(self, retry: Retry) -> None:
        self._session = None
        conn = self._broker.connect(f"mlrm nameko responder {self.service}")
        ch = conn.channel()
        session = self._session = _Session(conn, ch)
        ch.exchange_declare(self.exchange, exchange_type="topic", durable=True)
        ch.queue_declare(self.queue, durable=True)
        ch.queue_bind(self.queue, self.exchange, routing_key=f"{self.service}.*")
        ch.basic_qos(prefetch_count=self.max_workers)
        ch.confirm_delivery()

        def on_cancel(_frame: Any) -> None:
            session.cancelled = True

        ch.add_on_cancel_callback(on_cancel)
        tag = ch.basic_consume(self.queue, on_message_callback=partial(self._on_request, session))
        self.connects += 1
        outage = retry.succeeded()
        if outage is not None:
            log.warning("nameko responder %s serving again after %.1fs", self.service, outage)
        self._ready.set()
        self.last_error = None
        log.debug("nameko responder %s consuming %s on %s", self.service, self.queue, self.url)
        while not self._stopping.is_set():
            conn.process_data_events(time_limit=0.2)
            if session.cancelled:
                raise BusError(f"the broker cancelled the consumer of {self.queue} (queue deleted?)")
        # stopping: take no more requests, let the running ones reply (unacked ones go back)
        self._ready.clear()
        with contextlib.suppress(px.AMQPError):
            ch.basic_cancel(tag)
        deadline = time.monotonic() + self.grace
        while session.busy > 0 and time.monotonic() < deadline and conn.is_open:
            conn.process_data_events(time_limit=0.1)
        _close_quietly(conn)

    def _on_request(self, session: _Session, ch: Any, method: Any, props: Any, body: bytes) -> None:
        tag = method.delivery_tag
        reply_to = props.reply_to
        if not reply_to:  # nobody to answer: nameko itself would fail on this message
            log.warning(
                "nameko responder %s: dropped a request without reply_to (%s)", self.service, method.routing_key
            )
            ch.basic_ack(tag)
            return
        name = method.routing_key.rsplit(".", 1)[-1]
        try:
            args, kwargs = self._decode(props, body)
            # nameko matches the whole routing key: a key bound to the queue by hand finds nothing
            fn = self.methods.get(name) if method.routing_key == f"{self.service}.{name}" else None
            if fn is None:
                raise _BadRequest(_nameko_error("MethodNotFound", name))
            self._check_signature(name, args, kwargs)
        except _BadRequest as bad:
            self._reply(session, tag, reply_to, props.correlation_id, _encode_reply(None, bad.error))
            return
        session.begin()
        worker = threading.Thread(
            target=self._work,
            args=(session, tag, reply_to, props.correlation_id, name, fn, args, kwargs),
            name=f"nameko-{self.service}.{name}",
            daemon=True,
        )
        worker.start()

    @staticmethod
    def _decode(props: Any, body: bytes) -> tuple[list[Any], dict[str, Any]]:
        if props.content_type not in (None, "", CONTENT_TYPE):
            raise _BadRequest(
                _nameko_error("MalformedRequest", f"unsupported content type {props.content_type!r} (JSON only)")
            )
        try:
            request = json.loads(body.decode(props.content_encoding or "utf-8"))
        except (UnicodeDecodeError, LookupError, ValueError) as exc:
            raise _BadRequest(_nameko_error("MalformedRequest", f"the body is not JSON: {exc}")) from None
        if not isinstance(request, dict) or "args" not in request or "kwargs" not in request:
            raise _BadRequest(_nameko_error("MalformedRequest", "Message missing `args` or `kwargs`"))
        args, kwargs = request["args"], request["kwargs"]
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise _BadRequest(_nameko_error("MalformedRequest", "`args` must be a list and `kwargs` an object"))
        return args, kwargs

    def _check_signature(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        signature = self._signatures.get(name)
        if signature is None:
            return
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise _BadRequest(_nameko_error("IncorrectSignature", str(exc))) from None

    def _work(
        self,
        session: _Session,
        tag: int,
        reply_to: str,
        correlation_id: str | None,
        name: str,
        fn: Callable[..., Any],
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> None:
        """A worker thread: run the method, encode the reply, hand it to the I/O thread."""
        try:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                log.info("nameko %s.%s raised %s: %s", self.service, name, type(exc).__name__, exc)
                body = _encode_reply(None, serialize_error(exc))
            else:
                body = _encode_reply(result, None)
        except BaseException:
            session.end()
            raise
        try:
            session.conn.add_callback_threadsafe(partial(self._finish, session, tag, reply_to, correlation_id, body))
        except Exception:  # connection gone: the broker gives the request again
            session.end()
            log.info("nameko %s.%s: connection lost before the reply; the request goes back", self.service, name)

    def _finish(self, session: _Session, tag: int, reply_to: str, correlation_id: str | None, body: bytes) -> None:
        try:
            self._reply(session, tag, reply_to, correlation_id, body)
        finally:
            session.end()

    def _reply(self, session: _Session, tag: int, reply_to: str, correlation_id: str | None, body: bytes) -> None:
        """On the I/O thread: publish the reply, then acknowledge the request (nameko's order)."""
        ch = session.ch
        if not ch.is_open:  # a delivery tag belongs to its channel: the broker redelivers
            return
        with contextlib.suppress(px.UnroutableError):  # the caller's reply queue is gone
            ch.basic_publish(self.exchange, reply_to, body, _properties(correlation_id, headers={}))
        ch.basic_ack(tag)


def _encode_reply(result: Any, error: dict[str, Any] | None) -> bytes:
    try:
        return json.dumps({"result": result, "error": error}).encode()
    except (TypeError, ValueError, RecursionError):
        try:
            shown = repr(result)
        except Exception:
            shown = "[__repr__ failed]"
        unserializable = _nameko_error("UnserializableValueError", f"Unserializable value: `{shown}`", [])
        return json.dumps({"result": None, "error": unserializable}).encode()


# -- mlrm calls nameko --------------------------------------------------------------------
class NamekoCallError(StepError):
    """A nameko method answered with an error; ``exc_type``/``value``/... are nameko's fields."""

    def __init__(self, service: str, method: str, error: Mapping[str, Any]) -> None:
        self.service, self.method = service, method
        self.exc_type = str(error.get("exc_type"))
        self.exc_path = error.get("exc_path")
        self.exc_args = error.get("exc_args") or []
        self.value = str(error.get("value", ""))
        super().__init__(f"nameko {service}.{method} failed: {self.exc_type}: {self.value}")

    def to_dict(self) -> dict[str, Any]:
        nameko = {"exc_type": self.exc_type, "exc_path": self.exc_path, "exc_args": self.exc_args, "value": self.value}
        return {**super().to_dict(), "service": self.service, "method": self.method, "error": nameko}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MlrmError:
        error = data.get("error")
        service, method = str(data.get("service", "?")), str(data.get("method", "?"))
        return cls(service, method, error if isinstance(error, dict) else {})


def remote_error(service: str, method: str, error: Any) -> MlrmError:
    """The error a nameko error reply stands for.

    An mlrm responder's reply carries the error as data: a type this process knows comes back
    as itself (a ``NotFoundError`` as a ``NotFoundError``, a ``ConfigError`` with its file and
    line), noted with the call it came from. Anything else is a :class:`NamekoCallError`.
    """
    if not isinstance(error, Mapping):
        return NamekoCallError(service, method, {"value": error})
    data = error.get(ERROR_DATA)
    if isinstance(data, dict):
        rebuilt = error_from_dict(data)
        if type(rebuilt).__name__ == data.get("type"):  # known here; else keep nameko's own description
            rebuilt.add_note(f"raised by nameko {service}.{method}")
            return rebuilt
    return NamekoCallError(service, method, error)


class NamekoRpcClient:
    """Calls nameko services (or :class:`NamekoResponder`\\ s) the way nameko's own proxy does.

    ``call("greeter", "hello", "world")`` publishes ``{"args": ["world"], "kwargs": {}}``
    to ``nameko-rpc`` under ``greeter.hello`` and waits up to ``timeout`` seconds for the
    reply on the client's own exclusive, auto-deleted reply queue. It returns the result,
    raises the mlrm error an mlrm responder's method raised (rebuilt from the reply's data,
    :func:`remote_error`), :class:`NamekoCallError` (a :class:`StepError`) for other error replies, and
    :class:`BusError` when no service is listening (publishing is ``mandatory`` and
    confirmed, so that fails at once), on time-out, or when the broker is unreachable.

    The connection opens on the first call; one lost while idle is reopened at once (the
    first retry of :data:`mlrm.amqp.RECONNECT`); a broker still away fails the call with a
    :class:`BusError` at once, which the service runtime treats as transient.
    Thread-safety: calls are serialised by a lock, so a client may be shared, but threads
    that call in parallel should each have their own client.
    ``context_data`` goes into every request as nameko's ``nameko.<key>`` headers
    (``auth_token``, ``user_id``, ...) next to ``nameko.call_id_stack``.
    """

    def __init__(
        self,
        url: str,
        timeout: float = 30,
        *,
        exchange: str = RPC_EXCHANGE,
        context_data: Mapping[str, Any] | None = None,
        name: str = "mlrm_rpc_client",
    ) -> None:
        if timeout <= 0:
            raise ConfigError(f"a nameko call timeout must be positive, not {timeout!r}")
        self._broker = Broker(url, what="nameko")
        self.url = self._broker.url
        self.timeout = float(timeout)
        self.exchange = exchange
        self.name = name
        self.context_data = dict(context_data or {})
        self._lock = threading.Lock()
        self._conn: Any = None
        self._ch: Any = None
        self._reply_key = ""
        self._pending: set[str] = set()
        self._replies: dict[str, bytes] = {}

    def __enter__(self) -> NamekoRpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (its reply queue goes with it). The client may be used again."""
        with self._lock:
            self._reset()

    def call(self, service: str, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """``service.method(*args, **kwargs)`` over nameko RPC; see the class doc for the errors."""
        _check_name("service", service)
        _check_name("method", method)
        try:
            body = json.dumps({"args": list(args), "kwargs": kwargs}).encode()
        except (TypeError, ValueError) as exc:
            raise DataError(f"nameko {service}.{method}: the arguments are not JSON-serialisable: {exc}") from None
        with self._lock:
            correlation_id = str(uuid.uuid4())
            self._pending.add(correlation_id)
            try:
                self._publish(service, method, body, correlation_id)
                reply = self._wait(service, method, correlation_id)
            finally:
                self._pending.discard(correlation_id)
                self._replies.pop(correlation_id, None)
        return self._unpack(service, method, reply)

    # -- internals (under the lock) ---------------------------------------------------------
    def _connect(self) -> Any:
        if self._conn is not None and self._conn.is_open and self._ch is not None and self._ch.is_open:
            return self._ch
        self._reset()
        conn = self._broker.connect(f"mlrm nameko client {self.name}")  # a refused login: BusError
        try:
            ch = conn.channel()
            ch.exchange_declare(self.exchange, exchange_type="topic", durable=True)
            reply_key = str(uuid.uuid4())
            queue = f"rpc.reply-{self.name}-{reply_key}"
            ch.queue_declare(queue, exclusive=True, auto_delete=True)
            ch.queue_bind(queue, self.exchange, routing_key=reply_key)
            ch.basic_consume(queue, on_message_callback=self._on_reply, auto_ack=True)
            ch.confirm_delivery()
        except BaseException:
            _close_quietly(conn)
            raise
        self._conn, self._ch, self._reply_key = conn, ch, reply_key
        return ch

    def _reset(self) -> None:
        _close_quietly(self._conn)
        self._conn = self._ch = None
        self._reply_key = ""

    def _on_reply(self, _ch: Any, _method: Any, props: Any, body: bytes) -> None:
        if props.correlation_id in self._pending:
            self._replies[props.correlation_id] = body
        else:  # a late reply to a call that timed out
            log.debug("nameko client: dropped a reply with unknown correlation id %s", props.correlation_id)

    def _publish(self, service: str, method: str, body: bytes, correlation_id: str) -> None:
        headers = {f"{HEADER_PREFIX}{k}": v for k, v in self.context_data.items() if v is not None}
        headers[f"{HEADER_PREFIX}{CALL_ID_STACK}"] = [f"{self.name}.call.{uuid.uuid4()}"]
        retry = RECONNECT.retry(0.0)  # a zero budget: the first retry (at once) only
        while True:
            ch = None
            try:
                ch = self._connect()
                ch.basic_publish(
                    self.exchange,
                    f"{service}.{method}",
                    body,
                    _properties(correlation_id, reply_to=self._reply_key, headers=headers),
                    mandatory=True,
                )
                return
            except px.UnroutableError:
                raise BusError(f"no nameko service {service!r} is listening on {self.exchange}") from None
            except px.NackError:
                raise BusError(f"the broker refused the request to nameko {service}.{method}") from None
            except (px.AMQPConnectionError, px.AMQPChannelError, OSError) as exc:
                self._reset()
                delay = retry.failed()
                if retry.spent:
                    doing = "cannot connect to the broker at" if ch is None else "cannot publish to"
                    raise BusError(
                        f"nameko {service}.{method}: {doing} {self.url}: {self._broker.describe(exc)}"
                    ) from None
                time.sleep(delay)

    def _wait(self, service: str, method: str, correlation_id: str) -> bytes:
        deadline = time.monotonic() + self.timeout
        while correlation_id not in self._replies:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BusError(f"nameko {service}.{method} did not reply within {self.timeout:g}s (timeout)")
            try:
                self._conn.process_data_events(time_limit=min(remaining, 0.5))
            except (px.AMQPError, OSError) as exc:
                self._reset()
                raise BusError(
                    f"nameko {service}.{method}: lost the connection to {self.url} while waiting for the reply: "
                    f"{self._broker.describe(exc)}"
                ) from None
        return self._replies.pop(correlation_id)

    @staticmethod
    def _unpack(service: str, method: str, body: bytes) -> Any:
        try:
            reply = json.loads(body)
        except ValueError:
            reply = None
        if not isinstance(reply, dict) or ("result" not in reply and "error" not in reply):
            raise BusError(f"nameko {service}.{method} sent a reply that is not nameko's JSON: {body[:200]!r}")
        error = reply.get("error")
        if error:
            raise remote_error(service, method, error)
        return reply.get("result")
