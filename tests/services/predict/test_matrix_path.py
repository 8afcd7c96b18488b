"""A version with no pipeline steps and float64 inputs answers V2 requests from one float64 matrix, without
DataFrames: the answers are the DataFrame path's, to the bit, in every request form and over both protocols;
rows its runtime refuses, batching and ``on_predict`` subscribers still take the DataFrame path."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from mlrm.bus.memory import MemoryBus
from mlrm.context import StepContext
from mlrm.volume.local import LocalVolume
from services.predict.dataplane import InferenceRequest
from services.predict.service import PredictService
from services.predict.v2.serve import V2Servers
from services.train.config import TrainConfig
from services.train.trainer import train
from tests.conftest import CONFIGS

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # gevent and friends announce deprecations on import
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A logistic regression on iris's four float64 features (no pipeline), behind a V2 server."""
    volume = LocalVolume(tmp_path_factory.mktemp("matrix") / "volume")
    frame = pd.read_csv(CONFIGS / "iris" / "iris.csv").dropna()
    frame = frame.rename(columns={"species": "label"})[[*FEATURES, "label"]]
    config = TrainConfig.model_validate({
        "kind": "TrainConfig", "target": "label",
        "model": {"name": "m", "kind": "classification", "estimator": "sklearn.linear_model.LogisticRegression",
                  "hyperparameters": {"max_iter": 1000}},
    })  # fmt: skip
    train(frame, config, StepContext(volume=volume, run_id="r1", step="train", mode="train"), {})
    service = PredictService(MemoryBus(), volume, watch_interval=0, worker="predict-matrix")
    service.start()
    with V2Servers(service, http_port=0, grpc_port=0) as servers:
        yield {"service": service, "servers": servers, "rows": frame[FEATURES].to_numpy()[::7]}
    service.stop()


def frame_answer(served, rows: np.ndarray) -> pd.DataFrame:
    """What the DataFrame path answers (no matrix given)."""
    plane = served["service"].dataplane
    return plane.infer(InferenceRequest("m", pd.DataFrame(rows, columns=FEATURES))).frame


def test_the_version_takes_the_matrix_path(served):
    plane = served["service"].dataplane
    rows = served["rows"]
    request = InferenceRequest("m", pd.DataFrame(rows, columns=FEATURES), matrix=rows, matrix_columns=FEATURES)
    result = plane.infer(request)
    assert result.answer is not None  # answered from the arrays
    pd.testing.assert_frame_equal(result.frame, frame_answer(served, rows))


def _http_inputs(rows: np.ndarray, form: str) -> list:
    if form == "matrix":
        x = httpclient.InferInput("x", list(rows.shape), "FP64")
        x.set_data_from_numpy(rows)
        return [x]
    if form == "matrix-int":
        ints = np.rint(rows).astype(np.int64)
        x = httpclient.InferInput("x", list(ints.shape), "INT64")
        x.set_data_from_numpy(ints)
        return [x]
    inputs = []
    for i, name in enumerate(FEATURES):
        x = httpclient.InferInput(name, [len(rows)], "FP64")
        x.set_data_from_numpy(np.ascontiguousarray(rows[:, i]), binary_data=form == "columns-binary")
        inputs.append(x)
    return inputs


@pytest.mark.parametrize("form", ["matrix", "matrix-int", "columns", "columns-binary"])
def test_rest_answers_equal_the_dataframe_path(served, form):
    rows = served["rows"]
    expected = frame_answer(served, np.rint(rows) if form == "matrix-int" else rows)
    client = httpclient.InferenceServerClient(f"127.0.0.1:{served['servers'].http_port}")
    try:
        outputs = [httpclient.InferRequestedOutput("prediction"), httpclient.InferRequestedOutput("probabilities")]
        answer = client.infer("m", _http_inputs(rows, form), outputs=outputs)
    finally:
        client.close()
    labels = [v.decode() if isinstance(v, bytes) else v for v in answer.as_numpy("prediction")]
    assert labels == expected["prediction"].tolist()
    proba = expected[[c for c in expected.columns if c.startswith("proba_")]].to_numpy()
    assert np.array_equal(answer.as_numpy("probabilities"), proba)


