"""Commands of the embedded mode: run, validate, schema, steps, runs, version."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.live import Live
from rich.table import Table

from mlrm.cli import common


# -- run ---------------------------------------------------------------------------------
@common.app.command()
@common.user_errors
def run(
    workflow: Annotated[Path, typer.Argument(help="Workflow YAML file.")],
    volume: common.VolumeOpt = None,
    state: common.StateOpt = None,
    timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live progress, only the summary.")] = False,
) -> None:
    """Run a workflow embedded: every service in this process, no servers needed."""
    from orchestrator.embedded import Embedded

    with Embedded(common.settings_for(volume, state)) as mlrm:
        run_id = mlrm.submit(workflow)
        if quiet or not common.out.is_terminal:
            record = mlrm.orchestrator.wait(run_id, timeout=timeout)
        else:
            with Live(console=common.out, refresh_per_second=8, transient=True) as live:
                record = mlrm.orchestrator.wait(
                    run_id, timeout=timeout, on_change=lambda r: live.update(common.steps_table(r))
                )
    common.report_end(record, timeout)


# -- validate / schema ---------------------------------------------------------------------
@common.app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="Config or workflow files.")]) -> None:
    """Check config files; print every error with file, line, column and field."""
    from mlrm.config import validate_files

    errors = validate_files(list(files))
    for e in errors:
        common.err.print(f"[red]error:[/red] {e.message}", highlight=False, soft_wrap=True)
    if errors:
        raise typer.Exit(1)
    common.out.print(f"ok: {len(files)} file(s) valid")


@common.app.command()
def schema(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the JSON Schema files.")] = Path("configs/schema"),
) -> None:
    """Write the JSON Schema of every config kind (editors use them to autocomplete)."""
    from mlrm.schema import write_schemas

    for path in write_schemas(out_dir):
        common.out.print(f"wrote {path}")


# -- runs ----------------------------------------------------------------------------------
@common.runs_app.callback()
@common.user_errors
def runs(
    ctx: typer.Context,
    state: common.StateOpt = None,
    limit: Annotated[int, typer.Option(help="How many runs to list.")] = 20,
) -> None:
    """List past runs, newest first."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = state
        return
    from orchestrator.store import RunStore

    store = RunStore(common.settings_for(state=state).state)
    store.reap()  # runs whose owner died show as abandoned, not running for ever
    table = Table()
    for col in ("run", "workflow", "mode", "status", "started", "seconds", "error"):
        table.add_column(col)
    for r in store.list(limit):
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created))
        seconds = f"{r.seconds:.2f}" if r.seconds is not None else ""
        table.add_row(r.id, r.workflow, r.mode, r.status, started, seconds, (r.error or "")[:80])
    common.out.print(table)


@common.runs_app.command("show")
@common.user_errors
def runs_show(
    ctx: typer.Context,
    run_id: Annotated[str | None, typer.Argument(help="Run id or a unique prefix (default: the newest run).")] = None,
) -> None:
    """Show one run: per-step status, timings, row counts, results and errors."""
    from orchestrator.store import RunStore

    store = RunStore(common.settings_for(state=ctx.obj).state)
    store.reap()
    record = store.find(run_id)
    common.print_run(record)
    for step in record.steps:
        if step.error:
            common.out.print(f"[red]{step.name}[/red]: {step.error}", highlight=False)
    if record.error and not any(step.error for step in record.steps):  # e.g. abandoned by its dead owner
        common.out.print(f"[red]{record.status}[/red]: {record.error}", highlight=False)


@common.app.command()
def steps(
    kind: Annotated[str | None, typer.Argument(help="source, handler, features or sink (default: all).")] = None,
) -> None:
    """List the built-in step types and their options (from the same models that validate configs)."""
    from mlrm.config import SERVICES, service_class
    from mlrm.steps import registry

    for name in SERVICES:
        service_class(name)  # importing a service registers its steps
    for k in [kind] if kind else ["source", "handler", "features", "sink"]:
        common.out.print(f"[bold]{k}[/bold]")
        for name in registry.names(k):
            cls = registry.get(k, name)
            doc = (cls.__doc__ or "").strip().splitlines()[0]
            options = ", ".join(f for f in cls.model_fields if f not in ("step", "name"))
            common.out.print(f"  [cyan]{name}[/cyan]: {doc}", highlight=False)
            common.out.print(f"      options: {options or '-'}", highlight=False, style="dim")


@common.app.command()
def version() -> None:
    """Print the mlrm version."""
    from mlrm import __version__

    common.out.print(__version__)
