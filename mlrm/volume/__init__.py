"""Volumes chosen by URL: a path or ``file://`` for a local folder, ``s3://`` for an object store."""

from __future__ import annotations

from mlrm.errors import ConfigError
from mlrm.volume.base import RESERVED_PREFIXES, ObjectInfo, Volume, check_key, check_output_key

__all__ = ["RESERVED_PREFIXES", "ObjectInfo", "Volume", "check_key", "check_output_key", "open_volume"]


def open_volume(url: str) -> Volume:
    """Open the volume a URL names: ``volume``, ``/abs/path``, ``file:///abs/path`` or ``s3://bucket[/prefix]``."""
    scheme = url.split("://", 1)[0] if "://" in url else "file"
    if scheme == "file":
        from mlrm.volume.local import LocalVolume

        return LocalVolume(url.removeprefix("file://"))
    if scheme == "s3":
        from mlrm.volume.s3 import S3Volume

        return S3Volume(url)
    raise ConfigError(
        f"unsupported volume URL scheme {scheme!r}; use a folder path, file:///path, s3://bucket or s3://bucket/prefix"
    )
