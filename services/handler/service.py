"""The handler service: runs its config's cleaning steps over each batch."""

from __future__ import annotations

from mlrm.pipeline import TransformService
from services.handler.config import HandlerConfig


class HandlerService(TransformService):
    name = "handler"
    config_model = HandlerConfig
