"""The collector service; importing this package registers it (its service, config kind and steps)."""

from services.collector.service import CollectorService

__all__ = ["CollectorService"]
