"""The train service; importing this package registers it (its service, config kind and steps)."""

from services.train.service import TrainService

__all__ = ["TrainService"]
