"""Each detector against a reference summary: quiet on the same distribution, firing on a shifted one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlrm.errors import ConfigError
from mlrm.monitoring import Detector, MonitorConfig, Outcome, detectors
from mlrm.monitoring.detectors import MetricDecay
from mlrm.monitoring.reference import summarize

RNG_REFERENCE, RNG_SAME, RNG_SHIFTED = 0, 1, 2


def normal(seed: int, n: int, loc: float = 0.0) -> pd.Series:
    return pd.Series(np.random.default_rng(seed).normal(loc, 1.0, n))


@pytest.mark.parametrize("name", ["psi", "chi2", "ks", "wasserstein"])
def test_numeric_drift(name):
    reference = summarize(normal(RNG_REFERENCE, 5000))
    detector = detectors.get(name)()
    threshold = detector.default_threshold
    same = detector.test(reference, normal(RNG_SAME, 500), threshold)
    shifted = detector.test(reference, normal(RNG_SHIFTED, 500, loc=0.8), threshold)
    assert not same.drifted and shifted.drifted, (same, shifted)
    if detector.higher_is_drift:
        assert shifted.statistic > threshold >= same.statistic
    else:
        assert shifted.p_value < threshold <= same.p_value


@pytest.mark.parametrize("name", ["psi", "chi2"])
def test_categorical_drift_and_unseen_categories(name):
    rng = np.random.default_rng(0)
    reference = summarize(pd.Series(rng.choice(["a", "b", "c"], 3000, p=[0.5, 0.3, 0.2])))
    detector = detectors.get(name)()
    same = pd.Series(np.random.default_rng(1).choice(["a", "b", "c"], 400, p=[0.5, 0.3, 0.2]))
    new = pd.Series(np.random.default_rng(2).choice(["a", "b", "c", "d"], 400, p=[0.4, 0.2, 0.1, 0.3]))
    assert not detector.test(reference, same, detector.default_threshold).drifted
    assert detector.test(reference, new, detector.default_threshold).drifted  # "d" was never seen


def test_distance_tests_say_why_they_cannot_judge_categories():
    reference = summarize(pd.Series(["a", "b"] * 50))
    assert "categorical" in detectors.get("ks")().applies(reference)
    assert detectors.get("psi")().applies(reference) is None


@pytest.mark.parametrize(
    ("metric", "holdout", "labels", "predicted", "drifted"),
    [
        ("accuracy", {"accuracy": 0.9}, ["a", "b", "a", "b"], ["a", "b", "a", "a"], True),  # 0.75 < 0.81
        ("accuracy", {"accuracy": 0.9}, [1.0, 0, 1, 1], [1, 0, 1, 1], False),  # 1.0 and 1 are one class
        ("f1", {"f1_macro": 0.5}, ["a", "b", "a", "b"], ["a", "b", "a", "a"], False),
        ("mae", {"mae": 1.0}, [1.0, 2.0, 3.0], [1.5, 2.5, 3.5], False),  # 0.5 <= 1.1
        ("rmse", {"rmse": 1.0}, [1.0, 2.0, 3.0], [3.0, 4.0, 5.0], True),  # 2.0 > 1.1
    ],
)
def test_metric_decay(metric, holdout, labels, predicted, drifted):
    outcome, bound = MetricDecay().decay(metric, holdout, pd.Series(labels), pd.Series(predicted), 0.1)
    [figure] = holdout.values()
    assert outcome.drifted is drifted
    assert bound == pytest.approx(figure * (0.9 if metric in ("accuracy", "f1") else 1.1))


def test_metric_decay_without_the_cards_figure_is_a_reason():
    outcome, bound = MetricDecay().decay("rmse", {"r2": 0.9}, pd.Series([1.0]), pd.Series([1.0]), 0.1)
    assert bound is None and not outcome.drifted and "no hold-out rmse" in outcome.reason


class AlwaysDrifts(Detector):
    default_threshold = 0.0

    def test(self, reference, values, threshold):
        return Outcome(1.0, True)


def test_a_detector_of_your_own_by_dotted_path():
    path = f"{__name__}:AlwaysDrifts"
    config = MonitorConfig(model="m", detectors=[{"type": path}])
    assert detectors.get(config.detectors[0].type) is AlwaysDrifts
    with pytest.raises(ConfigError, match="did you mean 'wasserstein'"):
        detectors.get("wasserstien")
