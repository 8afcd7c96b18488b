"""Running transform steps over a stream (the shared core of handler and features), and the
inference pipeline a model version records.

Row-local steps run batch by batch, so memory stays flat. If any step needs every
row at once (sorting, windows, fitting statistics), the service gathers the stream
first, runs the steps over the whole frame and re-batches the result.

A training route's handler and features steps (those :meth:`TransformStep.in_inference`)
make up the trained version's inference pipeline (:func:`inference_pipeline`); the
predict service applies it with the version's stored statistics to every prediction.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd

from mlrm.bus import Envelope, Hop
from mlrm.context import ModelRef, StepContext
from mlrm.errors import INPUT_EXCEPTIONS, ConfigError, DataError, MlrmError, NotFoundError, one_line
from mlrm.gather import Gather, rebatch
from mlrm.registry import ModelRegistry
from mlrm.service import ApiSettings, Batch, Service, ServiceApi, services
from mlrm.steps import TransformStep

DEFAULT_BATCH_SIZE = 65_536
HOP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def state_key(hop: str, index: int, step: TransformStep) -> str:
    """Where a step's learned statistics are stored: ``<hop>.<name>``, or ``<hop>.<index>-<type>`` unnamed."""
    return f"{hop}.{step.name or f'{index}-{step.step}'}"


def schema_key(run_id: str, hop: str) -> str:
    """The columns (and dtypes) a transform hop received in a training run: the pipeline's raw inputs."""
    return f"runs/{run_id}/inputs/{hop}.json"


def apply_step(step: TransformStep, df: pd.DataFrame, state: dict[str, Any] | None) -> pd.DataFrame:
    """``step.transform``, with the exceptions data can cause turned into a DataError naming the step."""
    try:
        return step.transform(df, state)
    except MlrmError:
        raise
    except INPUT_EXCEPTIONS as exc:  # what libraries raise for data they cannot handle
        raise DataError(f"step '{step.step}' failed: {one_line(str(exc) or type(exc).__name__)}") from exc


def postprocess(
    steps: Sequence[tuple[TransformStep, dict[str, Any] | None]], outputs: pd.DataFrame, features: pd.DataFrame
) -> pd.DataFrame:
    """A model's ``outputs`` through the post-processing of a pipeline's ``(step, state)`` pairs, last step first
    (a window's forecasts become one row per future step, then a scaler maps them back to the original units)."""
    for step, state in reversed(steps):
        if step.postprocesses:
            try:
                outputs = step.postprocess(outputs, features, state)
            except MlrmError:
                raise
            except INPUT_EXCEPTIONS as exc:
                raise DataError(f"post-processing of step '{step.step}' failed: {one_line(str(exc))}") from exc
    return outputs


def fit_step(step: TransformStep, df: pd.DataFrame) -> dict[str, Any]:
    """``step.fit``, with the exceptions data can cause turned into a DataError naming the step."""
    try:
        return step.fit(df)
    except MlrmError:
        raise
    except INPUT_EXCEPTIONS as exc:
        reason = one_line(str(exc) or type(exc).__name__)
        raise DataError(f"step '{step.step}' cannot learn from the data: {reason}") from exc


def same_statistics(record: dict[str, Any], step: TransformStep) -> bool:
    """Whether stored statistics were learned by a step configured like ``step``.

    An option added to a step type since the model was trained is absent from the stored
    options: it counts as its default, so models trained before keep working.
    """
    stored = record.get("config")
    current = step.state_config()
    if not isinstance(stored, dict):
        return False
    stored = {k: v for k, v in stored.items() if k != "inference"}
    if stored == current:
        return True
    if not set(stored) <= set(current):
        return False
    fields = type(step).model_fields
    for name, value in current.items():
        if name not in stored:
            info = fields.get(name)
            if info is None or info.is_required() or value != info.get_default(call_default_factory=True):
                return False
        elif stored[name] != value:
            return False
    return True


@dataclass(frozen=True)
class PipelineStep:
    """One step of a version's inference pipeline: where it came from, and its statistics' key."""

    hop: str  # the training route's step name (e.g. "clean")
    service: str  # the service that ran it (e.g. "handler")
    position: int  # its index in that hop's list of steps
    step: TransformStep
    state: str | None  # state key (``state/<key>.json`` in the version) when the step learns statistics


