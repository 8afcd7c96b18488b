"""The ``mlrm`` command line. Every user error ends as one line on stderr and a non-zero exit."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.live import Live
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


def _settings(volume: str | None = None, state: str | None = None) -> Settings:
    overrides = {k: v for k, v in {"volume": volume, "state": state}.items() if v is not None}
    return Settings(**overrides)


def user_errors(fn: F) -> F:
    """Print MlrmErrors as ``error: ...`` lines (no traceback) and exit with their code."""

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

    return wrapper  # type: ignore[return-value]


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug details.")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


# -- run ---------------------------------------------------------------------------------
@app.command()
@user_errors
def run(
    workflow: Annotated[Path, typer.Argument(help="Workflow YAML file.")],
    volume: VolumeOpt = None,
    state: StateOpt = None,
    timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live progress, only the summary.")] = False,
) -> None:
    """Run a workflow embedded: every service in this process, no servers needed."""
    from orchestrator.embedded import Embedded

    with Embedded(_settings(volume, state)) as mlrm:
        run_id = mlrm.submit(workflow)
        if quiet or not out.is_terminal:
            record = mlrm.orchestrator.wait(run_id, timeout=timeout)
        else:
            with Live(console=out, refresh_per_second=8, transient=True) as live:
                record = mlrm.orchestrator.wait(
                    run_id, timeout=timeout, on_change=lambda r: live.update(_steps_table(r))
                )
    _print_run(record)
    if record.status == "failed":
        err.print(f"[red]error:[/red] {record.error}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    if not record.done:
        err.print(f"[red]error:[/red] run {record.id} did not finish within {timeout}s")
        raise typer.Exit(1)


def _steps_table(record: Any) -> Table:
    table = Table(title=f"run {record.id} · {record.workflow} · {record.status}", title_justify="left")
    for col in ("step", "service", "status", "batches", "rows in", "rows out", "seconds", "workers"):
        table.add_column(col, justify="right" if col in ("batches", "rows in", "rows out", "seconds") else "left")
    colours = {"succeeded": "green", "failed": "red", "running": "yellow", "pending": "dim"}
    for s in record.steps:
        seconds = f"{s.seconds:.2f}" if s.seconds is not None else ""
        table.add_row(
            s.name, s.service, f"[{colours.get(s.status, '')}]{s.status}[/]", str(s.batches_in),
            f"{s.rows_in:,}", f"{s.rows_out:,}", seconds, ", ".join(sorted(s.workers)),
        )  # fmt: skip
    return table


def _print_run(record: Any) -> None:
    out.print(_steps_table(record))
    for step in record.steps:
        if step.result:
            out.print(f"[bold]{step.name}[/bold]: " + _describe_result(step.result), highlight=False)
    if record.seconds is not None:
        out.print(f"{record.status} in {record.seconds:.2f}s", highlight=False)


def _describe_result(result: dict[str, Any]) -> str:
    parts = []
    if "version" in result:
        parts.append(f"model {result['model']} version {result['version']}")
    if result.get("metrics"):
        parts.append(", ".join(f"{k}={v:.4f}" for k, v in result["metrics"].items() if not k.endswith("_std")))
    if "aliases" in result:
        parts.append("aliases: " + (", ".join(result["aliases"]) or "none"))
    if "output" in result:
        parts.append(f"predictions written to {result['output']}")
    return "; ".join(parts)


# -- distributed mode ----------------------------------------------------------------------
dlq_app = typer.Typer(help="Dead-lettered messages: list them, replay them.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
SERVICE_NAMES = ("collector", "handler", "features", "train", "predict")


def _wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    import signal
    import threading

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass


def _shared_bus(settings: Settings) -> Any:
    from mlrm.bus import open_bus
    from mlrm.errors import ConfigError

    if settings.bus.startswith("memory://"):
        raise ConfigError(
            "this command needs a shared bus: set MLRM_BUS (e.g. amqp://guest:guest@127.0.0.1:5672/%2F); "
            "to run everything in this process use `mlrm run`"
        )
    return open_bus(settings.bus)


@app.command()
@user_errors
def serve(
    service: Annotated[str, typer.Argument(help="collector, handler, features, train or predict.")],
    replicas: Annotated[int, typer.Option(min=1, help="Consumers in this process.")] = 1,
    worker: Annotated[str | None, typer.Option(help="Name shown in run records (default SERVICE@host:pid).")] = None,
    node: Annotated[str | None, typer.Option(help="Node label for strict deployments [env MLRM_NODE].")] = None,
    prefetch: Annotated[int | None, typer.Option(min=1, help="Messages taken at once [env MLRM_PREFETCH].")] = None,
    nameko: Annotated[bool, typer.Option(help="predict: also answer nameko RPC (predict.infer).")] = True,
) -> None:
    """Run one service on the shared bus until Ctrl-C (distributed mode)."""
    import socket

    from mlrm.config import service_class
    from mlrm.errors import ConfigError
    from mlrm.volume import open_volume

    if service not in SERVICE_NAMES:
        raise ConfigError(f"unknown service '{service}'; one of {', '.join(SERVICE_NAMES)}")
    settings = _settings()
    bus = _shared_bus(settings)
    volume = open_volume(settings.volume)
    base = worker or f"{service}@{socket.gethostname()}:{os.getpid()}"
    extra: dict[str, Any] = {}
    if service == "predict":
        extra = {"node": node or settings.node, "watch_interval": settings.watch_interval}
    cls = service_class(service)
    services = [
        cls(bus, volume, retries=settings.retries, prefetch=prefetch or settings.prefetch,
            worker=base if replicas == 1 else f"{base}/{i}", **extra)
        for i in range(replicas)
    ]  # fmt: skip
    for s in services:
        s.start()
    bus.start()
    responder = None
    if nameko and service == "predict":  # nameko clients can call predict.infer(...) on the same broker
        from mlrm.nameko import NamekoResponder
        from services.predict.rpc import methods

        responder = NamekoResponder(settings.bus, "predict", methods(services[0])).start()
    err.print(f"{base}: serving {service} ({replicas} consumer(s)) on {bus.url}, volume {volume.url}")
    try:
        _wait_for_signal()
    finally:
        if responder is not None:
            responder.stop()
        for s in services:
            s.stop()
        bus.close()
        volume.close()


@app.command("orchestrator")
@user_errors
def orchestrator_cmd(state: StateOpt = None) -> None:
    """Run the orchestrator on the shared bus until Ctrl-C (distributed mode)."""
    from mlrm.volume import open_volume
    from orchestrator.orchestrator import Orchestrator
    from orchestrator.store import RunStore

    settings = _settings(state=state)
    bus = _shared_bus(settings)
    volume = open_volume(settings.volume)
    store = RunStore(settings.state)
    Orchestrator(bus, volume, store).start()
    bus.start()
    err.print(f"orchestrator: runs in {settings.state}, bus {bus.url}, volume {volume.url}")
    try:
        _wait_for_signal()
    finally:
        bus.close()
        store.close()
        volume.close()


@app.command()
@user_errors
def submit(
    workflow: Annotated[Path, typer.Argument(help="Workflow YAML file.")],
    follow: Annotated[bool, typer.Option(help="Follow progress until the run ends.")] = True,
    timeout: Annotated[float | None, typer.Option(help="Stop following after this many seconds.")] = None,
) -> None:
    """Submit a workflow to a running orchestrator; prints the run id and follows it."""
    from orchestrator.compile import compile_workflow
    from orchestrator.orchestrator import SUBMIT_QUEUE, submission

    settings = _settings()
    compiled = compile_workflow(workflow)  # every config is validated here, before anything is sent
    bus = _shared_bus(settings)
    try:
        message = submission(compiled)
        bus.publish(SUBMIT_QUEUE, message)
    finally:
        bus.close()
    err.print(f"submitted run {message.run_id}")
    if follow:
        _follow(message.run_id, settings, timeout)
    else:
        sys.stdout.write(message.run_id + "\n")


@app.command()
@user_errors
def status(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    follow: Annotated[bool, typer.Option(help="Keep following until the run ends.")] = False,
    volume: VolumeOpt = None,
) -> None:
    """Show a run's state as the orchestrator last published it (works from any machine)."""
    settings = _settings(volume)
    if follow:
        _follow(run_id, settings, None)
        return
    from mlrm.volume import open_volume
    from orchestrator.orchestrator import read_status

    record = read_status(open_volume(settings.volume), run_id)
    _print_run(record)
    if record.error:
        err.print(f"[red]error:[/red] {record.error}", highlight=False, soft_wrap=True)


