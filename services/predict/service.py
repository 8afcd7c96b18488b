"""The predict service: applies a pinned model version to each batch and writes the results.

Each batch goes through the version's own inference pipeline (its training route's
cleaning and feature steps, with their stored statistics) before the model, unless the
workflow applies a hop of the same name itself before predict (the older form that
repeats the training configs): nothing is applied twice. Besides workflow batches it
answers direct requests through the same :class:`~services.predict.dataplane.DataPlane`,
from the models its :class:`~services.predict.server.ModelServer` holds, kept current
with the registry's aliases and the deployment records by a watcher thread.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import pandas as pd

from mlrm.bus import Delivery, Envelope
from mlrm.context import ModelRef, StepContext
from mlrm.errors import ConfigError
from mlrm.gather import Gather
from mlrm.monitoring import FEEDBACK_QUEUE, consume_feedback
from mlrm.service import ApiSettings, Batch, Service, ServiceApi, register_service
from services.predict import parallel
from services.predict.config import PredictConfig
from services.predict.dataplane import DataPlane, InferenceRequest
from services.predict.logger import PredictionLogger
from services.predict.server import ModelServer
from services.predict.sinks import ParquetSink


@register_service
class PredictService(Service):
    name = "predict"
    config_model = PredictConfig
    api_ports = (8080, 8081)  # the Open Inference Protocol's usual ports

    def __init__(self, *args: Any, watch_interval: float = 2.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        parallel.threads()  # a bad MLRM_PREDICT_THREADS stops the replica here, not each large batch later
        self.server = ModelServer(self.volume, worker=self.worker, node=self.node)
        self.dataplane = DataPlane(self.server)
        self.prediction_log = PredictionLogger(self.volume, refresh=max(2.0, watch_interval))
        self.dataplane.on_predict.append(self.prediction_log)
        self.watch_interval = watch_interval
        self._stop = threading.Event()
        self._checked: OrderedDict[str, None] = OrderedDict()  # runs whose model placement was checked

    def start(self) -> None:
        super().start()
        self.prediction_log.start()
        self.bus.subscribe(FEEDBACK_QUEUE, self._on_feedback, prefetch=self.prefetch)
        if self.background and self.watch_interval > 0:
            self.server.sync()
            self.server.watch(self.watch_interval, self._stop)
        else:  # nobody re-resolves aliases in the background: each request does
            self.server.follow_aliases_on_request = True

    def stop(self) -> None:
        self._stop.set()
        self.prediction_log.stop()  # what was logged is written before the replica goes
        super().stop()

    def _on_feedback(self, delivery: Delivery) -> None:
        """Feedback over the bus (:func:`mlrm.monitoring.send_feedback`): stored, then acknowledged."""
        consume_feedback(self.volume, delivery)

    def api(self, settings: ApiSettings) -> ServiceApi:
        """The Open Inference Protocol (KServe V2) over REST and gRPC, from the models this replica holds."""
        from services.predict.v2.serve import v2_api

        return v2_api(self, settings)

    def infer(
        self, model: str, df: pd.DataFrame, *, alias: str | None = None, version: int | None = None, **options: Any
    ) -> tuple[pd.DataFrame, ModelRef]:
        """A direct request (raw rows): returns the predictions and the version that made them."""
        result = self.dataplane.infer(InferenceRequest(model, df, alias=alias, version=version, **options))
        return result.frame, result.ref

    def process(self, env: Envelope, config: PredictConfig, ctx: StepContext) -> Iterator[Batch]:
        if ctx.model is None:
            raise ConfigError("this run pinned no model version; submit it through the orchestrator")
        if env.run_id not in self._checked:  # once per run: never load a strict deployment off its node
            self.server.check_allowed(ctx.model.name)
            self._checked[env.run_id] = None
            if len(self._checked) > 10_000:
                self._checked.popitem(last=False)
        served = self.server.load(ctx.model, tuple(config.trusted_types), config.runtime)
        self.prediction_log.for_run(env.run_id, config.log)
        upstream = {h.name for h in env.route[: env.hop]}  # hops the route applies itself (older form)
        df = env.payload if env.payload is not None else pd.DataFrame()
        if served.needs_whole_stream(upstream) and not (env.seq == 0 and env.last):  # a sort, a window: every row
            gather = Gather(self.volume, env.run_id, ctx.step, self.holder)
            claim = gather.add(env.seq, env.last, df)
            if claim is None:  # incomplete, or handled (or being handled) with another message
                ctx.extra["report"] = gather.outcome(env.seq)
                return
            with claim:
                yield from self._predict(env, config, ctx, served, upstream, gather.frame(), 0, True)
                gather.clear(claim, {"seq": env.seq, "result": ctx.extra.get("result")})
            return
        yield from self._predict(env, config, ctx, served, upstream, df, env.seq, env.last)

    def _predict(
        self, env: Envelope, config: PredictConfig, ctx: StepContext, served: Any, upstream: set[str],
        df: pd.DataFrame, seq: int, last: bool,
    ) -> Iterator[Batch]:  # fmt: skip
        out = self.dataplane.run_columns(
            served, df, skip_hops=upstream, keep=config.keep, probabilities=config.probabilities,
            column=config.prediction_column, request_id=f"{env.run_id}/{env.seq}", source="bus",
            runtime=config.runtime,
        )  # fmt: skip
        yield Batch(out, seq, last)  # the model's arrays: a DataFrame only if a next step takes the rows

        sink = config.sink or ParquetSink(step="parquet", key="predictions/{run_id}.parquet")
        result: dict[str, Any] = {"model": served.ref.name, "version": served.ref.version}
        if seq == 0 and last:  # a one-batch stream: nothing to put in order (and rewriting is harmless)
            ctx.extra["result"] = {"output": sink.write(ctx, iter([out.frame])), **result}
            return
        # Parts keep the output in input order whichever replica predicted them; one handler writes it.
        parts = Gather(self.volume, env.run_id, f"{ctx.step}.sink", self.holder)
        claim = parts.add(seq, last, out)
        if claim is None:  # incomplete, or written (or being written) by another message's handler
            ctx.extra["report"] = parts.outcome(seq)
            return
        with claim:
            stored = parts.tables() if getattr(sink, "takes_arrow", False) else parts.batches()  # no pandas trip
            result = {"output": sink.write(ctx, stored), **result}
            parts.clear(claim, {"seq": seq, "result": result})
        ctx.extra["result"] = result
