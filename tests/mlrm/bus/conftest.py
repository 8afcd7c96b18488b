"""Bus tests: the ``amqp`` marker selects (or, with ``-m "not amqp"``, skips) the ones needing RabbitMQ."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "amqp: needs a RabbitMQ broker on 127.0.0.1:5672 (guest/guest)")
