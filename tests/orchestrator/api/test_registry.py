"""The registry and deployment API over REST: list, card, search, register (multipart), alias, deploy,
list deployments, decommission in two steps; unknown names 404, unsafe artefacts refused."""

from __future__ import annotations

import pickle

import httpx
import numpy as np
import pandas as pd
import skops.io as sio
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from tests.mlrm.test_byom import DESCRIPTION, FEATURES


def model_bytes(tmp_path) -> bytes:
    iris = load_iris()
    X = pd.DataFrame(iris.data, columns=FEATURES)
    y = np.asarray(iris.target_names)[iris.target]
    sio.dump(LogisticRegression(max_iter=500).fit(X, y), tmp_path / "m.skops")
    return (tmp_path / "m.skops").read_bytes()


def test_register_alias_search_deploy_decommission(client: httpx.Client, tmp_path) -> None:
    artefact = model_bytes(tmp_path)
    files = {"artefact": ("iris.skops", artefact), "description": ("iris.yaml", DESCRIPTION.encode())}
    answer = client.post("/models/own/versions", files=files, data={"alias": "staging"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["version"] == 1 and answer.json()["card"]["modelkind"] == "classification"
    again = client.post("/models/own/versions", files={"artefact": ("iris.skops", artefact)},
                        data={"description": DESCRIPTION})  # fmt: skip
    assert again.status_code == 201 and again.json()["version"] == 2
    models = client.get("/models").json()
    assert models == [{"model": "own", "kind": "classification", "versions": [1, 2], "aliases": {"staging": 1},
                       "latest": {"version": 2, "metrics": {"accuracy": 0.97}}}]  # fmt: skip
    assert client.put("/models/own/aliases/production", json={"version": 2}).json()["version"] == 2
    assert client.get("/models/own", params={"alias": "production"}).json()["version"] == 2
    assert client.get("/models/own", params={"version": 1}).json()["version"] == 1
    found = client.post("/models/search", json={"features": FEATURES, "latest": True}).json()
    assert [(c["modelname"], c["version"]) for c in found] == [("own", 2)]
    assert client.post("/models/search", json={"where": "accuracy >>> 1"}).status_code == 422
    assert client.post("/models/search", json={"kind": "clustering"}).status_code == 422

    dep = client.post("/deployments", json={"model": "own", "version": 1})
    assert dep.status_code == 201, dep.text
    dep_id = dep.json()["id"]
    assert [d["id"] for d in client.get("/deployments").json()] == [dep_id]
    assert client.get(f"/deployments/{dep_id}").json()["status"] == "queued"
    # two steps: unload (the version stays), then delete the version (refused while an alias points at it)
    assert client.post(f"/deployments/{dep_id}/decommission", json={}).json()["status"] == "unloaded"
    assert client.get("/models/own", params={"version": 1}).status_code == 200
    refused = client.post(f"/deployments/{dep_id}/decommission", json={"delete": True})
    assert refused.status_code == 409 and "alias 'staging'" in refused.json()["error"]
    client.put("/models/own/aliases/staging", json={"version": 2})
    assert client.post(f"/deployments/{dep_id}/decommission", json={"delete": True}).json()["status"] == "deleted"
    assert client.get("/models/own", params={"version": 1}).status_code == 404


def test_bad_registry_requests(client: httpx.Client, tmp_path) -> None:
    unsafe = pickle.dumps({"a": 1})
    answer = client.post("/models/evil/versions", files={"artefact": ("m.pkl", unsafe)},
                         data={"description": DESCRIPTION})  # fmt: skip
    assert answer.status_code == 409 and "pickle" in answer.json()["error"]
    bad = DESCRIPTION.replace("modelkind: classification", "modelkind: clustering")
    answer = client.post("/models/own/versions", files={"artefact": ("m.skops", model_bytes(tmp_path))},
                         data={"description": bad})  # fmt: skip
    assert answer.status_code == 422 and answer.json()["detail"]["errors"][0]["location"]["line"] == 1
    assert client.post("/models/own/versions", data={"description": DESCRIPTION}).status_code == 400
    assert client.get("/models/nope").status_code == 404
    assert client.put("/models/nope/aliases/prod", json={"version": 1}).status_code == 404
    assert client.post("/deployments", json={"model": "nope"}).status_code == 404
    assert client.post("/deployments", json={"model": "nope", "mode": "strict"}).status_code == 422
    assert client.post("/deployments/dep-12345678/decommission", json={}).status_code == 404
    assert client.get("/deployments/../../etc").status_code == 404