def transform_steps(hop: Hop) -> list[TransformStep] | None:
    """The steps of a hop run by a transform service (handler, features, a plug-in's), else None."""
    cls = services.get(hop.service)
    if not issubclass(cls, TransformService):
        return None
    return list(cls.config_model.model_validate(hop.config).steps)  # type: ignore[attr-defined]


def inference_pipeline(route: Sequence[Hop]) -> list[PipelineStep]:
    """The inference pipeline of a model trained at the end of ``route``: its transform steps, in order."""
    out: list[PipelineStep] = []
    for hop in route:
        steps = transform_steps(hop)
        for i, step in enumerate(steps or []):
            if step.in_inference():
                key = state_key(hop.name, i, step) if step.stateful else None
                out.append(PipelineStep(hop.name, hop.service, i, step, key))
    return out


class StepRunner:
    """Applies steps to frames, fitting or loading their learned statistics as the mode says."""

    def __init__(self) -> None:
        self._loaded: dict[str, dict[str, Any]] = {}

    def run(self, steps: Sequence[TransformStep], df: pd.DataFrame, ctx: StepContext, *, whole: bool) -> pd.DataFrame:
        for i, step in enumerate(steps):
            state = self.state(step, state_key(ctx.step, i, step), df, ctx, whole=whole) if step.stateful else None
            df = apply_step(step, df, state)
        return df

    def state(
        self, step: TransformStep, key: str, df: pd.DataFrame, ctx: StepContext, *, whole: bool
    ) -> dict[str, Any] | None:
        if ctx.fitting and whole:
            state = step.fit(df)
            ctx.save_state(key, {"step": step.step, "config": step.state_config(), "state": state})
            return state
        if ctx.fitting:  # a step that needs no whole-stream fit in this mode (e.g. fill_na with a value)
            return step.fit(df)
        cache_key = ctx.state_key(key)
        record = self._loaded.get(cache_key)
        if record is None:
            record = ctx.load_state(key)
            if not same_statistics(record, step):
                assert ctx.model is not None
                raise ConfigError(
                    f"step '{key}' is configured differently from when model '{ctx.model.name}' "
                    f"version {ctx.model.version} was trained; predict with the training configs, "
                    "or leave the step out and let predict apply the version's own pipeline"
                )
            self._loaded[cache_key] = record
        return record["state"]


