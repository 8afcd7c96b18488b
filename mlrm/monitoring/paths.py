"""Where monitoring keeps its data in the volume, under the reserved ``monitoring/`` prefix.

``monitoring/<model>/predictions/date=<YYYY-MM-DD>/part-<ms>-<hex>.parquet``  the prediction log
``monitoring/<model>/feedback/date=<YYYY-MM-DD>/part-<ms>-<hex>.parquet``     ground truth
``monitoring/<model>/history/<ms>-<hex>.json``                                the checks of one run

``<ms>`` is the newest timestamp in the part (milliseconds since the epoch, 13 digits), so
listing a prefix lists parts in time order and a time window skips older parts unread.
"""

from __future__ import annotations

import time
import uuid

from mlrm.registry import check_name

PREFIX = "monitoring/"
REFERENCE_FILE = "reference.json"
"""The reference statistics in a version's folder (``models/<name>/<version>/reference.json``)."""


def model_prefix(model: str) -> str:
    return f"{PREFIX}{check_name(model)}/"


def predictions_prefix(model: str) -> str:
    return f"{model_prefix(model)}predictions/"


def feedback_prefix(model: str) -> str:
    return f"{model_prefix(model)}feedback/"


def history_prefix(model: str) -> str:
    return f"{model_prefix(model)}history/"


def part_key(prefix: str, newest: float) -> str:
    """A new part's key under ``prefix`` for rows whose newest timestamp is ``newest`` (epoch seconds)."""
    day = time.strftime("%Y-%m-%d", time.gmtime(newest))
    return f"{prefix}date={day}/part-{int(newest * 1000):013d}-{uuid.uuid4().hex[:12]}.parquet"


def part_time(key: str) -> float | None:
    """The newest timestamp of a part's rows, from its key (None for a key that is not a part)."""
    name = key.rsplit("/", 1)[-1]
    if not (name.startswith("part-") and name.endswith(".parquet")):
        return None
    stamp = name[5:].split("-", 1)[0]
    return int(stamp) / 1000 if stamp.isdigit() else None
