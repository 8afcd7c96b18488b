"""Collector, handler and features called directly, over REST (four formats) and gRPC, with the example configs.

Real servers on free ports (the services' own :meth:`~mlrm.service.Service.api`), real clients (httpx, a
gRPC stub). The tables they answer equal what the same services make of the same rows in a batch workflow;
with ``?model=`` they equal the trained version's own inference pipeline; bad input gets its 4xx and a reason.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pandas as pd
import pytest

from mlrm.bus import Envelope, Hop
from mlrm.bus.memory import MemoryBus
from mlrm.config import load_config
from mlrm.context import StepContext
from mlrm.registry import ModelRegistry
from mlrm.service import ApiSettings, services
from mlrm.settings import Settings
from mlrm.web import tables
from mlrm.web import tables_pb2 as pb
from mlrm.web import tables_pb2_grpc as pb_grpc
from mlrm.web.servers import ApiServers
from orchestrator.embedded import Embedded
from services.predict.model import ServedModel
from tests.conftest import CONFIGS

IRIS = CONFIGS / "iris"
ENERGY = CONFIGS / "energy"
MODEL = "iris-classifier"
MEASURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
CONFIGS_OF = {
    "collector": IRIS / "collect-train.yaml",
    "handler": IRIS / "clean-train.yaml",
    "features": IRIS / "features.yaml",
}


class Api:
    """A service and its API servers, with clients."""

    def __init__(self, service, servers: ApiServers) -> None:
        self.service, self.servers = service, servers
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{servers.http_port}", timeout=30)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{servers.grpc_port}")
        self.grpc = pb_grpc.TablesStub(self.channel)

    def post(self, df: pd.DataFrame, media: str = tables.JSON, accept: str | None = None, **params) -> httpx.Response:
        headers = {"content-type": media, **({"accept": accept} if accept else {})}
        return self.http.post("/v1/process", content=tables.encode(df, media), headers=headers, params=params)

    def process(self, df: pd.DataFrame, media: str = tables.JSON, **params) -> pd.DataFrame:
        answer = self.post(df, media, **params)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith(media)
        return tables.decode(answer.content, media)

    def process_grpc(self, df: pd.DataFrame, **options) -> pd.DataFrame:
        reply = self.grpc.Process(pb.ProcessRequest(arrow=tables.to_ipc(df), **options), timeout=30)
        frame = tables.from_ipc(reply.arrow)
        assert reply.rows == len(frame)
        return frame

    def close(self) -> None:
        self.http.close()
        self.channel.close()


def start(name: str, volume, config: Path, **settings) -> Api:
    service = services.get(name)(MemoryBus(), volume, worker=f"{name}-api")
    offered = service.api(ApiSettings(config=load_config(config), **settings))
    servers = ApiServers(rest=offered.rest, grpc=offered.grpc, http_port=0, grpc_port=0, name=name).start()
    return Api(service, servers)


@pytest.fixture(scope="module")
def iris(tmp_path_factory) -> Iterator[dict]:
    """Iris trained once (version 1, alias production), and the collector, handler and features APIs."""
    tmp = tmp_path_factory.mktemp("tables-api")
    settings = Settings(volume=str(tmp / "volume"), state=str(tmp / "runs.sqlite"), retries=1)
    with Embedded(settings) as mlrm:
        assert mlrm.run(IRIS / "train.yaml", timeout=300).status == "succeeded"
        apis = {name: start(name, mlrm.volume, path, max_body=256 * 1024) for name, path in CONFIGS_OF.items()}
        try:
            yield {"volume": mlrm.volume, **apis}
        finally:
            for api in apis.values():
                api.servers.stop()
                api.close()


def raw_rows() -> pd.DataFrame:
    """Iris rows as a client has them: a few measurements missing, one row the handler's filter drops."""
    df = pd.read_csv(IRIS / "iris.csv").iloc[::7].reset_index(drop=True)
    df.loc[1, "sepal_width"] = np.nan
    df.loc[4, "petal_width"] = np.nan
    df.loc[6, "sepal_length"] = -1.0
    return df


def batch_output(name: str, volume, config: Path, df: pd.DataFrame) -> pd.DataFrame:
    """What the service makes of ``df`` as one step of a batch workflow (its bus path, fitting statistics)."""
    service = services.get(name)(MemoryBus(), volume, worker=f"{name}-batch")
    hop = Hop(name="step", service=name, config=load_config(config).model_dump(mode="json", by_alias=True),
              base_dir=str(config.parent))  # fmt: skip
    env = Envelope(id="m", run_id=f"batch-{name}", route=[hop], payload=df, context={"mode": "transform"})
    ctx = StepContext(volume=volume, run_id=env.run_id, step="step", mode="transform", base_dir=config.parent)
    out = [b.frame for b in service.process(env, service.config(env), ctx)]
    return pd.concat(out, ignore_index=True)


