"""The predict service: applies a pinned model version to each batch and writes the results.

Besides workflow batches it answers direct requests (:meth:`PredictService.infer`) from
the models its :class:`~services.predict.server.ModelServer` holds, kept current with
the registry's aliases and the deployment records by a watcher thread.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import pandas as pd

from mlrm.bus import Envelope
from mlrm.context import ModelRef, StepContext
from mlrm.errors import ConfigError
from mlrm.gather import Gather
from mlrm.service import Batch, Service
from services.predict.config import PredictConfig
from services.predict.server import ModelServer
from services.predict.sinks import ParquetSink


class PredictService(Service):
    name = "predict"
    config_model = PredictConfig

    def __init__(self, *args: Any, watch_interval: float = 2.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.server = ModelServer(self.volume, worker=self.worker, node=self.node)
        self.watch_interval = watch_interval
        self._stop = threading.Event()
        self._checked: OrderedDict[str, None] = OrderedDict()  # runs whose model placement was checked

    def start(self) -> None:
        super().start()
        if self.watch_interval > 0:
            self.server.sync()
            self.server.watch(self.watch_interval, self._stop)

    def stop(self) -> None:
        self._stop.set()
        super().stop()

    def infer(
        self, model: str, df: pd.DataFrame, *, alias: str | None = None, version: int | None = None, **options: Any
    ) -> tuple[pd.DataFrame, ModelRef]:
        """Predict directly (the REST/gRPC layers call this): returns predictions and the version used."""
        return self.server.infer(model, df, alias=alias, version=version, **options)

    def process(self, env: Envelope, config: PredictConfig, ctx: StepContext) -> Iterator[Batch]:
        if ctx.model is None:
            raise ConfigError("this run pinned no model version; submit it through the orchestrator")
        if env.run_id not in self._checked:  # once per run: never load a strict deployment off its node
            self.server.check_allowed(ctx.model.name)
            self._checked[env.run_id] = None
            if len(self._checked) > 10_000:
                self._checked.popitem(last=False)
        model = self.server.load(ctx.model, tuple(config.trusted_types))
        df = env.payload if env.payload is not None else pd.DataFrame()
        out = model.predict(df, keep=config.keep, probabilities=config.probabilities, column=config.prediction_column)
        yield Batch(out, env.seq, env.last)

        sink = config.sink or ParquetSink(step="parquet", key="predictions/{run_id}.parquet")
        result: dict[str, Any] = {"model": model.ref.name, "version": model.ref.version}
        if env.seq == 0 and env.last:  # a one-batch stream: nothing to put in order (and rewriting is harmless)
            ctx.extra["result"] = {"output": sink.write(ctx, iter([out])), **result}
            return
        # Parts keep the output in input order whichever replica predicted them; one handler writes it.
        gather = Gather(self.volume, env.run_id, f"{ctx.step}.sink", self.holder)
        claim = gather.add(env.seq, env.last, out)
        if claim is None:  # incomplete, or written (or being written) by another message's handler
            ctx.extra["report"] = gather.outcome(env.seq)
            return
        with claim:
            result = {"output": sink.write(ctx, gather.batches()), **result}
            gather.clear(claim, {"seq": env.seq, "result": result})
        ctx.extra["result"] = result
