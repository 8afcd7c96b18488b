"""Building estimators from their dotted names and hyperparameters."""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from mlrm.errors import ConfigError
from mlrm.imports import import_string


def _estimator_class(path: str, *, nested: bool) -> type:
    """The class ``path`` names. The model itself must predict; a nested one (a Pipeline's scaler) only fit."""
    cls = import_string(path, what="estimator")
    needs = ("fit",) if nested else ("fit", "predict")
    if not isinstance(cls, type) or not all(hasattr(cls, m) for m in needs):
        raise ConfigError(f"estimator {path!r} is not a class with {' and '.join(f'{m}()' for m in needs)}")
    return cls


def check_estimator(path: str, hyperparameters: dict[str, Any], *, nested: bool = False) -> None:
    """Check what :func:`build_estimator` would build, without building it.

    Config validation runs this (at compile time, for ``mlrm validate``): it resolves the class
    and binds the hyperparameters to its constructor's signature, nested estimators included,
    so a misspelt or missing argument is reported with the config's line; instantiating is
    left to training, which builds the estimator it fits (constructors may be costly, and
    scikit-learn's check their values only when fitting anyway).
    """
    cls = _estimator_class(path, nested=nested)
    params = {k: _check(v) for k, v in hyperparameters.items()}
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):  # no signature to read (a C type): training will tell
        return
    accepted = [n for n, p in signature.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    takes_any = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())
    unknown = [str(k) for k in params if k not in accepted]
    if unknown and not takes_any:  # a typo first: more useful than the required argument it then misses
        close = difflib.get_close_matches(unknown[0], accepted, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; it takes {', '.join(accepted) or 'none'}"
        raise ConfigError(f"estimator {path!r} rejected its hyperparameters: unknown argument {unknown[0]!r}{hint}")
    try:
        signature.bind(**params)
    except TypeError as exc:
        raise ConfigError(f"estimator {path!r} rejected its hyperparameters: {exc}") from None


def _check(value: Any) -> Any:
    """``_build`` without building: nested estimators are checked and stand in as None."""
    if isinstance(value, dict) and "estimator" in value:
        _nested_keys(value)
        check_estimator(value["estimator"], value.get("hyperparameters") or {}, nested=True)
        return None
    if isinstance(value, list):
        return [_check(v) for v in value]
    if isinstance(value, dict):
        return {k: _check(v) for k, v in value.items()}
    return value


def _nested_keys(value: dict[str, Any]) -> None:
    unknown = set(value) - {"estimator", "hyperparameters"}
    if unknown:
        raise ConfigError(f"a nested estimator takes only 'estimator' and 'hyperparameters', not {sorted(unknown)}")


def build_estimator(path: str, hyperparameters: dict[str, Any], *, nested: bool = False) -> Any:
    """Instantiate ``path(**hyperparameters)``; nested ``{estimator: ...}`` values are built too.

    The model itself must predict; a nested estimator (a Pipeline's scaler) only has to fit.
    """
    cls = _estimator_class(path, nested=nested)
    params = {k: _build(v) for k, v in hyperparameters.items()}
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"estimator {path!r} rejected its hyperparameters: {exc}") from None


def _build(value: Any) -> Any:
    if isinstance(value, dict) and "estimator" in value:
        _nested_keys(value)
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
