"""Volumes chosen by URL: a path or ``file://`` for a local folder, ``s3://`` for an object store."""

from __future__ import annotations

from mlrm.errors import ConfigError
from mlrm.volume.base import ObjectInfo, Volume, check_key

__all__ = ["ObjectInfo", "Volume", "check_key", "open_volume"]


def open_volume(url: str) -> Volume:
    """Open the volume a URL names: ``volume``, ``/abs/path``, ``file:///abs/path`` or ``s3://bucket``."""
    scheme = url.split("://", 1)[0] if "://" in url else "file"
    if scheme == "file":
        from mlrm.volume.local import LocalVolume

        return LocalVolume(url.removeprefix("file://"))
    raise ConfigError(f"unsupported volume URL {url!r}; use a folder path or file:///path")