def _follow(run_id: str, settings: Settings, timeout: float | None) -> None:
    from mlrm.errors import NotFoundError
    from mlrm.volume import open_volume
    from orchestrator.orchestrator import read_status

    volume = open_volume(settings.volume)
    deadline = None if timeout is None else time.monotonic() + timeout
    record = None
    with Live(console=out, refresh_per_second=4, transient=True) as live:
        while deadline is None or time.monotonic() < deadline:
            try:
                record = read_status(volume, run_id)
            except NotFoundError:
                live.update(f"waiting for the orchestrator to start run {run_id} ...")
            else:
                live.update(_steps_table(record))
                if record.done:
                    break
            time.sleep(0.2)
    if record is None:
        raise NotFoundError(f"run {run_id} was not started within {timeout}s: is `mlrm orchestrator` running?")
    _print_run(record)
    if record.status == "failed":
        err.print(f"[red]error:[/red] {record.error}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    if not record.done:
        err.print(f"[red]error:[/red] run {run_id} did not finish within {timeout}s")
        raise typer.Exit(1)


@app.command()
@user_errors
def up(deployment: Annotated[Path, typer.Argument(help="LocalDeployment YAML file.")]) -> None:
    """Start the orchestrator and every service replica as processes; Ctrl-C stops them all."""
    from mlrm.config import load_config
    from orchestrator.local import LocalDeployment, Supervisor

    spec = load_config(deployment, LocalDeployment)
    supervisor = Supervisor(spec)
    names = ", ".join(f"{n} x{r.replicas}" for n, r in spec.services.items())
    err.print(f"starting orchestrator + {names} on {spec.bus}; Ctrl-C stops everything")
    supervisor.run()
    err.print("stopped")


@dlq_app.command("list")
@user_errors
def dlq_list(services: Annotated[list[str] | None, typer.Argument(help="Services (default: all).")] = None) -> None:
    """Show dead-lettered messages: which run and step, after how many attempts, and why."""
    from mlrm.bus import dead_letter_queue, service_queue

    bus = _shared_bus(_settings())
    table = Table()
    for col in ("service", "message", "run", "step", "attempts", "error"):
        table.add_column(col)
    try:
        for name in services or SERVICE_NAMES:
            for env in bus.peek(dead_letter_queue(service_queue(name))):
                step = env.route[env.hop].name if env.route else "?"
                table.add_row(name, env.id, env.run_id, step, str(env.body.get("attempts", "?")),
                              str(env.body.get("error", "dead-lettered by the broker")))  # fmt: skip
    finally:
        bus.close()
    out.print(table)


@dlq_app.command("replay")
@user_errors
def dlq_replay(
    services: Annotated[list[str] | None, typer.Argument(help="Services (default: all).")] = None,
    run: Annotated[str | None, typer.Option(help="Only messages of this run.")] = None,
) -> None:
    """Put dead-lettered messages back on their service's queue; their runs are reopened."""
    from mlrm.bus import Envelope, dead_letter_queue, service_queue
    from orchestrator.orchestrator import SUBMIT_QUEUE

    bus = _shared_bus(_settings())
    replayed = 0
    try:
        for name in services or SERVICE_NAMES:
            dlq = dead_letter_queue(service_queue(name))
            for env in bus.drain(dlq):
                if run is not None and env.run_id != run:
                    bus.publish(dlq, env)  # not ours: put it back
                    continue
                reopen = Envelope(id=f"{env.run_id}/reopen", run_id=env.run_id, body={"op": "reopen"})
                bus.publish(SUBMIT_QUEUE, reopen)
                env.body = {}
                bus.publish(service_queue(name), env)
                replayed += 1
    finally:
        bus.close()
    out.print(f"replayed {replayed} message(s)")


# -- validate / schema ---------------------------------------------------------------------
@app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="Config or workflow files.")]) -> None:
    """Check config files; print every error with file, line, column and field."""
    from mlrm.config import validate_files

    errors = validate_files(list(files))
    for e in errors:
        err.print(f"[red]error:[/red] {e.message}", highlight=False, soft_wrap=True)
    if errors:
        raise typer.Exit(1)
    out.print(f"ok: {len(files)} file(s) valid")


