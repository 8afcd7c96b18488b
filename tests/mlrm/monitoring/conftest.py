"""A trained iris classifier whose predictions are logged, and streams of raw rows with and without a shift."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import pytest

from mlrm.monitoring import LogEntry, PredictionLog
from mlrm.settings import Settings
from orchestrator.embedded import Embedded
from tests.conftest import CONFIGS

IRIS = CONFIGS / "iris"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def iris_rows(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """``n`` raw rows drawn from the training data; ``shift`` adds to the petal length (cm)."""
    data = pd.read_csv(IRIS / "iris.csv")
    rng = np.random.default_rng(seed)
    rows = data.iloc[rng.integers(0, len(data), n)].reset_index(drop=True)
    out = rows[FEATURES].astype(float)
    out["petal_length"] += shift
    out["species"] = rows["species"].to_numpy()
    return out


@pytest.fixture(scope="module")
def iris(tmp_path_factory) -> Iterator[Embedded]:
    tmp = tmp_path_factory.mktemp("monitoring")
    settings = Settings(volume=str(tmp / "volume"), state=str(tmp / "runs.sqlite"), retries=1)
    with Embedded(settings) as mlrm:
        assert mlrm.run(IRIS / "train.yaml", timeout=300).status == "succeeded"
        yield mlrm


@pytest.fixture
def logged(iris) -> Iterator[Callable[..., pd.DataFrame]]:
    """``logged(rows, ...)``: predict raw rows in requests of ``size`` with every prediction logged
    (flushed on return); returns the answers."""
    plog = PredictionLog(iris.volume).start()

    def record(event):
        plog.record(LogEntry(event.ref.name, event.ref.version, event.request_id, event.source, event.at,
                             event.features, event.outputs))  # fmt: skip

    predict = iris.service("predict")
    predict.dataplane.on_predict.append(record)

    def run(rows: pd.DataFrame, size: int = 50, ids: list[str] | None = None) -> pd.DataFrame:
        """Requests of ``size`` rows; with ``ids``, one request per row with that request id."""
        answers = []
        for start in range(0, len(rows), 1 if ids else size):
            chunk = rows.iloc[start : start + (1 if ids else size)][FEATURES]
            options = {"id": ids[start]} if ids else {}
            out, _ = predict.infer("iris-classifier", chunk, alias="production", **options)
            answers.append(out)
        assert plog.flush()
        return pd.concat(answers, ignore_index=True)

    yield run
    predict.dataplane.on_predict.remove(record)
    plog.close()
    iris.volume.delete_prefix("monitoring/")
