"""Training jobs over REST and gRPC: submit a TrainConfig with its table, read the job's status.

    POST /v1/jobs        {"config": {TrainConfig}, "records": [...]}   or   {"key": "raw/prepared.parquet"}
                         or a table body (CSV, Arrow, Parquet, JSON records) trained with the server's --config
    GET  /v1/jobs/{id}   {"id", "status": queued|running|done|failed, "model", "version", "result", "error"}

A job trains on the table as given (already cleaned and featured): the version it registers has no
inference pipeline of its own, so it predicts on rows shaped like that table. (A workflow's training
run records its cleaning and feature steps as the version's pipeline.) Jobs run one at a time in the
background; their records live in the volume (``runs/<id>/api-job.json``), so any train replica on the
same volume answers a job's status.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal

import anyio.to_thread
import orjson
import pandas as pd
import yaml
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlrm.context import StepContext
from mlrm.errors import ConfigError, DataError, MlrmError, NotFoundError, describe
from mlrm.web import tables
from mlrm.web import tables_pb2 as pb
from mlrm.web import tables_pb2_grpc as pb_grpc
from mlrm.web.auth import requires
from mlrm.web.grpc_health import SCOPES as HEALTH_SCOPES
from mlrm.web.grpc_health import with_health
from mlrm.web.http import guarded, json_response, read_body
from mlrm.web.tables_api import error_responses, grpc_guarded
from services.train.config import TrainConfig
from services.train.trainer import train

if TYPE_CHECKING:
    import grpc

    from mlrm.volume import Volume

log = logging.getLogger(__name__)

SCOPES: dict[str, str | None] = {"/mlrm.tables.v1.Training/Submit": "submit", "/mlrm.tables.v1.Training/Status": "read",
                                 **HEALTH_SCOPES}  # fmt: skip
JOB_ID = re.compile(r"train-[0-9a-f]{16}")
SUFFIXES = {".csv": tables.CSV, ".parquet": tables.PARQUET, ".arrow": tables.ARROW, ".json": tables.JSON}


class TrainJobRequest(BaseModel):
    """A training job: the config, and the table inline (`records`) or in the volume (`key`)."""

    config: dict[str, Any] | None = None
    """A TrainConfig (default: the config the service was started with)."""
    records: list[dict[str, Any]] | None = None
    """The training rows, one object a row."""
    key: str | None = None
    """An object in the volume holding the table (.csv, .parquet, .arrow, .json records)."""


class JobStatus(BaseModel):
    id: str
    status: Literal["queued", "running", "done", "failed"]
    submitted: float
    finished: float | None = None
    model: str | None = None
    version: int | None = None
    result: dict[str, Any] | None = None
    """What training reported: model, version, metrics, aliases."""
    error: str | None = None


def record_key(job_id: str) -> str:
    return f"runs/{job_id}/api-job.json"


class TrainJobs:
    """Training jobs submitted directly, run one at a time in the background, recorded in the volume."""

    def __init__(self, volume: Volume, default: TrainConfig | None = None) -> None:
        self.volume, self.default = volume, default
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="train-job")
        self._lock = threading.Lock()

    def config(self, given: Any) -> TrainConfig:
        if given is None:
            if self.default is None:
                raise ConfigError("the job names no config and the service was started without one (--config)")
            return self.default
        if isinstance(given, str | bytes):
            try:
                given = yaml.safe_load(given)
            except yaml.YAMLError as exc:
                raise ConfigError(f"the job's config is not YAML or JSON: {exc}") from None
        try:
            return TrainConfig.model_validate(given)
        except ValidationError as exc:
            raise ConfigError(f"invalid TrainConfig: {exc}") from None

    def table(self, key: str) -> pd.DataFrame:
        media = next((m for suffix, m in SUFFIXES.items() if key.endswith(suffix)), None)
        if media is None:
            raise DataError(f"the data key {key!r} must end in one of: {', '.join(SUFFIXES)}")
        return tables.decode(self.volume.get_bytes(key), media)

    def submit(self, config: TrainConfig, df: pd.DataFrame) -> dict[str, Any]:
        if df.empty:
            raise DataError("the training table has no rows")
        job_id = f"train-{uuid.uuid4().hex[:16]}"
        record = JobStatus(id=job_id, status="queued", submitted=time.time()).model_dump(mode="json")
        self.volume.put_json(record_key(job_id), record)
        self._pool.submit(self._run, job_id, config, df, record)
        return record

    def _run(self, job_id: str, config: TrainConfig, df: pd.DataFrame, record: dict[str, Any]) -> None:
        self.volume.put_json(record_key(job_id), {**record, "status": "running"})
        ctx = StepContext(volume=self.volume, run_id=job_id, step="train", mode="train")
        lineage = {"run_id": job_id, "workflow": None, "steps": [], "source": "train API"}
        try:
            result = train(df, config, ctx, lineage, [])
            record = {**record, "status": "done", "model": result["model"], "version": result["version"],
                      "result": orjson.loads(orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY))}  # fmt: skip
        except Exception as exc:  # the job's outcome, for whoever asks; a bug is logged too
            if not isinstance(exc, MlrmError):
                log.exception("training job %s failed", job_id)
            record = {**record, "status": "failed", "error": describe(exc)}
        record["finished"] = time.time()
        self.volume.put_json(record_key(job_id), record)

    def status(self, job_id: str) -> dict[str, Any]:
        if not JOB_ID.fullmatch(job_id):
            raise NotFoundError(f"no training job {job_id[:80]!r}")
        try:
            return self.volume.get_json(record_key(job_id))
        except NotFoundError:
            raise NotFoundError(f"no training job {job_id!r}") from None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def routes(jobs: TrainJobs, *, max_body: int) -> list[Route]:
    @requires("submit")
    async def submit(request: Request) -> Response:
        media = tables.media_type_of(request.headers.get("content-type"))
        body = await read_body(request, max_body)

        def work() -> dict[str, Any]:
            if media != tables.JSON:  # a bare table: trained with the service's own config
                return jobs.submit(jobs.config(None), tables.decode(body, media))
            try:
                value = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise DataError(f"the body is not valid JSON: {exc}") from None
            if isinstance(value, list):  # JSON records: trained with the service's own config
                return jobs.submit(jobs.config(None), tables.decode(body, media))
            try:
                job = TrainJobRequest.model_validate(value)
            except ValidationError as exc:
                raise DataError(f"not a training job: {exc}") from None
            if (job.records is None) == (job.key is None):
                raise DataError("give the training table as 'records' or as a volume 'key' (exactly one)")
            config = jobs.config(job.config)
            df = jobs.table(job.key) if job.key is not None else tables.decode(orjson.dumps(job.records), tables.JSON)
            return jobs.submit(config, df)

        record = await anyio.to_thread.run_sync(work)
        return json_response(record, 202, headers={"Location": f"/v1/jobs/{record['id']}"})

    submit.__doc__ = f"""Start a training job.
        ---
        summary: Submit a training job
        description: A JSON TrainJobRequest (config, and records or a volume key), or a bare table
          (JSON records, CSV, Arrow IPC stream, Parquet) trained with the service's own config.
        requestBody:
          required: true
          content:
            application/json:
              schema: {{$ref: '#/components/schemas/TrainJobRequest'}}
            text/csv:
              schema: {{type: string}}
            application/vnd.apache.arrow.stream:
              schema: {{type: string, format: binary}}
            application/vnd.apache.parquet:
              schema: {{type: string, format: binary}}
        responses:
          202:
            description: the job is recorded and queued
            content:
              application/json:
                schema: {{$ref: '#/components/schemas/JobStatus'}}
{_indent(error_responses(400, 401, 403, 404, 413, 415, 422), 8)}
        """

    @requires("read")
    async def status(request: Request) -> Response:
        return json_response(await anyio.to_thread.run_sync(jobs.status, request.path_params["id"]))

    status.__doc__ = f"""A training job's status.
        ---
        summary: Training job status
        parameters:
          - {{name: id, in: path, required: true, schema: {{type: string}}}}
        responses:
          200:
            description: the job's record
            content:
              application/json:
                schema: {{$ref: '#/components/schemas/JobStatus'}}
{_indent(error_responses(401, 403, 404), 8)}
        """
    return [Route("/v1/jobs", guarded(submit), methods=["POST"]), Route("/v1/jobs/{id}", guarded(status))]


def _indent(text: str, n: int) -> str:
    return "\n".join((" " * n + line) if line else line for line in text.splitlines())


class TrainingServicer(pb_grpc.TrainingServicer):
    def __init__(self, jobs: TrainJobs) -> None:
        self.jobs = jobs

    @grpc_guarded
    def Submit(self, request: pb.TrainJob, context: grpc.ServicerContext) -> pb.JobStatus:
        if bool(request.arrow) == bool(request.key):
            raise DataError("give the training table as 'arrow' or as a volume 'key' (exactly one)")
        config = self.jobs.config(request.config or None)
        df = self.jobs.table(request.key) if request.key else tables.from_ipc(request.arrow)
        return _status(self.jobs.submit(config, df))

    @grpc_guarded
    def Status(self, request: pb.JobRef, context: grpc.ServicerContext) -> pb.JobStatus:
        return _status(self.jobs.status(request.id))


def _status(record: dict[str, Any]) -> pb.JobStatus:
    return pb.JobStatus(
        id=record["id"], status=record["status"], error=record.get("error") or "", model=record.get("model") or "",
        version=record.get("version") or 0, result_json=orjson.dumps(record.get("result")).decode(),
    )  # fmt: skip


def registrar(jobs: TrainJobs, ready: Callable[[], str | None]) -> Any:
    """``Training/Submit``, ``Training/Status`` and the standard health check (``grpc.health.v1``)."""
    servicer = TrainingServicer(jobs)
    return with_health(lambda server: pb_grpc.add_TrainingServicer_to_server(servicer, server), ready,
                       ["mlrm.tables.v1.Training"])  # fmt: skip
