"""The control plane over REST, served for real (uvicorn on a free port) over an embedded mlrm."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson

from tests.orchestrator.api.conftest import slow_workflow


def wait_done(client: httpx.Client, run_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/runs/{run_id}").json()
        if run["status"] != "running":
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not end in {timeout}s")


def test_submit_by_name_then_status_and_results(client: httpx.Client) -> None:
    answer = client.post("/runs", json={"name": "iris/train"})
    assert answer.status_code == 201, answer.text
    run_id = answer.json()["run_id"]
    assert answer.headers["location"] == f"/runs/{run_id}"
    run = wait_done(client, run_id)
    assert run["status"] == "succeeded", run
    assert [s["name"] for s in run["steps"]] == ["collect", "clean", "features", "train"]
    assert all(s["status"] == "succeeded" and s["rows_in"] > 0 for s in run["steps"][1:])
    results = client.get(f"/runs/{run_id}/results").json()
    assert results["status"] == "succeeded"
    assert results["results"]["train"]["model"] == "iris-classifier"
    assert results["results"]["train"]["version"] == 1
    assert results["results"]["train"]["metrics"]["accuracy"] > 0.8
    # the registry API sees the version the run registered
    models = client.get("/models").json()
    assert models[0]["model"] == "iris-classifier" and models[0]["versions"] == [1]
    card = client.get("/models/iris-classifier", params={"alias": "production"}).json()
    assert card["version"] == 1 and card["lineage"]["run_id"] == run_id


def test_submit_yaml_body_and_overrides(client: httpx.Client, configs: Path) -> None:
    text = (configs / "iris" / "train.yaml").read_text()
    # the YAML itself; its config files are read from the server's configs folder
    body = text.replace("config: ", "config: iris/")
    answer = client.post("/runs", content=body, headers={"content-type": "application/yaml"})
    assert answer.status_code == 201, answer.text
    assert wait_done(client, answer.json()["run_id"])["status"] == "succeeded"
    # JSON with YAML text and per-step overrides: batches of 25 rows
    overrides = {"collect": {"batch_size": 25}}
    answer = client.post("/runs", json={"yaml": body, "overrides": overrides})
    assert answer.status_code == 201, answer.text
    run = wait_done(client, answer.json()["run_id"])
    assert run["steps"][0]["rows_out"] == 150 and run["steps"][0]["batches_out"] == 6


def test_list_runs_filters_and_pages(client: httpx.Client, tmp_path: Path) -> None:
    # a prediction before any model is trained: refused when submitted (its model version is pinned then)
    answer = client.post("/runs", json={"name": "iris/predict"})
    assert answer.status_code == 404 and "iris-classifier" in answer.json()["error"]
    ids = [client.post("/runs", json={"name": "iris/train"}).json()["run_id"] for _ in range(3)]
    missing = slow_workflow(tmp_path).replace(str(tmp_path / "slow.csv"), str(tmp_path / "gone.csv"))
    ids.append(client.post("/runs", json={"yaml": missing}).json()["run_id"])  # fails: no such data file
    for run_id in ids:
        wait_done(client, run_id)
    page = client.get("/runs", params={"limit": 2, "workflow": "iris-train"}).json()
    assert [r["id"] for r in page["runs"]] == [ids[2], ids[1]]
    rest = client.get("/runs", params={"limit": 2, "workflow": "iris-train", "cursor": page["next"]}).json()
    assert [r["id"] for r in rest["runs"]] == [ids[0]] and rest["next"] is None
    failed = client.get("/runs", params={"status": "failed"}).json()["runs"]
    assert [r["id"] for r in failed] == [ids[3]] and "gone.csv" in failed[0]["error"]
    assert [r["id"] for r in client.get("/runs", params={"status": "succeeded"}).json()["runs"]] == ids[2::-1]


def test_events_stream_until_the_run_ends(client: httpx.Client) -> None:
    run_id = client.post("/runs", json={"name": "iris/train"}).json()["run_id"]
    events = []
    with client.stream("GET", f"/runs/{run_id}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, orjson.loads(line[6:])))
    assert events[0][0] == "status" and events[-1][0] == "end"
    assert events[-1][1]["status"] == "succeeded"
    assert len(events) >= 3  # it saw the run change, not only its end


def test_malformed_workflow_is_422_with_file_line_and_field(client: httpx.Client) -> None:
    body = "kind: Workflow\nname: bad\nsteps:\n  - {name: collect, service: collector, config: {batch_size: -1}}\n"
    answer = client.post("/runs", content=body, headers={"content-type": "application/yaml"})
    assert answer.status_code == 422
    errors = answer.json()["detail"]["errors"]
    assert any(e["location"]["line"] == 4 and e["location"]["field"] for e in errors), errors
    assert answer.json()["error"].startswith("request body:4:")
    # the same workflow as JSON: the errors point at the lines of the JSON body
    workflow = {"kind": "Workflow", "name": "bad", "steps": [
        {"name": "collect", "service": "collector", "config": {"source": {"step": "csv", "path": "x.csv"},
                                                               "batch_size": -1}}]}  # fmt: skip
    text = orjson.dumps({"workflow": workflow}, option=orjson.OPT_INDENT_2)
    answer = client.post("/runs", content=text, headers={"content-type": "application/json"})
    assert answer.status_code == 422
    location = answer.json()["detail"]["errors"][0]["location"]
    assert location["field"] == "batch_size" and location["line"] == text.decode().splitlines().index(
        next(x for x in text.decode().splitlines() if "batch_size" in x)) + 1  # fmt: skip
    # a config file outside the configs folder is refused, not read
    escape = "kind: Workflow\nname: x\nsteps:\n  - {name: c, service: collector, config: ../../etc/passwd}\n"
    answer = client.post("/runs", content=escape, headers={"content-type": "application/yaml"})
    assert answer.status_code == 422 and "outside the server's configs folder" in answer.json()["error"]
    # nor does it read the server's environment (a secret sent on to a URL of the submitter's)
    leak = "kind: Workflow\nname: x\nsteps:\n  - {name: c, service: collector, config: {source: {step: http, " \
           "url: 'http://127.0.0.1:9/${HOME}'}}}\n"  # fmt: skip
    answer = client.post("/runs", content=leak, headers={"content-type": "application/yaml"})
    assert answer.status_code == 422 and "environment variable 'HOME' is not set" in answer.json()["error"]


def test_unknown_things_are_404_and_bad_bodies_4xx(client: httpx.Client, servers) -> None:
    for path in ("/runs/nope", "/runs/nope/results", "/runs/nope/events", "/models/nope", "/deployments/dep-00"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert answer.json()["error"]
    assert client.post("/runs/nope/cancel").status_code == 404
    assert client.post("/runs", json={"name": "no/such"}).status_code == 404
    assert client.post("/runs", content=b"{not json", headers={"content-type": "application/json"}).status_code == 400
    assert client.post("/runs", json={"name": "a", "yaml": "b"}).status_code == 422
    assert client.get("/runs", params={"limit": "many"}).status_code == 400
    assert client.get("/runs", params={"cursor": "garbage"}).status_code == 400
    big = b"x" * (servers.max_body + 1)
    answer = client.post("/runs", content=big, headers={"content-type": "application/yaml"})
    assert answer.status_code == 413 and answer.json()["error"]


def test_cancel_stops_a_long_run_mid_way(client: httpx.Client, tmp_path: Path, embedded) -> None:
    body = slow_workflow(tmp_path, rows=4000, batch=50, seconds=0.02)  # 80 batches, ~1.6 s in the handler
    run_id = client.post("/runs", content=body, headers={"content-type": "application/yaml"}).json()["run_id"]
    deadline = time.monotonic() + 30
    while client.get(f"/runs/{run_id}").json()["steps"][1]["batches_in"] < 5:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    answer = client.post(f"/runs/{run_id}/cancel")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "cancelled"
    time.sleep(1.5)  # what was under way settles, the scratch space is swept; nothing more happens
    run = client.get(f"/runs/{run_id}").json()
    assert run["status"] == "cancelled"
    assert run["steps"][1]["batches_in"] < 80  # it stopped mid-way
    assert run["steps"][2]["status"] == "cancelled" and run["steps"][2]["result"] is None
    assert client.get("/models").json() == []  # no version registered
    assert not [o.key for o in embedded.volume.list(f"runs/{run_id}/gather/")]  # no scratch data left
    assert client.post(f"/runs/{run_id}/cancel").status_code == 409  # already ended


def test_cancel_during_training_registers_no_version(client: httpx.Client, tmp_path: Path, embedded) -> None:
    body = slow_workflow(tmp_path, rows=200, batch=100, seconds=0.0, fit=1.5)
    run_id = client.post("/runs", content=body, headers={"content-type": "application/yaml"}).json()["run_id"]
    jobs = f"runs/{run_id}/leases/"
    deadline = time.monotonic() + 30
    while not any("job." in o.key for o in embedded.volume.list(jobs)):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert client.post(f"/runs/{run_id}/cancel").json()["status"] == "cancelled"
    time.sleep(2.5)  # the fit ends; the training checks before publishing and stops
    assert client.get("/models").json() == []
    assert not list(embedded.volume.list("models/"))  # not even a reserved version number
    assert client.get(f"/runs/{run_id}").json()["status"] == "cancelled"


def test_openapi_document_and_docs(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/runs", "/runs/{id}", "/runs/{id}/cancel", "/runs/{id}/events", "/models/search",
            "/deployments/{id}/decommission"} <= set(spec["paths"])  # fmt: skip
    assert "SubmitRequest" in spec["components"]["schemas"] and "ModelQuery" in spec["components"]["schemas"]
    assert "swagger" in client.get("/docs").text.lower()
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ready"}


def test_a_cancel_message_on_the_bus_cancels_too(client: httpx.Client, tmp_path: Path, embedded) -> None:
    """What `mlrm cancel RUN` sends to an orchestrator without --url."""
    from mlrm.bus import Envelope
    from orchestrator.orchestrator import SUBMIT_QUEUE

    run_id = client.post("/runs", json={"yaml": slow_workflow(tmp_path, rows=4000)}).json()["run_id"]
    embedded.bus.publish(SUBMIT_QUEUE, Envelope(id=f"{run_id}/cancel", run_id=run_id, body={"op": "cancel"}))
    deadline = time.monotonic() + 10
    while client.get(f"/runs/{run_id}").json()["status"] != "cancelled":
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_unknown_paths_and_methods_answer_json_not_plain_text(client: httpx.Client) -> None:
    for method, path, status in [("GET", "/nope", 404), ("DELETE", "/runs", 405), ("GET", "/runs/a%2Fb", 404)]:
        answer = client.request(method, path)
        assert answer.status_code == status and answer.headers["content-type"] == "application/json"
        assert path.split("/")[1] in answer.json()["error"]


def test_the_probe_paths_every_mlrm_server_answers(client: httpx.Client) -> None:
    assert client.get("/health/live").status_code == 200 and client.get("/health").status_code == 200
    assert client.get("/health/ready").status_code == 200 and client.get("/ready").status_code == 200
