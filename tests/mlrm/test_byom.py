"""Bring your own model: `mlrm models register` (and mlrm.byom.register_model) with models trained here,
outside mlrm, then served through the data plane and V2 REST; pickle, joblib, untrusted types and bad
descriptions are refused with a reason."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from rich.console import Console
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from typer.testing import CliRunner

import cli.common as cli_module
from cli import app
from mlrm.bus.memory import MemoryBus
from mlrm.byom import register_model
from mlrm.errors import ConfigError, RegistryError
from mlrm.registry import ModelRef, ModelRegistry
from mlrm.signing import Signer
from mlrm.volume.local import LocalVolume
from services.predict.service import PredictService
from services.predict.v2.serve import V2Servers

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]

DESCRIPTION = """\
modelkind: classification
description: Iris species, trained in a notebook.
traincode: {repository: "https://example.org/notebooks", framework: scikit-learn}
trainingdata: {dataset: iris, rows: 150}
modelperform: {metrics: {accuracy: 0.97}}
featurelist:
  - {name: sepal_length, type: float64}
  - {name: sepal_width, type: float64}
  - {name: petal_length, type: float64}
  - {name: petal_width, type: float64}
"""


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    iris = load_iris()
    X = pd.DataFrame(iris.data, columns=FEATURES)
    y = np.asarray(iris.target_names)[iris.target]
    return X, y


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLRM_VOLUME", str(tmp_path / "volume"))
    monkeypatch.setattr(cli_module, "out", Console(width=300))
    runner = CliRunner()

    def invoke(*args: object):
        result = runner.invoke(app, [str(a) for a in args])
        assert not (result.exception and not isinstance(result.exception, SystemExit)), result.exception
        return result

    return invoke


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def onnx_of(model, width: int) -> bytes:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType

    options = {id(model): {"zipmap": False}}
    return convert_sklearn(model, initial_types=[("input", DoubleTensorType([None, width]))], options=options,
                           target_opset=17).SerializeToString()  # fmt: skip


def test_register_skops_and_onnx_then_infer_through_the_data_plane_and_v2(tmp_path, data, cli):
    X, y = data
    skops_model = LogisticRegression(max_iter=500).fit(X, y)
    sio.dump(skops_model, tmp_path / "iris.skops")
    tree = LogisticRegression(C=0.5, max_iter=500).fit(X.to_numpy(), y)  # converted outside mlrm
    (tmp_path / "tree.onnx").write_bytes(onnx_of(tree, 4))
    description = write(tmp_path / "iris.yaml", DESCRIPTION)

    reply = cli("models", "register", "iris-byo", "--artefact", tmp_path / "iris.skops", "--card", description,
                "--alias", "production")  # fmt: skip
    assert reply.exit_code == 0, reply.output
    assert "iris-byo version 1 (production): skops, sha256 " in reply.output
    volume = LocalVolume(tmp_path / "volume")
    registry = ModelRegistry(volume, signer=Signer(b"k" * 32))
    tree_description = DESCRIPTION + "inference: {classes: [setosa, versicolor, virginica]}\n"
    card = register_model(registry, "iris-tree", tmp_path / "tree.onnx", tree_description)

    skops_card = ModelRegistry(volume).card(ModelRef("iris-byo", 1))
    assert skops_card["inference"]["artefact"] == {"flavour": "sklearn", "format": "skops", "file": "model.skops"}
    assert skops_card["inference"]["classes"] == ["setosa", "versicolor", "virginica"]  # read from the model
    assert [i["datatype"] for i in skops_card["inference"]["inputs"]] == ["FP64"] * 4
    assert [o["name"] for o in skops_card["inference"]["outputs"]] == ["prediction", "probabilities"]
    assert skops_card["sha256"]["model.skops"] and skops_card["modelperform"]["metrics"] == {"accuracy": 0.97}
    assert card["inference"]["artefact"]["flavour"] == "onnx" and card["signature"]  # signed with the key

    service = PredictService(MemoryBus(), volume, watch_interval=0, worker="byo")
    service.start()
    try:
        out, ref = service.infer("iris-byo", X, alias="production")
        assert ref.version == 1 and out["prediction"].tolist() == skops_model.predict(X).tolist()
        np.testing.assert_allclose(out[[f"proba_{c}" for c in skops_model.classes_]], skops_model.predict_proba(X))
        out, _ = service.infer("iris-tree", X)
        assert out["prediction"].tolist() == tree.predict(X.to_numpy()).tolist()
        np.testing.assert_allclose(
            out[[f"proba_{c}" for c in tree.classes_]], tree.predict_proba(X.to_numpy()), atol=1e-6
        )
        with V2Servers(service, http_port=0, grpc_port=None) as servers:
            rows = X.head(5)
            body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": list(rows.shape),
                                "data": rows.to_numpy().tolist()}]}  # fmt: skip
            for model, fitted in (("iris-byo", skops_model), ("iris-tree", None)):
                reply = httpx.post(f"http://127.0.0.1:{servers.http_port}/v2/models/{model}/infer", json=body)
                assert reply.status_code == 200, reply.text
                labels = reply.json()["outputs"][0]["data"]
                expected = (fitted.predict(rows) if fitted is not None else tree.predict(rows.to_numpy())).tolist()
                assert labels == expected
    finally:
        service.stop()


def test_pickle_and_joblib_are_refused_naming_the_safe_formats(tmp_path, data, cli):
    X, y = data
    model = LogisticRegression(max_iter=500).fit(X, y)
    description = write(tmp_path / "d.yaml", DESCRIPTION)
    pickled = pickle.dumps(model)
    (tmp_path / "model.pkl").write_bytes(pickled)
    (tmp_path / "disguised.skops").write_bytes(pickled)  # by content, whatever the name
    (tmp_path / "old.onnx").write_bytes(pickle.dumps(model, protocol=0))
    joblib.dump(model, tmp_path / "model.joblib")
    joblib.dump(model, tmp_path / "model.bin")  # joblib without its extension: a pickle inside
    joblib.dump(model, tmp_path / "compressed.bin", compress=3)
    with zipfile.ZipFile(tmp_path / "torchlike.zip", "w") as archive:
        archive.writestr("archive/data.pkl", pickled)
    for name, kind in (
        ("model.pkl", "pickle"), ("disguised.skops", "pickle"), ("old.onnx", "pickle"), ("model.joblib", "joblib"),
        ("model.bin", "pickle"), ("compressed.bin", "joblib"), ("torchlike.zip", "zip archive holding a pickle"),
    ):  # fmt: skip
        reply = cli("models", "register", "m", "--artefact", tmp_path / name, "--card", description)
        assert reply.exit_code != 0, name
        text = " ".join(reply.output.split())
        assert kind in text and "skops (.skops" in text and "ONNX (.onnx" in text, (name, text)
    assert not (tmp_path / "volume" / "models").exists()  # nothing registered, no version reserved


class Shifted(LogisticRegression):
    """A class of the user's own: skops does not build it unless it is trusted by name."""


