"""Config models: locations in errors, strictness, interpolation, user steps, committed schemas."""

from __future__ import annotations

import re
import textwrap

import pytest

from mlrm.config import load_config, parse_document
from mlrm.deployments import DeployRequest
from mlrm.errors import ConfigError, ConfigErrors, MlrmError
from mlrm.registry import check_alias, check_name
from mlrm.schema import files, render
from mlrm.steps import TransformStep
from mlrm.volume.base import check_key
from mlrm.yamlio import loads_yaml
from orchestrator.compile import Workflow
from services.handler.config import HandlerConfig
from services.predict.config import PredictConfig
from services.train.config import TrainConfig
from tests.conftest import CONFIGS, ROOT


def parse(text: str, **env: str):
    return parse_document(loads_yaml(textwrap.dedent(text), "cfg.yaml", env=env))


def messages(text: str) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        parse(text)
    return [e.message for e in info.value.errors]


def test_committed_json_schemas_match_the_models():
    for kind, name in files().items():
        committed = (CONFIGS / "schema" / name).read_text()
        assert committed == render(kind), f"configs/schema/{name} is stale: run `mlrm schema`"


def test_example_configs_point_editors_at_their_schema():
    for path in sorted(CONFIGS.glob("*/*.yaml")) + sorted(CONFIGS.glob("*.yaml")):
        first = path.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path
        assert (path.parent / first.split("=", 1)[1]).is_file(), path


def test_every_error_is_reported_with_its_line():
    errs = messages("""\
        kind: HandlerConfig
        steps:
          - step: fill_na
            strategy: avg
          - step: clip
            columns: [a]
            lower: 1
            quantiles: [0.1, 0.9]
          - step: sort
            bye: x
        """)
    assert len(errs) == 3
    assert errs[0].startswith("cfg.yaml:4:15: steps[0].strategy:") and "'avg'" in errs[0]
    assert errs[1].startswith("cfg.yaml:5:5: steps[1]:") and "cannot be combined" in errs[1]
    assert errs[2].startswith("cfg.yaml:10:5: steps[2].bye: unknown field 'bye'; did you mean 'by'?"), errs


def test_missing_required_field_points_at_its_mapping():
    errs = messages("""\
        kind: TrainConfig
        model: {name: m, kind: regression, estimator: sklearn.linear_model.Ridge}
        """)
    assert errs == ["cfg.yaml:1:1: target: missing required field 'target'"]


def test_kind_is_required_and_checked():
    with pytest.raises(ConfigError, match=r"cfg.yaml:1:1: kind: missing 'kind'"):
        parse("steps: []\n")
    with pytest.raises(ConfigError, match=r"cfg.yaml:1:7: kind: unknown kind 'HandlerConfg'; did you mean 'Handler"):
        parse("kind: HandlerConfg\n")


def test_environment_interpolation_for_endpoints_and_secrets():
    cfg = parse(
        """\
        kind: CollectorConfig
        source: {step: http, url: "https://${HOST:-example.org}/data", headers: {Authorization: "Bearer ${TOKEN}"}}
        """,
        TOKEN="s3cret",
    )
    assert cfg.source.url == "https://example.org/data"
    assert cfg.source.headers == {"Authorization": "Bearer s3cret"}
    with pytest.raises(ConfigError, match=r"cfg.yaml:2:.*'TOKEN' is not set"):
        parse("kind: CollectorConfig\nsource: {step: http, url: 'http://x/${TOKEN}'}\n")


def test_alias_bombs_are_rejected_not_expanded():
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 10) + "]")
    with pytest.raises(ConfigError, match="alias bomb"):
        loads_yaml("\n".join(lines))


