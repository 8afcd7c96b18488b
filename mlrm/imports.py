"""Resolve ``package.module:Name`` or ``package.module.Name`` strings to objects, lazily."""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from mlrm.errors import ConfigError


def import_string(path: str, *, what: str = "name") -> Any:
    """Import the object a dotted path names, or raise a one-line ConfigError saying why not.

    Both ``pkg.mod:Attr`` and ``pkg.mod.Attr`` are accepted; nested attributes
    (``pkg.mod:Outer.Inner``) are followed.
    """
    if not isinstance(path, str) or not path.strip():
        raise ConfigError(f"{what} must be a dotted path such as 'package.module:Name'")
    if ":" in path:
        module_name, _, attr_path = path.partition(":")
    else:
        module_name, _, attr_path = path.rpartition(".")
    if not module_name or not attr_path:
        raise ConfigError(f"{what} {path!r} is not a dotted path such as 'package.module:Name'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"{what} {path!r} does not resolve: no module named {exc.name!r}") from None
    except ImportError as exc:
        raise ConfigError(f"{what} {path!r} does not resolve: {exc}") from None
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            owner = getattr(obj, "__name__", module_name)
            raise ConfigError(f"{what} {path!r} does not resolve: {owner!r} has no attribute {part!r}{hint}")
        obj = getattr(obj, part)
    return obj
