"""The collector service: turns one start message into a numbered stream of batches."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pandas as pd

from mlrm.bus import Envelope
from mlrm.context import StepContext
from mlrm.errors import ConfigError, DataError
from mlrm.service import ApiSettings, Batch, Service, ServiceApi, register_service
from mlrm.steps import SourceStep
from services.collector.config import CollectorConfig
from services.collector.sources.base import TabularSource


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

    # -- called directly (REST, gRPC) -------------------------------------------------------
    def api(self, settings: ApiSettings) -> ServiceApi:
        """``POST /v1/process``: a table held to the configured source's checks (see :meth:`process_table`)."""
        from mlrm.web.tables_api import SCOPES, process_routes, rest_app, tables_registrar

        if settings.config is None:
            raise ConfigError("the collector's API checks tables against a config: give it one (--config)")
        config = CollectorConfig.model_validate(settings.config)

        def process(df: pd.DataFrame, options: object) -> pd.DataFrame:
            return self.process_table(config, df)

        routes = process_routes(self.name, process, statistics=False, max_body=settings.max_body, description=(
            "The rows as the configured source would deliver them: only its `columns` (in order), its `dtypes` "
            "forced (a value that does not convert is refused), at most `limit` rows."))  # fmt: skip
        grpc = tables_registrar(process, statistics=False, ready=self.ready)
        return ServiceApi(rest=rest_app("mlrm collector", routes, ready=self.ready), grpc=grpc, scopes=dict(SCOPES))

    @staticmethod
    def process_table(config: CollectorConfig, df: pd.DataFrame) -> pd.DataFrame:
        """A table given directly, collected as the configured source reads its own: the source's record
        checks (``columns`` kept in order, ``dtypes`` forced, a missing column named), then ``limit``.

        The source itself is not read: a caller already has its rows and wants them to enter the
        pipeline exactly as collected ones do.
        """
        if isinstance(config.source, TabularSource):
            df = config.source.conform(df, "the request")
        return df if config.limit is None else df.iloc[: config.limit]


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
