"""The handler service; importing this package registers it (its service, config kind and steps)."""

from services.handler.service import HandlerService

__all__ = ["HandlerService"]
