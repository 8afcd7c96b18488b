"""Commands of the distributed mode: serve, orchestrator, submit, status, up, dlq."""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live

from cli import auth, common
from mlrm.settings import Settings

URL_HELP = "Through the control plane's REST API, e.g. http://127.0.0.1:8090 [env MLRM_URL]."

# -- distributed mode ----------------------------------------------------------------------
dlq_app = typer.Typer(help="Dead-lettered messages: list them, replay them.", no_args_is_help=True)
common.app.add_typer(dlq_app, name="dlq")


def _stop_on_signal() -> threading.Event:
    """An event SIGINT or SIGTERM sets; installed first, so a signal during start-up stops cleanly too."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _wait_for(stop: threading.Event) -> None:
    """Serve until ``stop``. What start-up made (modules, models, routes) lives as long as the process: it
    leaves the garbage collector's generations, so a full collection scans only what requests made, not
    hundreds of thousands of long-lived objects every time."""
    gc.collect()
    gc.freeze()
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


@common.app.command()
@common.user_errors
def serve(
    service: Annotated[str, typer.Argument(help="collector, handler, features, train or predict.")],
    replicas: Annotated[int, typer.Option(min=1, help="Consumers in this process.")] = 1,
    worker: Annotated[str | None, typer.Option(help="Name shown in run records (default SERVICE@host:pid).")] = None,
    node: Annotated[str | None, typer.Option(help="Node label for strict deployments [env MLRM_NODE].")] = None,
    prefetch: Annotated[int | None, typer.Option(min=1, help="Messages taken at once [env MLRM_PREFETCH].")] = None,
    nameko: Annotated[bool, typer.Option(help="predict: also answer nameko RPC (predict.infer).")] = True,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="The config the service's direct API applies (collector, handler, features; train: the default "
            "of jobs that name none).",
        ),
    ] = None,
    http_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            envvar="MLRM_HTTP_PORT",
            help="REST port of the service's API (predict: V2, default 8080; others: off unless given); 0: off.",
        ),
    ] = None,
    grpc_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            envvar="MLRM_GRPC_PORT",
            help="gRPC port of the service's API (predict: V2, default 8081; others: off unless given); 0: off.",
        ),
    ] = None,
    host: Annotated[str, typer.Option(envvar="MLRM_HOST", help="Address the API servers listen on.")] = "127.0.0.1",
    max_inflight: Annotated[
        int,
        typer.Option(
            min=1, envvar="MLRM_MAX_INFLIGHT", help="predict: V2 requests in flight before 429 / RESOURCE_EXHAUSTED."
        ),
    ] = 64,
    max_body: Annotated[
        int,
        typer.Option(min=1, envvar="MLRM_MAX_BODY", help="Largest API request body in bytes (413 past it)."),
    ] = 16 * 1024 * 1024,
    no_bus: Annotated[
        bool,
        typer.Option(
            "--no-bus",
            help="predict: no broker at all, serve the volume's models over V2 only (also when MLRM_BUS is memory://).",
        ),
    ] = False,
    insecure: auth.InsecureOpt = False,
    auth_file: auth.AuthFileOpt = None,
    jwt_keys_file: auth.KeysFileOpt = None,
    tls_cert: auth.TlsCertOpt = None,
    tls_key: auth.TlsKeyOpt = None,
    tls_client_ca: auth.TlsClientCaOpt = None,
) -> None:
    """Run one service on the shared bus until Ctrl-C (distributed mode).

    `mlrm serve predict` also answers the Open Inference Protocol (KServe V2) over REST and gRPC; with `--no-bus`
    (or MLRM_BUS=memory://) it needs no broker: online inference from the models of a local volume. The other
    services answer directly too when given `--http-port`/`--grpc-port`: collector, handler and features process a
    table with `--config`, train takes training jobs; every service has /health/live, /health/ready and /docs.

    Ports need a token or API key (users, keys: `mlrm users`, `mlrm keys`; tokens from POST /token) once a JWT
    signing key is configured (MLRM_JWT_KEYS, MLRM_JWT_KEYS_FILE or `mlrm auth init-key`). On a shared bus a
    server without one refuses to start unless given `--insecure`; standalone (`--no-bus`) it runs open.
    """
    import socket

    stop = _stop_on_signal()

    from mlrm.service import services as registry
    from mlrm.volume import open_volume

    cls = registry.get(service)
    settings = common.settings_for()
    standalone = service == "predict" and (no_bus or settings.bus.startswith("memory://"))
    if no_bus and service != "predict":
        raise typer.BadParameter("--no-bus is for `mlrm serve predict`")
    ports = (cls.api_ports[0] if http_port is None else http_port, cls.api_ports[1] if grpc_port is None else grpc_port)
    # before anything starts: a refusal leaves nothing behind
    security, tls = auth.server_security(
        who=service, opens_port=any(ports), shared_bus=not standalone, insecure=insecure, auth_file=auth_file,
        jwt_keys_file=jwt_keys_file, tls_cert=tls_cert, tls_key=tls_key, tls_client_ca=tls_client_ca,
    )  # fmt: skip
    if standalone:
        from mlrm.bus.memory import MemoryBus

        bus: Any = MemoryBus()
        nameko = False
    else:
        bus = _shared_bus(settings)
    api_settings = None
    if any(ports):
        from mlrm.config import load_config
        from mlrm.service import ApiSettings

        api_config = load_config(config, cls.config_model) if config is not None else None
        api_settings = ApiSettings(config=api_config, max_body=max_body, max_inflight=max_inflight)
    volume = open_volume(settings.volume)
    base = worker or f"{service}@{socket.gethostname()}:{os.getpid()}"
    extra: dict[str, Any] = {"node": node or settings.node}
    if service == "predict":
        extra["watch_interval"] = settings.watch_interval
    services = [
        cls(bus, volume, retries=settings.retries, prefetch=prefetch or settings.prefetch,
            worker=base if replicas == 1 else f"{base}/{i}", **extra)
        for i in range(replicas)
    ]  # fmt: skip
    for s in services:
        s.start()
    bus.start()
    responder = api = offered = None
    try:
        if nameko and service == "predict":  # nameko clients can call predict.infer(...) on the same broker
            from mlrm.integrations.nameko import NamekoResponder
            from services.predict.rpc import methods

            responder = NamekoResponder(settings.bus, "predict", methods(services[0])).start()
        if api_settings is not None:  # what the service offers directly (Service.api), on the ports asked for
            from mlrm.web.servers import ApiServers

            offered = services[0].api(api_settings)
            api = ApiServers(rest=offered.rest, grpc=offered.grpc, host=host, http_port=ports[0] or None,
                             grpc_port=ports[1] or None, max_body=max_body, name=service,
                             max_concurrent_rpcs=offered.max_concurrent_rpcs, security=security,
                             grpc_scopes=offered.scopes, tls=tls).start()  # fmt: skip
            where = [
                f"REST http{'s' if tls else ''}://{host}:{api.http_port} (docs /docs)" if api.http_port else "",
                f"gRPC{' (TLS)' if tls else ''} {host}:{api.grpc_port}" if api.grpc_port else "",
            ]
            common.err.print(f"{base}: API on {', '.join(w for w in where if w)}")
        on = "no broker (V2 only)" if standalone else bus.url
        common.err.print(f"{base}: serving {service} ({replicas} consumer(s)) on {on}, volume {volume.url}")
        _wait_for(stop)
    finally:
        if api is not None:
            api.stop()
        if offered is not None and offered.close is not None:
            offered.close()
        if responder is not None:
            responder.stop()
        for s in services:
            s.stop()
        bus.close()
        volume.close()


@common.app.command("orchestrator")
@common.user_errors
def orchestrator_cmd(
    state: common.StateOpt = None,
    http_port: Annotated[
        int, typer.Option(min=0, max=65535, envvar="MLRM_CONTROL_HTTP_PORT", help="Control-plane REST port; 0: off.")
    ] = 0,
    grpc_port: Annotated[
        int, typer.Option(min=0, max=65535, envvar="MLRM_CONTROL_GRPC_PORT", help="Control-plane gRPC port; 0: off.")
    ] = 0,
    host: Annotated[str, typer.Option(envvar="MLRM_HOST", help="Address the control plane listens on.")] = "127.0.0.1",
    configs: Annotated[
        Path, typer.Option(envvar="MLRM_CONFIGS", help="Folder of the workflows and configs API submissions may name.")
    ] = Path("configs"),
    insecure: auth.InsecureOpt = False,
    auth_file: auth.AuthFileOpt = None,
    jwt_keys_file: auth.KeysFileOpt = None,
    tls_cert: auth.TlsCertOpt = None,
    tls_key: auth.TlsKeyOpt = None,
    tls_client_ca: auth.TlsClientCaOpt = None,
) -> None:
    """Run the orchestrator on the shared bus until Ctrl-C (distributed mode).

    With --http-port / --grpc-port it also serves the control plane (submit, runs, cancel, events, models,
    deployments) over REST and gRPC.
    """
    # before anything starts: a refusal leaves nothing behind
    security, tls = auth.server_security(
        who="orchestrator", opens_port=bool(http_port or grpc_port), shared_bus=True, insecure=insecure,
        auth_file=auth_file, jwt_keys_file=jwt_keys_file, tls_cert=tls_cert, tls_key=tls_key,
        tls_client_ca=tls_client_ca,
    )  # fmt: skip
    stop = _stop_on_signal()
    from mlrm.volume import open_volume
    from orchestrator.orchestrator import Orchestrator
    from orchestrator.store import RunStore

    settings = common.settings_for(state=state)
    bus = _shared_bus(settings)
    volume = open_volume(settings.volume)
    store = RunStore(settings.state)
    orchestrator = Orchestrator(bus, volume, store)
    orchestrator.start()
    bus.start()
    from orchestrator.retrain import start_with

    loop = start_with(orchestrator)  # the closed loop: retraining policies applied to the volume
    common.err.print(f"orchestrator: runs in {settings.state}, bus {bus.url}, volume {volume.url}")
    api = _control_plane(orchestrator, configs, host, http_port, grpc_port, security, tls)
    try:
        _wait_for(stop)
    finally:
        if loop is not None:
            loop.stop()
        if api is not None:
            api.stop()
        orchestrator.stop()
        bus.close()
        store.close()
        volume.close()


def _control_plane(orchestrator: Any, configs: Path, host: str, http_port: int, grpc_port: int,
                   security: Any, tls: Any) -> Any:  # fmt: skip
    """The control plane's REST and gRPC servers beside ``orchestrator``, when a port is given."""
    if not (http_port or grpc_port):
        return None
    from orchestrator.api.serve import ControlServers

    api = ControlServers(orchestrator, configs=configs, host=host, http_port=http_port or None,
                         grpc_port=grpc_port or None, security=security, tls=tls).start()  # fmt: skip
    where = [f"REST http://{host}:{api.http_port} (docs: /docs)" if http_port else "",
             f"gRPC {host}:{api.grpc_port}" if grpc_port else ""]  # fmt: skip
    common.err.print(f"control plane on {', '.join(w for w in where if w)}; workflows from {configs}", highlight=False)
    return api


@common.app.command("api")
@common.user_errors
def api_cmd(
    http_port: Annotated[
        int, typer.Option(min=0, max=65535, envvar="MLRM_CONTROL_HTTP_PORT", help="REST port; 0: off.")
    ] = 8090,
    grpc_port: Annotated[
        int, typer.Option(min=0, max=65535, envvar="MLRM_CONTROL_GRPC_PORT", help="gRPC port; 0: off.")
    ] = 8091,
    host: Annotated[str, typer.Option(envvar="MLRM_HOST", help="Address the servers listen on.")] = "127.0.0.1",
    configs: Annotated[
        Path, typer.Option(envvar="MLRM_CONFIGS", help="Folder of the workflows and configs submissions may name.")
    ] = Path("configs"),
    volume: common.VolumeOpt = None,
    state: common.StateOpt = None,
    insecure: auth.InsecureOpt = False,
    auth_file: auth.AuthFileOpt = None,
    jwt_keys_file: auth.KeysFileOpt = None,
    tls_cert: auth.TlsCertOpt = None,
    tls_key: auth.TlsKeyOpt = None,
    tls_client_ca: auth.TlsClientCaOpt = None,
) -> None:
    """Serve the control plane embedded: every service and the orchestrator in this process on the in-process
    bus (no broker), the API over REST and gRPC, until Ctrl-C.

    Open, with a notice, until a JWT signing key is configured (`mlrm auth init-key`); then every call needs a
    token (POST /token) or an API key."""
    if not (http_port or grpc_port):
        raise typer.BadParameter("give --http-port or --grpc-port (or both)")
    security, tls = auth.server_security(
        who="mlrm api", opens_port=True, shared_bus=False, insecure=insecure, auth_file=auth_file,
        jwt_keys_file=jwt_keys_file, tls_cert=tls_cert, tls_key=tls_key, tls_client_ca=tls_client_ca,
    )  # fmt: skip
    stop = _stop_on_signal()
    from orchestrator.embedded import Embedded
    from orchestrator.retrain import start_with

    with Embedded(common.settings_for(volume, state)) as mlrm:
        api = _control_plane(mlrm.orchestrator, configs, host, http_port, grpc_port, security, tls)
        loop = start_with(mlrm.orchestrator)  # retraining policies, as beside a distributed orchestrator
        common.err.print(f"embedded: every service in this process, volume {mlrm.volume.url}, runs in "
                         f"{mlrm.settings.state}", highlight=False)  # fmt: skip
        try:
            _wait_for(stop)
        finally:
            if loop is not None:
                loop.stop()
            api.stop()


@common.app.command()
@common.user_errors
def submit(
    workflow: Annotated[
        Path, typer.Argument(help="Workflow YAML file (with --url: or a workflow under the server's configs folder).")
    ],
    follow: Annotated[bool, typer.Option(help="Follow progress until the run ends.")] = True,
    timeout: Annotated[float | None, typer.Option(help="Stop following after this many seconds.")] = None,
    start_timeout: Annotated[
        float,
        typer.Option(
            help="An orchestrator must start the run within this many seconds, or the submission expires "
            "and never runs (0: wait for ever).",
        ),
    ] = 60.0,
    url: Annotated[str | None, typer.Option("--url", envvar="MLRM_URL", help=URL_HELP)] = None,
) -> None:
    """Submit a workflow to a running orchestrator; prints the run id and follows it.

    With --url, through the control plane's REST API (`mlrm orchestrator --http-port`, `mlrm api`).
    """
    if url:
        from cli import remote

        common.check_seconds(timeout, "--timeout")
        remote.submit(url, str(workflow), follow, timeout)
        return
    from mlrm.volume import open_volume
    from orchestrator.compile import compile_workflow
    from orchestrator.orchestrator import SUBMIT_QUEUE, submission

    common.check_seconds(timeout, "--timeout")
    common.check_seconds(start_timeout, "--start-timeout", zero=True)  # 0: wait for ever
    settings = common.settings_for()
    # Everything that can fail is checked before anything is sent: a submission, once published,
    # would run whenever an orchestrator takes it, whatever this command reported.
    compiled = compile_workflow(workflow)  # every config
    volume = open_volume(settings.volume)  # the volume the run will use and report to (the bucket exists ...)
    bus = _shared_bus(settings)
    # The run must start while we wait for it; a client that gave up never sees it start behind its back.
    waits = [t for t in (start_timeout or None, timeout if follow else None) if t is not None]
    expires = time.time() + min(waits) if waits else None
    try:
        message = submission(compiled, expires=expires)
        bus.publish(SUBMIT_QUEUE, message)
    finally:
        bus.close()
    common.err.print(f"submitted run {message.run_id}")
    if follow:
        _follow(message.run_id, volume, timeout, expires=expires, bus=bus.url)
    else:
        sys.stdout.write(message.run_id + "\n")


@common.app.command()
@common.user_errors
def status(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    follow: Annotated[bool, typer.Option(help="Keep following until the run ends.")] = False,
    volume: common.VolumeOpt = None,
    url: Annotated[str | None, typer.Option("--url", envvar="MLRM_URL", help=URL_HELP)] = None,
) -> None:
    """Show a run's state as the orchestrator last published it (works from any machine); with --url, as the
    control plane's REST API gives it."""
    if url:
        from cli import remote

        remote.status(url, run_id, follow)
        return
    from mlrm.volume import open_volume
    from orchestrator.orchestrator import read_status

    settings = common.settings_for(volume)
    if follow:
        _follow(run_id, open_volume(settings.volume), None)
        return
    record = read_status(open_volume(settings.volume), run_id)
    common.print_run(record)
    if record.error:
        common.print_error(record.error)


@common.app.command()
@common.user_errors
def cancel(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    url: Annotated[str | None, typer.Option("--url", envvar="MLRM_URL", help=URL_HELP)] = None,
) -> None:
    """Cancel a run: services drop its messages, a training registers no version, it ends `cancelled`.

    With --url through the control plane (which answers with the run's state); otherwise a cancel message
    to the orchestrator on the shared bus.
    """
    if url:
        from cli import remote

        client = remote.Remote(url)
        try:
            common.print_run(remote.record(client.call("POST", f"/runs/{run_id}/cancel")))
        finally:
            client.close()
        return
    from mlrm.bus import Envelope
    from orchestrator.orchestrator import SUBMIT_QUEUE

    bus = _shared_bus(common.settings_for())
    try:
        bus.publish(SUBMIT_QUEUE, Envelope(id=f"{run_id}/cancel", run_id=run_id, body={"op": "cancel"}))
    finally:
        bus.close()
    common.err.print(f"asked the orchestrator to cancel run {run_id}", highlight=False)


def _follow(run_id: str, volume: Any, timeout: float | None, *, expires: float | None = None, bus: str = "") -> None:
    """Follow a run's published status until it ends, ``timeout`` passes, or it did not start by ``expires``."""
    from mlrm.errors import MlrmError, NotFoundError
    from orchestrator.orchestrator import read_status

    deadline = None if timeout is None else time.monotonic() + timeout
    record = None
    waiting = False
    with Live(console=common.out, refresh_per_second=4, transient=True) as live:
        while deadline is None or time.monotonic() < deadline:
            try:
                record = read_status(volume, run_id)
            except NotFoundError:
                if not waiting:
                    waiting = True
                    until = "" if expires is None else f"; giving up in {max(0.0, expires - time.time()):.0f}s"
                    common.err.print(f"waiting for an orchestrator to start run {run_id} (`mlrm orchestrator` or "
                                     f"`mlrm up` on bus {bus or 'MLRM_BUS'}, volume {volume.url}){until} ...",
                                     highlight=False, soft_wrap=True)  # fmt: skip
                if expires is not None and time.time() > expires + 2.0:  # (a start just before expiry shows late)
                    raise MlrmError(
                        f"no orchestrator started run {run_id} by its start deadline: the submission expired and "
                        f"will not run. Start one (`mlrm orchestrator`, or `mlrm up`) on the same bus and volume, "
                        f"then submit again"
                    ) from None
            else:
                live.update(common.steps_table(record))
                if record.done:
                    break
            time.sleep(0.2)
    if record is None:
        raise NotFoundError(f"run {run_id} was not started within {timeout}s: is `mlrm orchestrator` running?")
    common.report_end(record, timeout)


@common.app.command()
@common.user_errors
def up(deployment: Annotated[Path, typer.Argument(help="LocalDeployment YAML file.")]) -> None:
    """Start the orchestrator and every service replica as processes; Ctrl-C stops them all."""
    from mlrm.config import load_config
    from orchestrator.local import LocalDeployment, Supervisor

    spec = load_config(deployment, LocalDeployment)
    supervisor = Supervisor(spec)
    names = ", ".join(f"{n} x{r.replicas}" for n, r in spec.services.items())
    common.err.print(f"starting orchestrator + {names} on {spec.bus}; Ctrl-C stops everything")
    supervisor.run()
    common.err.print("stopped")


@dlq_app.command("list")
@common.user_errors
def dlq_list(
    services: Annotated[list[str] | None, typer.Argument(help="Services (default: all).")] = None,
    as_json: common.JsonOpt = False,
) -> None:
    """Show dead-lettered messages: which run and step, after how many attempts, and why."""
    from mlrm.bus import dead_letter_queue, service_queue

    bus = _shared_bus(common.settings_for())
    letters = []
    try:
        for name in services or _service_names():
            for env in bus.peek(dead_letter_queue(service_queue(name))):
                letters.append({
                    "service": name, "message": env.id, "run": env.run_id,
                    "step": env.route[env.hop].name if env.route else None,
                    "attempts": env.body.get("attempts"), "error": env.body.get("error", "dead-lettered by the broker"),
                })  # fmt: skip
    finally:
        bus.close()
    if as_json:
        common.print_json(letters)
        return
    rows = [
        (d["service"], d["message"], d["run"], d["step"] or "?", "?" if d["attempts"] is None else d["attempts"],
         d["error"])
        for d in letters
    ]  # fmt: skip
    common.print_table(("service", "message", "run", "step", "attempts", "error"), rows, ids={"message", "run"})


@dlq_app.command("replay")
@common.user_errors
def dlq_replay(
    services: Annotated[list[str] | None, typer.Argument(help="Services (default: all).")] = None,
    run: Annotated[str | None, typer.Option(help="Only messages of this run.")] = None,
) -> None:
    """Put dead-lettered messages back on their service's queue; their runs are reopened."""
    from orchestrator.orchestrator import replay_dead_letters

    bus = _shared_bus(common.settings_for())
    try:
        replayed = replay_dead_letters(bus, services or _service_names(), run)
    finally:
        bus.close()
    common.out.print(f"replayed {replayed} message(s)")


def _service_names() -> list[str]:
    from mlrm.service import services

    return services.names()
