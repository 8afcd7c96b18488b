"""The ``mlrm`` command line. Every user error ends as one line on stderr and a non-zero exit.

One module per area: :mod:`~cli.local` (embedded runs, configs), :mod:`~cli.registry`
(models, deployments, retention), :mod:`~cli.distributed` (services on a shared bus), :mod:`~cli.auth`
(users, API keys, signing keys), :mod:`~cli.volume` (what the volume holds), :mod:`~cli.dev` (a local S3 server),
:mod:`~cli.monitor` (drift checks and feedback), :mod:`~cli.loop` (retraining and promotion).
Importing them registers their commands, in the order `mlrm --help` lists them.
"""

# isort: off
from cli import local, registry, distributed, volume, auth, dev, monitor, loop  # noqa: F401
from cli.common import app

# isort: on

__all__ = ["app"]
