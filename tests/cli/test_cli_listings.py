"""Listings: every one has a --json form, and no output cuts an id; option values typer cannot check."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console

import cli.common as cli_module
from cli import app
from mlrm.bus import Envelope, Hop, dead_letter_queue, service_queue
from mlrm.bus.memory import MemoryBus
from tests.cli import test_cli
from tests.cli.test_cli import assert_one_error

cli, iris = test_cli.cli, test_cli.iris  # the fixtures of the CLI's tests

LONG_KEY = "predictions/iris/" + "a-rather-long-object-name-" * 3 + "20261129-184615-abcdef[bold].csv"
DEAD_ID = "20261129-184615-abcdef/clean/0000000000000000007"
LOOP_MODEL = "drift-classifier"  # the model of configs/drift/policy.yaml
ROOT = Path(__file__).resolve().parents[2]
USER = "someone.with-a-rather-long-user-name@example.org"


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every command and sub-command of the app (click objects, as typer builds them)."""
    found = []
    for name, command in group.commands.items():
        found.append(((*prefix, name), command))
        if hasattr(command, "commands"):
            found.extend(_commands(command, (*prefix, name)))
    return found


COMMANDS = _commands(typer.main.get_command(app))  # type: ignore[arg-type]


def _with_json() -> set[str]:
    return {" ".join(path) for path, cmd in COMMANDS if any("--json" in p.opts for p in cmd.params)}


@pytest.fixture
def populated(cli, iris, monkeypatch, tmp_path):
    """Two runs, two versions, a deployment, a long volume key, a dead letter, a user and an API key."""
    from argon2 import PasswordHasher

    import mlrm.auth.store
    from mlrm.auth.store import AuthStore

    monkeypatch.setattr(mlrm.auth.store, "_hasher", PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))
    monkeypatch.setenv("MLRM_AUTH_FILE", str(tmp_path / "auth.yaml"))
    store = AuthStore(tmp_path / "auth.yaml")
    store.add_user(USER, "a long enough password", ["read"])
    cli.key_id = store.create_key("a key for the listing", ["infer"])[0]
    assert cli("run", iris / "train.yaml").exit_code == 0
    assert cli("run", iris / "train.yaml").exit_code == 0
    assert cli("deploy", "iris-classifier").exit_code == 0
    cli.volume.put_bytes(LONG_KEY, b"id,prediction\n")
    from mlrm.monitoring import MonitorConfig, run_checks

    run_checks(cli.volume, MonitorConfig(model="iris-classifier", detectors=[{"type": "psi"}]))  # nothing logged yet
    from orchestrator import loop_events, retrain

    retrain.apply(cli.volume, ROOT / "configs" / "drift" / "policy.yaml")
    loop_events.record(cli.volume, LOOP_MODEL, "retraining", run_id=DEAD_ID[:22])  # a run id

    def dead_letters(settings):
        bus = MemoryBus()
        route = [Hop("clean", "handler", {})]
        body = {"error": "boom " * 30, "attempts": 3}
        bus.publish(dead_letter_queue(service_queue("handler")), Envelope(DEAD_ID, DEAD_ID[:22], route, body=body))
        return bus

    from cli import distributed

    monkeypatch.setattr(distributed, "_shared_bus", dead_letters)
    return cli


def _ids(cli) -> dict[str, tuple[list[str], Callable[[Any], list[str]]]]:
    """Each listing: its command, and how to find the ids it must show whole in its JSON."""
    from orchestrator.store import RunStore

    runs = [r.id for r in RunStore(cli_module.settings_for().state).list(10)]
    dep = json.loads(cli("deployments", "--json").stdout)[0]["id"]
    return {
        "runs": (runs, lambda doc: [r["id"] for r in doc]),
        "models list": (["iris-classifier"], lambda doc: [m["model"] for m in doc]),
        "models search": (["iris-classifier"], lambda doc: [c["modelname"] for c in doc]),
        "deployments": ([dep], lambda doc: [d["id"] for d in doc]),
        "dlq list": ([DEAD_ID, DEAD_ID[:22]], lambda doc: [x for d in doc for x in (d["message"], d["run"])]),
        "volume ls": ([LONG_KEY], lambda doc: [o["key"] for o in doc]),
        "steps": (["csv", "one_hot", "drop_na"], lambda doc: [s["step"] for s in doc]),
        "users list": ([USER], lambda doc: [u["name"] for u in doc]),
        "keys list": ([cli.key_id], lambda doc: [k["id"] for k in doc]),
        "monitor status": (["petal_length"], lambda doc: [c["target"] for c in doc]),
        "loop status": ([LOOP_MODEL], lambda doc: [p["model"] for p in doc]),
        "loop history": ([DEAD_ID[:22]], lambda doc: [e["run_id"] for e in doc]),
    }


ARGUMENTS = {"monitor status": ["iris-classifier"], "loop history": [LOOP_MODEL]}  # listings of one thing: which


