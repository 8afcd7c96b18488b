"""Building estimators from their dotted names and hyperparameters."""

from __future__ import annotations

from typing import Any

from mlrm.errors import ConfigError
from mlrm.imports import import_string


def build_estimator(path: str, hyperparameters: dict[str, Any], *, nested: bool = False) -> Any:
    """Instantiate ``path(**hyperparameters)``; nested ``{estimator: ...}`` values are built too.

    The model itself must predict; a nested estimator (a Pipeline's scaler) only has to fit.
    """
    cls = import_string(path, what="estimator")
    needs = ("fit",) if nested else ("fit", "predict")
    if not isinstance(cls, type) or not all(hasattr(cls, m) for m in needs):
        raise ConfigError(f"estimator {path!r} is not a class with {' and '.join(f'{m}()' for m in needs)}")
    params = {k: _build(v) for k, v in hyperparameters.items()}
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"estimator {path!r} rejected its hyperparameters: {exc}") from None


def _build(value: Any) -> Any:
    if isinstance(value, dict) and "estimator" in value:
        unknown = set(value) - {"estimator", "hyperparameters"}
        if unknown:
            raise ConfigError(f"a nested estimator takes only 'estimator' and 'hyperparameters', not {sorted(unknown)}")
        return build_estimator(value["estimator"], value.get("hyperparameters") or {}, nested=True)
    if isinstance(value, list):
        built = [_build(v) for v in value]
        # Pipeline steps are (name, estimator) pairs; YAML writes them as two-item lists.
        if len(built) == 2 and isinstance(built[0], str) and hasattr(built[1], "fit"):
            return tuple(built)
        return built
    if isinstance(value, dict):
        return {k: _build(v) for k, v in value.items()}
    return value
