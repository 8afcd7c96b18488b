"""The predict config: output columns that would collide are refused when it is validated."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.predict.config import PredictConfig


def config(**options) -> PredictConfig:
    return PredictConfig.model_validate({"kind": "PredictConfig", "model": {"name": "m"}, **options})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prediction_column": "id", "keep": ["id"]}, "keep lists 'id', which is also the prediction_column"),
        ({"keep": ["prediction"]}, "keep lists 'prediction', which is also the prediction_column"),
        ({"prediction_column": "proba_big"}, "prediction_column 'proba_big' starts with 'proba_'"),
        ({"prediction_column": "proba_"}, "starts with 'proba_'"),
        ({"keep": ["id", "x", "id"]}, "keep lists 'id' more than once"),
    ],
)
def test_output_columns_that_collide_are_config_errors(options, message):
    with pytest.raises(ValidationError, match=message):
        config(**options)


def test_names_that_cannot_collide_are_fine():
    assert config(prediction_column="proba_big", probabilities=False).prediction_column == "proba_big"
    assert config(prediction_column="label", keep=["id", "prediction"]).keep == ["id", "prediction"]


def test_mlrm_validate_names_file_line_and_field():
    from mlrm.config import parse_document
    from mlrm.errors import ConfigErrors
    from mlrm.yamlio import loads_yaml

    text = "kind: PredictConfig\nmodel: {name: m}\nprediction_column: id\nkeep: [id]\n"
    with pytest.raises(ConfigErrors) as info:
        parse_document(loads_yaml(text, "serve.yaml"))
    assert [e.message.split(" keep lists")[0] for e in info.value.errors] == ["serve.yaml:4:7: keep:"]
