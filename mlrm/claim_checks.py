"""Claim checks: a batch too big to travel inline goes to the volume; the message carries its key.

The bus says how big is too big (``Bus.inline_limit``; the embedded bus passes objects and
has no limit). Keys derive from the message id, so a redelivered or re-produced message
writes and reads the same object. Retention (``mlrm gc``) collects them with the run.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from mlrm.bus import Envelope
from mlrm.volume import Volume


def check_in(volume: Volume, limit: int | None, env: Envelope) -> None:
    """Move ``env``'s payload to the volume if it is bigger than ``limit`` bytes."""
    if limit is None or env.payload is None:
        return
    if int(env.payload.memory_usage(index=False, deep=True).sum()) <= limit:
        return
    key = f"runs/{env.run_id}/payloads/{env.id}.arrow"
    table = pa.Table.from_pandas(env.payload, preserve_index=False)
    with volume.open_write(key) as f, pa.ipc.new_stream(f, table.schema) as writer:
        writer.write_table(table)
    env.payload, env.payload_ref = None, key


def fetch(volume: Volume, key: str) -> pd.DataFrame:
    with volume.open_read(key) as f:
        return pa.ipc.open_stream(f).read_all().to_pandas()
