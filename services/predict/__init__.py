"""The predict service; importing this package registers it (its service, config kind and steps)."""

from services.predict.service import PredictService

__all__ = ["PredictService"]
