"""A large batch's model call split across cores: the same answers, in row order, as one call."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from mlrm.errors import ConfigError, DataError
from mlrm.flavours import Prediction
from services.predict import parallel
from services.predict.dataplane import DataPlane
from services.predict.parallel import MIN_ROWS, split_rows, threads
from services.predict.server import ModelServer
from tests.services.predict.test_runtimes import forest_frame, train_model


def test_a_large_batch_is_answered_in_parts_on_several_threads_in_row_order():
    seen: list[tuple[str, int]] = []

    def call(X: pd.DataFrame, proba: bool) -> Prediction:
        seen.append((threading.current_thread().name, len(X)))
        values = X["x"].to_numpy() * 2
        return Prediction(values, np.column_stack([values, -values]) if proba else None)

    X = pd.DataFrame({"x": np.arange(4 * MIN_ROWS + 7, dtype="float64")})
    answer = split_rows(call, workers=4)(X, True)
    assert answer.values.tolist() == (X["x"] * 2).tolist() and answer.proba[:, 1].tolist() == (-X["x"] * 2).tolist()
    assert len(seen) == 4 and sum(n for _, n in seen) == len(X)
    assert len({name for name, _ in seen}) > 1  # the caller's thread took one part, the pool the others
    assert split_rows(call, workers=4)(X, False).proba is None

    seen.clear()
    small = X.head(2 * MIN_ROWS - 1)  # not worth splitting: one call on the caller's thread
    split_rows(call, workers=4)(small, True)
    assert seen == [(threading.current_thread().name, len(small))]
    assert split_rows(call, workers=1) is call


def test_an_error_in_any_part_is_the_error_of_the_call():
    def call(X: pd.DataFrame, proba: bool) -> Prediction:
        if (X["x"] < 0).any():
            raise ValueError("Input contains infinity or a value too large")
        return Prediction(X["x"].to_numpy())

    X = pd.DataFrame({"x": np.arange(3 * MIN_ROWS, dtype="float64")})
    X.loc[len(X) - 1, "x"] = -1.0  # in the last part, answered on the pool
    with pytest.raises(ValueError, match="infinity"):
        split_rows(call, workers=3)(X, False)


def test_the_thread_count_is_configured_and_checked(monkeypatch):
    monkeypatch.setenv("MLRM_PREDICT_THREADS", "3")
    assert threads() == 3
    for bad in ("0", "two"):
        monkeypatch.setenv("MLRM_PREDICT_THREADS", bad)
        with pytest.raises(ConfigError, match="MLRM_PREDICT_THREADS"):
            threads()
    monkeypatch.delenv("MLRM_PREDICT_THREADS")
    assert 1 <= threads() <= 8


@pytest.mark.parametrize("runtime", ["onnx", "sklearn"])
def test_a_forest_answers_a_split_batch_exactly_as_one_call(volume, monkeypatch, runtime):
    """Both runtimes compute without the GIL, so a workflow batch is split; every row's answer is unchanged."""
    forest = "sklearn.ensemble.RandomForestClassifier"
    ref = train_model(volume, forest_frame(), forest, n_estimators=30, random_state=0)
    raw = forest_frame(3 * MIN_ROWS + 11).drop(columns="label")
    plane = DataPlane(ModelServer(volume, worker="predict-0"))
    served = plane.server.load(ref)
    monkeypatch.setattr(parallel, "threads", lambda: 1)
    whole = plane.run(served, raw, request_id="b", source="bus", runtime=runtime)
    monkeypatch.setattr(parallel, "threads", lambda: 3)
    calls = []
    original = parallel.split_rows

    def counting(call, workers=None):
        split = original(call, workers)
        return lambda X, proba: calls.append(len(X)) or split(X, proba)

    monkeypatch.setattr("services.predict.model.split_rows", counting)
    split = plane.run(served, raw, request_id="b", source="bus", runtime=runtime)
    assert calls == [len(raw)]
    pd.testing.assert_frame_equal(whole, split)

    bad = raw.assign(f0=raw["f0"].where(raw.index != len(raw) - 1, np.inf))  # refused in the last part
    with pytest.raises(DataError, match="infinity"):
        plane.run(served, bad, request_id="b", source="bus", runtime="sklearn")


def test_a_bad_thread_count_stops_the_predict_service_at_start_with_a_clear_error(tmp_path):
    """Not each large batch later: `mlrm serve predict` says what is wrong, with no traceback."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "MLRM_PREDICT_THREADS": "two", "MLRM_VOLUME": str(tmp_path / "volume")}
    cmd = [sys.executable, "-m", "mlrm", "serve", "predict", "--no-bus", "--http-port", "0", "--grpc-port", "0"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "MLRM_PREDICT_THREADS must be a whole number of threads, got 'two'" in done.stderr
