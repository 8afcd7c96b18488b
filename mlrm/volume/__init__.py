"""Volumes chosen by URL scheme from :data:`stores`: a path or ``file://`` for a local folder,
``s3://`` for an object store. A new store implements :class:`Volume` and registers its scheme."""

from __future__ import annotations

from mlrm.errors import ConfigError
from mlrm.extensions import Registry
from mlrm.volume.base import RESERVED_PREFIXES, ObjectInfo, Volume, check_key, check_output_key

__all__ = ["RESERVED_PREFIXES", "ObjectInfo", "Volume", "check_key", "check_output_key", "open_volume", "stores"]

stores: Registry[type[Volume]] = Registry("volume")
stores.register("file", "mlrm.volume.local:LocalVolume")
stores.register("s3", "mlrm.volume.s3:S3Volume")


def open_volume(url: str) -> Volume:
    """Open the volume a URL names: ``volume``, ``/abs/path``, ``file:///abs/path`` or ``s3://bucket[/prefix]``."""
    scheme = url.split("://", 1)[0] if "://" in url else "file"
    if scheme not in stores:
        raise ConfigError(
            f"unsupported volume URL scheme {scheme!r}; use a folder path, file:///path, s3://bucket or s3://bucket/prefix"
        )
    return stores.get(scheme)(url.removeprefix("file://") if scheme == "file" else url)
