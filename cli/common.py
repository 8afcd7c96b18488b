"""What every command shares: the app, consoles, options, settings and the error boundary."""

from __future__ import annotations

import functools
import json
import logging
import math
import sys
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Annotated, Any, TypeVar

import click
import typer
from pydantic import ValidationError
from rich.cells import cell_len
from rich.console import Console, ConsoleDimensions
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from mlrm.errors import ConfigError, ConfigErrors, MlrmError, describe, one_line
from mlrm.settings import Settings

app = typer.Typer(help="mlrm: reusable ML microservices configured only by YAML.", no_args_is_help=True)
runs_app = typer.Typer(help="List past runs and show one.", invoke_without_command=True)
models_app = typer.Typer(help="Registered models.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(models_app, name="models")



class _Console(Console):
    """Rich's console, except that output which is not a terminal (a pipe, a file) is never cut to fit.

    Rich lays out for 80 columns (or ``$COLUMNS``) when it cannot ask a terminal, which
    shortened ids in piped listings; there is no screen to fit then, so lines are as long as
    their content. A width given to the constructor is kept.
    """

    def __init__(self, *args: Any, width: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, width=width, **kwargs)
        self._fixed_width = width

    @property
    def size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)  # type: ignore[attr-defined]
        if self._fixed_width is None and not self.is_terminal:
            return ConsoleDimensions(UNCUT_WIDTH, size.height)
        return size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]
        self._fixed_width = new_size[0]


UNCUT_WIDTH = 100_000


def make_console(*, stderr: bool = False, width: int | None = None) -> Console:
    return _Console(stderr=stderr, width=width)


out = make_console()
err = make_console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

VolumeOpt = Annotated[str | None, typer.Option("--volume", help="Volume folder or URL [env MLRM_VOLUME].")]
StateOpt = Annotated[str | None, typer.Option("--state", help="Run-record SQLite file [env MLRM_STATE].")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts) instead of a table.")]


# -- listings ----------------------------------------------------------------------------------
def print_json(value: Any) -> None:
    """One JSON document on stdout, nothing else: what ``--json`` prints."""
    sys.stdout.write(json.dumps(value, indent=2, default=str, ensure_ascii=False) + "\n")


def print_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, ids: Collection[str] = ()) -> None:
    """A listing as a table. Columns named in ``ids`` are never shortened: the other columns give way,
    and an id wider than the whole screen folds onto the next line rather than losing characters."""
    rows = [[str(cell) for cell in row] for row in rows]
    table = Table()
    for i, col in enumerate(columns):
        if col in ids:
            widest = max([cell_len(col), *(cell_len(row[i]) for row in rows)])
            table.add_column(col, overflow="fold", min_width=min(widest, max(out.width - 4, 1)))
        else:
            table.add_column(col)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # text, not markup: a key like data[1].csv stays whole
    out.print(table)


# -- option values typer cannot check ------------------------------------------------------------
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def check_seconds(value: float | None, option: str, *, zero: bool = False) -> float | None:
    """A timeout or duration option: a finite number of seconds, positive (or >= 0 with ``zero``)."""
    if value is None:
        return None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        wanted = "zero or more" if zero else "a positive number of"
        raise ConfigError(f"{option} must be {wanted} seconds (finite), got {value:g}")
    return value


def parse_duration(text: str, option: str, *, zero: bool = False) -> float:
    """``3600``, ``90s``, ``30m``, ``24h`` or ``7d`` as seconds, checked like :func:`check_seconds`."""
    value = text.strip()
    try:
        seconds = float(value[:-1]) * _UNITS[value[-1]] if value[-1:] in _UNITS else float(value)
    except ValueError:
        raise ConfigError(f"{option} must be seconds or a number with s/m/h/d, e.g. 24h; got {text!r}") from None
    checked = check_seconds(seconds, option, zero=zero)
    assert checked is not None
    return checked


def key_value_pairs(values: Iterable[str], option: str) -> dict[str, str]:
    """Repeated ``KEY=VALUE`` options as a dict; anything else is an error, never silently skipped."""
    pairs: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option} must be KEY=VALUE, got {value!r}")
        pairs[key.strip()] = rest
    return pairs


def settings_for(volume: str | None = None, state: str | None = None) -> Settings:
    overrides = {k: v for k, v in {"volume": volume, "state": state}.items() if v is not None}
    return Settings(**overrides)


def print_error(message: str) -> None:
    """One ``error: ...`` line on stderr; the message is text, never rich markup (``mlrm[s3dev]`` stays)."""
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)


def user_errors(fn: F) -> F:
    """Print MlrmErrors (and options a pydantic model refused) as ``error: ...`` lines, no traceback.

    Any other exception is a bug or an input no one mapped to an error yet: it is reported on one
    line too, and re-raised with its traceback only when debugging (``mlrm -v``).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigErrors as exc:
            for e in exc.errors:
                print_error(e.message)
            raise typer.Exit(exc.exit_code) from None
        except MlrmError as exc:
            print_error(exc.message)
            raise typer.Exit(exc.exit_code) from None
        except ValidationError as exc:  # command-line options built into a pydantic model
            reason = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
            print_error(reason)
            raise typer.Exit(ConfigErrors.exit_code) from None
        except (typer.Exit, typer.Abort, typer.BadParameter, click.ClickException):  # typer's own exits and usage
            raise
        except OSError as exc:  # a path given on the command line that cannot be used
            where = f"{exc.filename}: " if exc.filename else ""
            print_error(f"{where}{exc.strerror or exc}")
            raise typer.Exit(1) from None
        except Exception as exc:  # a bug (or an input nobody mapped yet): one line; the traceback with -v
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            print_error(one_line(f"unexpected {describe(exc)} (run with -v for the traceback)", 2000))
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def report_skipped(skipped: list[MlrmError]) -> None:
    """After a listing: name every record it skipped as unreadable; exit 1 if there was any."""
    for exc in skipped:
        print_error(f"{exc.message}; skipped it")
    if skipped:
        raise typer.Exit(1)


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
    if record.status in ("failed", "abandoned", "cancelled"):
        print_error(str(record.error))
        raise typer.Exit(1)
    if not record.done:
        print_error(f"run {record.id} did not finish within {timeout}s")
        raise typer.Exit(1)
