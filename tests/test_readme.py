"""The README's config examples are real configs: every one with a `kind` must validate."""

from __future__ import annotations

import re

from mlrm.config import parse_document
from mlrm.yamlio import loads_yaml
from services.train.config import TrainConfig
from tests.conftest import ROOT


def yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_every_config_example_in_the_readme_validates():
    blocks = [b for b in yaml_blocks() if re.search(r"^kind: ", b, flags=re.M)]
    assert len(blocks) >= 6
    kinds = {parse_document(loads_yaml(block, "README.md")).kind for block in blocks}
    assert kinds >= {"Workflow", "CollectorConfig", "HandlerConfig", "FeaturesConfig", "TrainConfig", "PredictConfig"}


def test_the_readme_pipeline_example_builds():
    pipeline = next(b for b in yaml_blocks() if "sklearn.pipeline.Pipeline" in b)
    text = "kind: TrainConfig\nmodel:\n  name: p\n  kind: regression\n" + "".join(
        f"  {line}\n" for line in pipeline.splitlines()
    ) + "target: y\n"  # fmt: skip
    config = parse_document(loads_yaml(text), TrainConfig)
    from mlrm.flavours.sklearn import build_estimator

    model = build_estimator(config.model.estimator, config.model.hyperparameters)
    assert [name for name, _ in model.steps] == ["poly", "ridge"]
