"""Metrics by their YAML names give scikit-learn's values; scikit-learn is imported only to compute one."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sklearn import metrics as skm

from services.train.metrics import compute


@pytest.mark.parametrize("classes", [["a", "b"], ["a", "b", "c"]])
def test_probability_metrics_equal_scikit_learns(classes):
    rng = np.random.default_rng(0)
    y = np.array(classes)[rng.integers(0, len(classes), 60)]
    proba = rng.dirichlet(np.ones(len(classes)), 60)
    pred = np.array(classes)[proba.argmax(axis=1)]
    got = compute(["log_loss", "roc_auc", "accuracy"], y, pred, proba, classes)
    binary = len(classes) == 2
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=classes))
    expected_auc = (skm.roc_auc_score(y, proba[:, 1]) if binary
                    else skm.roc_auc_score(y, proba, labels=classes, multi_class="ovr"))  # fmt: skip
    assert got["roc_auc"] == pytest.approx(expected_auc)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert np.isnan(compute(["log_loss"], y, pred, None, classes)["log_loss"])


def test_importing_the_train_service_does_not_import_scikit_learn():
    code = "import sys, services.train.service; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