@pytest.mark.parametrize("console", ["piped", "narrow"])
def test_every_listing_has_json_and_never_cuts_an_id(populated, monkeypatch, console):
    """Piped output (80 columns in $COLUMNS, not a terminal) and a forced 80-column screen keep ids whole."""
    cli = populated
    monkeypatch.setenv("COLUMNS", "80")
    made = cli_module.make_console() if console == "piped" else Console(width=80)
    monkeypatch.setattr(cli_module, "out", made)
    listings = _ids(cli)
    assert set(listings) == _with_json()  # a new --json listing must be added here
    for command, (ids, found_in) in listings.items():
        as_json = cli(*command.split(), *ARGUMENTS.get(command, []), "--json")
        assert as_json.exit_code == 0, (command, as_json.stderr)
        assert set(ids) <= set(found_in(json.loads(as_json.stdout))), command
        table = cli(*command.split(), *ARGUMENTS.get(command, []))
        assert table.exit_code == 0, (command, table.stderr)
        if command == "steps":  # a list, not a table
            assert all(one in table.stdout for one in ids)
            continue
        cells = [line.split("│") for line in table.stdout.splitlines() if line.startswith("│")]
        for one in ids:
            if len(one) < 76:  # fits the screen: on one line
                assert one in table.stdout, (command, one, table.stdout)
            else:  # wider than the screen: folded in its column, every character kept
                assert one in "".join(c[1].strip() for c in cells), (command, one, table.stdout)


def test_piped_output_is_not_laid_out_for_80_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert cli_module.make_console().width > 1000  # no terminal to fit
    assert cli_module.make_console(width=80).width == 80


DURATIONS = {("run", "--timeout"), ("submit", "--timeout"), ("submit", "--start-timeout"), ("gc", "--older-than"),
             ("auth token", "--ttl"), ("loop run", "--interval")}  # fmt: skip
ZERO_MEANS = {"--older-than": "every finished run", "--start-timeout": "wait for ever"}


def _duration_options() -> set[tuple[str, str]]:
    """Options whose value is a time: by name or by their help text saying seconds."""
    found = set()
    for path, cmd in COMMANDS:
        for p in cmd.params:
            words = set(p.name.split("_"))
            if p.param_type_name == "option" and (
                words & {"timeout", "interval", "older", "wait", "deadline", "seconds", "duration"}
                or re.search(r"\bseconds\b|\b\d+[smhd]\b", p.help or "")
            ):
                found.add((" ".join(path), p.opts[0]))
    return found


@pytest.mark.parametrize("value", ["-5", "0", "nan", "inf", "-inf", "1e400"])
def test_every_duration_option_refuses_non_positive_and_non_finite_values(cli, tmp_path, value):
    assert _duration_options() == DURATIONS  # a new timeout or duration option must be checked too
    for command, option in sorted(DURATIONS):
        args = [*command.split(), option, value]
        if command == "auth token":
            args += ["someone", "--scope", "read"]
        if command in ("run", "submit"):
            args.append(tmp_path / "workflow.yaml")  # never read: the option is checked first
        if option in ZERO_MEANS and value == "0":  # 0 has a meaning here: see ZERO_MEANS
            if option == "--older-than":
                assert cli(*args).exit_code == 0
            continue
        assert_one_error(cli(*args), option, "seconds", code=2)
    assert_one_error(cli("gc", "--older-than", f"{value}h"), "--older-than") if value != "0" else None


def test_steps_with_an_unknown_kind_names_the_known_ones(cli):
    assert_one_error(cli("steps", "banana"), "unknown step kind 'banana'", "source, handler, features, sink", code=2)
    assert cli("steps", "sink").exit_code == 0


def test_a_tag_without_equals_is_an_error(cli, iris):
    for bad in ("noequals", "=value", " =x"):
        assert_one_error(cli("models", "search", "--tag", bad), "--tag must be KEY=VALUE", repr(bad), code=2)
    assert cli("models", "search", "--tag", "dataset=iris", "--tag", "empty=").exit_code == 0


def test_deploy_with_neither_version_nor_alias_pins_the_latest(cli, iris):
    assert cli("run", iris / "train.yaml").exit_code == 0
    assert cli("run", iris / "train.yaml").exit_code == 0
    result = cli("deploy", "iris-classifier")
    assert result.exit_code == 0 and "version 2, the latest (pinned)" in result.stderr
    dep_id = result.stdout.strip()
    (dep,) = json.loads(cli("deployments", "--json").stdout)
    assert (dep["id"], dep["version"], dep["alias"]) == (dep_id, 2, None)
    assert cli("run", iris / "train.yaml").exit_code == 0  # a newer version does not move it
    assert json.loads(cli("deployments", "--json").stdout)[0]["version"] == 2
    listing = cli("deployments").stdout
    assert "v2" in listing and "vNone" not in listing
