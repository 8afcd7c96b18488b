"""``python -m cli`` is the same as the ``mlrm`` command."""

from cli import app

app(prog_name="mlrm")