def test_grpc_answers_equal_the_dataframe_path(served):
    import grpc

    from services.predict.v2 import grpc_predict_v2_pb2 as pb
    from services.predict.v2 import grpc_predict_v2_pb2_grpc as pb_grpc

    rows = served["rows"]
    expected = frame_answer(served, rows)
    proba = expected[[c for c in expected.columns if c.startswith("proba_")]].to_numpy()
    typed = pb.ModelInferRequest(model_name="m")
    typed.inputs.add(name="x", datatype="FP64", shape=list(rows.shape)).contents.fp64_contents.extend(rows.ravel())
    raw = pb.ModelInferRequest(model_name="m")
    raw.inputs.add(name="x", datatype="FP64", shape=list(rows.shape))
    raw.raw_input_contents.append(rows.astype("<f8").tobytes())
    with grpc.insecure_channel(f"127.0.0.1:{served['servers'].grpc_port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        typed_answer, raw_answer = stub.ModelInfer(typed, timeout=30), stub.ModelInfer(raw, timeout=30)
    outputs = {o.name: o for o in typed_answer.outputs}
    assert [v.decode() for v in outputs["prediction"].contents.bytes_contents] == expected["prediction"].tolist()
    assert np.array_equal(np.array(outputs["probabilities"].contents.fp64_contents).reshape(proba.shape), proba)
    names = [o.name for o in raw_answer.outputs]
    got = np.frombuffer(raw_answer.raw_output_contents[names.index("probabilities")], "<f8").reshape(proba.shape)
    assert np.array_equal(got, proba)


def test_rows_the_runtime_refuses_get_the_dataframe_paths_reason(served):
    rows = served["rows"][:3].copy()
    rows[1, 2] = np.nan
    client = httpclient.InferenceServerClient(f"127.0.0.1:{served['servers'].http_port}")
    try:
        x = httpclient.InferInput("x", list(rows.shape), "FP64")
        x.set_data_from_numpy(rows, binary_data=True)
        with pytest.raises(InferenceServerException, match=r"NaN") as caught:
            client.infer("m", [x])
        assert caught.value.status() == "400"
        ok = httpclient.InferInput("x", [1, 4], "FP64")
        ok.set_data_from_numpy(served["rows"][:1])
        assert client.infer("m", [ok]).as_numpy("prediction").shape == (1,)  # still serving
    finally:
        client.close()


def test_on_predict_subscribers_see_what_the_dataframe_path_shows_them(served):
    plane = served["service"].dataplane
    rows = served["rows"][:5]
    frame = pd.DataFrame(rows, columns=FEATURES)
    seen = []
    plane.on_predict.append(seen.append)
    try:
        fast = plane.infer(InferenceRequest("m", frame, matrix=rows, matrix_columns=FEATURES, id="fast"))
        slow = plane.infer(InferenceRequest("m", frame, id="slow"))
    finally:
        plane.on_predict.remove(seen.append)
    assert fast.answer is not None and slow.answer is None
    assert [e.request_id for e in seen] == ["fast", "slow"]
    for part in ("inputs", "features", "outputs"):
        pd.testing.assert_frame_equal(getattr(seen[0], part), getattr(seen[1], part))
    pd.testing.assert_frame_equal(seen[0].outputs, fast.frame)


def test_a_request_given_only_its_matrix_has_the_frame_when_asked(served):
    rows = served["rows"][:4]
    request = InferenceRequest("m", None, matrix=rows, matrix_columns=FEATURES)
    pd.testing.assert_frame_equal(request.frame, pd.DataFrame(rows, columns=FEATURES))
    assert request.frame is request.frame  # built once
    pd.testing.assert_frame_equal(served["service"].dataplane.infer(request).frame, frame_answer(served, rows))
