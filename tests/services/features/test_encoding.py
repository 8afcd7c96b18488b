"""one_hot and ordinal_encode: categories learned at fit time fix the output for every later batch."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from mlrm.errors import DataError
from mlrm.testing import check_transform_step
from services.features.steps import OneHot, OrdinalEncode
from services.features.steps.encoding import MAX_ONE_HOT


def stored(step, df: pd.DataFrame) -> dict:
    return json.loads(json.dumps(step.fit(df)))


@pytest.fixture
def train() -> pd.DataFrame:
    return pd.DataFrame({"color": ["red", "blue", None, "red", "green"], "size": [1, 2, 2, 3, 1], "v": range(5)})


def test_conformance(train: pd.DataFrame) -> None:
    check_transform_step(OneHot(step="one_hot", columns=["color", "size"]), train)
    check_transform_step(OneHot(step="one_hot", columns=["color"], drop_original=False, max_categories=2), train)
    check_transform_step(OrdinalEncode(step="ordinal_encode", columns=["color"]), train)


def test_one_hot_state_and_output(train: pd.DataFrame) -> None:
    step = OneHot(step="one_hot", columns=["color", "size"])
    state = stored(step, train)
    assert state == {"categories": {"color": ["blue", "green", "red"], "size": ["1", "2", "3"]}}
    out = step.transform(train, state)
    names = ["color=blue", "color=green", "color=red", "size=1", "size=2", "size=3"]
    assert list(out.columns) == ["v", *names]
    assert (out[names].dtypes == np.float64).all()
    assert out["color=red"].tolist() == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert out.loc[2, ["color=blue", "color=green", "color=red"]].tolist() == [0.0, 0.0, 0.0]  # missing


def test_one_hot_batch_lacking_categories_keeps_the_columns(train: pd.DataFrame) -> None:
    step = OneHot(step="one_hot", columns=["color", "size"])
    state = stored(step, train)
    out = step.transform(pd.DataFrame({"v": [9], "size": [3.0], "color": ["green"]}), state)
    assert list(out.columns) == list(step.transform(train, state).columns)
    assert out.iloc[0].tolist() == [9, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]  # 3.0 matches the training category "3"


def test_one_hot_unknown_categories(train: pd.DataFrame) -> None:
    batch = pd.DataFrame({"color": ["purple", "red", None], "size": [1, 2, 3], "v": [0, 1, 2]})
    ignore = OneHot(step="one_hot", columns=["color"])
    out = ignore.transform(batch, stored(ignore, train))
    assert out.loc[0, ["color=blue", "color=green", "color=red"]].tolist() == [0.0, 0.0, 0.0]
    strict = OneHot(step="one_hot", columns=["color"], handle_unknown="error")
    state = stored(strict, train)
    with pytest.raises(DataError, match="column 'color' has value\\(s\\) 'purple'"):
        strict.transform(batch, state)
    assert strict.transform(batch.iloc[1:], state)["color=red"].tolist() == [1.0, 0.0]  # missing is not unknown


def test_one_hot_options(train: pd.DataFrame) -> None:
    kept = OneHot(step="one_hot", columns=["color"], drop_original=False)
    assert "color" in kept.transform(train, stored(kept, train)).columns
    top = OneHot(step="one_hot", columns=["color"], max_categories=1)
    assert stored(top, train) == {"categories": {"color": ["red"]}}
    with pytest.raises(DataError, match="column\\(s\\) color not in the data"):
        top.fit(train.drop(columns="color"))


def test_one_hot_refuses_too_many_categories() -> None:
    many = pd.DataFrame({"city": [f"c{i}" for i in range(MAX_ONE_HOT + 1)]})
    with pytest.raises(DataError, match=r"column 'city' has 1001 distinct values, more than the 1000 .*max_categories"):
        OneHot(step="one_hot", columns=["city"]).fit(many)
    step = OneHot(step="one_hot", columns=["city"], max_categories=10, other="rest")
    state = stored(step, many)
    out = step.transform(many, state)
    assert out.shape == (MAX_ONE_HOT + 1, 11)
    assert out["city=rest"].sum() == MAX_ONE_HOT + 1 - 10 and out.to_numpy().sum() == MAX_ONE_HOT + 1


def test_one_hot_other_bucket(train: pd.DataFrame) -> None:
    step = OneHot(step="one_hot", columns=["color"], max_categories=1, other="other")
    state = stored(step, train)
    assert state == {"categories": {"color": ["red"]}}
    out = step.transform(pd.DataFrame({"color": ["red", "blue", "purple", None], "v": range(4)}), state)
    assert list(out.columns) == ["v", "color=red", "color=other"]
    assert out["color=red"].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert out["color=other"].tolist() == [0.0, 1.0, 1.0, 0.0]  # rarer and unseen values; missing is neither
    check_transform_step(step, train)
    clash = OneHot(step="one_hot", columns=["color"], other="red")
    with pytest.raises(DataError, match="has a category 'red', the name given to 'other'"):
        clash.fit(train)


def test_ordinal_encode(train: pd.DataFrame) -> None:
    step = OrdinalEncode(step="ordinal_encode", columns=["color"], unknown_value=-9)
    state = stored(step, train)
    assert state == {"categories": {"color": ["blue", "green", "red"]}}
    out = step.transform(pd.DataFrame({"color": ["red", "blue", "teal", None]}), state)
    assert out["color"].dtype == np.float64
    assert out["color"].tolist()[:3] == [2.0, 0.0, -9.0]
    assert np.isnan(out["color"].iloc[3])


def test_validation() -> None:
    with pytest.raises(ValidationError, match="needs handle_unknown 'ignore'"):
        OneHot.model_validate({"step": "one_hot", "columns": ["c"], "max_categories": 3, "handle_unknown": "error"})
    with pytest.raises(ValidationError):
        OneHot.model_validate({"step": "one_hot", "columns": ["c"], "max_categories": 0})
    with pytest.raises(ValidationError, match="less than or equal to 1000"):
        OneHot.model_validate({"step": "one_hot", "columns": ["c"], "max_categories": 5000})
    with pytest.raises(ValidationError, match="'other' option of step 'one_hot' needs handle_unknown 'ignore'"):
        OneHot.model_validate({"step": "one_hot", "columns": ["c"], "other": "x", "handle_unknown": "error"})
    with pytest.raises(ValidationError):
        OneHot.model_validate({"step": "one_hot", "columns": ["c"], "handle_unknown": "skip"})
    with pytest.raises(ValidationError):
        OrdinalEncode.model_validate({"step": "ordinal_encode"})
