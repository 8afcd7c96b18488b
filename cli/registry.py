"""Commands of the model registry: models, deployments, retention."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from cli import common


# -- models --------------------------------------------------------------------------------
@common.models_app.command("list")
@common.user_errors
def models_list(volume: common.VolumeOpt = None, as_json: common.JsonOpt = False) -> None:
    """Every registered model with its versions and aliases."""
    from mlrm.context import ModelRef
    from mlrm.errors import CorruptRecordError
    from mlrm.registry import ModelRegistry
    from mlrm.volume import open_volume

    registry = ModelRegistry(open_volume(common.settings_for(volume).volume))
    models, skipped = [], []
    for name in registry.names():
        versions = registry.versions(name)
        try:
            card = registry.card(ModelRef(name, versions[-1]))
        except CorruptRecordError as exc:  # still list the model, its versions and aliases
            skipped.append(exc)
            card = {}
        models.append({
            "model": name, "kind": card.get("modelkind", "?"), "versions": versions,
            "aliases": registry.aliases(name, skipped.append),
            "latest": {"version": versions[-1], "metrics": card.get("modelperform", {}).get("metrics", {})},
        })  # fmt: skip
    if as_json:
        common.print_json(models)
        common.report_skipped(skipped)
        return
    rows = [
        (m["model"], m["kind"], ", ".join(map(str, m["versions"])),
         ", ".join(f"{a}→{v}" for a, v in sorted(m["aliases"].items())),
         ", ".join(f"{k}={v:.3f}" for k, v in m["latest"]["metrics"].items()))
        for m in models
    ]  # fmt: skip
    common.print_table(("model", "kind", "versions", "aliases", "latest metrics"), rows, ids={"model"})
    common.report_skipped(skipped)


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

    tags = common.key_value_pairs(tag or [], "--tag")
    query = ModelQuery(
        name=name, kind=kind, where=where, tags=tags, latest=latest,
        features=[f.strip() for f in features.split(",")] if features else None,
    )  # fmt: skip
    skipped: list = []
    cards = search(ModelRegistry(open_volume(common.settings_for(volume).volume)), query, skipped.append)
    if as_json:
        common.print_json(cards)
        common.report_skipped(skipped)
        return
    rows = []
    for c in cards:
        metrics = ", ".join(f"{k}={v:.3f}" for k, v in c["modelperform"]["metrics"].items())
        feats = ", ".join(f["name"] for f in c["featurelist"])
        tags_text = ", ".join(f"{k}={v}" for k, v in (c.get("tags") or {}).items())
        rows.append((c["modelname"], c["version"], c["modelkind"], feats, metrics, tags_text))
    common.print_table(("model", "version", "kind", "features", "metrics", "tags"), rows, ids={"model"})
    common.report_skipped(skipped)


@common.models_app.command("register")
@common.user_errors
def models_register(
    name: Annotated[str, typer.Argument(help="Registry name of the model.")],
    artefact: Annotated[str, typer.Option(help="The model file: skops (.skops) or ONNX (.onnx).")],
    card: Annotated[str, typer.Option(help="YAML description of the model (the MLaaS fields).")],
    alias: Annotated[str | None, typer.Option(help="Point this alias at the new version.")] = None,
    volume: common.VolumeOpt = None,
) -> None:
    """Register a model trained outside mlrm (a safe format only; pickle and joblib are refused)."""
    from pathlib import Path

    from mlrm.byom import register_model
    from mlrm.registry import ModelRegistry
    from mlrm.volume import open_volume

    registry = ModelRegistry(open_volume(common.settings_for(volume).volume))
    published = register_model(registry, name, Path(artefact), Path(card), alias=alias)
    where = f" ({alias})" if alias else ""
    common.out.print(f"{name} version {published['version']}{where}: {published['inference']['artefact']['format']}, "
                     f"sha256 {published['sha256'][published['inference']['artefact']['file']]}")  # fmt: skip


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
    log_sample: Annotated[
        float | None,
        typer.Option(min=0, max=1, help="Log this share of its requests for monitoring (0 to 1); off by default."),
    ] = None,
    log_row_id: Annotated[str | None, typer.Option(help="With --log-sample: an input column naming rows.")] = None,
    volume: common.VolumeOpt = None,
) -> None:
    """Queue a deployment; predict replicas pick it up and load it. Prints the deployment id.

    With neither --version nor --alias, the latest version is deployed, pinned: it stays
    that version when newer ones are trained.
    """

    from mlrm.deployments import Deployments, DeployRequest
    from mlrm.volume import open_volume

    request = DeployRequest(
        model=model, version=version, alias=alias, mode=mode, node=node,  # type: ignore[arg-type]
        resources={"cpu": cpu, "memory": memory},  # type: ignore[arg-type]
        log={"sample": log_sample, "row_id": log_row_id} if log_sample is not None else None,  # type: ignore[arg-type]
    )  # fmt: skip
    dep = Deployments(open_volume(common.settings_for(volume).volume)).create(request)
    if version is None and alias is None:
        common.err.print(f"{dep.id}: model {dep.model} version {dep.version}, the latest (pinned)", highlight=False)
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
def deployments(volume: common.VolumeOpt = None, as_json: common.JsonOpt = False) -> None:
    """Every deployment, its status, and the replicas it is loaded on."""
    from mlrm.deployments import Deployments
    from mlrm.volume import open_volume

    deps = Deployments(open_volume(common.settings_for(volume).volume))
    skipped: list = []
    listed = [(d, deps.loaded_at(d.id, skipped.append)) for d in deps.list(skipped.append)]
    if as_json:
        common.print_json([{**d.model_dump(mode="json"), "loaded_on": loaded} for d, loaded in listed])
        common.report_skipped(skipped)
        return
    rows = []
    for d, loaded in listed:
        serves = f"@{d.alias}" if d.alias else f"v{d.version}"
        where = ", ".join(f"{x['worker']} (v{x['version']})" for x in loaded)
        res = f"{d.resources.cpu:g} cpu, {d.resources.memory}"
        rows.append((d.id, d.model, serves, d.mode, d.node or "", res, d.status, where))
    columns = ("id", "model", "serves", "mode", "node", "resources", "status", "loaded on")
    common.print_table(columns, rows, ids={"id", "model"})
    common.report_skipped(skipped)


@common.app.command()
@common.user_errors
def gc(
    older_than: Annotated[str, typer.Option(help="Retention: 3600, 30m, 24h, 7d.")] = "24h",
    volume: common.VolumeOpt = None,
    state: common.StateOpt = None,
) -> None:
    """Delete payloads that finished runs left in the volume; model versions are never collected."""
    from mlrm.retention import collect
    from mlrm.volume import open_volume
    from orchestrator.store import RunStore

    seconds = common.parse_duration(older_than, "--older-than", zero=True)  # an age: 0 means every finished run
    settings = common.settings_for(volume, state)
    store = RunStore(settings.state)
    store.reap()  # runs whose owner died are finished (abandoned): their payloads can go
    done = collect(open_volume(settings.volume), store.finished_at, older_than=seconds)
    common.out.print(f"collected {len(done.runs)} run(s), {len(done.abandoned_versions)} abandoned version(s), "
                     f"{done.objects} object(s), {done.temporary} temporary file(s); "
                     f"{len(done.live)} live run(s) left alone")  # fmt: skip
