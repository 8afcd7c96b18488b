"""Commands of the model registry: models, deployments, retention."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from mlrm.cli import common


# -- models --------------------------------------------------------------------------------
@common.models_app.command("list")
@common.user_errors
def models_list(volume: common.VolumeOpt = None) -> None:
    """Every registered model with its versions and aliases."""
    from mlrm.registry import ModelRegistry
    from mlrm.volume import open_volume

    registry = ModelRegistry(open_volume(common.settings_for(volume).volume))
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
    common.out.print(table)


@common.models_app.command("show")
@common.user_errors
def models_show(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int | None, typer.Option(help="Version (default: latest).")] = None,
    alias: Annotated[str | None, typer.Option(help="Alias instead of a version.")] = None,
    volume: common.VolumeOpt = None,
) -> None:
    """Print a model version's card as JSON."""
    from mlrm.registry import ModelRegistry
    from mlrm.volume import open_volume

    registry = ModelRegistry(open_volume(common.settings_for(volume).volume))
    ref = registry.resolve(name, alias=alias, version=version)
    sys.stdout.write(json.dumps(registry.card(ref), indent=2) + "\n")


@common.models_app.command("search")
@common.user_errors
def models_search(
    kind: Annotated[str | None, typer.Option(help="classification or regression.")] = None,
    features: Annotated[str | None, typer.Option(help="Comma-separated columns you have.")] = None,
    where: Annotated[str | None, typer.Option(help='Metric condition, e.g. "accuracy >= 0.9".')] = None,
    tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE a model must carry (repeatable).")] = None,
    name: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    latest: Annotated[bool, typer.Option(help="Only the newest matching version of each model.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the matching cards as JSON.")] = False,
    volume: common.VolumeOpt = None,
) -> None:
    """Find model versions by kind, by the features you have, by metrics and by tags."""

    from mlrm.discovery import ModelQuery, search
    from mlrm.registry import ModelRegistry
    from mlrm.volume import open_volume

    tags = dict(t.split("=", 1) for t in tag or [] if "=" in t)
    query = ModelQuery(
        name=name, kind=kind, where=where, tags=tags, latest=latest,
        features=[f.strip() for f in features.split(",")] if features else None,
    )  # fmt: skip
    cards = search(ModelRegistry(open_volume(common.settings_for(volume).volume)), query)
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
    common.out.print(table)


@common.models_app.command("alias")
@common.user_errors
def models_alias(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias, e.g. production.")],
    version: Annotated[int, typer.Argument(help="Version the alias should point at.")],
    volume: common.VolumeOpt = None,
) -> None:
    """Point an alias at a version (running predict services switch to it without a restart)."""
    from mlrm.registry import ModelRegistry
    from mlrm.volume import open_volume

    ModelRegistry(open_volume(common.settings_for(volume).volume)).set_alias(name, alias, version)
    common.out.print(f"{name}@{alias} -> version {version}")


@common.app.command()
@common.user_errors
def deploy(
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int | None, typer.Option(help="A fixed version.")] = None,
    alias: Annotated[str | None, typer.Option(help="An alias to follow (hot-reloads when re-pointed).")] = None,
    mode: Annotated[str, typer.Option(help="open (any replica) or strict (only replicas on --node).")] = "open",
    node: Annotated[str | None, typer.Option(help="Node label required in strict mode.")] = None,
    cpu: Annotated[float, typer.Option(help="CPU cores to reserve.")] = 1.0,
    memory: Annotated[str, typer.Option(help="Memory to reserve, e.g. 512Mi.")] = "512Mi",
    volume: common.VolumeOpt = None,
) -> None:
    """Queue a deployment; predict replicas pick it up and load it. Prints the deployment id."""

    from mlrm.deployments import Deployments, DeployRequest
    from mlrm.volume import open_volume

    request = DeployRequest(
        model=model, version=version, alias=alias, mode=mode, node=node,  # type: ignore[arg-type]
        resources={"cpu": cpu, "memory": memory},  # type: ignore[arg-type]
    )  # fmt: skip
    dep = Deployments(open_volume(common.settings_for(volume).volume)).create(request)
    sys.stdout.write(dep.id + "\n")


@common.app.command()
@common.user_errors
def decommission(
    deployment: Annotated[str, typer.Argument(help="Deployment id.")],
    delete: Annotated[bool, typer.Option(help="Second step: delete the version if nothing references it.")] = False,
    volume: common.VolumeOpt = None,
) -> None:
    """Unload a deployment (the version stays in the registry); with --delete, also delete the version."""
    from mlrm.deployments import Deployments
    from mlrm.volume import open_volume

    deps = Deployments(open_volume(common.settings_for(volume).volume))
    dep = deps.get(deployment)
    if dep.status in ("queued", "active"):
        dep = deps.unload(deployment)
        common.out.print(f"{dep.id}: unloaded (model {dep.model} stays in the registry)")
    if delete:
        dep = deps.delete(deployment)
        common.out.print(f"{dep.id}: model {dep.model} version {dep.version} deleted")


@common.app.command()
@common.user_errors
def deployments(volume: common.VolumeOpt = None) -> None:
    """Every deployment, its status, and the replicas it is loaded on."""
    from mlrm.deployments import Deployments
    from mlrm.volume import open_volume

    deps = Deployments(open_volume(common.settings_for(volume).volume))
    table = Table()
    for col in ("id", "model", "serves", "mode", "node", "resources", "status", "loaded on"):
        table.add_column(col)
    for d in deps.list():
        serves = f"@{d.alias}" if d.alias else f"v{d.version}"
        where = ", ".join(f"{x['worker']} (v{x['version']})" for x in deps.loaded_at(d.id))
        res = f"{d.resources.cpu:g} cpu, {d.resources.memory}"
        table.add_row(d.id, d.model, serves, d.mode, d.node or "", res, d.status, where)
    common.out.print(table)


@common.app.command()
@common.user_errors
def gc(
    older_than: Annotated[str, typer.Option(help="Retention: 3600, 30m, 24h, 7d.")] = "24h",
    volume: common.VolumeOpt = None,
    state: common.StateOpt = None,
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
    settings = common.settings_for(volume, state)
    store = RunStore(settings.state)
    store.reap()  # runs whose owner died are finished (abandoned): their payloads can go
    done = collect(open_volume(settings.volume), store.finished_at, older_than=seconds)
    common.out.print(f"collected {len(done.runs)} run(s), {len(done.abandoned_versions)} abandoned version(s), "
                     f"{done.objects} object(s), {done.temporary} temporary file(s); "
                     f"{len(done.live)} live run(s) left alone")  # fmt: skip
