"""select, and the registration of every built-in features step."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

import services.features.steps  # noqa: F401 - importing registers the steps
from mlrm.errors import DataError
from mlrm.steps import registry
from mlrm.testing import check_transform_step
from services.features.steps import Select


def test_select_keeps_exactly_the_listed_columns_in_order() -> None:
    df = pd.DataFrame({"a": [1, 2], "b": [3, 4], "c": [5, 6]})
    out = check_transform_step(Select(step="select", columns=["c", "a"]), df)
    assert list(out.columns) == ["c", "a"]
    with pytest.raises(DataError, match="column\\(s\\) d not in the data"):
        Select(step="select", columns=["a", "d"]).transform(df, None)
    with pytest.raises(ValidationError):
        Select.model_validate({"step": "select", "columns": ["a", "a"]})


def test_registry_lists_all_features_steps() -> None:
    assert registry.names("features") == [
        "lag",
        "minmax_scale",
        "one_hot",
        "ordinal_encode",
        "rolling",
        "select",
        "sliding_window",
        "standard_scale",
        "time_features",
    ]
    assert registry.get("features", "one_hot").kind == "features"
