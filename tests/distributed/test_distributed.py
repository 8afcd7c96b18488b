"""Distributed mode on the real broker: same results as embedded, scaling out, surviving faults."""

from __future__ import annotations

import os
import signal
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mlrm.bus import dead_letter_queue, open_bus, service_queue
from mlrm.settings import Settings
from orchestrator.embedded import Embedded
from tests.conftest import CONFIGS
from tests.support import rabbitmqctl

IRIS = CONFIGS / "iris"


def output(volume, record) -> pd.DataFrame:
    key = record.result("predict")["output"].removeprefix("volume:")
    with volume.open_read(key) as f:
        return pd.read_csv(f)


def test_iris_gives_identical_results_embedded_and_distributed(cluster_factory, tmp_path):
    with Embedded(Settings(volume=str(tmp_path / "embedded"), state=str(tmp_path / "e.sqlite"))) as mlrm:
        e_train = mlrm.run(IRIS / "train.yaml", timeout=120)
        e_pred = mlrm.run(IRIS / "predict.yaml", timeout=120)
        e_out = output(mlrm.volume, e_pred)
    cluster = cluster_factory(handler=2, features=2, predict=2)
    d_train = cluster.run(IRIS / "train.yaml")
    assert d_train.status == "succeeded", d_train.error
    d_pred = cluster.run(IRIS / "predict.yaml")
    assert d_pred.status == "succeeded", d_pred.error

    assert d_train.result("train")["metrics"] == e_train.result("train")["metrics"]
    assert d_train.result("train")["version"] == 1 and d_train.result("train")["aliases"] == ["production"]
    pd.testing.assert_frame_equal(output(cluster.volume, d_pred), e_out)


def test_energy_gives_identical_results_embedded_and_distributed(cluster_factory, tmp_path, energy_data, monkeypatch):
    monkeypatch.setenv("ENERGY_DATA", str(energy_data[0]))
    monkeypatch.setenv("ENERGY_INPUT", str(energy_data[1]))
    energy = CONFIGS / "energy"
    with Embedded(Settings(volume=str(tmp_path / "embedded"), state=str(tmp_path / "e.sqlite"))) as mlrm:
        e_train = mlrm.run(energy / "train.yaml", timeout=300)
        e_out = output(mlrm.volume, mlrm.run(energy / "predict.yaml", timeout=120))
    cluster = cluster_factory(handler=2, features=2)
    d_train = cluster.run(energy / "train.yaml", timeout=300)
    assert d_train.status == "succeeded", d_train.error
    d_pred = cluster.run(energy / "predict.yaml")
    assert d_pred.status == "succeeded", d_pred.error
    assert d_train.result("train")["metrics"] == e_train.result("train")["metrics"]
    pd.testing.assert_frame_equal(output(cluster.volume, d_pred), e_out)  # time order restored


def test_distributed_on_an_s3_volume(cluster_factory, s3_bucket):
    """Every process shares a real S3 server (SeaweedFS) as the volume; same configs."""
    cluster = cluster_factory(volume=f"s3://{s3_bucket}", handler=2, predict=2)
    trained = cluster.run(IRIS / "train.yaml")
    assert trained.status == "succeeded", trained.error
    run = cluster.run(IRIS / "predict.yaml")
    assert run.status == "succeeded", run.error
    assert len(output(cluster.volume, run)) == 30


def workflow(tmp_path: Path, rows: int, batch: int, handler_steps: str, model: bool = True) -> Path:
    """collector -> handler -> features -> predict over `rows` generated flowers, with an id per row."""
    rng = np.random.default_rng(0)
    base = pd.read_csv(IRIS / "iris.csv").drop(columns="species")
    data = base.sample(rows, replace=True, random_state=1).reset_index(drop=True)
    data += rng.normal(0, 0.05, data.shape)
    data.insert(0, "id", range(rows))
    data.to_csv(tmp_path / "rows.csv", index=False)
    path = tmp_path / "wf.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        kind: Workflow
        name: many-rows
        steps:
          - name: collect
            service: collector
            config: {{source: {{step: csv, path: rows.csv}}, batch_size: {batch}}}
          - name: clean
            service: handler
            config: {{steps: {handler_steps}}}
          - name: features
            service: features
            config: {IRIS / "features.yaml"}
          - name: predict
            service: predict
            config: {{model: {{name: iris-classifier, alias: production}}, keep: [id],
                      sink: {{step: csv, key: "predictions/{{run_id}}.csv"}}}}
        """)
    )
    return path


def wait_for_batches(cluster, run_id: str, batches: int, timeout: float = 60) -> None:
    """Wait until the run's handler step has processed `batches` batches: the middle of the run."""
    deadline = time.monotonic() + timeout
    while (s := cluster.status(run_id)) is None or s.steps[1].batches_in < batches:
        assert time.monotonic() < deadline, f"the run did not reach {batches} batches"
        time.sleep(0.05)


