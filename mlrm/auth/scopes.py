"""The four scopes, and what a set of them allows.

``infer`` (predictions), ``submit`` (workflows), ``read`` (runs, models, deployments), ``admin``
(register, deploy, decommission, delete; users and keys). ``admin`` implies the other three: an
administrator never needs a second credential to look at what they manage.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

from mlrm.errors import ConfigError

Scope = Literal["infer", "submit", "read", "admin"]
SCOPES: tuple[Scope, ...] = get_args(Scope)


def check_scopes(names: Iterable[str]) -> tuple[Scope, ...]:
    """``names`` as scopes, in the canonical order, without repeats; an unknown name is a ConfigError."""
    given = {n.strip() for n in names if n.strip()}
    unknown = sorted(given - set(SCOPES))
    if unknown:
        raise ConfigError(f"unknown scope {', '.join(map(repr, unknown))}; scopes are {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in given)


def parse_scopes(text: str) -> tuple[Scope, ...]:
    """An OAuth2 ``scope`` string (space separated; commas accepted too) as scopes."""
    return check_scopes(text.replace(",", " ").split())


def effective(scopes: Iterable[str]) -> frozenset[str]:
    """What ``scopes`` allow: ``admin`` brings every scope with it."""
    have = frozenset(scopes)
    return frozenset(SCOPES) if "admin" in have else have