def test_a_users_own_step_by_dotted_path(tmp_path, monkeypatch):
    (tmp_path / "my_steps.py").write_text(
        textwrap.dedent('''\
        from mlrm.steps import TransformStep

        class Double(TransformStep):
            """Multiply a column by a factor."""
            kind = "handler"
            column: str
            factor: float = 2.0

            def transform(self, df, state):
                return df.assign(**{self.column: df[self.column] * self.factor})
        ''')
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = parse("""\
        kind: HandlerConfig
        steps:
          - {step: "my_steps:Double", column: a, factor: 3}
        """)
    step = cfg.steps[0]
    assert type(step).__name__ == "Double" and step.factor == 3
    import pandas as pd

    assert step.transform(pd.DataFrame({"a": [1, 2]}), None)["a"].tolist() == [3, 6]
    # Its own options are validated by its own model.
    errs = messages('kind: HandlerConfig\nsteps:\n  - {step: "my_steps:Double", colum: a}\n')
    assert "unknown field 'colum'" in " ".join(errs) or "column" in " ".join(errs)
    errs = messages('kind: HandlerConfig\nsteps:\n  - {step: "my_steps:Doubel"}\n')
    assert "does not resolve" in errs[0] and "did you mean 'Double'" in errs[0]


def test_load_config_checks_the_expected_kind(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("kind: FeaturesConfig\nsteps: []\n")
    with pytest.raises(ConfigError, match="expected a config of kind 'HandlerConfig', got 'FeaturesConfig'"):
        load_config(path, HandlerConfig)


def _keyed_steps(kind: str) -> list[str]:
    import services.collector.config  # registers the sources
    import services.predict.config  # noqa: F401 - registers the sinks
    from mlrm.steps import registry

    return [name for name in registry.names(kind) if "key" in registry.get(kind, name).model_fields]


@pytest.mark.parametrize("key", ["../x", "a/../../b", "/etc/passwd", "a\\0b", "a//b", "back\\\\slash"])
def test_a_bad_volume_key_is_a_config_error_naming_file_line_and_field(key):
    """Every source and sink that takes a `key:` checks it when the config is validated, not at run time."""
    sources, sinks = _keyed_steps("source"), _keyed_steps("sink")
    assert {"csv", "jsonl", "parquet"} <= set(sources) and {"csv", "jsonl", "parquet"} <= set(sinks)
    for step in sources:
        errs = messages(f'kind: CollectorConfig\nsource:\n  step: {step}\n  key: "{key}"\n')
        assert len(errs) == 1 and errs[0].startswith("cfg.yaml:4:8: source.key: object name"), errs
    for step in sinks:
        errs = messages(f'kind: PredictConfig\nmodel: {{name: m}}\nsink:\n  step: {step}\n  key: "{key}"\n')
        assert len(errs) == 1 and errs[0].startswith("cfg.yaml:5:8: sink.key: object name"), errs
    ok = parse("kind: PredictConfig\nmodel: {name: m}\nsink: {step: csv, key: 'predictions/{run_id}.csv'}\n")
    assert ok.sink.key == "predictions/{run_id}.csv"


# -- names: every pattern that validates a name refuses a trailing newline ---------------------
class Noop(TransformStep):
    """A user step for the name checks below."""

    kind = "handler"

    def transform(self, df, state):
        return df


def _workflow(name="w", step="collect", service="collector"):
    return {"kind": "Workflow", "name": name, "steps": [{"name": step, "service": service, "config": "c.yaml"}]}


def _train(name="m", alias="production"):
    return {
        "kind": "TrainConfig", "target": "y", "register": [{"alias": alias}],
        "model": {"name": name, "kind": "regression", "estimator": "sklearn.linear_model.Ridge"},
    }  # fmt: skip


NAME_CHECKS = {  # what validates a name -> (a valid name, a call that validates it)
    "registry: model name": ("iris-classifier", check_name),
    "registry: alias": ("production", check_alias),
    "TrainConfig model.name": ("iris-classifier", lambda v: TrainConfig.model_validate(_train(name=v))),
    "TrainConfig register[].alias": ("production", lambda v: TrainConfig.model_validate(_train(alias=v))),
    "PredictConfig model.name": ("m", lambda v: PredictConfig.model_validate({"kind": "PredictConfig",
                                                                             "model": {"name": v}})),
    "PredictConfig model.alias": ("production", lambda v: PredictConfig.model_validate({
        "kind": "PredictConfig", "model": {"name": "m", "alias": v}})),
    "deployment model": ("m", lambda v: DeployRequest(model=v, version=1)),
    "deployment alias": ("production", lambda v: DeployRequest(model="m", alias=v)),
    "deployment memory": ("512Mi", lambda v: DeployRequest(model="m", version=1, resources={"memory": v})),
    "Workflow name": ("iris-train", lambda v: Workflow.model_validate(_workflow(name=v))),
    "Workflow steps[].name": ("collect", lambda v: Workflow.model_validate(_workflow(step=v))),
    "Workflow steps[].service (nameko)": ("nameko:svc.method", lambda v: Workflow.model_validate(
        _workflow(name="w", step="call", service=v) | {"steps": [
            {"name": "c", "service": "collector", "config": "c.yaml"}, {"name": "call", "service": v}]})),
    "user step path": (f"{__name__}:Noop", lambda v: HandlerConfig.model_validate({"kind": "HandlerConfig",
                                                                                   "steps": [{"step": v}]})),
    "volume key": ("models/m/1/card.json", check_key),
}  # fmt: skip


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\n\n"], ids=repr)
@pytest.mark.parametrize("check", sorted(NAME_CHECKS))
def test_names_ending_in_a_newline_are_invalid(check, ending):
    valid, validate = NAME_CHECKS[check]
    validate(valid)
    with pytest.raises((ValueError, MlrmError)):  # pydantic's ValidationError is a ValueError
        validate(valid + ending)


def test_python_name_patterns_do_not_anchor_with_dollar():
    """`$` matches before a trailing newline in Python's re; pydantic's pattern= (Rust regex) does not."""
    offenders = []
    for path in [*ROOT.glob("mlrm/**/*.py"), *ROOT.glob("services/**/*.py"), *ROOT.glob("orchestrator/**/*.py")]:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if re.search(r"re\.(compile|match|search|fullmatch)\(r?[\"'][^\"']*\$[\"']", line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == [], "use \\Z instead of $ in Python regexes:\n" + "\n".join(offenders)
