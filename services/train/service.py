"""The training service: gathers the whole stream, records a training job, and trains in the background.

The message that completes the training data is acked as soon as the job is recorded
(see :mod:`services.train.jobs`); the step's outcome is reported when training ends.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pandas as pd

from mlrm.bus import Envelope, Hop
from mlrm.config import SERVICES, config_class
from mlrm.context import StepContext
from mlrm.errors import MlrmError, describe
from mlrm.gather import Gather
from mlrm.pipeline import state_key
from mlrm.service import Batch, Service
from services.train.config import TrainConfig
from services.train.jobs import JobRunner
from services.train.trainer import train


def fitted_statistics(route: list[Hop]) -> list[str]:
    """The statistics (state keys) the transform steps of ``route`` fit and save in a training run.

    As :class:`mlrm.pipeline.TransformService` does: a hop with a step that needs the whole
    stream runs all its steps on it, and every stateful one saves what it learned.
    """
    keys: list[str] = []
    for hop in route:
        if hop.service not in ("handler", "features"):
            continue
        steps = config_class(SERVICES[hop.service][0]).model_validate(hop.config).steps
        if any(step.needs_whole_stream(True) for step in steps):
            keys += [state_key(hop.name, i, step) for i, step in enumerate(steps) if step.stateful]
    return keys


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
        self.jobs.adopt_orphans()
        self.jobs.watch(max(1.0, self.jobs.lease / 2))

    def stop(self) -> None:
        self.jobs.stop()
        super().stop()

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
            config = self.config(env.current)
            lineage = {"run_id": env.run_id, "workflow": env.context.get("workflow"),
                       "steps": [h.to_dict() for h in env.route]}  # fmt: skip
            frame = gather.frame()
            result = train(frame, config, ctx, lineage, fitted_statistics(env.route[: env.hop]))
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
