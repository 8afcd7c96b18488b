"""What every command shares: the app, consoles, options, settings and the error boundary."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from mlrm.errors import ConfigErrors, MlrmError
from mlrm.settings import Settings

app = typer.Typer(help="mlrm: reusable ML microservices configured only by YAML.", no_args_is_help=True)
runs_app = typer.Typer(help="List past runs and show one.", invoke_without_command=True)
models_app = typer.Typer(help="Registered models.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(models_app, name="models")

out = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

VolumeOpt = Annotated[str | None, typer.Option("--volume", help="Volume folder or URL [env MLRM_VOLUME].")]
StateOpt = Annotated[str | None, typer.Option("--state", help="Run-record SQLite file [env MLRM_STATE].")]


def settings_for(volume: str | None = None, state: str | None = None) -> Settings:
    overrides = {k: v for k, v in {"volume": volume, "state": state}.items() if v is not None}
    return Settings(**overrides)


def user_errors(fn: F) -> F:
    """Print MlrmErrors (and options a pydantic model refused) as ``error: ...`` lines, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigErrors as exc:
            for e in exc.errors:
                err.print(f"[red]error:[/red] {e.message}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except MlrmError as exc:
            err.print(f"[red]error:[/red] {exc.message}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except ValidationError as exc:  # command-line options built into a pydantic model
            reason = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
            err.print(f"[red]error:[/red] {reason}", highlight=False, soft_wrap=True)
            raise typer.Exit(ConfigErrors.exit_code) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug details.")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


def steps_table(record: Any) -> Table:
    table = Table(title=f"run {record.id} · {record.workflow} · {record.status}", title_justify="left")
    for col in ("step", "service", "status", "batches", "rows in", "rows out", "seconds", "workers"):
        table.add_column(col, justify="right" if col in ("batches", "rows in", "rows out", "seconds") else "left")
    colours = {"succeeded": "green", "failed": "red", "abandoned": "red", "running": "yellow", "pending": "dim"}
    for s in record.steps:
        seconds = f"{s.seconds:.2f}" if s.seconds is not None else ""
        table.add_row(
            s.name, s.service, f"[{colours.get(s.status, '')}]{s.status}[/]", str(s.batches_in),
            f"{s.rows_in:,}", f"{s.rows_out:,}", seconds, ", ".join(sorted(s.workers)),
        )  # fmt: skip
    return table


def print_run(record: Any) -> None:
    out.print(steps_table(record))
    for step in record.steps:
        if step.result:
            out.print(f"[bold]{step.name}[/bold]: " + describe_result(step.result), highlight=False)
    if record.seconds is not None:
        out.print(f"{record.status} in {record.seconds:.2f}s", highlight=False)


def describe_result(result: dict[str, Any]) -> str:
    parts = []
    if "version" in result:
        parts.append(f"model {result['model']} version {result['version']}")
    if result.get("metrics"):
        parts.append(", ".join(f"{k}={v:.4f}" for k, v in result["metrics"].items() if not k.endswith("_std")))
    if "aliases" in result:
        parts.append("aliases: " + (", ".join(result["aliases"]) or "none"))
    if "output" in result:
        parts.append(f"predictions written to {result['output']}")
    for adoption in result.get("adopted") or []:  # a job taken over from a dead replica
        parts.append(f"adopted by {adoption['by']} from {adoption['from']}")
    return "; ".join(parts)


def report_end(record: Any, timeout: float | None) -> None:
    """Print a finished (or timed-out) run; exit 1 unless it succeeded."""
    print_run(record)
    if record.status in ("failed", "abandoned"):
        err.print(f"[red]error:[/red] {record.error}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    if not record.done:
        err.print(f"[red]error:[/red] run {record.id} did not finish within {timeout}s")
        raise typer.Exit(1)
