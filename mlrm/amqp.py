"""Reaching an AMQP broker (RabbitMQ): URLs, connections and the one reconnect policy.

The bus (``mlrm/bus/amqp.py``) and the nameko integration (``mlrm/integrations/nameko.py``)
both talk to the broker through pika, and both must parse the same URLs, keep the same
secrets out of logs and errors, and ride out the same outages. This module is the one
place for that:

- :func:`redact` — any URL made fit for messages and logs (credentials and secret query
  values replaced by ``***``);
- :class:`Broker` — an ``amqp://`` / ``amqps://`` URL checked once: pika's parameters for a
  named connection, the query options that are not pika's, the redacted URL, and
  :meth:`Broker.connect`, which turns a refused login into a one-line :class:`BusError`;
- :class:`Backoff` and :class:`Retry` — the reconnect policy of every loop: the first
  retry at once (a connection the broker dropped while idle is routine), then
  exponential delays with a cap, optionally within a time budget.

pika's own loggers are quietened here, once (to CRITICAL, unless configured): every
failure they report reaches mlrm as an exception, which the loops log once per outage.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import pika
import pika.exceptions as px

from mlrm.errors import BusError, ConfigError

if logging.getLogger("pika").level == logging.NOTSET:
    logging.getLogger("pika").setLevel(logging.CRITICAL)

SCHEMES = ("amqp", "amqps")
MASK = "***"
# query keys whose values are secrets; ssl_options may hold the client key's password
_SECRET_KEY = re.compile(r"pass|secret|token|key|auth|cred|sig|ssl_options", re.IGNORECASE)


# -- redaction ---------------------------------------------------------------------------
def redact(url: str) -> str:
    """``url`` fit for messages and logs: user info and secret query values become ``***``.

    ``amqp://user:pw@host/vh?heartbeat=5&password=x`` -> ``amqp://***@host/vh?heartbeat=5&password=***``.
    The user name goes too (it is half a login). Everything before the last ``@`` ahead of
    the query counts as user info, so a password with an unescaped ``/`` is masked whole;
    the price is that a vhost with an unescaped ``@`` is masked as well. A query key naming
    a password, secret, token, key, signature or credential, or pika's ``ssl_options``
    (which may hold a key's password), keeps its name and loses its value. Works on any
    scheme (and on text without one), so every URL mlrm reports goes through here.
    """
    prefix, userinfo, rest = _split_userinfo(url)
    if userinfo is not None:
        rest = f"{MASK}@{rest}"
    head, mark, query = rest.partition("?")
    if mark:  # a fragment stays part of the last value: masked with it if that one is secret
        rest = head + mark + "&".join(_redact_pair(pair) for pair in query.split("&"))
    return prefix + rest


def _split_userinfo(url: str) -> tuple[str, str | None, str]:
    """(``scheme://``, the user info or None, the rest): the user info ends at the last ``@`` before the query."""
    scheme, sep, rest = url.partition("://")
    prefix = scheme + sep if sep else ""
    rest = rest if sep else url
    head_end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, head_end)
    if at < 0:
        return prefix, None, rest
    return prefix, rest[:at], rest[at + 1 :]


def _redact_pair(pair: str) -> str:
    key, eq, _value = pair.partition("=")
    return f"{key}{eq}{MASK}" if eq and _SECRET_KEY.search(unquote(key)) else pair


# -- URLs and connections ----------------------------------------------------------------
class Broker:
    """An AMQP URL, checked once: where to connect, with what, and how to name it in messages.

    ``options`` names query options that are the caller's, not pika's (the bus's
    ``prefetch``, say): they are taken out of what pika sees and kept in :attr:`options`.
    A URL pika cannot use is a :class:`ConfigError` here, before any connection, saying
    which ``what`` it is for. :attr:`url` is the redacted URL: the only form stored.
    """

    def __init__(self, url: str, *, options: Iterable[str] = (), what: str = "AMQP") -> None:
        self.url = redact(url)
        try:
            parts = urlsplit(url)
        except ValueError as exc:  # an unclosed [IPv6] host, say
            raise ConfigError(f"bad {what} URL {self.url}: {exc}") from None
        if parts.scheme not in SCHEMES:
            raise ConfigError(f"not an AMQP URL: {self.url} (use amqp:// or amqps://)")
        own = set(options)
        self.options: dict[str, str] = {}
        theirs: list[tuple[str, str]] = []
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key in own:
                self.options[key] = value
            else:
                theirs.append((key, value))
        self._pika_url = urlunsplit(parts._replace(query=urlencode(theirs)))
        password = (_split_userinfo(url)[1] or "").partition(":")[2]
        hidden = [password] + [value for key, value in parse_qsl(parts.query) if _SECRET_KEY.search(key)]
        self._secrets = sorted({s for value in hidden for s in (value, unquote(value)) if s}, key=len, reverse=True)
        try:
            pika.URLParameters(self._pika_url)
        except Exception as exc:  # pika raises ValueError, but also SyntaxError from ssl_options
            raise ConfigError(f"bad {what} URL {self.url}: {self.describe(exc)}") from None

    def __repr__(self) -> str:
        return f"Broker({self.url!r})"

    def parameters(self, name: str) -> pika.URLParameters:
        """pika's parameters for a connection the broker's UI shows as ``name``."""
        params = pika.URLParameters(self._pika_url)
        params.client_properties = {"connection_name": name}
        return params

    def connect(self, name: str) -> pika.BlockingConnection:
        """A new blocking connection named ``name``.

        A refused login is a :class:`BusError` of one line, without the password: retrying
        does not fix it. Other failures (the broker is down or unreachable) are pika's own
        exceptions, for the caller's retry loop.
        """
        try:
            return pika.BlockingConnection(self.parameters(name))
        except (px.AuthenticationError, px.ProbableAuthenticationError) as exc:
            raise BusError(
                f"the broker at {self.url} refused the login ({type(exc).__name__}): check the user name and password"
            ) from None
        except px.ProbableAccessDeniedError as exc:
            raise BusError(
                f"the broker at {self.url} refused the login ({type(exc).__name__}): "
                "the user may not use this virtual host"
            ) from None

    def describe(self, exc: BaseException) -> str:
        """``"ExcType: text"`` on one line, without this URL's password: for logs and errors."""
        text = " ".join(f"{type(exc).__name__}: {exc}".split())
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text


# -- the reconnect policy ----------------------------------------------------------------
@dataclass(frozen=True)
class Backoff:
    """How long to wait before each new attempt to reach the broker.

    The first retry is made at once: the usual failure is a connection the broker dropped
    while it was idle (missed heartbeats), and a fresh one works straight away. Then
    ``first`` seconds, doubling, never more than ``most``: a broker that is down is asked
    again soon, but not hammered. :meth:`retry` starts the bookkeeping of one outage.
    """

    first: float = 0.25
    most: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.most:
            raise ConfigError(f"a backoff needs 0 < first <= most, not first={self.first}, most={self.most}")

    def delay(self, failures: int) -> float:
        """The wait after the ``failures``-th failure in a row (1 -> 0, 2 -> first, 3 -> 2*first ...)."""
        if failures <= 1:
            return 0.0
        return min(self.first * 2.0 ** min(failures - 2, 64), self.most)

    def retry(self, budget: float | None = None, *, clock: Callable[[], float] = time.monotonic) -> Retry:
        """A :class:`Retry` under this policy; ``budget`` seconds from now at most (None: for ever)."""
        return Retry(self, budget, clock=clock)


RECONNECT = Backoff()
"""The policy of every reconnect loop: at once, then 0.25 s doubling up to 5 s."""


class Retry:
    """The attempts of one operation or one outage under a :class:`Backoff`.

    A loop calls :meth:`failed` after each failure and waits the delay it returns (on
    its stop event, so closing is never held up); with a ``budget`` it gives up once
    :attr:`spent` says waiting would pass the deadline. A long-lived loop calls
    :meth:`succeeded` once connected again, which starts the next outage from scratch.
    """

    def __init__(
        self, policy: Backoff, budget: float | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy
        self._clock = clock
        self.deadline = None if budget is None else clock() + budget
        self.failures = 0  # in a row, since the start or the last success
        self.since: float | None = None  # when the first of them happened
        self._delay = 0.0

    def failed(self) -> float:
        """Count a failure; the seconds to wait before the next attempt."""
        self.failures += 1
        if self.since is None:
            self.since = self._clock()
        self._delay = self.policy.delay(self.failures)
        return self._delay

    @property
    def spent(self) -> bool:
        """Waiting the last delay would pass the deadline (the first, immediate retry is always allowed)."""
        if self.deadline is None or self.failures <= 1:
            return False
        return self._clock() + self._delay > self.deadline

    def succeeded(self) -> float | None:
        """Connected again: reset, and return how long the outage lasted (None if there was none)."""
        lasted = None if self.since is None else self._clock() - self.since
        self.failures, self.since, self._delay = 0, None, 0.0
        return lasted
