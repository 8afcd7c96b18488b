"""Steps the distributed tests inject through configs (importable by the service processes)."""

from __future__ import annotations

import time

from sklearn.dummy import DummyClassifier

from mlrm.steps import TransformStep


class Slow(TransformStep):
    """Sleeps per batch, so a test can act in the middle of a run."""

    kind = "handler"
    seconds: float = 0.02

    def transform(self, df, state):
        time.sleep(self.seconds)
        return df


class Poison(TransformStep):
    """Always raises a plain exception (a bug, not bad input): retried, then dead-lettered."""

    kind = "handler"

    def transform(self, df, state):
        raise RuntimeError("poison pill")


class FailsUntilFixed(TransformStep):
    """Raises while the file `fixed` names does not exist: a bug that a later fix repairs."""

    kind = "handler"
    fixed: str

    def transform(self, df, state):
        import os

        if not os.path.exists(self.fixed):
            raise RuntimeError("not fixed yet")
        return df


class SlowClassifier(DummyClassifier):
    """A classifier whose fit takes `seconds`: a training a test can kill, or gc, half-way."""

    def __init__(self, *, seconds: float = 60.0, strategy: str = "prior", random_state=None, constant=None):
        super().__init__(strategy=strategy, random_state=random_state, constant=constant)
        self.seconds = seconds

    def fit(self, X, y, sample_weight=None):
        time.sleep(self.seconds)
        return super().fit(X, y, sample_weight)
