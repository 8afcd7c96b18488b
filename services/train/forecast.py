"""Models of several targets at once (a forecast of the next values): targets, metrics in real units, a baseline.

A ``sliding_window`` makes targets ``<column>@+1`` .. ``<column>@+<horizon>`` from values that earlier
steps may have scaled. Metrics are computed after the version's post-processing (the forecasts
de-normalised), so MAE, RMSE and MAPE are in the data's own units; the seasonal-naive baseline
(each value forecast by the one a season before, read from the window) is scored the same way.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlrm.bus import Hop
from mlrm.context import StepContext
from mlrm.errors import ConfigError, DataError
from mlrm.pipeline import inference_pipeline, postprocess
from mlrm.steps import TransformStep
from services.train import metrics as M

Chain = list[tuple[TransformStep, dict[str, Any] | None]]
_TARGET = re.compile(r"^(?P<column>.+)@\+(?P<step>\d+)\Z")


def target_columns(target: str | list[str], columns: Sequence[str]) -> list[str]:
    """The target columns a config names: names, and patterns with `*` matched in column order."""
    names = [target] if isinstance(target, str) else list(target)
    out: list[str] = []
    for name in names:
        if "*" in name:
            matched = [c for c in columns if fnmatch.fnmatchcase(c, name)]
            if not matched:
                raise DataError(f"target pattern '{name}' matches no column (columns: {', '.join(columns)})")
            out.extend(c for c in matched if c not in out)
        elif name not in out:
            out.append(name)
    return out


def chain(ctx: StepContext, route: list[Hop]) -> Chain:
    """The post-processing steps of the pipeline trained behind ``route``, with this run's statistics."""
    out: Chain = []
    for s in inference_pipeline(route):
        if s.step.postprocesses:
            state = ctx.load_state(s.state)["state"] if s.state else None
            out.append((s.step, state))
    return out


def forecasts_of(steps: Chain) -> list[str]:
    return [c for step, _ in steps for c in step.forecasts()]


def restored(steps: Chain, values: np.ndarray, targets: list[str], features: pd.DataFrame) -> pd.DataFrame:
    """Model outputs (one column per target) after the pipeline's post-processing."""
    outputs = pd.DataFrame(np.asarray(values, dtype=np.float64).reshape(len(features), -1), columns=targets)
    return postprocess(steps, outputs, features.reset_index(drop=True))


def scorer(steps: Chain, targets: list[str], names: list[str]) -> Any:
    """Metrics of multi-target predictions, on the post-processed forecasts (in the data's units)."""
    columns = forecasts_of(steps)

    def score(y: pd.DataFrame, pred: np.ndarray, X: pd.DataFrame) -> dict[str, float]:
        truth, guess = restored(steps, y.to_numpy(), targets, X), restored(steps, pred, targets, X)
        picked = [c for c in columns if c in truth.columns] or targets
        return M.compute(names, truth[picked].to_numpy().ravel(), guess[picked].to_numpy().ravel())

    return score


def seasonal_naive(X: pd.DataFrame, targets: list[str], season: int) -> np.ndarray:
    """Each ``<column>@+k`` forecast by ``<column>`` one season (or a whole number of them) before, in its window."""
    picked = []
    for target in targets:
        match = _TARGET.match(target)
        if match is None:
            raise ConfigError(f"evaluation.seasonal_naive needs sliding_window targets (<column>@+k), not '{target}'")
        k = int(match["step"])
        source = f"{match['column']}@{k - season * math.ceil(k / season)}"
        if source not in X.columns:
            raise ConfigError(
                f"evaluation.seasonal_naive: the window has no '{source}' (a season of {season} steps must fit "
                "in the window: make the sliding_window at least that long, and include the target in its inputs)"
            )
        picked.append(source)
    return X[picked].to_numpy(dtype=np.float64)
