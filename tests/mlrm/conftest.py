"""Markers for the tests under tests/mlrm (``amqp`` is also registered by bus/conftest.py: twice is harmless)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "amqp: needs a RabbitMQ broker on 127.0.0.1:5672 (guest/guest)")