class TransformService(Service):
    """A service whose config is a list of :class:`TransformStep` (``steps:``)."""

    batch_size: ClassVar[int] = DEFAULT_BATCH_SIZE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.runner = StepRunner()

    def process(self, env: Envelope, config: Any, ctx: StepContext) -> Iterator[Batch]:
        steps: list[TransformStep] = list(config.steps)
        df = env.payload if env.payload is not None else pd.DataFrame()
        if ctx.mode == "train" and env.seq == 0:  # what this hop receives: the raw inputs of a pipeline
            ctx.volume.put_json(schema_key(env.run_id, ctx.step), describe_columns(df))
        if not any(s.needs_whole_stream(ctx.fitting) for s in steps):
            yield Batch(self.runner.run(steps, df, ctx, whole=False), env.seq, env.last)
            return
        if env.seq == 0 and env.last:  # a one-batch stream is already whole: nothing to gather
            yield from self._whole(df, config, ctx)
            return
        gather = Gather(self.volume, env.run_id, ctx.step, self.holder)
        claim = gather.add(env.seq, env.last, df)
        if claim is None:  # incomplete, or handled (or being handled) with another message
            ctx.extra["report"] = gather.outcome(env.seq)
            return
        with claim:
            batches = rows = 0
            for batch in self._whole(gather.frame(), config, ctx):
                batches, rows = batches + 1, rows + len(batch.frame)
                yield batch
            gather.clear(claim, {"seq": env.seq, "rows_out": rows, "batches_out": batches})

    # -- called directly (REST, gRPC) -------------------------------------------------------
    def api(self, settings: ApiSettings) -> ServiceApi:
        """``POST /v1/process`` and gRPC ``Tables/Process`` with the config the service was started with."""
        from mlrm.web.tables_api import SCOPES, process_routes, rest_app, tables_registrar

        if settings.config is None:
            raise ConfigError(f"the {self.name} service's API processes tables with a config: give it one (--config)")
        config = self.config_model.model_validate(settings.config)  # a dict, or the validated model itself

        def process(df: pd.DataFrame, options: Any) -> pd.DataFrame:
            return self.process_table(config, df, model=options.model, version=options.version, hop=options.step)

        routes = process_routes(self.name, process, statistics=True, max_body=settings.max_body, description=(
            "Stateful steps (imputers, scalers, encoders) learn their statistics from the request's rows. With "
            "`model`, the rows are treated as that version's inference pipeline treats prediction rows: its steps "
            "only (curating ones such as drop_na and filter are left out), with the statistics it stored.")
        )  # fmt: skip
        grpc = tables_registrar(process, statistics=True, ready=self.ready)
        return ServiceApi(rest=rest_app(f"mlrm {self.name}", routes, ready=self.ready), grpc=grpc, scopes=dict(SCOPES))

    def process_table(self, config: Any, df: pd.DataFrame, *, model: str | None = None, version: str | None = None,
                      hop: str | None = None) -> pd.DataFrame:  # fmt: skip
        """``df`` through the config's steps, as one whole stream.

        Without ``model``: every step, a stateful one learning its statistics from ``df`` (nothing is stored).
        With ``model`` (a version number or an alias; default the latest): ``df`` as that version's inference
        pipeline treats prediction rows — the steps that belong to it (:meth:`TransformStep.in_inference`:
        curating steps such as ``drop_na`` or ``filter`` are left out unless configured ``inference: true``),
        each stateful one applying what the version stored for it, from the training route's step ``hop``
        (default: the route's only step of this service).
        """
        steps: list[TransformStep] = list(config.steps)
        if model is None:
            for step in steps:
                df = apply_step(step, df, fit_step(step, df) if step.stateful else None)
            return df
        if hop is not None and not HOP_NAME.fullmatch(hop):
            raise DataError(f"'step' {hop[:80]!r} is not a step name")
        registry = ModelRegistry(self.volume)
        number = int(version) if version is not None and version.isdigit() else None
        ref = registry.resolve(model, version=number, alias=None if version is None or number is not None else version)
        ctx = StepContext(volume=self.volume, run_id="api", step=hop or self._training_hop(registry, ref),
                          mode="predict", model=ref)  # fmt: skip
        for i, step in enumerate(steps):  # positions as configured: they key the statistics of unnamed steps
            if step.in_inference():
                key = state_key(ctx.step, i, step)
                state = self.runner.state(step, key, df, ctx, whole=True) if step.stateful else None
                df = apply_step(step, df, state)
        return df

    def _training_hop(self, registry: ModelRegistry, ref: ModelRef) -> str:
        """The step of ``ref``'s training route this service ran (the one whose statistics apply)."""
        card = registry.verified_card(ref)
        route = (card.get("lineage") or {}).get("steps") or []
        hops = [h.get("name") for h in route if isinstance(h, dict) and h.get("service") == self.name]
        if len(hops) == 1 and isinstance(hops[0], str):
            return hops[0]
        if not hops:
            raise NotFoundError(f"model '{ref.name}' version {ref.version} was trained without a {self.name} step: "
                                "it has no statistics of this service")  # fmt: skip
        named = ", ".join(map(str, hops))
        raise DataError(f"model '{ref.name}' version {ref.version} was trained with {len(hops)} {self.name} "
                        f"steps ({named}): name the one whose statistics to apply with 'step'")  # fmt: skip

    def _whole(self, df: pd.DataFrame, config: Any, ctx: StepContext) -> Iterator[Batch]:
        out = self.runner.run(list(config.steps), df, ctx, whole=True)
        for frame, seq, last in rebatch(out, config.batch_size or self.batch_size):
            yield Batch(frame, seq, last)


def describe_columns(df: pd.DataFrame) -> list[dict[str, str]]:
    """Name and pandas dtype of every column."""
    return [{"name": str(c), "type": str(t)} for c, t in df.dtypes.items()]
