"""``python -m mlrm`` is the same as the ``mlrm`` command."""

from mlrm.cli import app

app(prog_name="mlrm")
