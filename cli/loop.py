"""Commands of the closed loop: retraining policies, the embedded loop, its history."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from cli import common

loop_app = typer.Typer(help="The closed loop: retraining policies, safe promotion, their history.",
                       no_args_is_help=True)  # fmt: skip
common.app.add_typer(loop_app, name="loop")


@loop_app.command("apply")
@common.user_errors
def loop_apply(
    policies: Annotated[list[Path], typer.Argument(help="RetrainPolicy YAML files.")],
    volume: common.VolumeOpt = None,
) -> None:
    """Validate retraining policies (with their monitor config and workflow) and store them in the volume:
    every loop on it (`mlrm orchestrator`, `mlrm loop run`) then runs them."""
    from mlrm.volume import open_volume
    from orchestrator.retrain import apply

    vol = open_volume(common.settings_for(volume).volume)
    for path in policies:
        policy = apply(vol, path)
        common.err.print(f"applied {path}: model {policy.model}, triggers {', '.join(policy.triggers)}")


@loop_app.command("remove")
@common.user_errors
def loop_remove(model: Annotated[str, typer.Argument(help="Model name.")], volume: common.VolumeOpt = None) -> None:
    """Stop retraining a model (its history stays)."""
    from mlrm.volume import open_volume
    from orchestrator.retrain import remove

    remove(open_volume(common.settings_for(volume).volume), model)


@loop_app.command("run")
@common.user_errors
def loop_run(
    policies: Annotated[list[Path] | None, typer.Argument(help="RetrainPolicy files to apply first.")] = None,
    interval: Annotated[float, typer.Option(help="Seconds between rounds of checks.")] = 10.0,
    once: Annotated[bool, typer.Option(help="Run one round and exit (a scheduler's job).")] = False,
    volume: common.VolumeOpt = None,
    state: common.StateOpt = None,
) -> None:
    """Run the loop embedded (no broker): checks, retrainings in this process, promotions; Ctrl-C stops."""
    common.check_seconds(interval, "--interval")
    from orchestrator.embedded import Embedded
    from orchestrator.retrain import ClosedLoop, apply, for_orchestrator

    settings = common.settings_for(volume, state=state)
    with Embedded(settings) as mlrm:
        for path in policies or []:
            apply(mlrm.volume, path)
        loop: ClosedLoop = for_orchestrator(mlrm.orchestrator)
        common.err.print(f"loop: volume {mlrm.volume.url}, every {interval:g}s; Ctrl-C stops")
        try:
            while True:
                loop.tick()
                if once:
                    break
                time.sleep(interval)
        except KeyboardInterrupt:
            pass


POLICY_HELP = "A RetrainPolicy whose `promotion` to follow (default: the model's applied policy's, else defaults)."


@loop_app.command("promote")
@common.user_errors
def loop_promote(
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int, typer.Argument(min=1, help="The challenger version.")],
    policy: Annotated[Path | None, typer.Option(help=POLICY_HELP)] = None,
    volume: common.VolumeOpt = None,
) -> None:
    """Promote a version safely: the gate now, then staging, shadow and canary as the loop advances them
    (`mlrm orchestrator` or `mlrm loop run`). Exit 1 when the gate rejects it."""
    from mlrm.config import load_config
    from mlrm.volume import open_volume
    from orchestrator.promotion import Promoter, PromotionPolicy
    from orchestrator.retrain import RetrainPolicy, stored

    vol = open_volume(common.settings_for(volume).volume)
    if policy is not None:
        settings = load_config(policy, RetrainPolicy).promotion
    else:
        applied = [s.policy.promotion for s in stored(vol) if s.policy.model == model]
        settings = applied[0] if applied else PromotionPolicy()
    state = Promoter(vol).start(model, version, settings, reason="mlrm loop promote")
    if state.get("outcome") == "rejected":
        common.err.print(f"{model} version {version} rejected: {state['why']}", highlight=False)
        raise typer.Exit(1)
    gate = state["gate"]
    common.err.print(f"{model} version {version} passed the gate ({gate['metric']} {gate['challenger_score']:.4f} "
                     f"vs {gate['production_score']:.4f}); {state['phase']} started", highlight=False)  # fmt: skip


@loop_app.command("status")
@common.user_errors
def loop_status(volume: common.VolumeOpt = None, as_json: common.JsonOpt = False) -> None:
    """The retraining policies applied to the volume, where each stands, and its promotion in progress."""
    from mlrm.volume import open_volume
    from orchestrator.promotion import Promoter
    from orchestrator.retrain import ClosedLoop, stored

    vol = open_volume(common.settings_for(volume).volume)
    loop = ClosedLoop(vol, submit=lambda wf: "", status=lambda run_id: None)
    promoter = Promoter(vol)
    found = []
    for entry in stored(vol):
        model = entry.policy.model
        found.append({"model": model, "triggers": entry.policy.triggers, "workflow": entry.workflow.name,
                      "state": loop.state(model), "promotion": promoter.state(model)})  # fmt: skip
    if as_json:
        common.print_json(found)
        return
    rows = []
    for f in found:
        promo = f["promotion"] or {}
        where = promo.get("outcome") or promo.get("phase") or "-"
        last = f["state"].get("last_trigger")
        rows.append((f["model"], ",".join(f["triggers"]), f["state"]["phase"],
                     time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last)) if last else "-",
                     f"v{promo['challenger']} {where}" if promo else "-"))  # fmt: skip
    common.print_table(["model", "triggers", "phase", "last trigger", "last promotion"], rows)


@loop_app.command("history")
@common.user_errors
def loop_history(
    model: Annotated[str, typer.Argument(help="Model name.")],
    limit: Annotated[int, typer.Option(min=1, help="The newest this many events.")] = 50,
    volume: common.VolumeOpt = None,
    as_json: common.JsonOpt = False,
) -> None:
    """Every step the loop took for a model: retrainings, gates, staging, canaries, promotions, rollbacks."""
    from mlrm.volume import open_volume
    from orchestrator.loop_events import history

    events = history(open_volume(common.settings_for(volume).volume), model, limit=limit)
    if as_json:
        common.print_json(events)
        return
    rows = [(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["at"])), e["step"], _summary(e)) for e in events]
    common.print_table(["at", "step", "details"], rows, ids=["details"])  # run ids and versions stay whole


def _summary(event: dict[str, Any]) -> str:
    keys = ("reasons", "run_id", "version", "challenger", "production", "metric", "challenger_score",
            "improvement", "passed", "share", "alias", "why")  # fmt: skip
    parts = []
    for k in keys:
        if event.get(k) is not None:
            v = event[k]
            parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    if event["step"] == "gate":
        parts.append(f"challenger={event.get('challenger')} production={event.get('production')}")
    return " ".join(dict.fromkeys(parts))


def _target(value: str) -> dict[str, Any]:
    """``3`` (a version) or ``staging`` (an alias)."""
    return {"version": int(value)} if value.isdigit() else {"alias": value}


@common.app.command("traffic")
@common.user_errors
def traffic(
    deployment: Annotated[str, typer.Argument(help="Deployment id (mlrm deployments).")],
    canary: Annotated[str | None, typer.Option(help="A version or alias answering --share of the requests.")] = None,
    share: Annotated[float, typer.Option(min=0.0, max=1.0, help="The canary's share of requests.")] = 0.1,
    shadow: Annotated[str | None, typer.Option(help="A version or alias every request is mirrored to.")] = None,
    clear: Annotated[bool, typer.Option(help="Remove the deployment's canary and shadow.")] = False,
    volume: common.VolumeOpt = None,
) -> None:
    """Set a deployment's traffic policy: a canary (sticky by the request parameter `routing_key`), a shadow
    (answers logged, never returned), or --clear; every predict replica applies it within seconds."""
    from mlrm.deployments import Canary, Deployments, Shadow
    from mlrm.errors import ConfigError
    from mlrm.volume import open_volume

    if clear == (canary is not None or shadow is not None):
        raise ConfigError("give --canary and/or --shadow, or --clear")
    deployments = Deployments(open_volume(common.settings_for(volume).volume))
    try:
        new_canary = Canary(**_target(canary), share=share) if canary is not None else None
        new_shadow = Shadow(**_target(shadow)) if shadow is not None else None
    except ValueError as exc:
        raise ConfigError(str(exc).splitlines()[-1].strip()) from None
    if clear:
        dep = deployments.set_traffic(deployment, canary=None, shadow=None)
    else:
        dep = deployments.set_traffic(deployment, canary=new_canary or "keep", shadow=new_shadow or "keep")
    parts = [f"canary {dep.canary.selector()} share {dep.canary.share:g}" if dep.canary else "no canary",
             f"shadow {dep.shadow.selector()}" if dep.shadow else "no shadow"]  # fmt: skip
    common.err.print(f"{dep.id}: {', '.join(parts)}", highlight=False)
