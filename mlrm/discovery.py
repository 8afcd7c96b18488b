"""Discovery: which registered models fit a need? A query over model cards.

The query is a pydantic model so the CLI, Python callers and (later) the REST API
share one definition::

    search(registry, ModelQuery(kind="classification", features=["a", "b", "c"],
                                where="accuracy >= 0.9", tags={"dataset": "iris"}))
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from mlrm.config import Section, as_value_error
from mlrm.errors import ExpressionError
from mlrm.expr import compile_condition, compile_expression, evaluate_condition
from mlrm.registry import ModelRegistry, OnCorrupt


class ModelQuery(Section):
    """What the caller needs; every given criterion must hold."""

    name: str | None = None
    """Only versions of this model."""
    kind: Literal["classification", "regression"] | None = None
    """The task."""
    features: list[str] | None = None
    """Columns the caller has: a model matches if every input it needs is among them."""
    where: str | None = None
    """Condition over the card's metrics, e.g. `accuracy >= 0.9 and f1_macro > 0.85`."""
    tags: dict[str, str] = Field(default_factory=dict)
    """Tags the model must carry with these values."""
    latest: bool = False
    """Only the newest matching version of each model."""

    @field_validator("where")
    @classmethod
    def _where(cls, v: str | None) -> str | None:
        if v is not None:
            as_value_error(compile_condition, v)
        return v


def matches(card: dict[str, Any], query: ModelQuery) -> bool:
    if query.name and card["modelname"] != query.name:
        return False
    if query.kind and card["modelkind"] != query.kind:
        return False
    if query.features is not None:
        needed = {f["name"] for f in card["featurelist"]}
        if not needed <= set(query.features):
            return False
    tags = card.get("tags") or {}
    if any(tags.get(k) != v for k, v in query.tags.items()):
        return False
    if query.where:
        try:
            return evaluate_condition(compile_expression(query.where), card["modelperform"]["metrics"])
        except ExpressionError:  # the model does not report a metric the condition names
            return False
    return True


def search(registry: ModelRegistry, query: ModelQuery, on_corrupt: OnCorrupt = None) -> list[dict[str, Any]]:
    """Matching cards, newest version first within each model (unreadable cards: see OnCorrupt)."""
    found = [card for card in registry.cards(on_corrupt) if matches(card, query)]
    found.sort(key=lambda c: (c["modelname"], -c["version"]))
    if query.latest:
        seen: set[str] = set()
        found = [c for c in found if not (c["modelname"] in seen or seen.add(c["modelname"]))]
    return found
