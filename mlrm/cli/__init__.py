"""The ``mlrm`` command line. Every user error ends as one line on stderr and a non-zero exit.

One module per area: :mod:`~mlrm.cli.local` (embedded runs, configs), :mod:`~mlrm.cli.registry`
(models, deployments, retention), :mod:`~mlrm.cli.distributed` (services on a shared bus),
:mod:`~mlrm.cli.volume` (what the volume holds), :mod:`~mlrm.cli.dev` (a local S3 server).
Importing them registers their commands, in the order `mlrm --help` lists them.
"""

# isort: off
from mlrm.cli import local, registry, distributed, volume, dev  # noqa: F401
from mlrm.cli.common import app

# isort: on

__all__ = ["app"]
