"""``mlrm monitor``: drift checks and their history, and bulk feedback."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from cli import common

monitor_app = typer.Typer(help="Monitoring: drift checks, their history, feedback.", no_args_is_help=True)
common.app.add_typer(monitor_app, name="monitor")


def _when(at: float | None) -> str:
    return "" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _print_checks(checks: list, as_json: bool) -> None:
    if as_json:
        common.print_json([c.model_dump(mode="json") for c in checks])
        return
    rows = [
        (_when(c.at), str(c.version), c.detector, c.on, c.target, _number(c.statistic), _number(c.p_value),
         _number(c.threshold), str(c.samples), "DRIFT" if c.drifted else ("-" if c.reason else "ok"), c.reason or "")
        for c in checks
    ]  # fmt: skip
    columns = ("at (UTC)", "version", "detector", "on", "target", "statistic", "p-value", "threshold", "samples",
               "verdict", "reason")  # fmt: skip
    common.print_table(columns, rows, ids={"target"})


@monitor_app.command("status")
@common.user_errors
def status(
    model: Annotated[str, typer.Argument(help="Model name.")],
    limit: Annotated[int | None, typer.Option(help="Only the newest N runs of checks.", min=1)] = None,
    drifted: Annotated[bool, typer.Option("--drifted", help="Only the checks that found drift.")] = False,
    volume: common.VolumeOpt = None,
    as_json: common.JsonOpt = False,
) -> None:
    """The recorded drift checks of a model, oldest first."""
    from mlrm.monitoring import history
    from mlrm.registry import ModelRegistry
    from mlrm.volume import open_volume

    store = open_volume(common.settings_for(volume).volume)
    ModelRegistry(store).resolve(model)  # a clear error for a model that does not exist
    checks = history(store, model, limit=limit)
    if drifted:
        checks = [c for c in checks if c.drifted]
    if not checks and not as_json:
        common.err.print(f"no drift checks recorded for {model} yet (run: mlrm monitor check MONITOR.yaml)")
        return
    _print_checks(checks, as_json)


@monitor_app.command("check")
@common.user_errors
def check(
    config: Annotated[Path, typer.Argument(help="A MonitorConfig file.")],
    volume: common.VolumeOpt = None,
    fail_on_drift: Annotated[bool, typer.Option("--fail-on-drift", help="Exit 1 when a check finds drift.")] = False,
) -> None:
    """Run a MonitorConfig's detectors now; the checks are added to the model's history."""
    from mlrm.config import load_config
    from mlrm.monitoring import MonitorConfig, run_checks
    from mlrm.volume import open_volume

    monitor = load_config(config, MonitorConfig)
    checks = run_checks(open_volume(common.settings_for(volume).volume), monitor)
    _print_checks(checks, False)  # `mlrm monitor status MODEL --json` lists them as JSON
    if fail_on_drift and any(c.drifted for c in checks):
        raise typer.Exit(1)


@monitor_app.command("feedback")
@common.user_errors
def feedback(
    model: Annotated[str, typer.Argument(help="Model name.")],
    collector: Annotated[Path, typer.Argument(help="A CollectorConfig whose source holds the labels.")],
    label: Annotated[str, typer.Option(help="The column holding the true labels.")],
    row_id: Annotated[str | None, typer.Option(help="The column of row ids (see a deployment's log.row_id).")] = None,
    request_id: Annotated[str | None, typer.Option(help="The column of request ids (instead of --row-id).")] = None,
    row: Annotated[str | None, typer.Option(help="With --request-id: the column of row numbers.")] = None,
    volume: common.VolumeOpt = None,
) -> None:
    """Bulk labels: read a collector config's source and store its rows as feedback for MODEL."""
    from mlrm.config import load_config
    from mlrm.context import StepContext
    from mlrm.monitoring import feedback_from_frame
    from mlrm.registry import ModelRegistry
    from mlrm.volume import open_volume

    store = open_volume(common.settings_for(volume).volume)
    ModelRegistry(store).resolve(model)
    source_config = load_config(collector)
    source = getattr(source_config, "source", None)
    if source is None:
        from mlrm.errors import ConfigError

        raise ConfigError(f"{collector} is a {source_config.kind}, not a CollectorConfig with a 'source'")
    ctx = StepContext(
        store, run_id=f"feedback-{int(time.time())}", step="feedback", base_dir=collector.parent.resolve()
    )
    total = 0
    for batch in source.read(ctx, getattr(source_config, "batch_size", 10_000)):
        total += feedback_from_frame(store, model, batch, label=label, row_id=row_id, request_id=request_id, row=row)
    common.out.print(f"stored {total} label(s) for {model}")
