"""The collector service: turns one start message into a numbered stream of batches."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pandas as pd

from mlrm.bus import Envelope
from mlrm.context import StepContext
from mlrm.errors import DataError
from mlrm.service import Batch, Service, register_service
from mlrm.steps import SourceStep
from services.collector.config import CollectorConfig


@register_service
class CollectorService(Service):
    name = "collector"
    config_model = CollectorConfig

    def process(self, env: Envelope, config: CollectorConfig, ctx: StepContext) -> Iterator[Batch]:
        frames = _limited(config.source.read(ctx, config.batch_size), config.limit)
        if config.source.deadline is not None:
            frames = _before(frames, time.monotonic() + config.source.deadline, config.source)
        # Look one batch ahead so the final batch can carry last=True.
        previous: pd.DataFrame | None = None
        seq = 0
        for frame in frames:
            if previous is not None:
                yield Batch(previous, seq, False)
                seq += 1
            previous = frame
        yield Batch(previous if previous is not None else pd.DataFrame(), seq, True)


def _limited(frames: Iterator[pd.DataFrame], limit: int | None) -> Iterator[pd.DataFrame]:
    if limit is None:
        yield from frames
        return
    left = limit
    for frame in frames:
        if left <= 0:
            break
        if len(frame) > left:
            frame = frame.iloc[:left]
        left -= len(frame)
        yield frame


def _before(frames: Iterator[pd.DataFrame], deadline: float, source: SourceStep) -> Iterator[pd.DataFrame]:
    """The frames, until the source's deadline passes (checked between frames; `http` also checks while waiting)."""
    for frame in frames:
        if time.monotonic() > deadline:
            frames.close()  # type: ignore[attr-defined] - a generator: releases the file or connection now
            raise DataError(f"source '{source.step}' did not finish within its deadline of {source.deadline:g}s")
        yield frame
