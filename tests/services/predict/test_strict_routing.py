"""Batch predictions of a model deployed in strict mode run only on replicas of its node."""

from __future__ import annotations

import pytest

from mlrm.deployments import Deployments, DeployRequest
from mlrm.errors import ConfigError, RefusedError
from services.predict.service import PredictService
from tests.conftest import CONFIGS

IRIS = CONFIGS / "iris"


def test_strict_deployment_routes_the_run_to_its_node(mlrm):
    assert mlrm.run(IRIS / "train.yaml", timeout=120).status == "succeeded"
    Deployments(mlrm.volume).create(DeployRequest(model="iris-classifier", version=1, mode="strict", node="site-a"))
    # The embedded predict replica has no node label; a second one runs "on site-a".
    site_a = PredictService(mlrm.bus, mlrm.volume, node="site-a", worker="predict-site-a", watch_interval=0)
    site_a.start()
    run = mlrm.run(IRIS / "predict.yaml", timeout=120)
    assert run.status == "succeeded", run.error
    assert run.steps[-1].workers == {"predict-site-a": 1}
    assert mlrm.service("predict").processed == 0  # the unlabelled replica never saw the data


def test_a_replica_off_the_node_refuses_to_load_it(mlrm):
    assert mlrm.run(IRIS / "train.yaml", timeout=120).status == "succeeded"
    Deployments(mlrm.volume).create(DeployRequest(model="iris-classifier", version=1, mode="strict", node="site-a"))
    with pytest.raises(RefusedError, match="strict mode for node"):
        mlrm.service("predict").server.check_allowed("iris-classifier")


def test_several_strict_nodes_need_a_choice(mlrm):
    assert mlrm.run(IRIS / "train.yaml", timeout=120).status == "succeeded"
    deps = Deployments(mlrm.volume)
    for node in ("site-a", "site-b"):
        deps.create(DeployRequest(model="iris-classifier", version=1, mode="strict", node=node))
    with pytest.raises(ConfigError, match=r"several nodes \(site-a, site-b\); set `node:`"):
        mlrm.run(IRIS / "predict.yaml", timeout=60)
