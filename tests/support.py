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
