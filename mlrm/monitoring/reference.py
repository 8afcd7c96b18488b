"""Reference statistics: what a version's data looked like at training time.

The train service computes them once, when it registers a version, and stores them in the
version's folder (``reference.json``, its sha256 in the card like every file of the version), so
monitoring never reads the training data again. For every column the model saw (the inference
pipeline's output), for the target, and for the model's outputs on the hold-out rows, a
:class:`Summary`:

- numeric: count, missing, mean, std, min, max, 101 quantiles, the counts of 10 bins cut at the
  reference deciles (what PSI and chi-square compare), and a seeded sample of up to 1000 values
  (what Kolmogorov-Smirnov and Wasserstein compare);
- categorical (text, booleans, a classifier's labels): the frequency of each category.

The hold-out metrics (the card's figures) are copied in, for metric decay.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from mlrm.errors import NotFoundError, RegistryError
from mlrm.monitoring.paths import REFERENCE_FILE
from mlrm.registry import ModelRef, ModelRegistry

SAMPLE = 1000
BINS = 10
OTHER = "__other__"
"""The bin of categories the reference never saw."""


class Summary(BaseModel):
    """One column's distribution at training time."""

    model_config = ConfigDict(extra="allow")
    kind: Literal["numeric", "categorical"]
    count: int
    missing: int = 0
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    quantiles: list[float] = Field(default_factory=list)
    cuts: list[float] = Field(default_factory=list)
    """Interior bin edges (the reference deciles, deduplicated); bin i holds cuts[i-1] < x <= cuts[i]."""
    counts: list[int] = Field(default_factory=list)
    sample: list[float] = Field(default_factory=list)
    frequencies: dict[str, float] = Field(default_factory=dict)

    def expected(self) -> tuple[list[str], np.ndarray]:
        """The bins (labels) and the reference share of each, the ``__other__`` bin last for categories."""
        if self.kind == "categorical":
            labels = [*self.frequencies, OTHER]
            return labels, np.array([*self.frequencies.values(), 0.0])
        total = max(1, sum(self.counts))
        return [f"bin{i}" for i in range(len(self.counts))], np.asarray(self.counts, dtype=float) / total

    def observed(self, values: pd.Series) -> np.ndarray:
        """Counts of ``values`` in the same bins as :meth:`expected` (missing values are left out)."""
        values = values.dropna()
        if self.kind == "categorical":
            keys = values.map(category)
            counts = keys.value_counts()
            known = [int(counts.get(k, 0)) for k in self.frequencies]
            return np.array([*known, len(keys) - sum(known)], dtype=float)
        numbers = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
        idx = np.searchsorted(np.asarray(self.cuts, dtype=float), numbers, side="left")
        return np.bincount(idx, minlength=len(self.counts)).astype(float)


class Reference(BaseModel):
    """A version's reference statistics (``reference.json``)."""

    model_config = ConfigDict(extra="allow")
    schema_version: int = 1
    kind: Literal["classification", "regression"]
    rows: int
    """Training rows the feature statistics were computed on."""
    prediction_rows: int = 0
    """Rows the outputs' statistics were computed on: the hold-out, or the training rows when the
    hold-out is too small to say much (see the train service)."""
    target_name: str | None = None
    features: dict[str, Summary] = Field(default_factory=dict)
    """The columns the model saw: the inference pipeline's output."""
    target: Summary | None = None
    predictions: dict[str, Summary] = Field(default_factory=dict)
    """The model's outputs (`prediction`, and `proba_<class>` for classifiers) on `prediction_rows` rows."""
    metrics: dict[str, float] = Field(default_factory=dict)
    """The hold-out metrics of the card."""


def category(value: Any) -> str:
    """How a category is keyed: integral floats as integers, so a label 1 and 1.0 are the same class."""
    if isinstance(value, float | np.floating) and math.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value)


def is_numeric(series: pd.Series) -> bool:
    return series.dtype.kind in "iuf"


def summarize(series: pd.Series, *, categorical: bool | None = None, seed: int = 0) -> Summary:
    """A column's :class:`Summary` (numeric unless ``categorical`` or its dtype says otherwise)."""
    categorical = not is_numeric(series) if categorical is None else categorical
    present = series.dropna()
    missing = len(series) - len(present)
    if categorical:
        shares = present.map(category).value_counts(normalize=True)
        return Summary(kind="categorical", count=len(present), missing=missing,
                       frequencies={str(k): float(v) for k, v in shares.items()})  # fmt: skip
    values = pd.to_numeric(present, errors="coerce").dropna().to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return Summary(kind="numeric", count=0, missing=missing)
    cuts = np.unique(np.quantile(values, np.linspace(0, 1, BINS + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(cuts, values, side="left"), minlength=len(cuts) + 1)
    rng = np.random.default_rng(seed)
    sample = values if len(values) <= SAMPLE else rng.choice(values, SAMPLE, replace=False)
    return Summary(
        kind="numeric", count=len(values), missing=missing, mean=float(values.mean()), std=float(values.std()),
        min=float(values.min()), max=float(values.max()),
        quantiles=[float(q) for q in np.quantile(values, np.linspace(0, 1, 101))],
        cuts=[float(c) for c in cuts], counts=[int(c) for c in counts], sample=[float(v) for v in sample],
    )  # fmt: skip


def reference_statistics(
    X: pd.DataFrame,
    y: pd.Series | None,
    outputs: pd.DataFrame | None,
    *,
    kind: Literal["classification", "regression"],
    metrics: dict[str, float],
    target_name: str | None = None,
) -> Reference:
    """The reference of a version: ``X`` the rows the model was trained on (pipeline output), ``y``
    the target, ``outputs`` the model's outputs on the hold-out rows (a ``prediction`` column, and
    ``proba_<class>`` columns for classifiers)."""
    classifier = kind == "classification"
    return Reference(
        kind=kind, rows=len(X), prediction_rows=0 if outputs is None else len(outputs), target_name=target_name,
        features={str(c): summarize(X[c]) for c in X.columns},
        target=None if y is None else summarize(y, categorical=classifier),
        predictions={} if outputs is None else {
            str(c): summarize(outputs[c], categorical=classifier and c == "prediction") for c in outputs.columns
        },
        metrics={k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)},
    )  # fmt: skip


def reference_bytes(reference: Reference) -> bytes:
    return json.dumps(reference.model_dump(mode="json"), separators=(",", ":"), allow_nan=False).encode()


def load_reference(registry: ModelRegistry, ref: ModelRef) -> Reference | None:
    """A version's reference statistics (sha256 checked against its card); None for versions without them."""
    what = f"model '{ref.name}' version {ref.version}"
    card = registry.verified_card(ref)
    if REFERENCE_FILE not in (card.get("sha256") or {}):
        return None
    try:
        data = json.loads(registry.read_verified(ref, REFERENCE_FILE, card))
        return Reference.model_validate(data)
    except NotFoundError:
        raise RegistryError(f"{what}: {REFERENCE_FILE} is missing") from None
    except ValueError as exc:
        raise RegistryError(f"{what}: {REFERENCE_FILE} is unreadable: {exc}") from None
