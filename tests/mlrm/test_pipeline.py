"""Matching a step's options with those stored with a model's statistics."""

from __future__ import annotations

from mlrm.pipeline import same_statistics
from services.features.steps import OneHot


def same_options(stored, step) -> bool:
    return same_statistics({"config": stored}, step)


def test_options_added_since_training_count_as_their_default() -> None:
    step = OneHot(step="one_hot", columns=["color"])
    stored = step.model_dump(mode="json")
    assert same_options(stored, step)
    older = {k: v for k, v in stored.items() if k != "other"}  # trained before `other` existed
    assert same_options(older, step)
    assert not same_options(older, OneHot(step="one_hot", columns=["color"], other="rest"))
    assert not same_options({**stored, "columns": ["size"]}, step)
    assert not same_options({**stored, "gone": 1}, step)
    assert not same_options(None, step)
