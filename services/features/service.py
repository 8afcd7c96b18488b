"""The features service: runs its config's feature steps, fitting or re-applying their statistics."""

from __future__ import annotations

from mlrm.pipeline import TransformService
from mlrm.service import register_service
from services.features.config import FeaturesConfig


@register_service
class FeaturesService(TransformService):
    name = "features"
    config_model = FeaturesConfig
