"""Adaptive batching: concurrent direct requests to a deployed version merged into one model call."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification

from mlrm.context import StepContext
from mlrm.deployments import Deployments, DeployRequest
from mlrm.errors import DataError
from services.predict.batching import ModelCall
from services.predict.dataplane import DataPlane, InferenceRequest
from services.predict.server import ModelServer
from services.train.config import TrainConfig
from services.train.trainer import train


def rows(n: int, seed: int) -> pd.DataFrame:
    X, y = make_classification(n, 8, n_informative=5, random_state=seed)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(8)])
    frame["label"] = np.array(["no", "yes"])[y]
    return frame


@pytest.mark.parametrize("runtime", ["sklearn", "onnx"])
def test_concurrent_requests_are_merged_and_each_gets_its_own_answer(volume, runtime):
    config = TrainConfig.model_validate({
        "kind": "TrainConfig", "target": "label",
        "model": {"name": "m", "kind": "classification", "estimator": "sklearn.ensemble.RandomForestClassifier",
                  "hyperparameters": {"n_estimators": 21, "random_state": 0}},  # odd: no tied votes
    })  # fmt: skip
    train(rows(500, 0), config, StepContext(volume=volume, run_id="r1", step="train", mode="train"), {})
    batching = {"max_batch_size": 64, "max_batch_time": 0.5}
    Deployments(volume).create(DeployRequest(model="m", alias=None, runtime=runtime, batching=batching))
    server = ModelServer(volume, worker="predict-0")
    server.sync()  # loads the deployment, with its runtime and batching
    plane = DataPlane(server)
    calls: list[ModelCall] = []
    plane.on_model_call.append(calls.append)

    requests = [rows(1 + i % 5, 10 + i).drop(columns="label") for i in range(8)]
    requests[5].loc[0, "f3"] = np.inf  # refused: that request alone gets the error

    def ask(i: int) -> pd.DataFrame:
        return plane.infer(InferenceRequest("m", requests[i], version=1, probabilities=i % 3 != 0)).frame

    alone = {}
    for i in range(8):  # nothing else in flight: one call each, no waiting
        try:
            alone[i] = ask(i)
        except DataError as exc:
            alone[i] = exc
    assert [c.requests for c in calls] == [1] * 8 and isinstance(alone[5], DataError)
    calls.clear()

    for _ in range(3):
        barrier, answers = threading.Barrier(8), {}

        def client(i: int, barrier=barrier, answers=answers) -> None:
            barrier.wait()
            try:
                answers[i] = ask(i)
            except DataError as exc:
                answers[i] = exc

        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i in range(8):
            if i == 5:
                assert isinstance(answers[i], DataError) and "infinity" in str(answers[i])
            else:
                pd.testing.assert_frame_equal(answers[i], alone[i], check_exact=False, rtol=1e-12)
    assert any(c.requests > 1 for c in calls), calls  # merged calls happened
    assert max(c.rows for c in calls) <= 64
