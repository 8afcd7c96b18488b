"""A large batch's model call split across the machine's cores.

A workflow batch (10,000 rows by default) reaches the model on one thread, and the model is
most of its cost. Runtimes that let go of the GIL while they compute (ONNX Runtime,
scikit-learn's trees and linear algebra) can answer parts of it at once: :func:`split_rows`
cuts the rows into contiguous parts of at least ``MIN_ROWS``, answers all but the first on a
shared pool while this thread answers the first, and joins the answers in row order. A model
answers each row on its own, so the answers are those of one call. Small requests (online
inference) stay whole: the parts would cost more than they save.

``MLRM_PREDICT_THREADS`` sets how many parts at most (default: the cores this process may use,
up to 8; 1 turns the split off).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from itertools import pairwise

import numpy as np
import pandas as pd

from mlrm.errors import ConfigError
from mlrm.flavours import Prediction

MIN_ROWS = 2048  # rows per part at least: below this the hand-off costs more than a second core saves

Call = Callable[[pd.DataFrame, bool], Prediction]

_pool: Executor | None = None
_lock = threading.Lock()


def threads() -> int:
    """``MLRM_PREDICT_THREADS``, or the cores this process may use (at most 8)."""
    raw = os.environ.get("MLRM_PREDICT_THREADS")
    if raw is None:
        return min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"MLRM_PREDICT_THREADS must be a whole number of threads, got {raw!r}") from None
    if value < 1:
        raise ConfigError(f"MLRM_PREDICT_THREADS must be at least 1, got {raw!r}")
    return value


def _executor(workers: int) -> Executor:
    global _pool
    if _pool is None:
        with _lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlrm-predict-part")
    return _pool


def split_rows(call: Call, workers: int | None = None) -> Call:
    """``call``, answering a batch of ``workers * MIN_ROWS`` rows or more in parts on as many threads."""
    workers = threads() if workers is None else workers
    if workers < 2:
        return call

    def split(X: pd.DataFrame, proba: bool) -> Prediction:
        parts = min(workers, len(X) // MIN_ROWS)
        if parts < 2:
            return call(X, proba)
        bounds = np.linspace(0, len(X), parts + 1, dtype=int)
        pool = _executor(workers - 1)
        others = [pool.submit(call, X.iloc[a:b], proba) for a, b in pairwise(bounds[1:])]
        answers = [call(X.iloc[: bounds[1]], proba)]
        answers += [f.result() for f in others]  # the first error, as one call would have raised it
        values = np.concatenate([a.values for a in answers])
        probabilities = None if answers[0].proba is None else np.concatenate([a.proba for a in answers])
        return Prediction(values, probabilities)

    return split
