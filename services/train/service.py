"""The training service: gathers the whole stream, records a training job, and trains in the background.

The message that completes the training data is acked as soon as the job is recorded
(see :mod:`services.train.jobs`); the step's outcome is reported when training ends.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pandas as pd

from mlrm.bus import Envelope
from mlrm.cancel import RunCancelled
from mlrm.context import StepContext
from mlrm.errors import MlrmError, describe
from mlrm.gather import Gather
from mlrm.service import ApiSettings, Batch, Service, ServiceApi, register_service
from services.train.config import TrainConfig
from services.train.jobs import JobRunner
from services.train.trainer import train


@register_service
class TrainService(Service):
    name = "train"
    config_model = TrainConfig
    default_prefetch = 1  # gathering is cheap, but never queue work behind one replica

    def __init__(self, *args: Any, lease: float = 60.0, adopt: bool | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # adopt=None: adopt orphaned jobs only on a shared bus (distributed mode), never embedded
        self.jobs = JobRunner(self.volume, self.holder, self.run_job, lease=lease, adopt=adopt)

    def start(self) -> None:
        super().start()
        if self.background:  # a long-lived replica takes over jobs whose replica died; an embedded run does not
            self.jobs.adopt_orphans()
            self.jobs.watch(max(1.0, self.jobs.lease / 2))

    def stop(self) -> None:
        self.jobs.stop()
        super().stop()

    def api(self, settings: ApiSettings) -> ServiceApi:
        """Training jobs: ``POST /v1/jobs``, ``GET /v1/jobs/{id}``; gRPC ``Training/Submit`` and ``Status``."""
        from mlrm.web.tables_api import rest_app
        from services.train import api

        default = None if settings.config is None else TrainConfig.model_validate(settings.config)
        jobs = api.TrainJobs(self.volume, default)
        app = rest_app("mlrm train", api.routes(jobs, max_body=settings.max_body), ready=self.ready,
                       models=[api.TrainJobRequest, api.JobStatus])  # fmt: skip
        return ServiceApi(rest=app, grpc=api.registrar(jobs, self.ready), scopes=dict(api.SCOPES), close=jobs.close)

    def process(self, env: Envelope, config: TrainConfig, ctx: StepContext) -> Iterator[Batch]:
        gather = Gather(self.volume, env.run_id, ctx.step, self.holder)
        claim = gather.add(env.seq, env.last, env.payload if env.payload is not None else pd.DataFrame())
        if claim is None:  # incomplete, or trained (or training) with another message
            ctx.extra["report"] = gather.outcome(env.seq)
        else:
            with claim:  # the job record, created once per run, takes over from the claim
                if self.jobs.submit(env):
                    ctx.extra["deferred"] = True  # the job reports the step's outcome
        yield from ()

    def run_job(self, env: Envelope) -> None:
        """Train on the gathered stream and report the step's outcome (runs in a job thread)."""
        started = time.time()
        ctx = self.context(env)
        gather = Gather(self.volume, env.run_id, ctx.step)
        try:
            self.cancelled.check(env.run_id, fresh=True)  # a cancelled run's training never starts
            config = self.config(env.current)
            lineage = {"run_id": env.run_id, "workflow": env.context.get("workflow"),
                       "steps": [h.to_dict() for h in env.route]}  # fmt: skip
            frame = gather.frame()
            result = train(frame, config, ctx, lineage, env.route[: env.hop])
        except RunCancelled:  # the run ended `cancelled`; the orchestrator clears its scratch space
            return
        except Exception as exc:
            self._event(env, "failed", started=started, error=f"step '{ctx.step}' ({self.name}): {describe(exc)}")
            if not isinstance(exc, MlrmError):
                raise
            return
        if env.body.get("adopted"):  # visible in the run: who finished whose training
            result["adopted"] = env.body["adopted"]
        gather.clear(report={"seq": env.seq, "result": result})
        rows_in = env.body.get("rows_in", 0)
        self._event(env, "processed", started=started, rows_in=rows_in, rows_out=0, batches_out=0, result=result)
