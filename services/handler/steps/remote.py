"""`nameko`: hand each batch to a method of an existing nameko service over the shared broker."""

from __future__ import annotations

import json
import threading
from typing import Any, ClassVar, Literal

import pandas as pd
from pydantic import Field, field_validator

from mlrm.config import as_value_error
from mlrm.errors import ConfigError, DataError
from mlrm.integrations.nameko import NamekoRpcClient, parse_nameko_target
from mlrm.settings import Settings
from mlrm.steps import register

from .base import HandlerStep

_clients = threading.local()  # one client per worker thread: a client serialises its calls


@register
class NamekoCall(HandlerStep):
    """Call `SERVICE.METHOD` of a nameko service with the batch as `records` (a list of row
    dicts); the method returns the output rows as a list of dicts. Written in a workflow as
    `service: nameko:SERVICE.METHOD`."""

    example = {"target": "enricher.tag"}
    reaches_out = True  # calls a live system: its own tests cover it
    step: Literal["nameko"]
    """Step type: `nameko`."""
    target: str
    """`SERVICE.METHOD` of the nameko service to call."""
    kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra keyword arguments sent with every call."""
    timeout: float = Field(30.0, gt=0)
    """Seconds to wait for each reply."""
    url: str | None = None
    """Broker URL; defaults to MLRM_BUS (nameko services listen on the same broker)."""

    stateful: ClassVar[bool] = False

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        as_value_error(parse_nameko_target, f"nameko:{v}")
        return v

    def _client(self) -> NamekoRpcClient:
        url = self.url or Settings().bus
        if not url.startswith(("amqp://", "amqps://")):
            raise ConfigError(f"step 'nameko' ({self.target}) needs a RabbitMQ bus: set MLRM_BUS=amqp://...")
        cache: dict[tuple[str, float], NamekoRpcClient] = _clients.__dict__.setdefault("by_url", {})
        client = cache.get((url, self.timeout))
        if client is None:
            client = cache[(url, self.timeout)] = NamekoRpcClient(url, timeout=self.timeout)
        return client

    def transform(self, df: pd.DataFrame, state: dict[str, Any] | None) -> pd.DataFrame:
        service, method = parse_nameko_target(f"nameko:{self.target}")
        records = json.loads(df.to_json(orient="records", date_format="iso"))
        result = self._client().call(service, method, records=records, **self.kwargs)
        if not isinstance(result, list) or not all(isinstance(r, dict) for r in result):
            raise DataError(f"nameko {self.target} must return a list of row objects, got {type(result).__name__}")
        return pd.DataFrame.from_records(result) if result else df.iloc[:0]
