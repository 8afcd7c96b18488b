"""Where things are: the bus, the volume and the run store, from the environment or flags.

The same workflow files run embedded or distributed; only these settings change::

    MLRM_BUS=memory://            # or amqp://guest:guest@host:5672/ (distributed mode)
    MLRM_VOLUME=volume            # a folder, or s3://bucket (distributed mode; MLRM_S3_* in mlrm/volume/s3.py)
    MLRM_STATE=.mlrm/runs.sqlite  # the orchestrator's run records
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLRM_", extra="ignore", use_attribute_docstrings=True)

    bus: str = "memory://"
    """Message bus URL: `memory://` runs everything in one process."""
    volume: str = "volume"
    """Volume URL: a local folder (default `volume/`) or an object store."""
    state: str = ".mlrm/runs.sqlite"
    """SQLite file where the orchestrator records runs."""
    node: str | None = None
    """This machine's node label (strict deployments load only on replicas with their label)."""
    prefetch: int | None = Field(None, ge=1)
    """Messages a service replica takes from the bus at once (default: the bus's own)."""
    watch_interval: float = Field(2.0, ge=0)
    """Seconds between a predict replica's checks for re-pointed aliases and new deployments."""
    retries: int = Field(2, ge=0)
    """How many times a message whose step raised an unexpected error is redelivered before it is dead-lettered."""
