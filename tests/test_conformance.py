"""Every registered extension passes the conformance suite: the cases come from the registries,
so a new step, source, sink or flavour (built-in or plug-in) is checked without being listed here."""

from __future__ import annotations

import pytest

from mlrm.steps import TransformStep, register, registry
from mlrm.testing import conformance_cases

CASES = conformance_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_registered_extension_conforms(case):
    case.check()


def test_the_cases_cover_every_registry():
    ids = {c.id for c in CASES}
    for kind in ("handler", "features", "source", "sink"):
        for name in registry.names(kind):
            assert f"{kind}:{name}" in ids or (kind == "source" and f"sink:{name}" in ids), f"{kind}:{name}"
    assert "flavour:sklearn" in ids
    assert {"handler:fill_na", "features:lag", "sink:parquet", "source:records"} <= ids


def test_a_step_registered_without_an_example_fails_the_suite(monkeypatch):
    from typing import Literal

    class Undocumented(TransformStep):
        kind = "handler"
        step: Literal["undocumented_conformance_probe"]

        def transform(self, df, state):
            return df

    monkeypatch.setitem(registry._steps["handler"], "undocumented_conformance_probe", Undocumented)
    (case,) = [c for c in conformance_cases() if c.name == "undocumented_conformance_probe"]
    with pytest.raises(AssertionError, match="declares no `example`"):
        case.check()
    assert register  # the decorator plug-ins use
