"""Gathering a numbered stream of batches in the volume, for steps that need every row at once.

Sorting, deduplicating, fitting a scaler and training a model all need the whole
stream. Batches may arrive in any order and at any replica, so each one is stored
in the volume as a part; whoever stores the part that completes the stream claims
it (an exclusive create), reads the parts back in order and carries on.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pyarrow as pa

from mlrm.volume import Volume


class Gather:
    def __init__(self, volume: Volume, run_id: str, step: str) -> None:
        self.volume = volume
        self.prefix = f"runs/{run_id}/gather/{step}/"
        # Outlives clear(): a batch redelivered after the stream was handled must not redo it
        # (train a second version, rewrite a sink).
        self.done_key = f"runs/{run_id}/done/{step}"

    def add(self, seq: int, last: bool, df: pd.DataFrame) -> bool:
        """Store one batch; True if the stream is now complete and this caller owns it."""
        if self.volume.exists(self.done_key):
            return False
        table = pa.Table.from_pandas(df, preserve_index=False)
        key = f"{self.prefix}part-{seq:09d}.arrow"
        with self.volume.open_write(key) as f, pa.ipc.new_stream(f, table.schema) as writer:
            writer.write_table(table)
        if last:
            self.volume.put_bytes(f"{self.prefix}last", str(seq).encode())
        if not self.volume.exists(f"{self.prefix}last"):
            return False
        final = int(self.volume.get_bytes(f"{self.prefix}last"))
        parts = sum(1 for o in self.volume.list(self.prefix) if o.key.endswith(".arrow"))
        if parts != final + 1:
            return False
        # The claim names the batch that won it, so a redelivery of that batch (after a crash
        # or a retry) owns the stream again instead of finding it claimed by nobody alive.
        me = str(seq).encode()
        return self.volume.create(f"{self.prefix}claimed", me) or self.volume.get_bytes(f"{self.prefix}claimed") == me

    def batches(self) -> Iterator[pd.DataFrame]:
        """The stored batches in sequence order, one at a time."""
        for obj in self.volume.list(self.prefix):
            if obj.key.endswith(".arrow"):
                with self.volume.open_read(obj.key) as f:
                    yield pa.ipc.open_stream(f).read_all().to_pandas()

    def frame(self) -> pd.DataFrame:
        frames = list(self.batches())
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def clear(self) -> None:
        """The stream was handled: mark it done, then drop the parts."""
        self.volume.put_bytes(self.done_key, b"")
        self.volume.delete_prefix(self.prefix)


def rebatch(df: pd.DataFrame, size: int) -> Iterator[tuple[pd.DataFrame, int, bool]]:
    """Split a frame into (batch, seq, last) triples; an empty frame is one empty batch."""
    n = max(1, -(-len(df) // size))
    for i in range(n):
        yield df.iloc[i * size : (i + 1) * size].reset_index(drop=True), i, i == n - 1
