"""`mlrm run`'s live display: lines steps log to `mlrm.progress` (a Keras training's epochs) are shown above it."""

from __future__ import annotations

import io
import logging

from rich.console import Console
from rich.live import Live

from cli.local import _progress_lines


def test_progress_lines_print_above_the_live_table_once_and_only_while_it_runs():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100)
    root = io.StringIO()
    handler = logging.StreamHandler(root)
    logging.getLogger().addHandler(handler)
    try:
        with Live(console=console, transient=True) as live, _progress_lines(live):
            logging.getLogger("mlrm.progress").info("epoch %d/%d: loss %.3f", 1, 8, 0.5)
        logging.getLogger("mlrm.progress").info("epoch 2/8: after the run")
    finally:
        logging.getLogger().removeHandler(handler)
    assert "epoch 1/8: loss 0.500" in buffer.getvalue()
    assert "epoch 1/8" not in root.getvalue()  # not printed a second time by the root logger's handler
    assert "after the run" not in buffer.getvalue()
    assert logging.getLogger("mlrm.progress").propagate
