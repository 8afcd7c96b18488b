"""Drift detectors, one registry keyed by the name a ``MonitorConfig`` uses (``type: psi``).

A distribution detector compares one column's window of logged values with the column's
reference :class:`~mlrm.monitoring.reference.Summary`; the statistics come from scipy:

- ``psi``: population stability index over the reference bins (deciles, or categories);
  drift when it exceeds the threshold (default 0.2).
- ``chi2``: chi-square goodness of fit of the window's bin counts to the reference shares
  (``scipy.stats.chisquare``); drift when the p-value is below the threshold (default 0.01).
- ``ks``: two-sample Kolmogorov-Smirnov against the reference sample (``scipy.stats.ks_2samp``),
  numeric columns only; drift when the p-value is below the threshold (default 0.01).
- ``wasserstein``: earth mover's distance to the reference sample (``scipy.stats.wasserstein_distance``)
  in reference standard deviations, numeric columns only; drift above the threshold (default 0.2).

``metric_decay`` (:class:`MetricDecay`) compares a metric of the labelled feedback with the
hold-out figure of the version's card. A detector of your own subclasses :class:`Detector`
and registers itself: ``detectors.register("mine", MyDetector)`` (or names it by dotted path).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from mlrm.extensions import Registry
from mlrm.monitoring.reference import Summary, category

EPS = 1e-4  # the share given to an empty bin, so logarithms and expectations stay finite


@dataclass
class Outcome:
    """A detector's verdict on one column; ``statistic`` None and a ``reason`` when it could not judge."""

    statistic: float | None
    drifted: bool
    p_value: float | None = None
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class Detector(ABC):
    """Compares a window of one column with its reference summary."""

    default_threshold: ClassVar[float]
    higher_is_drift: ClassVar[bool] = True
    """True: drift when the statistic exceeds the threshold; False: when the p-value falls below it."""
    numeric_only: ClassVar[bool] = False
    needs_labels: ClassVar[bool] = False

    @abstractmethod
    def test(self, reference: Summary, values: pd.Series, threshold: float) -> Outcome: ...

    def applies(self, reference: Summary) -> str | None:
        """Why this detector cannot judge a column of this kind (None: it can)."""
        if self.numeric_only and reference.kind != "numeric":
            return f"{type(self).__name__} compares numeric columns; this one is categorical (use chi2 or psi)"
        if reference.count == 0:
            return "the reference has no values for this column"
        return None


detectors: Registry[type[Detector]] = Registry("drift detector", dotted=True)


def _shares(reference: Summary, values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    _, expected = reference.expected()
    observed = reference.observed(values)
    return expected, observed


@detectors.register("psi")
class PSI(Detector):
    default_threshold = 0.2

    def test(self, reference: Summary, values: pd.Series, threshold: float) -> Outcome:
        expected, observed = _shares(reference, values)
        p = np.clip(expected, EPS, None)
        q = np.clip(observed / max(1.0, observed.sum()), EPS, None)
        psi = float(np.sum((q - p) * np.log(q / p)))
        return Outcome(psi, psi > threshold)


@detectors.register("chi2")
class ChiSquare(Detector):
    default_threshold = 0.01
    higher_is_drift = False

    def test(self, reference: Summary, values: pd.Series, threshold: float) -> Outcome:
        expected, observed = _shares(reference, values)
        n = observed.sum()
        shares = np.clip(expected, EPS, None)
        f_exp = shares / shares.sum() * n
        from scipy import stats  # here, not at import: every process that reads a deployment imports this module

        result = stats.chisquare(observed, f_exp)
        p = float(result.pvalue)
        return Outcome(float(result.statistic), p < threshold, p_value=p)


def _numbers(values: pd.Series) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    return numbers[np.isfinite(numbers)]


@detectors.register("ks")
class KolmogorovSmirnov(Detector):
    default_threshold = 0.01
    higher_is_drift = False
    numeric_only = True

    def test(self, reference: Summary, values: pd.Series, threshold: float) -> Outcome:
        from scipy import stats

        result = stats.ks_2samp(np.asarray(reference.sample), _numbers(values))
        p = float(result.pvalue)
        return Outcome(float(result.statistic), p < threshold, p_value=p)


@detectors.register("wasserstein")
class Wasserstein(Detector):
    default_threshold = 0.2
    numeric_only = True

    def test(self, reference: Summary, values: pd.Series, threshold: float) -> Outcome:
        from scipy import stats

        distance = float(stats.wasserstein_distance(np.asarray(reference.sample), _numbers(values)))
        scale = reference.std if reference.std and reference.std > 0 else 1.0
        value = distance / scale
        return Outcome(value, value > threshold, details={"distance": distance, "reference_std": reference.std})


# metric name in a MonitorConfig -> (name in the card, higher is better)
DECAY_METRICS: dict[str, tuple[str, bool]] = {
    "accuracy": ("accuracy", True), "f1": ("f1_macro", True), "mae": ("mae", False), "rmse": ("rmse", False),
}  # fmt: skip


@detectors.register("metric_decay")
class MetricDecay(Detector):
    """A metric of the labelled feedback against the version's hold-out figure (see :meth:`decay`)."""

    default_threshold = 0.1
    needs_labels = True

    def test(self, reference: Summary, values: pd.Series, threshold: float) -> Outcome:
        raise NotImplementedError("metric_decay judges labelled feedback: see MetricDecay.decay")

    @staticmethod
    def value(metric: str, labels: pd.Series, predicted: pd.Series) -> float:
        from sklearn import metrics as skm

        if metric in ("accuracy", "f1"):
            y, p = labels.map(category), predicted.map(category)
            if metric == "accuracy":
                return float(skm.accuracy_score(y, p))
            return float(skm.f1_score(y, p, average="macro"))
        y_num, p_num = pd.to_numeric(labels, errors="coerce"), pd.to_numeric(predicted, errors="coerce")
        ok = y_num.notna() & p_num.notna()
        if metric == "mae":
            return float(skm.mean_absolute_error(y_num[ok], p_num[ok]))
        return float(math.sqrt(skm.mean_squared_error(y_num[ok], p_num[ok])))

    def decay(
        self, metric: str, holdout: dict[str, float], labels: pd.Series, predicted: pd.Series, tolerance: float
    ) -> tuple[Outcome, float | None]:
        """The outcome and the bound (the worst tolerated value), or a reason when the card lacks the figure."""
        card_name, higher_better = DECAY_METRICS[metric]
        baseline = holdout.get(card_name)
        if baseline is None or not math.isfinite(baseline):
            have = ", ".join(sorted(holdout)) or "none"
            return Outcome(None, False, reason=f"the version's card has no hold-out {card_name} (it has: {have})"), None
        current = self.value(metric, labels, predicted)
        if higher_better:
            bound = baseline - tolerance * abs(baseline)
            drifted = current < bound
        else:
            bound = baseline + tolerance * abs(baseline)
            drifted = current > bound
        return Outcome(current, drifted, details={"holdout": baseline, "tolerance": tolerance}), bound