def same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_dtype=False)


@pytest.mark.parametrize("media", tables.MEDIA_TYPES)
def test_handler_then_features_over_rest_equal_the_batch_steps(iris, media):
    rows = raw_rows()
    cleaned = batch_output("handler", iris["volume"], CONFIGS_OF["handler"], rows)
    featured = batch_output("features", iris["volume"], CONFIGS_OF["features"], cleaned)
    assert len(cleaned) == len(rows) - 1 and not cleaned[MEASURES].isna().any().any()  # filtered, imputed

    got = iris["handler"].process(rows, media)
    same(got, cleaned)
    same(iris["features"].process(got, media), featured)


def test_handler_then_features_over_grpc_equal_the_batch_steps(iris):
    rows = raw_rows()
    cleaned = batch_output("handler", iris["volume"], CONFIGS_OF["handler"], rows)
    featured = batch_output("features", iris["volume"], CONFIGS_OF["features"], cleaned)
    same(iris["handler"].process_grpc(rows), cleaned)
    same(iris["features"].process_grpc(iris["handler"].process_grpc(rows)), featured)


def test_the_answer_comes_in_the_format_accept_asks_for(iris):
    rows = raw_rows()
    answer = iris["handler"].post(rows, tables.CSV, accept="application/vnd.apache.parquet")
    assert answer.status_code == 200 and answer.headers["content-type"] == tables.PARQUET
    same(pd.read_parquet(io.BytesIO(answer.content)), iris["handler"].process(rows, tables.CSV))
    refused = iris["handler"].post(rows, tables.CSV, accept="text/html")
    assert refused.status_code == 406 and "text/csv" in refused.json()["error"]


def test_with_a_model_the_statistics_it_stored_are_applied_as_its_own_pipeline_does(iris):
    """Rows cleaned and featured with ?model= equal the trained version's inference pipeline on the same rows."""
    rows = raw_rows().drop(index=[6]).drop(columns=["species"])  # what a prediction request carries
    registry = ModelRegistry(iris["volume"])
    ref = registry.resolve(MODEL, alias="production")
    expected = ServedModel.load(registry, ref).transform(rows)

    for version in ("production", str(ref.version)):
        handler = iris["handler"].process(rows, model=MODEL, version=version)  # no species: drop_na is curation
        same(iris["features"].process(handler, model=MODEL, version=version), expected)
    by_grpc = iris["features"].process_grpc(iris["handler"].process_grpc(rows, model=MODEL), model=MODEL)
    same(by_grpc, expected)
    # the version's pipeline keeps every row: its filter curated training data and is left out
    odd = rows.assign(sepal_length=-1.0)
    assert len(iris["handler"].process(odd, model=MODEL)) == len(rows)
    # without the model, the few rows' own statistics: not the training set's
    fitted = iris["features"].process(iris["handler"].process(rows.assign(species="?")).drop(columns=["species"]))
    assert len(fitted) == len(rows)
    assert not np.allclose(fitted[MEASURES].to_numpy(), expected[MEASURES].to_numpy())


def test_the_collector_holds_a_table_to_its_source_checks(iris):
    rows = pd.read_csv(IRIS / "iris.csv").head(5)
    as_text = rows.assign(sepal_length=rows["sepal_length"].astype(str), species=rows["species"])
    got = iris["collector"].process(as_text, tables.JSON)
    assert got["sepal_length"].tolist() == rows["sepal_length"].tolist()  # the dtypes: float forced
    same(iris["collector"].process_grpc(as_text), got)

    missing = iris["collector"].post(rows.drop(columns=["species", "petal_width"]))
    assert missing.status_code == 422
    assert set(missing.json()["detail"]["columns"]) == {"species", "petal_width"}
    bad = iris["collector"].post(rows.assign(sepal_length="long"))
    assert bad.status_code == 400 and "sepal_length" in bad.json()["error"]
    assert iris["collector"].post(rows, model=MODEL).status_code == 400  # a collector has no statistics


def test_energy_cleaning_and_features_equal_the_batch_steps(tmp_path, energy_data):
    history, _ = energy_data
    rows = tables.decode(Path(history).read_bytes(), tables.CSV)  # as collected: timestamps parsed
    rows = rows.head(200).sample(frac=1.0, random_state=0)  # out of order: the handler sorts
    with Embedded(Settings(volume=str(tmp_path / "volume"), state=str(tmp_path / "s.sqlite"))) as mlrm:
        handler = start("handler", mlrm.volume, ENERGY / "clean.yaml")
        features = start("features", mlrm.volume, ENERGY / "features.yaml")
        try:
            cleaned = batch_output("handler", mlrm.volume, ENERGY / "clean.yaml", rows)
            featured = batch_output("features", mlrm.volume, ENERGY / "features.yaml", cleaned)
            for media in (tables.CSV, tables.PARQUET):
                got = handler.process(rows, media)
                same(got, cleaned)
                same(features.process(got, tables.PARQUET), featured)
        finally:
            for api in (handler, features):
                api.servers.stop()
                api.close()


