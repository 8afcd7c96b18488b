"""The envelope every message travels in, and how it becomes bytes for a remote bus.

A workflow run is a route (the routing slip): the list of steps with their
configs. A message is addressed to ``route[hop]``; after processing, the service
forwards its output to ``route[hop + 1]``. Batches of one stream are numbered by
``seq``; the final batch carries ``last=True``. Ids are derived from
``(run, step, seq)`` so a redelivered or re-produced message has the same id and
handlers can be idempotent on it.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa

from mlrm.bus.queues import service_queue
from mlrm.errors import BusError


@dataclass
class Hop:
    """One step of a compiled workflow.

    ``config`` is the step's config as JSON: what travels. ``validated`` is the config model
    the orchestrator validated when it compiled the workflow; it never leaves the process
    (not in :meth:`to_dict` nor on the wire), so an in-process service uses it as is, and a
    service that got the hop over a remote bus validates the JSON itself.
    """

    name: str
    service: str
    config: dict[str, Any]
    base_dir: str = "."
    node: str | None = None  # only replicas with this node label may run it (strict deployments)
    validated: Any = field(default=None, compare=False, repr=False, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "service": self.service, "config": self.config, "base_dir": self.base_dir,
            "node": self.node,
        }  # fmt: skip

    @property
    def queue(self) -> str:
        return service_queue(self.service, self.node)


@dataclass
class Envelope:
    id: str
    run_id: str
    route: list[Hop] = field(default_factory=list)
    hop: int = 0
    seq: int = 0
    last: bool = True
    payload: pd.DataFrame | None = None
    payload_ref: str | None = None  # claim check: a volume key holding the payload
    context: dict[str, Any] = field(default_factory=dict)  # mode, pinned model, ...
    body: dict[str, Any] = field(default_factory=dict)  # small JSON data: events, control
    attempt: int = 0
    created: float = field(default_factory=time.time)

    @property
    def current(self) -> Hop:
        return self.route[self.hop]

    def forward(self, *, seq: int, last: bool, payload: pd.DataFrame | None) -> Envelope:
        """The message for the next step of the route."""
        nxt = self.hop + 1
        return Envelope(
            id=message_id(self.run_id, self.route[nxt].name, seq),
            run_id=self.run_id,
            route=self.route,
            hop=nxt,
            seq=seq,
            last=last,
            payload=payload,
            context=self.context,
            created=self.created,
        )


def message_id(run_id: str, step: str, seq: int) -> str:
    return f"{run_id}/{step}/{seq}"


# -- wire format for remote buses: a JSON header, then the payload as Arrow IPC ---------
_MAGIC = b"MLRM1"


def encode(env: Envelope) -> bytes:
    header = {
        "id": env.id,
        "run_id": env.run_id,
        "route": [h.to_dict() for h in env.route],
        "hop": env.hop,
        "seq": env.seq,
        "last": env.last,
        "payload_ref": env.payload_ref,
        "context": env.context,
        "body": env.body,
        "attempt": env.attempt,
        "created": env.created,
    }
    head = json.dumps(header, separators=(",", ":"), default=str).encode()
    payload = b""
    if env.payload is not None:
        table = pa.Table.from_pandas(env.payload, preserve_index=False)
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        payload = sink.getvalue()
    return _MAGIC + len(head).to_bytes(4, "big") + head + payload


def decode(data: bytes) -> Envelope:
    if not data.startswith(_MAGIC):
        raise BusError("not an mlrm message (bad magic bytes)")
    n = int.from_bytes(data[5:9], "big")
    header = json.loads(data[9 : 9 + n])
    rest = data[9 + n :]
    payload = pa.ipc.open_stream(rest).read_all().to_pandas() if rest else None
    header["route"] = [Hop(**h) for h in header["route"]]
    return Envelope(payload=payload, **header)