def assert_one_prediction_per_row(cluster, record, rows: int) -> None:
    assert record.status == "succeeded", record.error
    out = output(cluster.volume, record)
    assert len(out) == rows
    assert out["id"].tolist() == list(range(rows))  # each row exactly once, in input order


def test_replicas_share_the_work(cluster_factory, tmp_path):
    cluster = cluster_factory(handler=3)
    assert cluster.run(IRIS / "train.yaml").status == "succeeded"
    record = cluster.run(workflow(tmp_path, 3_000, 100, '[{step: "faulty_steps:Slow", seconds: 0.02}]'))
    assert_one_prediction_per_row(cluster, record, 3_000)
    clean = record.steps[1]
    assert len(clean.workers) == 3 and all(n > 0 for n in clean.workers.values()), clean.workers


def test_sigkill_of_a_worker_mid_run_loses_and_duplicates_nothing(cluster_factory, tmp_path):
    cluster = cluster_factory(handler=2, predict=2)
    assert cluster.run(IRIS / "train.yaml").status == "succeeded"
    run_id = cluster.submit(workflow(tmp_path, 10_000, 100, '[{step: "faulty_steps:Slow", seconds: 0.03}]'))
    wait_for_batches(cluster, run_id, 20)
    os.kill(cluster.pid("handler-0"), signal.SIGKILL)  # mid-batch, with unacked messages in hand
    os.kill(cluster.pid("predict-1"), signal.SIGKILL)
    assert_one_prediction_per_row(cluster, cluster.wait(run_id, 180), 10_000)


def test_dropped_connections_mid_run_lose_nothing(cluster_factory, tmp_path):
    cluster = cluster_factory(handler=2)
    assert cluster.run(IRIS / "train.yaml").status == "succeeded"
    run_id = cluster.submit(workflow(tmp_path, 5_000, 100, '[{step: "faulty_steps:Slow", seconds: 0.03}]'))
    wait_for_batches(cluster, run_id, 10)
    rabbitmqctl("close_all_connections", "--vhost", cluster.vhost, "test: network blip")
    assert_one_prediction_per_row(cluster, cluster.wait(run_id, 180), 5_000)


def test_poison_message_is_dead_lettered_and_other_runs_are_unaffected(cluster_factory, tmp_path):
    cluster = cluster_factory()
    assert cluster.run(IRIS / "train.yaml").status == "succeeded"
    (tmp_path / "bad").mkdir()
    (tmp_path / "good").mkdir()
    bad = cluster.submit(workflow(tmp_path / "bad", 200, 100, '[{step: "faulty_steps:Poison"}]'))
    good = cluster.submit(workflow(tmp_path / "good", 200, 100, "[{step: drop_na}]"))
    bad_record, good_record = cluster.wait(bad), cluster.wait(good)
    assert bad_record.status == "failed"
    assert "step 'clean' (handler): RuntimeError: poison pill" in bad_record.error
    assert_one_prediction_per_row(cluster, good_record, 200)
    bus = open_bus(cluster.url)
    try:
        dead = bus.peek(dead_letter_queue(service_queue("handler")))
    finally:
        bus.close()
    assert {d.run_id for d in dead} == {bad}
    assert all(d.body["attempts"] == 2 and "poison pill" in d.body["error"] for d in dead)  # MLRM_RETRIES=1


def test_orchestrator_restart_mid_run(cluster_factory, tmp_path):
    cluster = cluster_factory()
    assert cluster.run(IRIS / "train.yaml").status == "succeeded"
    run_id = cluster.submit(workflow(tmp_path, 3_000, 100, '[{step: "faulty_steps:Slow", seconds: 0.03}]'))
    wait_for_batches(cluster, run_id, 5)
    os.kill(cluster.pid("orchestrator"), signal.SIGKILL)  # the supervisor restarts it
    record = cluster.wait(run_id, 180)
    assert_one_prediction_per_row(cluster, record, 3_000)
    assert [s.status for s in record.steps] == ["succeeded"] * 4
    assert record.steps[1].batches_in == 30 and record.steps[3].rows_out == 3_000


