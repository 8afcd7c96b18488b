"""Adaptive batching: concurrent direct requests to one model version merged into one model call.

Each request runs its own inference pipeline first (so a step that needs a request's rows as a
whole still sees exactly them), then hands the model's input to the version's :class:`Batcher`.
The first request of a batch leads: it waits until ``max_batch_size`` rows have joined, until no
other request for the model is still on its way (so a lone client waits for nothing), or at most
``max_batch_time``; then it makes one model call for every request in the batch and splits the
answer back by rows. No thread of its own: the leading request's thread does the call.

If the merged call fails (one request's values the model refuses), each request is called alone,
so only that request gets the error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pandas as pd

from mlrm.deployments import Batching
from mlrm.flavours import Prediction
from mlrm.hooks import Hook

Call = Callable[[pd.DataFrame, bool], Prediction]


@dataclass
class ModelCall:
    """What ``on_model_call`` subscribers see: one call of the model, for how many requests and rows."""

    requests: int
    rows: int


@dataclass
class _Batch:
    frames: list[pd.DataFrame] = field(default_factory=list)
    proba: bool = False
    rows: int = 0
    closed: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    answers: list[Prediction | BaseException] = field(default_factory=list)


class Slot:
    """One request's place in a batcher, from before its pipeline runs until its model call."""

    def __init__(self, batcher: Batcher) -> None:
        self.batcher, self.pending = batcher, True

    def call(self, X: pd.DataFrame, proba: bool) -> Prediction:
        return self.batcher.submit(self, X, proba)


class Batcher:
    """Merges the model calls of one model version's concurrent requests."""

    def __init__(self, call: Call, settings: Batching, on_call: Hook[ModelCall] | None = None) -> None:
        self._call, self.settings = call, settings
        self.on_call = on_call if on_call is not None else Hook("on_model_call")
        self._cond = threading.Condition()
        self._open: _Batch | None = None
        self._coming = 0  # requests that hold a slot and have not called the model yet

    @contextmanager
    def slot(self) -> Iterator[Slot]:
        """Hold a slot while the request's pipeline runs: a leading request waits for it to join."""
        slot = Slot(self)
        with self._cond:
            self._coming += 1
        try:
            yield slot
        finally:
            if slot.pending:  # left without calling the model (an error, or no rows)
                with self._cond:
                    self._coming -= 1
                    self._cond.notify_all()

    def submit(self, slot: Slot, X: pd.DataFrame, proba: bool) -> Prediction:
        rows, limit = len(X), self.settings.max_batch_size
        if rows < limit:
            # Yield the GIL once: requests that arrived together but have not yet taken their slot get to take
            # it, so a leader sees them coming and waits. Without it a fast pipeline (a few hundred
            # microseconds) runs to its model call inside one GIL turn and leads alone.
            time.sleep(0)
        with self._cond:
            slot.pending = False
            self._coming -= 1
            batch = self._open
            if rows >= limit:  # big enough alone
                batch = None
                self._cond.notify_all()
                leader = None
            elif batch is not None and batch.rows + rows <= limit:
                index = len(batch.frames)
                batch.frames.append(X)
                batch.rows += rows
                batch.proba |= proba
                self._cond.notify_all()
                leader = False
            else:
                if batch is not None:  # full: let its leader go now, and start the next one
                    batch.closed = True
                    self._cond.notify_all()
                batch = self._open = _Batch(frames=[X], proba=proba, rows=rows)
                index, leader = 0, True
                deadline = time.monotonic() + self.settings.max_batch_time
                while not batch.closed and batch.rows < limit and self._coming > 0:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch.closed = True
                if self._open is batch:
                    self._open = None
        if leader is None:
            self.on_call.fire(ModelCall(1, rows))
            return self._call(X, proba)
        if leader:
            self._run(batch)
        else:
            batch.done.wait()
        answer = batch.answers[index]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def _run(self, batch: _Batch) -> None:
        try:
            if len(batch.frames) == 1:
                self.on_call.fire(ModelCall(1, batch.rows))
                batch.answers = [self._one(batch.frames[0], batch.proba)]
                return
            merged = pd.concat(batch.frames, ignore_index=True)
            try:
                self.on_call.fire(ModelCall(len(batch.frames), batch.rows))
                whole = self._call(merged, batch.proba)
            except Exception:  # one request's values refused: call each alone, so only it gets the error
                for frame in batch.frames:
                    self.on_call.fire(ModelCall(1, len(frame)))
                batch.answers = [self._one(frame, batch.proba) for frame in batch.frames]
                return
            start, answers = 0, []
            for frame in batch.frames:
                end = start + len(frame)
                proba = None if whole.proba is None else whole.proba[start:end]
                answers.append(Prediction(whole.values[start:end], proba))
                start = end
            batch.answers = answers
        except BaseException as exc:  # never leave the followers waiting
            batch.answers = [exc] * len(batch.frames)
            raise
        finally:
            batch.done.set()

    def _one(self, frame: pd.DataFrame, proba: bool) -> Prediction | BaseException:
        try:
            return self._call(frame, proba)
        except Exception as exc:
            return exc
