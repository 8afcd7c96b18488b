"""The handler service: runs its config's cleaning steps over each batch."""

from __future__ import annotations

from mlrm.pipeline import TransformService
from mlrm.service import register_service
from services.handler.config import HandlerConfig


@register_service
class HandlerService(TransformService):
    name = "handler"
    config_model = HandlerConfig
