"""What the control plane does, whatever the protocol: submit, list, show, cancel, results, watch."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from mlrm.errors import ConfigError, DataError, NotFoundError
from mlrm.yamlio import Document, loads_yaml
from orchestrator.api.models import Results, RunPage, RunStatus, RunSummary, SubmitRequest
from orchestrator.compile import compile_document
from orchestrator.orchestrator import Orchestrator
from orchestrator.store import RunRecord

BODY = "request body"
NO_ENV: dict[str, str] = {}  # a submitted workflow never reads the server's environment (${VAR}: its secrets)


def load_body(text: str) -> Document:
    """A workflow sent over the API, as YAML: its ``${VAR}`` references see no environment variable."""
    return loads_yaml(text, BODY, env=NO_ENV)


def run_status(record: RunRecord) -> RunStatus:
    data = record.to_dict()
    data.pop("owner", None)
    data["seconds"] = record.seconds
    data["steps"] = [{**vars(s), "seconds": s.seconds} for s in record.steps]
    return RunStatus.model_validate(data)


def summary(record: RunRecord) -> RunSummary:
    return RunSummary(
        id=record.id, workflow=record.workflow, mode=record.mode, status=record.status, created=record.created,
        finished=record.finished, seconds=record.seconds, error=record.error,
    )  # fmt: skip


def encode_cursor(record: RunRecord) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([record.created, record.id])).decode()


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        created, run_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode() + b"=" * (-len(cursor) % 4)))
        return float(created), str(run_id)
    except Exception:
        raise DataError(f"cursor {cursor[:40]!r} is not one this server gave") from None


class ControlPlane:
    """Workflows over an :class:`Orchestrator` in this process; configs named by submissions come from
    ``configs`` (a workflow file by name, config files a workflow refers to)."""

    def __init__(self, orchestrator: Orchestrator, configs: str | Path = "configs") -> None:
        self.orchestrator = orchestrator
        self.store = orchestrator.store
        self.volume = orchestrator.volume
        self.configs = Path(configs).resolve()

    # -- submit ---------------------------------------------------------------------------
    def submit(self, request: SubmitRequest, body: str | None = None) -> str:
        """Compile (422 with file, line and field) and start a run; returns its id.

        ``body``: the JSON text the request came as, so a workflow's errors point at its lines."""
        if request.name is not None:
            return self.submit_document(*self._named(request.name), request.overrides)
        if request.yaml is not None:
            return self.submit_document(load_body(request.yaml), self.configs, request.overrides)
        return self.submit_document(self._inline(request.workflow or {}, body), self.configs, request.overrides)

    def submit_document(self, doc: Document, base: Path, overrides: dict[str, dict[str, Any]] | None = None,
                        path: str = "") -> str:  # fmt: skip
        compiled = compile_document(doc, base, overrides, path=path or doc.file, within=self.configs)
        return self.orchestrator.submit(compiled)

    def _named(self, name: str) -> tuple[Document, Path]:
        from mlrm.yamlio import load_yaml

        candidates = [self.configs / name] + ([self.configs / f"{name}.yaml"] if not name.endswith(".yaml") else [])
        for file in candidates:
            file = file.resolve()
            if file.is_relative_to(self.configs) and file.is_file():
                return load_yaml(file), file.parent
        raise NotFoundError(f"no workflow '{name}' under the server's configs folder")

    @staticmethod
    def _inline(workflow: dict[str, Any], body: str | None) -> Document:
        doc = Document(workflow, BODY, {})
        if body is not None:  # JSON is YAML: the body's marks give the workflow's lines
            try:
                whole = load_body(body)
            except ConfigError:
                return doc
            prefix = ("workflow",)
            doc.marks = {k[1:]: v for k, v in whole.marks.items() if k[:1] == prefix}
        return doc

    # -- runs -----------------------------------------------------------------------------
    def runs(self, *, status: str | None = None, workflow: str | None = None, limit: int = 20,
             cursor: str | None = None) -> RunPage:  # fmt: skip
        after = decode_cursor(cursor) if cursor else None
        records = self.store.page(status=status, workflow=workflow, limit=limit + 1, after=after)
        more = len(records) > limit
        records = records[:limit]
        cursor = encode_cursor(records[-1]) if more and records else None
        return RunPage(runs=[summary(r) for r in records], next=cursor)

    def run(self, run_id: str) -> RunStatus:
        return run_status(self.store.get(run_id))

    def cancel(self, run_id: str) -> RunStatus:
        return run_status(self.orchestrator.cancel(run_id, "cancelled over the API"))

    def results(self, run_id: str) -> Results:
        record = self.store.get(run_id)
        return Results(id=record.id, status=record.status, results={s.name: s.result for s in record.steps})

    def watch(self, run_id: str, *, poll: float = 0.1, timeout: float | None = None,
              stopped: Any = None) -> Iterator[RunStatus]:  # fmt: skip
        """The run's status now and at every change, until it ends (or ``timeout``, or ``stopped()``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last = None
        while True:
            status = self.run(run_id)
            if status != last:
                last = status
                yield status
            if status.status in ("succeeded", "failed", "cancelled", "abandoned"):
                return
            if (deadline is not None and time.monotonic() > deadline) or (stopped is not None and stopped()):
                return
            time.sleep(poll)
