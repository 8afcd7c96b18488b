"""Training without a bus: evaluation modes, metrics, registration rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from mlrm.context import ModelRef, StepContext
from mlrm.errors import ConfigError, DataError, VolumeError
from mlrm.registry import ModelRegistry
from mlrm.volume.local import LocalVolume
from services.train.config import TrainConfig
from services.train.trainer import train


def config(**overrides) -> TrainConfig:
    data = {
        "kind": "TrainConfig",
        "model": {"name": "m", "kind": "regression", "estimator": "sklearn.linear_model.Ridge"},
        "target": "y",
        **overrides,
    }
    return TrainConfig.model_validate(data)


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "y": 3 * x[:, 0] - x[:, 1] + rng.normal(0, 0.1, 200)})


@pytest.fixture
def ctx(volume) -> StepContext:
    return StepContext(volume=volume, run_id="r1", step="train", mode="train")


def test_regression_hold_out_registers_with_default_metrics(frame, ctx):
    result = train(frame, config(register={"alias": "production", "when": "r2 > 0.95"}), ctx, {})
    assert result["version"] == 1 and result["aliases"] == ["production"]
    assert set(result["metrics"]) == {"r2", "mae", "rmse"} and result["metrics"]["r2"] > 0.95
    card = ModelRegistry(ctx.volume).card(ModelRef("m", 1))
    assert card["modelperform"]["test_rows"] == 40 and card["modelkind"] == "regression"


def test_kfold_reports_mean_and_std_and_a_failed_rule_sets_no_alias(frame, ctx):
    cfg = config(evaluation={"kfold": 4, "metrics": ["r2", "mse"]}, register={"alias": "production", "when": "r2 > 2"})
    result = train(frame, cfg, ctx, {})
    assert set(result["metrics"]) == {"r2", "mse", "r2_std", "mse_std"}
    assert result["aliases"] == []
    assert ModelRegistry(ctx.volume).aliases("m") == {}


def test_time_split_tests_on_the_last_rows(frame, ctx):
    result = train(frame, config(evaluation={"strategy": "time", "split": 0.25}), ctx, {})
    card = ModelRegistry(ctx.volume).card(ModelRef("m", result["version"]))
    assert card["modelperform"]["method"].startswith("time hold-out")
    assert card["modelperform"]["test_rows"] == 50


def test_classification_pipeline_with_probability_metrics(ctx):
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    df["label"] = np.where(df["a"] + df["b"] > 0, "yes", "no")
    cfg = TrainConfig.model_validate({
        "kind": "TrainConfig", "target": "label",
        "model": {"name": "clf", "kind": "classification", "estimator": "sklearn.pipeline.Pipeline",
                  "hyperparameters": {"steps": [
                      ["scale", {"estimator": "sklearn.preprocessing.StandardScaler"}],
                      ["lr", {"estimator": "sklearn.linear_model.LogisticRegression"}]]}},
        "evaluation": {"metrics": ["accuracy", "roc_auc", "log_loss"]},
    })  # fmt: skip
    result = train(df, cfg, ctx, {})
    assert result["metrics"]["accuracy"] > 0.9 and result["metrics"]["roc_auc"] > 0.95
    card = ModelRegistry(ctx.volume).card(ModelRef("clf", 1))
    assert card["inference"]["classes"] == ["no", "yes"]


def test_bad_data_registers_nothing(frame, ctx):
    with pytest.raises(DataError, match="target column 'y' has 1 missing values"):
        train(frame.assign(y=frame["y"].where(frame.index != 3)), config(), ctx, {})
    with pytest.raises(DataError, match=r"feature column\(s\) zz not in the data"):
        train(frame, config(features=["a", "zz"]), ctx, {})
    frame = frame.assign(a=["text"] * len(frame))
    with pytest.raises(DataError, match="fitting Ridge failed"):
        train(frame, config(), ctx, {})
    assert list(ctx.volume.list("models/")) == []


def test_config_checks_metrics_and_rules_against_the_model_kind():
    with pytest.raises(ValidationError, match="metric 'accuracy' is for classification"):
        config(evaluation={"metrics": ["accuracy"]})
    with pytest.raises(ValidationError, match="uses accuracy, which this training does not report"):
        config(register={"alias": "production", "when": "accuracy > 0.9"})
    with pytest.raises(ValidationError, match="rejected its hyperparameters"):
        config(model={"name": "m", "kind": "regression", "estimator": "sklearn.linear_model.Ridge",
                      "hyperparameters": {"alpah": 1}})  # fmt: skip


def test_config_checks_nested_estimators_without_building_them():
    pipeline = {"steps": [["poly", {"estimator": "sklearn.preprocessing.PolynomialFeatures",
                                    "hyperparameters": {"degre": 2}}]]}  # fmt: skip
    with pytest.raises(ValidationError, match="unknown argument 'degre'; did you mean 'degree'"):
        config(model={"name": "m", "kind": "regression", "estimator": "sklearn.pipeline.Pipeline",
                      "hyperparameters": pipeline})  # fmt: skip
    with pytest.raises(ValidationError, match="missing a required argument: 'steps'"):
        config(model={"name": "m", "kind": "regression", "estimator": "sklearn.pipeline.Pipeline"})


@pytest.mark.parametrize(
    "when",
    ["r2 / 0 > 1", "1 // (r2 - r2) > 0", "r2 > 'high'", "r2 + 'x' > 1", "round(r2, 1000) > 0"],
)
def test_a_rule_that_cannot_be_evaluated_fails_before_anything_is_written(frame, ctx, when):
    rules = [{"alias": "staging"}, {"alias": "production", "when": when}]
    with pytest.raises(ConfigError, match="register rule for alias 'production': cannot evaluate"):
        train(frame, config(register=rules), ctx, {})
    assert list(ctx.volume.list("models/")) == []  # no version, no 'staging'


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"alias": "production", "when": "r2"}, "condition 'r2' is not true or false"),
        ({"alias": "production", "when": "r2 * 2"}, "is not true or false"),
        ({"alias": "production", "when": "r2 and mae < 1"}, "is not true or false"),
        ({"alias": "production", "when": "not mae"}, "is not true or false"),
        ({"alias": "production\n"}, "alias 'production\\\\n' is not valid"),
    ],
)
def test_a_rule_that_is_not_a_condition_or_a_name_is_refused_by_the_config(rule, message):
    with pytest.raises(ValidationError, match=message):
        config(register=[{"alias": "staging"}, rule])


class FailingVolume(LocalVolume):
    """A real local volume whose writes of one key fail, as when the store goes away mid-registration."""

    fail_key = "models/m/aliases/canary.json"

    def open_write(self, key):
        if key == self.fail_key:
            raise VolumeError("the volume went away")
        return super().open_write(key)


def test_aliases_that_cannot_be_written_are_put_back_and_the_version_withdrawn(frame, tmp_path):
    ctx = StepContext(volume=FailingVolume(tmp_path / "v"), run_id="r1", step="train", mode="train")
    train(frame, config(register={"alias": "production"}), ctx, {})
    rules = [{"alias": "production"}, {"alias": "staging"}, {"alias": "canary"}]
    with pytest.raises(VolumeError, match="went away"):
        train(frame, config(register=rules), ctx, {})
    registry = ModelRegistry(ctx.volume)
    assert registry.versions("m") == [1] and registry.aliases("m") == {"production": 1}
    assert [o.key for o in ctx.volume.list("models/m/2/")] == []