def test_cli_submit_and_status(cluster_factory, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from cli import app

    cluster = cluster_factory()
    monkeypatch.setenv("MLRM_BUS", cluster.url)
    monkeypatch.setenv("MLRM_VOLUME", str(cluster.volume.root))
    runner = CliRunner()
    result = runner.invoke(app, ["submit", str(IRIS / "train.yaml"), "--timeout", "120"])
    assert result.exit_code == 0, result.output
    assert "iris-classifier version 1" in result.stdout
    run_id = result.stderr.split("submitted run ")[1].split()[0]
    shown = runner.invoke(app, ["status", run_id])
    assert shown.exit_code == 0 and "succeeded" in shown.stdout
    listed = runner.invoke(app, ["dlq", "list"])
    assert listed.exit_code == 0


def test_submit_needs_a_shared_bus(monkeypatch):
    from typer.testing import CliRunner

    from cli import app

    monkeypatch.setenv("MLRM_BUS", "memory://")
    result = CliRunner().invoke(app, ["submit", str(IRIS / "train.yaml")])
    assert result.exit_code != 0 and "needs a shared bus" in result.stderr


def test_dlq_replay_reopens_the_run_and_completes_it(cluster_factory, tmp_path, monkeypatch):
    from rich.console import Console
    from typer.testing import CliRunner

    import cli.common as cli_common
    from cli import app

    cluster = cluster_factory()
    assert cluster.run(IRIS / "train.yaml").status == "succeeded"
    fixed = tmp_path / "fixed"
    step = f'[{{step: "faulty_steps:FailsUntilFixed", fixed: "{fixed}"}}]'
    run_id = cluster.submit(workflow(tmp_path, 300, 100, step))
    assert cluster.wait(run_id).status == "failed"
    monkeypatch.setenv("MLRM_BUS", cluster.url)
    monkeypatch.setattr(cli_common, "out", Console(width=250))
    runner = CliRunner()
    listed = runner.invoke(app, ["dlq", "list", "handler"])
    assert listed.exit_code == 0 and run_id[:15] in listed.stdout
    fixed.write_text("the bug is fixed")
    replayed = runner.invoke(app, ["dlq", "replay", "handler", "--run", run_id])
    assert replayed.exit_code == 0 and "replayed" in replayed.stdout
    deadline = time.monotonic() + 60
    while (record := cluster.status(run_id)).status != "succeeded":
        assert time.monotonic() < deadline, record
        time.sleep(0.1)
    assert_one_prediction_per_row(cluster, record, 300)


def test_mlrm_up_starts_everything_and_ctrl_c_stops_everything(vhost, tmp_path):
    import subprocess
    import sys

    from tests.support import consumers

    url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    spec = tmp_path / "deployment.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
        kind: LocalDeployment
        bus: {url}
        volume: {tmp_path / "volume"}
        state: {tmp_path / "runs.sqlite"}
        services: {{handler: {{replicas: 2}}}}
        """)
    )
    proc = subprocess.Popen([sys.executable, "-m", "mlrm", "up", str(spec)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while consumers(url, "mlrm.handler") < 2 or consumers(url, "mlrm.predict") < 1:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "stopped" in stderr
    assert consumers(url, "mlrm.handler") == 0 and consumers(url, "mlrm.orchestrator") == 0


def test_a_train_replica_killed_mid_training_has_its_job_adopted_and_the_run_says_so(cluster_factory, tmp_path):
    from tests.support import SLOW_TRAIN, wait_for

    cluster = cluster_factory(train=2)
    slow = tmp_path / "slow-train.yaml"
    slow.write_text(SLOW_TRAIN.format(iris=IRIS / "iris.csv").replace("seconds: 600", "seconds: 4"))
    run_id = cluster.submit(slow)
    job = f"runs/{run_id}/leases/job.train.json"
    wait_for(lambda: cluster.volume.exists(job), 120, "the training job")
    holder = cluster.volume.get_json(job)["holder"]["name"]
    os.kill(cluster.pid(holder), signal.SIGKILL)  # mid-training
    record = cluster.wait(run_id, 180)
    assert record.status == "succeeded", record.error
    adopted = record.result("train")["adopted"]
    assert len(adopted) == 1 and adopted[0]["from"].startswith(f"{holder} (pid")
    assert cluster.volume.get_json(job)["taken_over"] == adopted
