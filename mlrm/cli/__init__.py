"""The ``mlrm`` command line. Every user error ends as one line on stderr and a non-zero exit.

One module per area: :mod:`~mlrm.cli.local` (embedded runs, configs), :mod:`~mlrm.cli.registry`
(models, deployments, retention), :mod:`~mlrm.cli.distributed` (services on a shared bus).
Importing them registers their commands, in the order `mlrm --help` lists them.
"""

# isort: off
from mlrm.cli import local, registry, distributed  # noqa: F401
from mlrm.cli.common import app

# isort: on

__all__ = ["app"]
