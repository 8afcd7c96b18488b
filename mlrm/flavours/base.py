"""The contract every model flavour meets: build, fit, save; load, predict; describe."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection
from dataclasses import dataclass
from typing import IO, Any, ClassVar

import numpy as np
import pandas as pd


@dataclass
class Prediction:
    """What a model answers for a frame of rows."""

    values: np.ndarray
    """The prediction for each row (a class label, or a number)."""
    proba: np.ndarray | None = None
    """Class probabilities, one column per class in :meth:`Flavour.classes` order (classifiers only)."""


class Flavour(ABC):
    """One kind of model. Training uses the first group of methods, serving the second."""

    name: ClassVar[str]
    format: ClassVar[str]  # the artefact's format, recorded in the card
    file: ClassVar[str]  # the artefact's file name in the version folder
    example: ClassVar[tuple[str, dict[str, Any]] | None] = None
    """An estimator and hyperparameters this flavour builds: what the conformance suite trains with."""
    trains: ClassVar[bool] = True  # False for a flavour that only serves models made elsewhere (onnx)
    threadsafe: ClassVar[bool] = False
    """True when one loaded model may predict on several threads at once and lets go of the GIL while it
    computes: the predict service then answers a large batch in parts on the machine's cores."""

    def conformance_model(self, X: pd.DataFrame, y: pd.Series) -> tuple[Any, list[Any] | None]:
        """A serving-only flavour's model fitted on ``X``/``y`` (and its classes), for the conformance suite."""
        raise NotImplementedError(f"flavour {self.name!r} neither trains nor gives a conformance model")

    # -- training ----------------------------------------------------------------------
    @abstractmethod
    def build(self, estimator: str | None, hyperparameters: dict[str, Any]) -> Any:
        """A fresh, unfitted model; raises ConfigError when the spec cannot build one."""

    def check(self, estimator: str | None, hyperparameters: dict[str, Any]) -> None:
        """Validate a spec at config time (default: build it once)."""
        self.build(estimator, hyperparameters)

    def fit(self, model: Any, X: pd.DataFrame, y: pd.Series | pd.DataFrame) -> Any:
        """Fit ``model``; ``y`` is a frame for a model predicting several targets at once."""
        return model.fit(X, y)

    def history(self, model: Any) -> list[dict[str, float]]:
        """Per-epoch figures of the last fit (loss, validation loss...), for the run record and the card."""
        return []

    @abstractmethod
    def save(self, model: Any, file: IO[bytes]) -> list[str]:
        """Write the artefact to ``file``; return the type names its loading will need trusted (for the card)."""

    def describe(self, model: Any) -> dict[str, Any]:
        """The card's ``traincode.framework`` and ``hyperparameters`` for a fitted model."""
        return {"framework": self.name, "hyperparameters": {}}

    # -- serving -----------------------------------------------------------------------
    @abstractmethod
    def load(self, file: IO[bytes], *, trusted: Collection[str], what: str, classes: list[Any] | None = None) -> Any:
        """Load an artefact from ``file`` without running code from it; RegistryError naming ``what`` if refused.

        ``classes`` are the card's (for formats that do not carry them)."""

    def classes(self, model: Any) -> list[Any] | None:
        """A classifier's classes, in the order of its probability columns; None for a regressor."""
        return None

    @abstractmethod
    def predict(self, model: Any, X: pd.DataFrame, *, proba: bool = False) -> Prediction:
        """Predict every row of ``X`` (its columns are the card's ``inference.input``)."""

    def predict_matrix(self, model: Any, X: np.ndarray, columns: list[str], *, proba: bool = False) -> Prediction:
        """Predict every row of a 2-D float64 matrix whose columns are ``columns`` (the card's ``inference.input``).

        The same answers as :meth:`predict` on a DataFrame of those columns, which is what this default
        builds; a flavour whose runtime takes arrays overrides it to skip the DataFrame."""
        return self.predict(model, pd.DataFrame(X, columns=columns, copy=False), proba=proba)
