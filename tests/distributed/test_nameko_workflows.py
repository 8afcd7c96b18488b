"""nameko compatibility in a running deployment: nameko calls mlrm, and a workflow calls nameko."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import pandas as pd
import pytest

from mlrm.errors import NotFoundError
from mlrm.integrations.nameko import NamekoRpcClient
from tests.conftest import CONFIGS
from tests.support import consumers

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # eventlet announces its deprecation on import
    try:
        from nameko.exceptions import RemoteError
        from nameko.standalone.rpc import ClusterRpcProxy
    except Exception as exc:  # nameko is a test-only dependency
        pytest.skip(f"nameko cannot be imported: {exc}", allow_module_level=True)

IRIS = CONFIGS / "iris"

ENRICHER = """
from nameko.rpc import rpc


class Enricher:
    name = "enricher"

    @rpc
    def tag(self, records, label="nameko"):
        return [dict(row, source=label) for row in records]
"""


def test_a_nameko_client_calls_predict_infer(cluster_factory):
    cluster = cluster_factory()
    assert cluster.run(IRIS / "train.yaml").status == "succeeded"
    rows = pd.read_csv(IRIS / "new_flowers.csv").drop(columns="id").head(5).to_dict("records")
    deadline = time.monotonic() + 20
    while consumers(cluster.url, "rpc-predict") < 1:
        assert time.monotonic() < deadline, "predict did not start answering nameko RPC"
        time.sleep(0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with ClusterRpcProxy({"AMQP_URI": cluster.url.split("?")[0]}) as rpc:
            answer = rpc.predict.infer(model="iris-classifier", alias="production", records=rows)
            with pytest.raises(RemoteError) as info:  # nameko sees mlrm's errors by class name
                rpc.predict.infer(model="iris-classifier", alias="canary", records=rows)
    assert answer["model"] == "iris-classifier" and answer["version"] == 1
    assert len(answer["predictions"]) == 5
    assert {p["prediction"] for p in answer["predictions"]} <= {"setosa", "versicolor", "virginica"}
    assert info.value.exc_type == "NotFoundError" and "no version with alias 'canary'" in str(info.value)
    with NamekoRpcClient(cluster.url, timeout=30) as client, pytest.raises(NotFoundError, match="alias 'canary'"):
        client.call("predict", "infer", model="iris-classifier", alias="canary", records=rows)  # mlrm's: rebuilt


@pytest.fixture
def enricher(cluster_factory, tmp_path):
    cluster = cluster_factory()
    (tmp_path / "enricher_service.py").write_text(textwrap.dedent(ENRICHER))
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(tmp_path)}
    log = (tmp_path / "nameko.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nameko", "run", "enricher_service", "--broker", cluster.url.split("?")[0]],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while consumers(cluster.url, "rpc-enricher") < 1:
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "nameko.log").read_text()
        time.sleep(0.1)
    yield cluster
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_a_workflow_step_calls_an_existing_nameko_service(enricher, tmp_path):
    cluster = enricher
    assert cluster.run(IRIS / "train.yaml").status == "succeeded"
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(
        textwrap.dedent(f"""\
        kind: Workflow
        name: with-nameko
        steps:
          - {{name: collect, service: collector, config: {IRIS / "collect-new.yaml"}}}
          - {{name: enrich, service: "nameko:enricher.tag", config: {{kwargs: {{label: from-nameko}}}}}}
          - {{name: features, service: features, config: {IRIS / "features.yaml"}}}
          - name: predict
            service: predict
            config: {{model: {{name: iris-classifier, alias: production}}, keep: [id, source],
                      sink: {{step: csv, key: "predictions/{{run_id}}.csv"}}}}
        """)
    )
    record = cluster.run(workflow)
    assert record.status == "succeeded", record.error
    with cluster.volume.open_read(record.result("predict")["output"].removeprefix("volume:")) as f:
        out = pd.read_csv(f)
    assert len(out) == 30 and set(out["source"]) == {"from-nameko"}
