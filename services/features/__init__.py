"""The features service; importing this package registers it (its service, config kind and steps)."""

from services.features.service import FeaturesService

__all__ = ["FeaturesService"]
