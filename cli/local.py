"""Commands of the embedded mode: run, validate, schema, steps, runs, version."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live

from cli import common


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

    common.check_seconds(timeout, "--timeout")

    with Embedded(common.settings_for(volume, state)) as mlrm:
        run_id = mlrm.submit(workflow)
        if quiet or not common.out.is_terminal:
            record = mlrm.orchestrator.wait(run_id, timeout=timeout)
        else:
            with Live(console=common.out, refresh_per_second=8, transient=True) as live, _progress_lines(live):
                record = mlrm.orchestrator.wait(
                    run_id, timeout=timeout, on_change=lambda r: live.update(common.steps_table(r))
                )
    common.report_end(record, timeout)


@contextmanager
def _progress_lines(live: Live) -> Iterator[None]:
    """Lines steps log to ``mlrm.progress`` (a Keras training's epochs) printed above the live table."""

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            live.console.print(f"[dim]{record.getMessage()}[/dim]", highlight=False)

    logger, handler = logging.getLogger("mlrm.progress"), Lines(logging.INFO)
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # printed here, not once more by the root handler
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


# -- validate / schema ---------------------------------------------------------------------
@common.app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="Config or workflow files.")]) -> None:
    """Check config files; print every error with file, line, column and field."""
    from mlrm.config import validate_files

    errors = validate_files(list(files))
    for e in errors:
        common.print_error(e.message)
    if errors:
        raise typer.Exit(1)
    common.out.print(f"ok: {len(files)} file(s) valid")


@common.app.command()
@common.user_errors
def schema(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the JSON Schema files.")] = Path("configs/schema"),
) -> None:
    """Write the JSON Schema of every config kind (editors use them to autocomplete)."""
    from mlrm.errors import ConfigError
    from mlrm.schema import write_schemas

    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir}: is a file, not a folder")
    for path in write_schemas(out_dir):
        common.out.print(f"wrote {path}")


# -- runs ----------------------------------------------------------------------------------
@common.runs_app.callback()
@common.user_errors
def runs(
    ctx: typer.Context,
    state: common.StateOpt = None,
    limit: Annotated[int, typer.Option(help="How many runs to list.")] = 20,
    as_json: common.JsonOpt = False,
    url: Annotated[
        str | None, typer.Option("--url", envvar="MLRM_URL", help="List them from the control plane's REST API.")
    ] = None,
) -> None:
    """List past runs, newest first."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = state
        return
    if url:
        from cli import remote

        remote.runs(url, limit, as_json)
        return

    records = _store(state).list(limit)
    if as_json:
        common.print_json([
            {"id": r.id, "workflow": r.workflow, "path": r.path, "mode": r.mode, "status": r.status,
             "created": r.created, "finished": r.finished, "seconds": r.seconds, "error": r.error}
            for r in records
        ])  # fmt: skip
        return
    rows = []
    for r in records:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created))
        seconds = f"{r.seconds:.2f}" if r.seconds is not None else ""
        rows.append((r.id, r.workflow, r.mode, r.status, started, seconds, (r.error or "")[:80]))
    common.print_table(("run", "workflow", "mode", "status", "started", "seconds", "error"), rows, ids={"run"})


@common.runs_app.command("show")
@common.user_errors
def runs_show(
    ctx: typer.Context,
    run_id: Annotated[str | None, typer.Argument(help="Run id or a unique prefix (default: the newest run).")] = None,
) -> None:
    """Show one run: per-step status, timings, row counts, results and errors."""

    record = _store(ctx.obj).find(run_id)
    common.print_run(record)
    for step in record.steps:
        if step.error:
            common.out.print(f"[red]{step.name}[/red]: {step.error}", highlight=False)
    if record.error and not any(step.error for step in record.steps):  # e.g. abandoned by its dead owner
        common.out.print(f"[red]{record.status}[/red]: {record.error}", highlight=False)


@common.app.command()
@common.user_errors
def steps(
    kind: Annotated[str | None, typer.Argument(help="source, handler, features or sink (default: all).")] = None,
    as_json: common.JsonOpt = False,
) -> None:
    """List the built-in step types and their options (from the same models that validate configs)."""
    from typing import get_args

    from mlrm.errors import ConfigError
    from mlrm.extensions import load_plugins
    from mlrm.steps import Kind, registry

    kinds = list(get_args(Kind))
    if kind is not None and kind not in kinds:
        raise ConfigError(f"unknown step kind {kind!r}; known kinds: {', '.join(kinds)}")
    load_plugins()  # every service (and plug-in) registers its steps
    found = []
    for k in [kind] if kind else kinds:
        for name in registry.names(k):
            cls = registry.get(k, name)
            options = [
                {"name": f, "required": info.is_required(), "description": info.description,
                 "default": None if info.is_required() else info.get_default(call_default_factory=True)}
                for f, info in cls.model_fields.items() if f not in ("step", "name")
            ]  # fmt: skip
            found.append({"kind": k, "step": name, "description": (cls.__doc__ or "").strip(), "options": options})
    if as_json:
        common.print_json(found)
        return
    for k in [kind] if kind else kinds:
        common.out.print(f"[bold]{k}[/bold]")
        for step in (s for s in found if s["kind"] == k):
            doc = step["description"].splitlines()[0] if step["description"] else ""
            options = ", ".join(o["name"] for o in step["options"])
            common.out.print(f"  [cyan]{step['step']}[/cyan]: {doc}", highlight=False)
            common.out.print(f"      options: {options or '-'}", highlight=False, style="dim")


@common.app.command()
def version() -> None:
    """Print the mlrm version."""
    from mlrm import __version__

    common.out.print(__version__)


def _store(state: str | None) -> Any:
    """The run store for a look: runs whose owner died are marked abandoned first; a missing store is empty."""
    from orchestrator.store import RunStore

    path = common.settings_for(state=state).state
    if not Path(path).is_file():  # nothing to mark, and looking creates nothing
        return RunStore(path, read_only=True)
    store = RunStore(path)
    store.reap()  # runs whose owner died show as abandoned, not running for ever
    return store
