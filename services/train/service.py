"""The training service: gathers the whole stream, then trains and registers a version."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from mlrm.bus import Envelope
from mlrm.context import StepContext
from mlrm.gather import Gather
from mlrm.service import Batch, Service
from services.train.config import TrainConfig
from services.train.trainer import train


class TrainService(Service):
    name = "train"
    config_model = TrainConfig

    def process(self, env: Envelope, config: TrainConfig, ctx: StepContext) -> Iterator[Batch]:
        gather = Gather(self.volume, env.run_id, ctx.step)
        if not gather.add(env.seq, env.last, env.payload if env.payload is not None else pd.DataFrame()):
            return
        lineage = {
            "run_id": env.run_id,
            "workflow": env.context.get("workflow"),
            "steps": [h.to_dict() for h in env.route],
        }
        ctx.extra["result"] = train(gather.frame(), config, ctx, lineage)
        gather.clear()
        yield from ()