def test_untrusted_skops_types_are_refused_at_registration_with_their_names(tmp_path, data):
    X, y = data
    model = make_pipeline(FunctionTransformer(np.log1p), Shifted(max_iter=500)).fit(X, y)
    sio.dump(model, tmp_path / "own.skops")
    registry = ModelRegistry(LocalVolume(tmp_path / "volume"), signer=None)
    name = f"{__name__}.Shifted"
    with pytest.raises(RegistryError, match=rf"not trusted: {name}; list them under trusted_types"):
        register_model(registry, "own", tmp_path / "own.skops", DESCRIPTION)
    assert registry.names() == []
    card = register_model(registry, "own", tmp_path / "own.skops", DESCRIPTION + f"trusted_types: [{name}]\n")
    assert name in card["trusted_types"] and card["version"] == 1


def test_a_bad_description_is_reported_with_file_line_and_field(tmp_path, data, cli):
    X, y = data
    sio.dump(LogisticRegression(max_iter=500).fit(X, y), tmp_path / "m.skops")
    bad = DESCRIPTION.replace("modelkind: classification", "modelkind: clustering").replace(
        "{name: petal_width, type: float64}", "{name: petal_width, type: floaty}"
    )
    path = write(tmp_path / "bad.yaml", bad)
    reply = cli("models", "register", "m", "--artefact", tmp_path / "m.skops", "--card", path)
    assert reply.exit_code == 2
    text = reply.output
    assert f"{path}:1:12: modelkind:" in text and "'classification' or 'regression'" in text
    assert f"{path}:10:" in text and "featurelist[3].type:" in text and "'floaty' is not a pandas dtype" in text
    typo = write(tmp_path / "typo.yaml", DESCRIPTION + "modelperfrom: {}\n")
    reply = cli("models", "register", "m", "--artefact", tmp_path / "m.skops", "--card", typo)
    assert reply.exit_code == 2 and f"{typo}:11:1: modelperfrom: unknown field" in reply.output
    assert "did you mean 'modelperform'?" in reply.output
    registry = ModelRegistry(LocalVolume(tmp_path / "volume"), signer=None)
    wrong = DESCRIPTION.replace("  - {name: petal_width, type: float64}\n", "")
    with pytest.raises(ConfigError, match="differs from the columns the model was fitted on"):
        register_model(registry, "m", tmp_path / "m.skops", wrong)
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(onnx_of(LogisticRegression(max_iter=500).fit(X.to_numpy(), y), 4))
    with pytest.raises(ConfigError, match="a classifier needs its classes") as caught:
        register_model(registry, "m", onnx_file, DESCRIPTION)
    assert "inference.classes" in str(caught.value)
    classes = "inference: {classes: [setosa, versicolor, virginica]}\n"
    with pytest.raises(ConfigError, match=r"featurelist has 3 column\(s\); the model takes 4"):
        register_model(registry, "m", onnx_file, wrong + classes)
    assert registry.names() == []