# -- bad input: a 4xx with a reason, never a 500 ---------------------------------------------------
def test_a_body_that_is_no_table_format_is_415(iris):
    answer = iris["handler"].http.post("/v1/process", content=b"a,b\n1,2\n", headers={"content-type": "text/plain"})
    assert answer.status_code == 415 and "text/csv" in answer.json()["error"]
    assert iris["handler"].http.post("/v1/process", content=b"a\n1\n").status_code == 415


@pytest.mark.parametrize(
    ("body", "media"), [(b"[{", tables.JSON), (b'{"a": 1}', tables.JSON), (b"junk", tables.PARQUET),
                        (b"junk", tables.ARROW)],
)  # fmt: skip
def test_a_table_that_does_not_decode_is_400_with_the_reason(iris, body, media):
    answer = iris["handler"].http.post("/v1/process", content=body, headers={"content-type": media})
    assert answer.status_code == 400
    assert answer.json()["error"]


def test_missing_columns_are_422_naming_them(iris):
    answer = iris["features"].post(raw_rows().drop(columns=["petal_width", "sepal_width"]))
    assert answer.status_code == 422
    assert set(answer.json()["detail"]["columns"]) == {"petal_width", "sepal_width"}
    assert "petal_width" in answer.json()["error"]
    with pytest.raises(grpc.RpcError) as info:
        iris["features"].process_grpc(raw_rows().drop(columns=["petal_width"]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "petal_width" in info.value.details()


def test_an_oversized_body_is_413(iris):
    big = pd.DataFrame({"sepal_length": np.arange(100_000, dtype=float)})
    answer = iris["handler"].post(big, tables.CSV)
    assert answer.status_code == 413 and "limit" in answer.json()["error"]


@pytest.mark.parametrize(
    "params", [{"model": "no-such-model"}, {"model": MODEL, "version": "99"}, {"model": MODEL, "version": "canary"}]
)
def test_an_unknown_model_or_version_is_404(iris, params):
    answer = iris["handler"].post(raw_rows(), **params)
    assert answer.status_code == 404, answer.text
    with pytest.raises(grpc.RpcError) as info:
        iris["handler"].process_grpc(raw_rows(), **params)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_options_that_make_no_sense_are_refused(iris):
    assert iris["handler"].post(raw_rows(), version="1").status_code == 400  # a version of no model
    assert iris["handler"].post(raw_rows(), model="Not A Name!").status_code == 422
    assert iris["handler"].post(raw_rows(), model=MODEL, step="../../etc").status_code == 400
    assert iris["handler"].post(raw_rows(), unknown="1").status_code == 400
    assert iris["handler"].http.get("/v1/process").status_code == 405
    assert iris["handler"].http.get("/nowhere").json()["error"]


def test_health_readiness_and_the_api_documents(iris):
    for api in (iris["collector"], iris["handler"], iris["features"]):
        assert api.http.get("/health/live").json() == {"live": True}
        assert api.http.get("/health/ready").json() == {"ready": True}
        spec = api.http.get("/openapi.json").json()
        assert spec["openapi"].startswith("3.") and "/v1/process" in spec["paths"]
        assert "openapi.json" in api.http.get("/docs").text
    handler_params = {p["name"] for p in iris["handler"].http.get("/openapi.json").json()["paths"]["/v1/process"][
        "post"]["parameters"]}  # fmt: skip
    assert handler_params == {"model", "version", "step"}


def test_every_endpoint_declares_its_scope(iris):
    from mlrm.web.tables_api import SCOPES

    for api in (iris["collector"], iris["handler"], iris["features"]):
        scopes = {r.path: getattr(r.endpoint, "scope", "undeclared") for r in api.servers.rest.routes
                  if getattr(r, "include_in_schema", True)}  # fmt: skip
        assert scopes == {"/health/live": None, "/health/ready": None, "/v1/process": "infer", "/token": None}
    assert SCOPES == {"/mlrm.tables.v1.Tables/Process": "infer", "/grpc.health.v1.Health/Check": None}


def test_the_standard_grpc_health_check_answers(iris):
    from mlrm.web import health_pb2, health_pb2_grpc

    for api in (iris["collector"], iris["handler"], iris["features"]):
        stub = health_pb2_grpc.HealthStub(api.channel)
        for name in ("", "mlrm.tables.v1.Tables"):
            answer = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=30)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as info:
            stub.Check(health_pb2.HealthCheckRequest(service="nothing.Here"), timeout=30)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_schemathesis_finds_no_server_error_and_no_answer_off_its_schema(iris):
    from tests.mlrm.web.fuzz import fuzz

    for name in ("handler", "collector"):
        fuzz(f"http://127.0.0.1:{iris[name].servers.http_port}", max_examples=25)
