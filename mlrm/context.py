"""What a step may use while it runs: injected, never constructed by the step itself."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mlrm.errors import ConfigError, NotFoundError
from mlrm.registry import ModelRef, ModelRegistry
from mlrm.volume import Volume

__all__ = ["Mode", "ModelRef", "StepContext"]

Mode = Literal["train", "predict", "transform"]


@dataclass
class StepContext:
    """Per-message context handed to steps.

    ``mode`` says whether learned statistics are fitted on this run's data
    (``train``/``transform``) or loaded from the pinned model (``predict``).
    """

    volume: Volume
    run_id: str
    step: str
    mode: Mode = "transform"
    model: ModelRef | None = None
    base_dir: Path = field(default_factory=Path.cwd)
    extra: dict[str, Any] = field(default_factory=dict)
    # Whether the run was cancelled (asked of the volume now): work that publishes asks right before.
    cancelled: Callable[[], bool] = field(default=lambda: False, repr=False)

    @property
    def fitting(self) -> bool:
        return self.mode != "predict"

    def resolve_path(self, path: str) -> Path:
        """Paths in configs are relative to the config file's folder, like docker-compose."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    # -- learned statistics ------------------------------------------------------------
    def state_key(self, key: str) -> str:
        if self.fitting:
            return f"runs/{self.run_id}/state/{key}.json"
        if self.model is None:
            raise ConfigError(f"step {key!r} needs statistics learned at training time, but this run names no model")
        return f"{self.model.prefix}state/{key}.json"

    def save_state(self, key: str, record: dict[str, Any]) -> None:
        self.volume.put_json(self.state_key(key), record)

    def load_state(self, key: str) -> dict[str, Any]:
        """Statistics of a fitting run, or of the pinned model version (sha256 verified)."""
        if self.fitting:
            return self.volume.get_json(self.state_key(key))
        self.state_key(key)  # a clear error when no model is pinned
        assert self.model is not None
        registry = ModelRegistry(self.volume)
        card = registry.verified_card(self.model)  # a missing version is reported as such, not as missing statistics
        try:
            return json.loads(registry.read_verified(self.model, f"state/{key}.json", card))
        except NotFoundError:
            raise ConfigError(
                f"model {self.model.name!r} version {self.model.version} has no statistics for step {key!r}; "
                "predict with the same step configs the model was trained with"
            ) from None
