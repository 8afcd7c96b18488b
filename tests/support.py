"""Helpers shared by the tests that talk to the real RabbitMQ broker."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable

import pika

HOST, PORT = "127.0.0.1", 5672
BROKER_URL = f"amqp://guest:guest@{HOST}:{PORT}/%2F"
HAS_RABBITMQCTL = shutil.which("rabbitmqctl") is not None


def broker_up() -> bool:
    """A RabbitMQ broker accepts connections on 127.0.0.1:5672."""
    try:
        socket.create_connection((HOST, PORT), timeout=1).close()
    except OSError:
        return False
    return True


def rabbitmqctl(*args: str) -> str:
    return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=True).stdout


def consumers(url: str, queue: str) -> int:
    """Consumers on a queue (0 if it does not exist yet)."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return conn.channel().queue_declare(queue, passive=True).method.consumer_count
    except pika.exceptions.ChannelClosedByBroker:  # 404: not declared yet
        return 0
    finally:
        if conn.is_open:
            conn.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def dead_pid() -> int:
    """The pid of a process that has exited (a replica or a `mlrm run` that was SIGKILLed)."""
    import sys

    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


SLOW_TRAIN = """\
kind: Workflow
name: slow-train
steps:
  - {{name: collect, service: collector, config: {{source: {{step: csv, path: {iris}}}, batch_size: 50}}}}
  - name: train
    service: train
    config:
      model: {{name: slow, kind: classification, estimator: "faulty_steps:SlowClassifier",
              hyperparameters: {{seconds: 600}}}}
      target: species
"""


def killed_embedded_training(tmp_path, iris_csv) -> str:
    """Start `mlrm run` on a training that takes 10 minutes, SIGKILL it mid-training; returns its run id.

    Its volume is ``tmp_path/volume``, its run store ``tmp_path/runs.sqlite``.
    """
    import json
    import os
    import signal
    import sys
    from pathlib import Path

    workflow = Path(tmp_path) / "slow-train.yaml"
    workflow.write_text(SLOW_TRAIN.format(iris=iris_csv))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent / "distributed"),
                                                        os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    cmd = [sys.executable, "-m", "mlrm", "run", str(workflow), "-q",
           "--volume", str(tmp_path / "volume"), "--state", str(tmp_path / "runs.sqlite")]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    runs = Path(tmp_path) / "volume" / "runs"

    def training() -> list[Path]:  # the job record, once training has started
        found = [p for p in runs.glob("*/**/*.json") if "job" in str(p.relative_to(runs))] if runs.is_dir() else []
        return [p for p in found if json.loads(p.read_text()).get("status") == "running"]

    try:
        wait_for(lambda: bool(training()) or proc.poll() is not None, timeout=120, what="the training job")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return training()[0].relative_to(runs).parts[0]
