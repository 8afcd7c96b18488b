"""The Keras power example: two forecasters trained from YAML, their cards, and serving them side by side."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from mlrm.card import ModelCard
from mlrm.context import ModelRef
from mlrm.deployments import Deployments, DeployRequest
from mlrm.errors import DataError
from mlrm.registry import ModelRegistry
from services.predict.batching import ModelCall
from services.predict.dataplane import InferenceRequest
from services.predict.server import Target
from tests.examples.power_support import MODELS


def test_cards_record_shapes_forecast_metrics_and_the_seasonal_naive_baseline(power):
    registry = ModelRegistry(power["mlrm"].volume)
    for model in MODELS:
        result = power["results"][model]
        assert len(result["epochs"]) >= 1 and {"loss", "val_loss"} <= set(result["epochs"][0])  # in the run record
        card = ModelCard.parse(registry.card(ModelRef(model, result["version"])), model)
        metrics = card.metrics
        for name in ("mae", "rmse", "mape"):
            assert np.isfinite(metrics[name]) and np.isfinite(metrics[f"baseline_{name}"])
        assert 1 < metrics["baseline_mae"] < 30  # in kilowatts (de-normalised), not standard deviations
        assert card.inference.artefact.flavour == "keras" and card.inference.artefact.file == "model.keras"
        assert len(card.sha256["model.keras"]) == 64
        assert card.inference.output["model_input_shape"] == [-1, 672, 7]
        assert card.inference.output["model_output_shape"] == [-1, 8]
        assert card.inference.targets == [f"power@+{k}" for k in range(1, 9)]
        assert [f.name for f in card.inference.inputs] == ["timestamp", "power"]
        assert [(o.name, o.datatype) for o in card.inference.outputs] == [
            ("timestamp", "BYTES"), ("horizon", "INT64"), ("prediction", "FP64")]  # fmt: skip
        assert card.modelperform["history"] == result["epochs"]


def test_one_window_per_request_and_no_retracing_for_requests_of_the_same_shape(power):
    service, raw = power["mlrm"].service("predict"), power["raw"]
    answers = [service.infer(model, raw, alias="candidate")[0] for model in MODELS]  # both loaded at once
    for answer in answers:
        assert len(answer) == 8 and list(answer["horizon"]) == list(range(1, 9))
    assert not answers[0]["prediction"].equals(answers[1]["prediction"])  # two models, two forecasts
    served = service.server.get(Target("power-gru", alias="candidate"))
    traced = served.model.call.experimental_get_tracing_count()
    assert traced == 1  # the warm-up at load
    longer = pd.concat([raw.iloc[:12].assign(timestamp=pd.to_datetime(raw["timestamp"].iloc[:12])
                                            - pd.Timedelta(hours=3)), raw])  # fmt: skip
    for frame in (raw, raw, longer):  # 672 rows: one window; 684 rows: two windows (stride 12)
        out, _ = service.infer("power-gru", frame, alias="candidate")
        assert len(out) == 8 * (len(frame) - 672 + 12) // 12
    assert served.model.call.experimental_get_tracing_count() == traced
    with pytest.raises(DataError, match=r"needs at least 672 rows \(one window\); got 671"):
        service.infer("power-gru", raw.iloc[1:], alias="candidate")


def test_adaptive_batching_merges_concurrent_windows_into_one_model_call(power):
    mlrm, raw = power["mlrm"], power["raw"]
    version = power["results"]["power-gru"]["version"]
    batching = {"max_batch_size": 16, "max_batch_time": 0.5}
    Deployments(mlrm.volume).create(DeployRequest(model="power-gru", version=version, batching=batching))
    service = mlrm.service("predict")
    service.server.sync()
    plane = service.dataplane
    calls: list[ModelCall] = []
    plane.on_model_call.append(calls.append)
    weeks = [raw.assign(power=raw["power"] * (1 + i / 10)) for i in range(4)]
    alone = [plane.infer(InferenceRequest("power-gru", w, version=version)).frame for w in weeks]
    calls.clear()
    barrier, answers = threading.Barrier(4), {}

    def client(i: int) -> None:
        barrier.wait()
        answers[i] = plane.infer(InferenceRequest("power-gru", weeks[i], version=version)).frame

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(c.requests for c in calls) > 1 and sum(c.rows for c in calls) == 4  # windows merged
    for i in range(4):
        np.testing.assert_allclose(answers[i]["prediction"], alone[i]["prediction"], rtol=1e-5)
