"""The command line: bad input gives one clear line naming the place, a non-zero exit, and no half-written model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

import cli.common as cli_module
from cli import app
from mlrm.registry import ModelRegistry
from mlrm.volume.local import LocalVolume
from tests.conftest import CONFIGS


@pytest.fixture
def iris(tmp_path: Path) -> Path:
    """A private copy of the iris example to break in different ways."""
    return Path(shutil.copytree(CONFIGS / "iris", tmp_path / "iris"))


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLRM_VOLUME", str(tmp_path / "volume"))
    monkeypatch.setenv("MLRM_STATE", str(tmp_path / "runs.sqlite"))
    monkeypatch.setattr(cli_module, "out", Console(width=200))  # tables unwrapped, as on a wide terminal
    runner = CliRunner()

    def invoke(*args: str):
        result = runner.invoke(app, [str(a) for a in args])
        assert not (result.exception and not isinstance(result.exception, SystemExit)), result.exception
        return result

    invoke.volume = LocalVolume(tmp_path / "volume")  # type: ignore[attr-defined]
    return invoke


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def assert_one_error(result, *fragments: str, code: int | None = None) -> str:
    assert result.exit_code != 0
    if code is not None:
        assert result.exit_code == code
    assert "Traceback" not in result.output + result.stderr
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def no_model(cli) -> None:
    registry = ModelRegistry(cli.volume)
    assert registry.names() == []
    assert not [o.key for o in cli.volume.list("models/")]


def test_run_and_runs_listing(cli, iris):
    result = cli("run", iris / "train.yaml")
    assert result.exit_code == 0, result.stderr
    assert "iris-classifier version 1" in result.stdout and "aliases: production" in result.stdout
    listing = cli("runs")
    assert "iris-train" in listing.stdout and "succeeded" in listing.stdout
    run_id = ModelRegistry(cli.volume).card(ModelRegistry(cli.volume).resolve("iris-classifier"))["lineage"]["run_id"]
    shown = cli("runs", "show", run_id[:17])
    assert shown.exit_code == 0 and run_id in shown.stdout and "train" in shown.stdout
    assert run_id in cli("runs", "show").stdout  # no id: the newest run
    assert cli("run", iris / "train.yaml").exit_code == 0
    assert_one_error(cli("runs", "show", run_id[:4]), "is ambiguous: it starts 2 runs")
    assert cli("models", "list").stdout.count("iris-classifier") == 1
    assert '"modelname": "iris-classifier"' in cli("models", "show", "iris-classifier").stdout


def test_malformed_yaml(cli, iris):
    edit(iris / "clean-train.yaml", "  - step: drop_na", "  - step: drop_na\n   bad: [")
    line = assert_one_error(cli("run", iris / "train.yaml"), "clean-train.yaml:", "could not parse YAML", code=2)
    assert "clean-train.yaml:5:4:" in line  # the line that breaks the block
    no_model(cli)


def test_unknown_step_name_suggests_the_closest(cli, iris):
    edit(iris / "clean-train.yaml", "step: fill_na", "step: fill_nan")
    assert_one_error(
        cli("run", iris / "train.yaml"),
        "clean-train.yaml:8:11: steps[2].step:", "unknown step 'fill_nan'", "did you mean 'fill_na'?", code=2,
    )  # fmt: skip
    no_model(cli)


def test_unknown_field_suggests_the_closest(cli, iris):
    edit(iris / "model.yaml", "target: species", "targt: species")
    result = cli("validate", iris / "model.yaml")
    assert result.exit_code == 1
    assert "model.yaml:10:1: targt: unknown field 'targt'; did you mean 'target'?" in result.stderr


def test_wrong_type_names_file_line_and_field(cli, iris):
    edit(iris / "collect-train.yaml", "batch_size: 50", "batch_size: many")
    assert_one_error(
        cli("run", iris / "train.yaml"), "collect-train.yaml:7:13: batch_size:", "valid integer", "'many'", code=2
    )
    no_model(cli)


def test_validate_reports_a_misspelt_hyperparameter_without_building_the_estimator(cli, iris):
    edit(iris / "model.yaml", "n_estimators: 100", "n_estimator: 100")
    result = cli("validate", iris / "train.yaml")
    assert result.exit_code == 1
    (line,) = error_lines(result)
    assert "model.yaml:4:3: model:" in line, line  # file, line and field of the model section
    assert "rejected its hyperparameters: unknown argument 'n_estimator'; did you mean 'n_estimators'?" in line


def test_validate_reports_every_error_and_exits_1(cli, iris):
    edit(iris / "collect-train.yaml", "batch_size: 50", "batch_size: many")
    edit(iris / "model.yaml", "kind: classification", "kind: clasification")
    result = cli("validate", iris / "train.yaml", iris / "features.yaml")
    assert result.exit_code == 1
    lines = error_lines(result)
    assert len(lines) == 2, result.stderr
    assert any("collect-train.yaml:7:13: batch_size" in line for line in lines)
    assert any("model.yaml:5:9: model.kind" in line and "'clasification'" in line for line in lines)


def test_validate_accepts_the_examples(cli):
    files = sorted(CONFIGS.glob("*/*.yaml")) + sorted(CONFIGS.glob("*.yaml"))
    result = cli("validate", *files)
    assert result.exit_code == 0, result.stderr
    assert f"ok: {len(files)} file(s) valid" in result.stdout


def test_missing_config_file(cli, iris):
    edit(iris / "train.yaml", "config: features.yaml", "config: featurez.yaml")
    assert_one_error(cli("run", iris / "train.yaml"), "train.yaml:9:", "config file not found", "featurez.yaml")
    no_model(cli)


def test_missing_workflow_file(cli, tmp_path):
    assert_one_error(cli("run", tmp_path / "nope.yaml"), "config file not found", "nope.yaml")


def test_missing_data_file(cli, iris):
    (iris / "iris.csv").unlink()
    line = assert_one_error(cli("run", iris / "train.yaml"), "step 'collect'", "data file not found", "iris.csv")
    assert line.count("\n") == 0
    no_model(cli)


def test_csv_with_bad_rows_names_file_and_line(cli, iris):
    rows = (iris / "iris.csv").read_text().splitlines()
    rows[3] = "4.7,3.2,1.3"  # too few fields on line 4
    (iris / "iris.csv").write_text("\n".join(rows) + "\n")
    assert_one_error(cli("run", iris / "train.yaml"), "step 'collect'", "iris.csv", "line 4", "expected 5 columns")
    no_model(cli)


def test_target_column_that_does_not_exist(cli, iris):
    edit(iris / "model.yaml", "target: species", "target: label")
    assert_one_error(cli("run", iris / "train.yaml"), "step 'train'", "target column 'label' is not in the data")
    no_model(cli)


def test_estimator_that_does_not_resolve(cli, iris):
    edit(iris / "model.yaml", "RandomForestClassifier", "RandomForestClassifer")
    assert_one_error(
        cli("run", iris / "train.yaml"),
        "model.yaml:6:14: model.estimator:", "estimator 'sklearn.ensemble.RandomForestClassifer' does not resolve",
        "did you mean 'RandomForestClassifier'?", code=2,
    )  # fmt: skip
    no_model(cli)


def test_failed_run_is_recorded_with_its_error(cli, iris):
    edit(iris / "model.yaml", "target: species", "target: label")
    cli("run", iris / "train.yaml")
    listing = cli("runs")
    assert "failed" in listing.stdout


def test_console_script_prints_no_traceback(tmp_path, iris):
    edit(iris / "clean-train.yaml", "step: fill_na", "step: fill_nan")
    env = {**os.environ, "MLRM_VOLUME": str(tmp_path / "v"), "MLRM_STATE": str(tmp_path / "s.sqlite")}
    proc = subprocess.run(
        [sys.executable, "-m", "mlrm", "run", str(iris / "train.yaml")], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error:") and len(proc.stderr.strip().splitlines()) == 1


def test_registry_and_deployment_commands(cli, iris):
    assert cli("run", iris / "train.yaml").exit_code == 0
    assert cli("run", iris / "train.yaml").exit_code == 0
    found = cli("models", "search", "--kind", "classification", "--where", "accuracy >= 0.9", "--latest", "--json")
    assert found.exit_code == 0
    assert [(c["modelname"], c["version"]) for c in json.loads(found.stdout)] == [("iris-classifier", 2)]
    assert cli("models", "search", "--kind", "regression").exit_code == 0
    bad = cli("models", "search", "--where", "accuracy.real > 1")
    assert_one_error(bad, "attribute access")
    assert cli("models", "alias", "iris-classifier", "production", "1").exit_code == 0
    assert '"version": 1' in cli("models", "show", "iris-classifier", "--alias", "production").stdout

    dep_id = cli("deploy", "iris-classifier", "--version", "2", "--mode", "strict", "--node", "site-a").stdout.strip()
    assert dep_id.startswith("dep-")
    listing = cli("deployments")
    assert dep_id in listing.stdout and "strict" in listing.stdout and "queued" in listing.stdout
    assert_one_error(cli("deploy", "iris-classifier", "--version", "1", "--mode", "strict"), "needs 'node'")
    assert_one_error(cli("deploy", "iris-classifier", "--version", "9"), "no version 9")

    result = cli("decommission", dep_id, "--delete")
    assert result.exit_code == 0, result.stderr
    assert "unloaded" in result.stdout and "version 2 deleted" in result.stdout
    assert ModelRegistry(cli.volume).versions("iris-classifier") == [1]
    dep1 = cli("deploy", "iris-classifier", "--alias", "production").stdout.strip()
    cli("decommission", dep1)
    assert_one_error(cli("decommission", dep1, "--delete"), "follows alias 'production'")


def test_gc_command(cli, iris):
    assert cli("run", iris / "train.yaml").exit_code == 0
    cli.volume.put_bytes("runs/old-run/gather/x/part.arrow", b"x")
    result = cli("gc", "--older-than", "0s")
    assert result.exit_code == 0 and "collected" in result.stdout
    assert not cli.volume.exists("runs/old-run/gather/x/part.arrow")
    assert ModelRegistry(cli.volume).versions("iris-classifier") == [1]
    assert_one_error(cli("gc", "--older-than", "soon"), "--older-than")


def test_one_corrupt_record_is_reported_by_key_and_the_rest_listed(cli, iris):
    """A card, an alias, a deployment and a job record that are not valid JSON break nothing else."""
    assert cli("run", iris / "train.yaml").exit_code == 0
    edit(iris / "model.yaml", "name: iris-classifier", "name: iris-two")
    assert cli("run", iris / "train.yaml").exit_code == 0
    dep_id = cli("deploy", "iris-classifier", "--version", "1").stdout.strip()
    bad = {
        "card": "models/iris-two/1/card.json",
        "alias": "models/iris-classifier/aliases/staging.json",
        "deployment": "deployments/dep-broken.json",
        "job": "runs/20000101_000000_dead/jobs/train.json",
    }
    for key in bad.values():
        cli.volume.put_bytes(key, b'{"truncated": ')

    run = cli("run", iris / "predict.yaml")  # starts every service: jobs and deployments are read
    assert run.exit_code == 0 and "Traceback" not in run.output + run.stderr, run.output + run.stderr

    listing = cli("models", "list")
    assert "iris-classifier" in listing.stdout and "iris-two" in listing.stdout and "production→1" in listing.stdout
    assert listing.exit_code == 1 and "Traceback" not in listing.output
    assert sorted(line.split("'")[1] for line in error_lines(listing)) == sorted([bad["alias"], bad["card"]])

    assert_one_error(cli("models", "show", "iris-two"), bad["card"], "not valid JSON")
    assert '"version": 1' in cli("models", "show", "iris-classifier", "--alias", "production").stdout
    found = cli("models", "search", "--json")
    assert [c["modelname"] for c in json.loads(found.stdout)] == ["iris-classifier"]
    assert_one_error(found, bad["card"])

    deployments = cli("deployments")
    assert dep_id in deployments.stdout
    assert_one_error(deployments, bad["deployment"], "not valid JSON")


def test_register_rules_are_checked_before_anything_is_published(cli, iris):
    edit(iris / "model.yaml", '{alias: production, when: "accuracy >= 0.9"}', '{alias: production, when: "accuracy"}')
    line = assert_one_error(cli("validate", iris / "model.yaml"), "model.yaml:15:", "register[0].when:")
    assert "condition 'accuracy' is not true or false" in line
    edit(iris / "model.yaml", '"accuracy"}', '"accuracy / 0 > 1"}\n  - {alias: staging}')
    assert cli("validate", iris / "model.yaml").exit_code == 0  # its form is a condition; only data shows it fails
    line = assert_one_error(cli("run", iris / "train.yaml"), "register rule for alias 'production'", "division by zero")
    no_model(cli)


def test_a_sink_cannot_write_where_mlrm_keeps_its_own_data(cli, iris):
    assert cli("run", iris / "train.yaml").exit_code == 0
    artefact = cli.volume.get_bytes("models/iris-classifier/1/model.skops")
    edit(iris / "serve.yaml", "key: predictions/iris/{run_id}.csv", "key: models/iris-classifier/1/model.skops")
    line = assert_one_error(cli("validate", iris / "predict.yaml"), "serve.yaml:8:8: sink.key:", code=1)
    assert "is under 'models/', which mlrm keeps for the model registry" in line
    assert_one_error(cli("run", iris / "predict.yaml"), "serve.yaml:8:8: sink.key:", code=2)
    assert cli.volume.get_bytes("models/iris-classifier/1/model.skops") == artefact
