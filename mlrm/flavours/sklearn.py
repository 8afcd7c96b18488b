"""The ``sklearn`` flavour: scikit-learn estimators and Pipelines, stored with skops.

skops builds only types it is told to trust, and a built type may be called with
arguments from the file, so trust is an exact list (:mod:`mlrm.trust`), never a module.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Collection
from typing import IO, Any

import numpy as np
import pandas as pd

from mlrm.errors import ConfigError, RegistryError
from mlrm.flavours.base import Flavour, Prediction
from mlrm.imports import import_string
from mlrm.trust import refused_types

# Estimators whose predict() is classes_[argmax(predict_proba())] (trees, forests, boosting,
# logistic regression, naive Bayes); SVC-style calibrated probabilities are not.
_ARGMAX_FAMILIES = (
    "sklearn.tree.", "sklearn.ensemble._forest", "sklearn.ensemble._gb", "sklearn.ensemble._hist_gradient_boosting",
    "sklearn.linear_model._logistic", "sklearn.naive_bayes",
)  # fmt: skip


class SklearnFlavour(Flavour):
    name = "sklearn"
    threadsafe = True
    format = "skops"
    file = "model.skops"
    example = ("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 5, "random_state": 0})

    # -- training ----------------------------------------------------------------------
    def build(self, estimator: str | None, hyperparameters: dict[str, Any]) -> Any:
        return build_estimator(_required(estimator), hyperparameters)

    def check(self, estimator: str | None, hyperparameters: dict[str, Any]) -> None:
        check_estimator(_required(estimator), hyperparameters)  # resolved and bound, not built: training builds

    def save(self, model: Any, file: IO[bytes]) -> list[str]:
        import skops.io as sio

        sio.dump(model, file)
        file.flush()
        file.seek(0)
        return sorted(sio.get_untrusted_types(file=file))  # type: ignore[arg-type]  # a zip file object works

    def describe(self, model: Any) -> dict[str, Any]:
        import sklearn

        return {"framework": f"scikit-learn {sklearn.__version__}", "hyperparameters": model.get_params(deep=False)}

    # -- serving -----------------------------------------------------------------------
    def load(self, file: IO[bytes], *, trusted: Collection[str], what: str, classes: list[Any] | None = None) -> Any:
        import skops.io as sio

        try:
            file.seek(0)
            untrusted = sio.get_untrusted_types(file=file)  # type: ignore[arg-type]  # a zip file object works
        except Exception as exc:  # not a skops file, or a protocol this skops does not read
            raise RegistryError(f"{what}: {self.file} is not a readable skops file ({exc})") from None
        refused = refused_types(untrusted, trusted)
        if refused:
            raise RegistryError(
                f"{what} contains types that are not trusted: {', '.join(refused)}; "
                "list them under trusted_types in the predict config if you trust them"
            )
        try:
            file.seek(0)
            return sio.load(file, trusted=untrusted)
        except Exception as exc:
            raise RegistryError(f"{what} could not be loaded: {exc}") from None

    def classes(self, model: Any) -> list[Any] | None:
        classes = getattr(model, "classes_", None)
        return None if classes is None else list(classes)

    def predict(self, model: Any, X: pd.DataFrame, *, proba: bool = False) -> Prediction:
        if proba and hasattr(model, "predict_proba") and getattr(model, "classes_", None) is not None:
            probabilities = model.predict_proba(X)
            # One pass instead of two where predict() is by definition the argmax of predict_proba().
            if _argmax_is_predict(model):
                return Prediction(np.asarray(model.classes_).take(probabilities.argmax(axis=1)), probabilities)
            return Prediction(np.asarray(model.predict(X)), probabilities)
        return Prediction(np.asarray(model.predict(X)))


def _required(estimator: str | None) -> str:
    if not estimator:
        raise ConfigError("the sklearn flavour needs an estimator, e.g. sklearn.ensemble.RandomForestRegressor")
    return estimator


def _argmax_is_predict(estimator: Any) -> bool:
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    return type(final).__module__.startswith(_ARGMAX_FAMILIES) and hasattr(final, "classes_")


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
