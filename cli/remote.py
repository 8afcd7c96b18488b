"""`mlrm submit`, `status` and `runs` against the control plane's REST API (``--url``), with httpx.

A workflow file given to ``submit --url`` travels with its configs inlined (the server reads no file
of the client's); a name that is not a local file is a workflow under the server's configs folder.
Data files the configs name must be where the server's services can read them (or in the volume).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from rich.live import Live

from cli import common
from mlrm.errors import ConfigError, ConfigErrors, Location, MlrmError, NotFoundError, RefusedError
from orchestrator.store import RunRecord


def credentials() -> dict[str, str]:
    """The caller's credential for a control plane with authentication: ``MLRM_TOKEN`` (a bearer token,
    e.g. from `mlrm auth token` or POST /token) or ``MLRM_API_KEY`` (`mlrm keys create`)."""
    token, key = os.environ.get("MLRM_TOKEN", "").strip(), os.environ.get("MLRM_API_KEY", "").strip()
    if token:
        return {"Authorization": f"Bearer {token}"}
    return {"X-API-Key": key} if key else {}


class Remote:
    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=timeout, headers=credentials())

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            answer = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise MlrmError(f"cannot reach the control plane at {self.url}: {exc}") from None
        if answer.is_success:
            return answer.json()
        raise refusal(answer)

    def events(self, run_id: str, timeout: float | None) -> Any:
        """The run's status at every change (server-sent events), until it ends or ``timeout`` passes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            with self.http.stream("GET", f"/runs/{run_id}/events", timeout=httpx.Timeout(30, read=60)) as stream:
                if not stream.is_success:
                    stream.read()
                    raise refusal(stream)
                for line in stream.iter_lines():
                    if line.startswith("data: "):
                        yield record(orjson.loads(line[6:]))
                    if deadline is not None and time.monotonic() > deadline:
                        return
        except httpx.HTTPError as exc:
            raise MlrmError(f"lost the event stream of run {run_id} from {self.url}: {exc}") from None


def refusal(answer: httpx.Response) -> MlrmError:
    """The server's error, as the error it was (a config error keeps its file, line and field)."""
    try:
        body = answer.json()
        message, detail = str(body.get("error") or answer.reason_phrase), body.get("detail") or {}
    except Exception:
        message, detail = f"{answer.status_code} {answer.reason_phrase}", {}
    if answer.status_code == 422:
        errors = [ConfigError(e.get("reason", e.get("message", "")), Location(**e["location"]) if e.get("location")
                  else None) for e in detail.get("errors", [])]  # fmt: skip
        return ConfigErrors(errors) if errors else ConfigError(message)
    if answer.status_code == 404:
        return NotFoundError(message)
    if answer.status_code == 409:
        return RefusedError(message)
    return MlrmError(f"{message} ({answer.status_code} from {answer.url})")


def record(status: dict[str, Any]) -> RunRecord:
    data = {k: v for k, v in status.items() if k != "seconds"}
    data["steps"] = [{k: v for k, v in s.items() if k != "seconds"} for s in data.get("steps", [])]
    return RunRecord.from_dict(data)


def workflow_body(workflow: str) -> dict[str, Any]:
    """A local workflow file, compiled here (every error at once, with its file and line), its configs inlined;
    otherwise the name of a workflow under the server's configs folder."""
    path = Path(workflow)
    if not path.is_file():
        return {"name": workflow}
    from orchestrator.compile import compile_workflow

    compiled = compile_workflow(path)
    steps = [{"name": h.name, "service": h.service,
              "config": absolute({k: v for k, v in h.config.items() if k != "kind"}, Path(h.base_dir))}
             for h in compiled.route]  # fmt: skip
    return {"workflow": {"kind": "Workflow", "name": compiled.name, "steps": steps}}


def absolute(config: Any, base: Path) -> Any:
    """Every relative file ``path:`` of a config made absolute (it was relative to the config's folder)."""
    if isinstance(config, dict):
        return {k: str(base / v) if k == "path" and isinstance(v, str) and not Path(v).expanduser().is_absolute()
                else absolute(v, base) for k, v in config.items()}  # fmt: skip
    if isinstance(config, list):
        return [absolute(v, base) for v in config]
    return config


def follow(remote: Remote, run_id: str, timeout: float | None) -> None:
    last = None
    with Live(console=common.out, refresh_per_second=8, transient=True) as live:
        for last in remote.events(run_id, timeout):
            live.update(common.steps_table(last))
    if last is None:
        last = record(remote.call("GET", f"/runs/{run_id}"))
    common.report_end(last, timeout)


def submit(url: str, workflow: str, follow_run: bool, timeout: float | None) -> None:
    remote = Remote(url)
    try:
        run_id = remote.call("POST", "/runs", json=workflow_body(workflow))["run_id"]
        common.err.print(f"submitted run {run_id} to {remote.url}", highlight=False)
        if follow_run:
            follow(remote, run_id, timeout)
        else:
            common.out.print(run_id, highlight=False)
    finally:
        remote.close()


def status(url: str, run_id: str, follow_run: bool) -> None:
    remote = Remote(url)
    try:
        if follow_run:
            follow(remote, run_id, None)
            return
        run = record(remote.call("GET", f"/runs/{run_id}"))
        common.print_run(run)
        if run.error:
            common.print_error(run.error)
    finally:
        remote.close()


def runs(url: str, limit: int, as_json: bool, status_filter: str | None = None) -> None:
    remote = Remote(url)
    try:
        params: dict[str, Any] = {"limit": max(1, min(limit, 1000))}
        if status_filter:
            params["status"] = status_filter
        listed = remote.call("GET", "/runs", params=params)["runs"]
    finally:
        remote.close()
    if as_json:
        common.print_json(listed)
        return
    rows = []
    for r in listed:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["created"]))
        seconds = f"{r['seconds']:.2f}" if r.get("seconds") is not None else ""
        rows.append((r["id"], r["workflow"], r["mode"], r["status"], started, seconds, (r.get("error") or "")[:80]))
    common.print_table(("run", "workflow", "mode", "status", "started", "seconds", "error"), rows, ids={"run"})
