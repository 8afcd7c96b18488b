"""A model version is its whole inference pipeline: the same raw rows get the same answer
from a batch workflow, from the data plane directly, and over nameko RPC.

Before the pipeline was recorded in the card, a direct request fed raw rows straight to the
estimator and agreed with the batch workflow on 6 of iris's 30 new flowers.
"""

from __future__ import annotations

import json
import uuid
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlrm.integrations.nameko import NamekoResponder
from services.predict.rpc import methods
from tests.conftest import CONFIGS
from tests.support import BROKER_URL, broker_up

IRIS, ENERGY = CONFIGS / "iris", CONFIGS / "energy"

# The older form of a batch workflow: the training route's steps repeated before predict.
EXPLICIT = """\
kind: Workflow
name: iris-predict-explicit
steps:
  - {name: collect, service: collector, config: %(iris)s/collect-new.yaml}
  - name: clean
    service: handler
    config: {steps: [{step: fill_na, name: impute, strategy: median,
                      columns: [sepal_length, sepal_width, petal_length, petal_width]}]}
  - {name: features, service: features, config: %(iris)s/features.yaml}
  - {name: predict, service: predict, config: %(iris)s/serve.yaml}
"""


def batch_output(mlrm, workflow: Path) -> pd.DataFrame:
    run = mlrm.run(workflow, timeout=300)
    assert run.status == "succeeded", run.error
    with mlrm.volume.open_read(run.result("predict")["output"].removeprefix("volume:")) as f:
        return pd.read_csv(f)


def direct_output(mlrm, model: str, raw: pd.DataFrame, keep: list[str]) -> pd.DataFrame:
    out, _ = mlrm.service("predict").infer(model, raw, alias="production", keep=keep)
    return roundtrip(out)


def roundtrip(frame: pd.DataFrame) -> pd.DataFrame:
    """Through CSV like the batch output, so both sides compare with the same types."""
    import io

    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    buf.seek(0)
    return pd.read_csv(buf)


def nameko_output(mlrm, model: str, raw: pd.DataFrame, keep: list[str]) -> pd.DataFrame:
    if not broker_up():
        pytest.skip("no RabbitMQ broker on 127.0.0.1:5672")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eventlet announces its deprecation on import
        from nameko.standalone.rpc import ClusterRpcProxy
    name = f"predict_{uuid.uuid4().hex[:8]}"
    records = json.loads(raw.to_json(orient="records", date_format="iso"))  # what a JSON client sends
    with NamekoResponder(BROKER_URL, name, methods(mlrm.service("predict"))), ClusterRpcProxy(
        {"AMQP_URI": BROKER_URL}
    ) as rpc:
        reply = getattr(rpc, name).infer(model=model, records=records, alias="production", keep=keep)
    return roundtrip(pd.DataFrame.from_records(reply["predictions"]))


def assert_same(batch: pd.DataFrame, other: pd.DataFrame, how: str) -> None:
    assert list(other.columns) == list(batch.columns), how
    if "timestamp" in batch:  # CSV writers spell times differently; compare the instants
        batch = batch.assign(timestamp=pd.to_datetime(batch["timestamp"]))
        other = other.assign(timestamp=pd.to_datetime(other["timestamp"]))
    agree = (other["prediction"] == batch["prediction"]).sum()
    assert agree == len(batch), f"{how}: {agree} of {len(batch)} predictions agree with the batch workflow"
    pd.testing.assert_frame_equal(other, batch, check_exact=False, rtol=1e-9, obj=how)


def test_iris_online_answers_equal_batch_answers(mlrm, tmp_path):
    assert mlrm.run(IRIS / "train.yaml", timeout=120).status == "succeeded"
    batch = batch_output(mlrm, IRIS / "predict.yaml")  # collect -> predict: the version's pipeline inside
    raw = pd.read_csv(IRIS / "new_flowers.csv")
    assert len(batch) == len(raw) == 30

    explicit = tmp_path / "explicit.yaml"
    explicit.write_text(EXPLICIT % {"iris": IRIS})
    assert_same(batch, batch_output(mlrm, explicit), "the older form, steps repeated (applied once, not twice)")
    assert_same(batch, direct_output(mlrm, "iris-classifier", raw, ["id"]), "the data plane")
    assert_same(batch, nameko_output(mlrm, "iris-classifier", raw, ["id"]), "nameko RPC")


def test_energy_online_answers_equal_batch_answers(mlrm, energy_data, monkeypatch):
    history, upcoming = energy_data
    monkeypatch.setenv("ENERGY_DATA", str(history))
    monkeypatch.setenv("ENERGY_INPUT", str(upcoming))
    assert mlrm.run(ENERGY / "train.yaml", timeout=300).status == "succeeded"
    batch = batch_output(mlrm, ENERGY / "predict.yaml")
    raw = pd.read_csv(upcoming)  # timestamps as text, as a client sends them: the card's types apply
    assert len(batch) == len(raw)
    assert_same(batch, direct_output(mlrm, "energy-load", raw, ["timestamp"]), "the data plane")
    assert_same(batch, nameko_output(mlrm, "energy-load", raw, ["timestamp"]), "nameko RPC")


def test_keras_forecasts_agree_in_a_batch_workflow_over_rest_and_over_grpc(power):
    """Both Keras forecasters, served at once: the same 672 raw rows give the same 8 forecasts everywhere."""
    from services.predict.v2.serve import V2Servers
    from tests.examples.power_support import MODELS, POWER, triton, v2_forecast

    mlrm, raw = power["mlrm"], power["raw"]
    assert len(raw) == 672
    http, grpc = triton("http"), triton("grpc")
    with V2Servers(mlrm.service("predict"), http_port=0, grpc_port=0) as servers:
        rest = http.InferenceServerClient(f"127.0.0.1:{servers.http_port}")
        rpc = grpc.InferenceServerClient(f"127.0.0.1:{servers.grpc_port}")
        for model, kind in zip(MODELS, ("gru", "cnn-lstm"), strict=True):
            batch = batch_output(mlrm, POWER / f"predict-{kind}.yaml")
            batch["timestamp"] = pd.to_datetime(batch["timestamp"])
            assert list(batch.columns) == ["timestamp", "horizon", "prediction"] and len(batch) == 8
            last = pd.Timestamp(raw["timestamp"].iloc[-1])
            assert list(batch["timestamp"]) == [last + pd.Timedelta(minutes=15 * k) for k in range(1, 9)]
            assert batch["prediction"].between(5, 150).all()  # de-normalised: kilowatts, not deviations
            out, _ = mlrm.service("predict").infer(model, raw, alias="candidate")
            for how, other in [("the data plane", out), ("REST", v2_forecast(http, rest, model, raw)),
                               ("gRPC", v2_forecast(grpc, rpc, model, raw))]:  # fmt: skip
                other = other.assign(timestamp=pd.to_datetime(other["timestamp"]))
                assert list(other["timestamp"]) == list(batch["timestamp"]), how
                assert list(other["horizon"]) == list(range(1, 9)), how
                np.testing.assert_allclose(other["prediction"], batch["prediction"], rtol=1e-9, err_msg=how)
        rest.close()
        rpc.close()
