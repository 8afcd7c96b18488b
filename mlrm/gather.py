"""Gathering a numbered stream of batches in the volume, for steps that need every row at once.

Sorting, deduplicating, fitting a scaler, training a model and writing a sink in order
all need the whole stream. Batches may arrive in any order and at any replica, so each
one is stored in the volume as a part. The handler of the batch that completes the
stream claims it with a lease (:mod:`mlrm.lease`), reads the parts back in order and
carries on; when it is done it records the outcome and drops the parts.

A batch may be delivered again while its first handler still works on the stream (its
broker connection dropped, say). That redelivery waits while the holder is alive, then
reports what the holder did; it takes the stream over only if the holder died. It
never handles the stream a second time beside a live holder.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pyarrow as pa

from mlrm.columns import Columns
from mlrm.errors import NotFoundError
from mlrm.lease import TTL, Holder, Lease, live
from mlrm.volume import Volume

log = logging.getLogger(__name__)

POLL = 0.25  # seconds between looks at a stream another handler holds


class Gather:
    def __init__(self, volume: Volume, run_id: str, step: str, holder: Holder | None = None, *, ttl: float = TTL):
        self.volume = volume
        self.prefix = f"runs/{run_id}/gather/{step}/"
        # Outlives clear(): a batch redelivered after the stream was handled must not redo it
        # (train a second version, rewrite a sink); it holds what the handler reported.
        self.done_key = f"runs/{run_id}/done/{step}"
        self.claim_key = f"runs/{run_id}/leases/gather.{step}.json"
        self.holder = holder or Holder.here("gather")
        self.ttl = ttl

    def add(self, seq: int, last: bool, df: pd.DataFrame | Columns) -> Lease | None:
        """Store one batch; the held claim on the stream if it is now complete and this caller must handle it.

        None if the stream is incomplete, already handled, or claimed by the handler of another
        batch (which reports the whole stream). The handler of the very batch that holds the
        claim (a redelivery) waits while the holder lives, and takes over if it dies.
        Use the claim as ``with claim:`` (kept alive meanwhile, released at the end).
        """
        if self.volume.exists(self.done_key):
            return None
        table = df.arrow() if isinstance(df, Columns) else pa.Table.from_pandas(df, preserve_index=False)
        key = f"{self.prefix}part-{seq:09d}.arrow"
        with self.volume.open_write(key) as f, pa.ipc.new_stream(f, table.schema) as writer:
            writer.write_table(table)
        if last:
            self.volume.put_bytes(f"{self.prefix}last", str(seq).encode())
        if not self.complete():
            return None
        return self.claim(seq)

    def complete(self) -> bool:
        """Every part up to the last one is stored."""
        try:
            final = int(self.volume.get_bytes(f"{self.prefix}last"))
        except NotFoundError:
            return False
        parts = sum(1 for o in self.volume.list(self.prefix) if o.key.endswith(".arrow"))
        return parts == final + 1

    def claim(self, seq: int) -> Lease | None:
        """Claim the complete stream for batch ``seq`` (see :meth:`add`)."""
        lease = Lease(self.volume, self.claim_key, self.holder, ttl=self.ttl)
        waiting = False
        while True:
            if self.volume.exists(self.done_key):
                return None
            if lease.acquire(seq=seq):
                return lease
            current = lease.read()
            if current is None:
                continue  # released while we looked (its holder failed): try again
            if current.get("seq") != seq:
                return None  # another batch's handler owns the stream and reports it
            if not live(current):
                if lease.take_over(current):
                    return lease
                continue
            if not waiting:
                waiting = True
                log.info("%s: batch %d of %s was delivered again while %s handles the stream; waiting for it",
                         self.holder.name, seq, self.prefix, Holder.from_dict(current.get("holder", {})))  # fmt: skip
            time.sleep(POLL)  # the same batch, delivered twice: wait for the live holder

    def outcome(self, seq: int) -> dict[str, Any] | None:
        """What the stream's handler reported, if the stream was handled with batch ``seq``."""
        try:
            data = self.volume.get_bytes(self.done_key)
        except NotFoundError:
            return None
        report = json.loads(data) if data.strip() else {}
        return report if isinstance(report, dict) and report.get("seq") == seq else None

    def batches(self) -> Iterator[pd.DataFrame]:
        """The stored batches in sequence order, one at a time."""
        for table in self.tables():
            yield table.to_pandas()

    def tables(self) -> Iterator[pa.Table]:
        """The stored batches in sequence order, one at a time, as the Arrow tables they are stored as."""
        for obj in self.volume.list(self.prefix):
            if obj.key.endswith(".arrow"):
                with self.volume.open_read(obj.key) as f:
                    yield pa.ipc.open_stream(f).read_all()

    def frame(self) -> pd.DataFrame:
        frames = list(self.batches())
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def clear(self, claim: Lease | None = None, report: dict[str, Any] | None = None) -> None:
        """The stream was handled: record ``report`` (kept for redeliveries), then drop the parts.

        A holder whose claim was taken over (it was thought dead) leaves both to the new holder.
        """
        if claim is not None and not claim.still_held():
            return
        self.volume.put_json(self.done_key, report or {})
        self.volume.delete_prefix(self.prefix)


def rebatch(df: pd.DataFrame, size: int) -> Iterator[tuple[pd.DataFrame, int, bool]]:
    """Split a frame into (batch, seq, last) triples; an empty frame is one empty batch."""
    n = max(1, -(-len(df) // size))
    for i in range(n):
        yield df.iloc[i * size : (i + 1) * size].reset_index(drop=True), i, i == n - 1
