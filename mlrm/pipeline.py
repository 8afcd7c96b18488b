"""Running a list of transform steps over a stream: the shared core of handler and features.

Row-local steps run batch by batch, so memory stays flat. If any step needs every
row at once (sorting, windows, fitting statistics), the service gathers the stream
first, runs the steps over the whole frame and re-batches the result.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import pandas as pd

from mlrm.bus import Envelope
from mlrm.context import StepContext
from mlrm.errors import ConfigError, DataError, MlrmError
from mlrm.gather import Gather, rebatch
from mlrm.service import Batch, Service
from mlrm.steps import TransformStep

DEFAULT_BATCH_SIZE = 65_536


def state_key(hop: str, index: int, step: TransformStep) -> str:
    return f"{hop}.{step.name or f'{index}-{step.step}'}"


class StepRunner:
    """Applies steps to frames, fitting or loading their learned statistics as the mode says."""

    def __init__(self) -> None:
        self._loaded: dict[str, dict[str, Any]] = {}

    def run(self, steps: Sequence[TransformStep], df: pd.DataFrame, ctx: StepContext, *, whole: bool) -> pd.DataFrame:
        for i, step in enumerate(steps):
            state = self.state(step, state_key(ctx.step, i, step), df, ctx, whole=whole) if step.stateful else None
            try:
                df = step.transform(df, state)
            except MlrmError:
                raise
            except (KeyError, ValueError, TypeError) as exc:
                raise DataError(f"step '{step.step}' failed: {exc}") from exc
        return df

    def state(
        self, step: TransformStep, key: str, df: pd.DataFrame, ctx: StepContext, *, whole: bool
    ) -> dict[str, Any] | None:
        config = step.model_dump(mode="json")
        if ctx.fitting and whole:
            state = step.fit(df)
            ctx.save_state(key, {"step": step.step, "config": config, "state": state})
            return state
        if ctx.fitting:  # a step that needs no whole-stream fit in this mode (e.g. fill_na with a value)
            return step.fit(df)
        cache_key = ctx.state_key(key)
        record = self._loaded.get(cache_key)
        if record is None:
            record = ctx.load_state(key)
            if record.get("config") != config:
                assert ctx.model is not None
                raise ConfigError(
                    f"step '{key}' is configured differently from when model '{ctx.model.name}' "
                    f"version {ctx.model.version} was trained; predict with the training configs"
                )
            self._loaded[cache_key] = record
        return record["state"]


class TransformService(Service):
    """A service whose config is a list of :class:`TransformStep` (``steps:``)."""

    batch_size: ClassVar[int] = DEFAULT_BATCH_SIZE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.runner = StepRunner()

    def process(self, env: Envelope, config: Any, ctx: StepContext) -> Iterator[Batch]:
        steps: list[TransformStep] = list(config.steps)
        df = env.payload if env.payload is not None else pd.DataFrame()
        if not any(s.needs_whole_stream(ctx.fitting) for s in steps):
            yield Batch(self.runner.run(steps, df, ctx, whole=False), env.seq, env.last)
            return
        if env.seq == 0 and env.last:  # a one-batch stream is already whole: nothing to gather
            yield from self._whole(df, config, ctx)
            return
        gather = Gather(self.volume, env.run_id, ctx.step, self.holder)
        claim = gather.add(env.seq, env.last, df)
        if claim is None:  # incomplete, or handled (or being handled) with another message
            ctx.extra["report"] = gather.outcome(env.seq)
            return
        with claim:
            batches = rows = 0
            for batch in self._whole(gather.frame(), config, ctx):
                batches, rows = batches + 1, rows + len(batch.frame)
                yield batch
            gather.clear(claim, {"seq": env.seq, "rows_out": rows, "batches_out": batches})

    def _whole(self, df: pd.DataFrame, config: Any, ctx: StepContext) -> Iterator[Batch]:
        out = self.runner.run(list(config.steps), df, ctx, whole=True)
        for frame, seq, last in rebatch(out, config.batch_size or self.batch_size):
            yield Batch(frame, seq, last)