@app.command()
def schema(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the JSON Schema files.")] = Path("configs/schema"),
) -> None:
    """Write the JSON Schema of every config kind (editors use them to autocomplete)."""
    from mlrm.schema import write_schemas

    for path in write_schemas(out_dir):
        out.print(f"wrote {path}")


# -- runs ----------------------------------------------------------------------------------
@runs_app.callback()
@user_errors
def runs(
    ctx: typer.Context,
    state: StateOpt = None,
    limit: Annotated[int, typer.Option(help="How many runs to list.")] = 20,
) -> None:
    """List past runs, newest first."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = state
        return
    from orchestrator.store import RunStore

    store = RunStore(_settings(state=state).state)
    table = Table()
    for col in ("run", "workflow", "mode", "status", "started", "seconds", "error"):
        table.add_column(col)
    for r in store.list(limit):
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created))
        seconds = f"{r.seconds:.2f}" if r.seconds is not None else ""
        table.add_row(r.id, r.workflow, r.mode, r.status, started, seconds, (r.error or "")[:80])
    out.print(table)


@runs_app.command("show")
@user_errors
def runs_show(ctx: typer.Context, run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")]) -> None:
    """Show one run: per-step status, timings, row counts, results and errors."""
    from orchestrator.store import RunStore

    record = RunStore(_settings(state=ctx.obj).state).find(run_id)
    _print_run(record)
    for step in record.steps:
        if step.error:
            out.print(f"[red]{step.name}[/red]: {step.error}", highlight=False)


# -- models --------------------------------------------------------------------------------
@models_app.command("list")
@user_errors
def models_list(volume: VolumeOpt = None) -> None:
    """Every registered model with its versions and aliases."""
    from mlrm.registry import ModelRegistry
    from mlrm.volume import open_volume

    registry = ModelRegistry(open_volume(_settings(volume).volume))
    table = Table()
    for col in ("model", "kind", "versions", "aliases", "latest metrics"):
        table.add_column(col)
    for name in registry.names():
        versions = registry.versions(name)
        from mlrm.context import ModelRef

        card = registry.card(ModelRef(name, versions[-1]))
        aliases = ", ".join(f"{a}→{v}" for a, v in sorted(registry.aliases(name).items()))
        metrics = ", ".join(f"{k}={v:.3f}" for k, v in card["modelperform"]["metrics"].items())
        table.add_row(name, card["modelkind"], ", ".join(map(str, versions)), aliases, metrics)
    out.print(table)


@models_app.command("show")
@user_errors
def models_show(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int | None, typer.Option(help="Version (default: latest).")] = None,
    alias: Annotated[str | None, typer.Option(help="Alias instead of a version.")] = None,
    volume: VolumeOpt = None,
) -> None:
    """Print a model version's card as JSON."""
    from mlrm.registry import ModelRegistry
    from mlrm.volume import open_volume

    registry = ModelRegistry(open_volume(_settings(volume).volume))
    ref = registry.resolve(name, alias=alias, version=version)
    sys.stdout.write(json.dumps(registry.card(ref), indent=2) + "\n")


@models_app.command("search")
@user_errors
def models_search(
    kind: Annotated[str | None, typer.Option(help="classification or regression.")] = None,
    features: Annotated[str | None, typer.Option(help="Comma-separated columns you have.")] = None,
    where: Annotated[str | None, typer.Option(help='Metric condition, e.g. "accuracy >= 0.9".')] = None,
    tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE a model must carry (repeatable).")] = None,
    name: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    latest: Annotated[bool, typer.Option(help="Only the newest matching version of each model.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the matching cards as JSON.")] = False,
    volume: VolumeOpt = None,
) -> None:
    """Find model versions by kind, by the features you have, by metrics and by tags."""
    from pydantic import ValidationError

    from mlrm.discovery import ModelQuery, search
    from mlrm.errors import ConfigError
    from mlrm.registry import ModelRegistry
    from mlrm.volume import open_volume

    tags = dict(t.split("=", 1) for t in tag or [] if "=" in t)
    try:
        query = ModelQuery(
            name=name, kind=kind, where=where, tags=tags, latest=latest,
            features=[f.strip() for f in features.split(",")] if features else None,
        )  # fmt: skip
    except ValidationError as exc:
        raise ConfigError("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None
    cards = search(ModelRegistry(open_volume(_settings(volume).volume)), query)
    if as_json:
        sys.stdout.write(json.dumps(cards, indent=2) + "\n")
        return
    table = Table()
    for col in ("model", "version", "kind", "features", "metrics", "tags"):
        table.add_column(col)
    for c in cards:
        metrics = ", ".join(f"{k}={v:.3f}" for k, v in c["modelperform"]["metrics"].items())
        feats = ", ".join(f["name"] for f in c["featurelist"])
        tags_text = ", ".join(f"{k}={v}" for k, v in (c.get("tags") or {}).items())
        table.add_row(c["modelname"], str(c["version"]), c["modelkind"], feats, metrics, tags_text)
    out.print(table)


@models_app.command("alias")
@user_errors
def models_alias(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias, e.g. production.")],
    version: Annotated[int, typer.Argument(help="Version the alias should point at.")],
    volume: VolumeOpt = None,
) -> None:
    """Point an alias at a version (running predict services switch to it without a restart)."""
    from mlrm.registry import ModelRegistry
    from mlrm.volume import open_volume

    ModelRegistry(open_volume(_settings(volume).volume)).set_alias(name, alias, version)
    out.print(f"{name}@{alias} -> version {version}")


@app.command()
@user_errors
def deploy(
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int | None, typer.Option(help="A fixed version.")] = None,
    alias: Annotated[str | None, typer.Option(help="An alias to follow (hot-reloads when re-pointed).")] = None,
    mode: Annotated[str, typer.Option(help="open (any replica) or strict (only replicas on --node).")] = "open",
    node: Annotated[str | None, typer.Option(help="Node label required in strict mode.")] = None,
    cpu: Annotated[float, typer.Option(help="CPU cores to reserve.")] = 1.0,
    memory: Annotated[str, typer.Option(help="Memory to reserve, e.g. 512Mi.")] = "512Mi",
    volume: VolumeOpt = None,
) -> None:
    """Queue a deployment; predict replicas pick it up and load it. Prints the deployment id."""
    from pydantic import ValidationError

    from mlrm.deployments import Deployments, DeployRequest
    from mlrm.errors import ConfigError
    from mlrm.volume import open_volume

    try:
        request = DeployRequest(
            model=model, version=version, alias=alias, mode=mode, node=node,  # type: ignore[arg-type]
            resources={"cpu": cpu, "memory": memory},  # type: ignore[arg-type]
        )  # fmt: skip
    except ValidationError as exc:
        raise ConfigError("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None
    dep = Deployments(open_volume(_settings(volume).volume)).create(request)
    sys.stdout.write(dep.id + "\n")


@app.command()
@user_errors
def decommission(
    deployment: Annotated[str, typer.Argument(help="Deployment id.")],
    delete: Annotated[bool, typer.Option(help="Second step: delete the version if nothing references it.")] = False,
    volume: VolumeOpt = None,
) -> None:
    """Unload a deployment (the version stays in the registry); with --delete, also delete the version."""
    from mlrm.deployments import Deployments
    from mlrm.volume import open_volume

    deps = Deployments(open_volume(_settings(volume).volume))
    dep = deps.get(deployment)
    if dep.status in ("queued", "active"):
        dep = deps.unload(deployment)
        out.print(f"{dep.id}: unloaded (model {dep.model} stays in the registry)")
    if delete:
        dep = deps.delete(deployment)
        out.print(f"{dep.id}: model {dep.model} version {dep.version} deleted")


@app.command()
@user_errors
def deployments(volume: VolumeOpt = None) -> None:
    """Every deployment, its status, and the replicas it is loaded on."""
    from mlrm.deployments import Deployments
    from mlrm.volume import open_volume

    deps = Deployments(open_volume(_settings(volume).volume))
    table = Table()
    for col in ("id", "model", "serves", "mode", "node", "resources", "status", "loaded on"):
        table.add_column(col)
    for d in deps.list():
        serves = f"@{d.alias}" if d.alias else f"v{d.version}"
        where = ", ".join(f"{x['worker']} (v{x['version']})" for x in deps.loaded_at(d.id))
        res = f"{d.resources.cpu:g} cpu, {d.resources.memory}"
        table.add_row(d.id, d.model, serves, d.mode, d.node or "", res, d.status, where)
    out.print(table)


@app.command()
@user_errors
def gc(
    older_than: Annotated[str, typer.Option(help="Retention: 3600, 30m, 24h, 7d.")] = "24h",
    volume: VolumeOpt = None,
    state: StateOpt = None,
) -> None:
    """Delete payloads that finished runs left in the volume; model versions are never collected."""
    from mlrm.errors import ConfigError
    from mlrm.retention import collect
    from mlrm.volume import open_volume
    from orchestrator.store import RunStore

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = older_than.strip()
    try:
        seconds = float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except (ValueError, IndexError):
        raise ConfigError(
            f"--older-than must be seconds or a number with s/m/h/d, e.g. 24h; got {older_than!r}"
        ) from None
    settings = _settings(volume, state)
    done = collect(open_volume(settings.volume), RunStore(settings.state).finished_at, older_than=seconds)
    out.print(f"collected {len(done.runs)} run(s), {len(done.abandoned_versions)} abandoned version(s), "
              f"{done.objects} object(s)")  # fmt: skip


@app.command()
def steps(
    kind: Annotated[str | None, typer.Argument(help="source, handler, features or sink (default: all).")] = None,
) -> None:
    """List the built-in step types and their options (from the same models that validate configs)."""
    from mlrm.config import SERVICES, service_class
    from mlrm.steps import registry

    for name in SERVICES:
        service_class(name)  # importing a service registers its steps
    for k in [kind] if kind else ["source", "handler", "features", "sink"]:
        out.print(f"[bold]{k}[/bold]")
        for name in registry.names(k):
            cls = registry.get(k, name)
            doc = (cls.__doc__ or "").strip().splitlines()[0]
            options = ", ".join(f for f in cls.model_fields if f not in ("step", "name"))
            out.print(f"  [cyan]{name}[/cyan]: {doc}", highlight=False)
            out.print(f"      options: {options or '-'}", highlight=False, style="dim")


@app.command()
def version() -> None:
    """Print the mlrm version."""
    from mlrm import __version__

    out.print(__version__)
