"""Fit, evaluate and register: the training step, independent of any bus."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from mlrm.bus import Hop
from mlrm.cancel import RunCancelled
from mlrm.card import PipelineStep, Runtime
from mlrm.context import ModelRef, StepContext
from mlrm.errors import ConfigError, DataError, ExpressionError, NotFoundError, StepError
from mlrm.expr import compile_condition, evaluate_condition
from mlrm.flavours import Flavour, flavour
from mlrm.monitoring import REFERENCE_FILE, Reference, reference_bytes, reference_statistics
from mlrm.pipeline import inference_pipeline, schema_key
from mlrm.registry import ModelRegistry, check_alias, check_name, spool
from services.train import forecast
from services.train import metrics as M
from services.train.card import build_card, features
from services.train.config import TrainConfig
from services.train.convert import convert

log = logging.getLogger(__name__)
MIN_HOLDOUT = 500


def split_xy(df: pd.DataFrame, config: TrainConfig) -> tuple[pd.DataFrame, pd.Series | pd.DataFrame]:
    """The features and the target: a Series, or a frame when the config names several target columns."""
    columns = [str(c) for c in df.columns]
    targets = forecast.target_columns(config.target, columns)
    absent = [t for t in targets if t not in df.columns]
    if absent:
        raise DataError(f"target column '{absent[0]}' is not in the data (columns: {', '.join(columns)})")
    features = config.features or [c for c in df.columns if c not in targets and c not in config.exclude]
    missing = [c for c in features if c not in df.columns]
    if missing:
        raise DataError(f"feature column(s) {', '.join(missing)} not in the data (columns: {', '.join(df.columns)})")
    if len(df) == 0:
        raise DataError("no rows reached the training step")
    single = isinstance(config.target, str) and "*" not in config.target
    y = df[targets[0]] if single else df[targets]
    unlabelled = y.isna() if single else y.isna().any(axis=1)
    if unlabelled.any():
        if config.unlabelled != "drop":
            raise DataError(
                f"target column '{config.target if single else targets}' has {int(unlabelled.sum())} missing values; "
                "drop them with a handler drop_na step (or set unlabelled: drop)"
            )
        df, y = df[~unlabelled], y[~unlabelled]
        if len(df) == 0:
            raise DataError("every row reaching the training step lacks its target (unlabelled: drop left none)")
    return df[features], y


class _Fitter:
    """Builds, fits and scores models of one spec through its flavour."""

    def __init__(self, config: TrainConfig, multi: Callable[..., dict[str, float]] | None = None) -> None:
        self.config = config
        self.multi = multi  # scores several targets at once (after the pipeline's post-processing)
        self.flavour: Flavour = flavour(config.model.flavour)
        self.kind = config.model.kind
        self.names = config.metric_names()

    def fresh(self) -> Any:
        return self.flavour.build(self.config.model.estimator, self.config.model.hyperparameters)

    def fit(self, X: pd.DataFrame, y: pd.Series) -> Any:
        model = self.fresh()
        try:
            return self.flavour.fit(model, X, y)
        except (ValueError, TypeError) as exc:
            reason = str(exc).strip().splitlines()[0]
            raise DataError(f"fitting {type(model).__name__} failed: {reason}") from None

    def score(self, model: Any, X: pd.DataFrame, y: pd.Series) -> dict[str, float]:
        classifier = self.kind == "classification" and self.flavour.classes(model) is not None
        out = self.flavour.predict(model, X, proba=classifier)
        if self.multi is not None:
            return self.multi(y, out.values, X)
        classes = self.flavour.classes(model) if classifier else None
        return M.compute(self.names, y, out.values, out.proba, classes)


def evaluate(
    config: TrainConfig,
    X: pd.DataFrame,
    y: pd.Series | pd.DataFrame,
    multi: Callable[..., dict[str, float]] | None = None,
) -> tuple[Any, dict[str, float], dict[str, Any], pd.DataFrame]:
    """Fit and evaluate as configured; return the model to register, metrics, a description, and the
    hold-out rows (the training rows, up to 1000, when there is no hold-out) to check conversions on.

    ``multi`` scores a model of several targets (``y`` a frame)."""
    from sklearn.model_selection import KFold, StratifiedKFold, TimeSeriesSplit, train_test_split  # when training

    ev, kind, names = config.evaluation, config.model.kind, config.metric_names()
    fitter = _Fitter(config, multi)
    strategy = ev.strategy if ev.strategy != "auto" else ("stratified" if kind == "classification" else "random")
    if ev.kfold:
        splitter = {
            "time": TimeSeriesSplit(n_splits=ev.kfold),
            "stratified": StratifiedKFold(ev.kfold, shuffle=True, random_state=ev.random_state),
            "random": KFold(ev.kfold, shuffle=True, random_state=ev.random_state),
        }[strategy]
        folds = [
            fitter.score(fitter.fit(X.iloc[tr], y.iloc[tr]), X.iloc[te], y.iloc[te])
            for tr, te in splitter.split(X, y)
        ]
        metrics = {n: float(np.mean([f[n] for f in folds])) for n in names}
        metrics |= {f"{n}_std": float(np.std([f[n] for f in folds])) for n in names}
        described = {"method": f"{ev.kfold}-fold {strategy} cross-validation", "rows": len(X)}
        return fitter.fit(X, y), metrics, described, X.iloc[:1000]
    if ev.split is None:
        model = fitter.fit(X, y)
        described = {"method": "training data (no hold-out)", "rows": len(X)}
        return model, fitter.score(model, X, y), described, X.iloc[:1000]
    if strategy == "time":
        cut = len(X) - max(1, round(len(X) * ev.split))
        X_tr, X_te, y_tr, y_te = X.iloc[:cut], X.iloc[cut:], y.iloc[:cut], y.iloc[cut:]
    else:
        try:
            X_tr, X_te, y_tr, y_te = train_test_split(
                X, y, test_size=ev.split, random_state=ev.random_state,
                stratify=y if strategy == "stratified" else None,
            )  # fmt: skip
        except ValueError as exc:
            raise DataError(f"cannot split the data for evaluation: {exc}") from None
    model = fitter.fit(X_tr, y_tr)
    metrics = fitter.score(model, X_te, y_te)
    if ev.refit:
        model = fitter.fit(X, y)
    described = {"method": f"{strategy} hold-out ({ev.split:.0%})", "train_rows": len(X_tr), "test_rows": len(X_te)}
    return model, metrics, described, X_te


def train(
    df: pd.DataFrame, config: TrainConfig, ctx: StepContext, lineage: dict[str, Any], route: list[Hop] | None = None
) -> dict[str, Any]:
    """Train on ``df`` and register a new version; returns the run-summary result.

    ``route`` is the training route up to (not including) this step: its transform steps
    become the version's inference pipeline.
    """
    X, y = split_xy(df, config)
    targets = [str(c) for c in y.columns] if isinstance(y, pd.DataFrame) else []
    post = forecast.chain(ctx, route or []) if targets else []
    multi = forecast.scorer(post, targets, config.metric_names()) if targets else None
    started = time.perf_counter()
    model, metrics, evaluation, holdout = evaluate(config, X, y, multi)
    fit_seconds = time.perf_counter() - started
    season = config.evaluation.seasonal_naive
    if season is not None:  # the baseline a forecaster must beat, scored on the same rows the same way
        if multi is None:
            raise ConfigError("evaluation.seasonal_naive needs targets from a sliding_window (e.g. target: 'x@+*')")
        baseline = forecast.seasonal_naive(holdout, targets, season)
        metrics |= {f"baseline_{k}": v for k, v in multi(y.loc[holdout.index], baseline, holdout).items()}
        evaluation["baseline"] = f"seasonal naive, {season} steps a season"
    chosen = flavour(config.model.flavour)
    if targets:
        evaluation["targets"] = len(targets)
    outputs = None
    if targets:  # what a request is answered: the post-processed forecasts (card outputs)
        sample = X.iloc[: min(64, len(X))]
        values = chosen.predict(model, sample).values
        outputs = forecast.restored(post, values, targets, df.loc[sample.index])
        single = forecast.forecasts_of(post)
        if len(single) == 1 and single[0] in outputs.columns:
            outputs = outputs.rename(columns={single[0]: "prediction"})
    trusted: list[str] = []

    def save(file: IO[bytes]) -> None:
        trusted.extend(chosen.save(model, file))

    runtimes: dict[str, Runtime] = {}
    extra: dict[str, IO[bytes]] = {}
    with spool(save) as artefact:  # streamed to the volume, not held in memory; nameless, so never left behind
        try:
            if chosen.name == "sklearn":  # a faster runtime where the conversion is exact (never fails the training)
                classes = chosen.classes(model) if config.model.kind == "classification" else None
                converted, runtimes["onnx"] = convert(model, holdout, config.model.kind, classes)
                if converted is not None:
                    extra[flavour("onnx").file] = converted
            try:  # what monitoring compares live traffic with (never fails the training)
                reference = reference_for(chosen, model, X, y, holdout, config, metrics)
                extra[REFERENCE_FILE] = io.BytesIO(reference_bytes(reference))
            except Exception:
                log.warning("no reference statistics for %s: computing them failed", config.model.name, exc_info=True)
            result = _register(chosen, model, artefact, df, X, config, ctx, lineage, metrics, evaluation,
                               fit_seconds, trusted, route or [], extra, runtimes, targets, outputs)  # fmt: skip
            history = chosen.history(model)
            if history:  # the run record shows how each epoch went
                result["epochs"] = history
            return result
        finally:
            for file in extra.values():
                file.close()


def _register(
    chosen: Flavour, model: Any, artefact: IO[bytes], df: pd.DataFrame, X: pd.DataFrame, config: TrainConfig,
    ctx: StepContext, lineage: dict[str, Any], metrics: dict[str, float], evaluation: dict[str, Any],
    fit_seconds: float, trusted: list[str], route: list[Hop], extra: dict[str, IO[bytes]],
    runtimes: dict[str, Runtime], targets: list[str] | None = None, outputs: pd.DataFrame | None = None,
) -> dict[str, Any]:  # fmt: skip
    sample = X.iloc[: min(1000, len(X))]
    t0 = time.perf_counter()
    predictions = chosen.predict(model, sample).values
    per_row_ms = (time.perf_counter() - t0) * 1000 / max(1, len(sample))

    files: dict[str, bytes | Path | IO[bytes]] = {chosen.file: artefact, **extra}
    state_prefix = f"runs/{ctx.run_id}/state/"
    for obj in ctx.volume.list(state_prefix):
        files[f"state/{obj.key[len(state_prefix) :]}"] = ctx.volume.get_bytes(obj.key)
    statistics = [s.state for s in inference_pipeline(route) if s.state]  # what the version needs to predict
    missing = [key for key in statistics if f"state/{key}.json" not in files]
    if missing:
        raise StepError(
            f"the statistics of {', '.join(missing)} are missing from {state_prefix} (deleted while the run "
            "was training?); no version was registered, since it could not predict"
        )

    pipeline = [
        PipelineStep(
            hop=s.hop, service=s.service, position=s.position, config=s.step.model_dump(mode="json"), state=s.state,
            sha256=_digest(files.get(f"state/{s.state}.json")) if s.state else None,  # type: ignore[arg-type]
        )
        for s in inference_pipeline(route)
    ]  # fmt: skip
    classes = chosen.classes(model) if config.model.kind == "classification" else None
    training = {
        "run_id": ctx.run_id,
        "rows": len(df),
        "columns": [str(c) for c in df.columns],
        "target": config.target,
        "fingerprint": str(int(pd.util.hash_pandas_object(df, index=False).sum() & 0xFFFFFFFFFFFF)),
        "fit_seconds": fit_seconds,
    }
    runresource = {"artefact_bytes": artefact.seek(0, os.SEEK_END), "predict_ms_per_row": round(per_row_ms, 5)}
    card = build_card(
        config=config, flavour=chosen, model=model, X=X, inputs=_raw_inputs(ctx, pipeline, X, config),
        pipeline=pipeline, classes=classes, predictions=predictions, metrics=metrics, evaluation=evaluation,
        training=training, runresource=runresource, lineage=lineage, trusted=trusted, runtimes=runtimes,
        targets=targets, output_frame=outputs,
    )  # fmt: skip

    aliases = aliases_to_set(config, metrics)  # every rule and name checked before anything is written
    registry = ModelRegistry(ctx.volume)
    if ctx.cancelled():  # a cancelled run registers no version
        raise RunCancelled(f"run {ctx.run_id} was cancelled; no version of '{config.model.name}' was registered")
    ref = ModelRef(config.model.name, registry.reserve_version(config.model.name))
    registry.publish(ref, files, card)
    if ctx.cancelled():  # cancelled while the version was written: take it back before any alias points at it
        registry.discard(ref)
        raise RunCancelled(f"run {ctx.run_id} was cancelled; no version of '{config.model.name}' was registered")
    point_aliases(registry, ref, aliases)
    return {"model": ref.name, "version": ref.version, "metrics": metrics, "aliases": aliases}


def reference_for(
    chosen: Flavour, model: Any, X: pd.DataFrame, y: pd.Series, holdout: pd.DataFrame, config: TrainConfig,
    metrics: dict[str, float],
) -> Reference:  # fmt: skip
    """The version's reference statistics: its training rows, target, and outputs (named as predict names
    them: ``prediction``, ``proba_<class>``) on the hold-out rows, with the hold-out metrics.

    A hold-out of fewer than :data:`MIN_HOLDOUT` rows says little about the distribution of the outputs
    (30 iris rows): the outputs on the training rows (up to 5000) stand in for it then."""
    classifier = config.model.kind == "classification"
    classes = chosen.classes(model) if classifier else None
    rows = holdout if len(holdout) >= MIN_HOLDOUT else X.sample(min(len(X), 5000), random_state=0)
    answer = chosen.predict(model, rows, proba=classes is not None)
    outputs = pd.DataFrame({"prediction": np.asarray(answer.values).ravel()})
    if classes is not None and answer.proba is not None:
        for i, cls in enumerate(classes):
            outputs[f"proba_{cls}"] = answer.proba[:, i]
    return reference_statistics(X, y, outputs, kind=config.model.kind, metrics=metrics, target_name=config.target)


def aliases_to_set(config: TrainConfig, metrics: dict[str, float]) -> list[str]:
    """The aliases the new version gets: every rule evaluated now, so a bad one fails before any write."""
    check_name(config.model.name)
    aliases = []
    for rule in config.register_rules:
        check_alias(rule.alias)
        try:
            holds = rule.when is None or evaluate_condition(compile_condition(rule.when), metrics)
        except ExpressionError as exc:
            raise ConfigError(f"register rule for alias '{rule.alias}': {exc.message}") from None
        if holds and rule.alias not in aliases:
            aliases.append(rule.alias)
    return aliases


def point_aliases(registry: ModelRegistry, ref: ModelRef, aliases: list[str]) -> None:
    """Point ``aliases`` at a just-published version; if that fails, put them back and withdraw the version."""
    if not aliases:
        return
    before: dict[str, int] = {}
    done: list[str] = []
    try:
        before = registry.aliases(ref.name, on_corrupt=lambda exc: None)  # an unreadable one is overwritten anyway
        for alias in aliases:
            registry.set_alias(ref.name, alias, ref.version)
            done.append(alias)
    except BaseException:
        if _restore(registry, ref, {a: before.get(a) for a in done}):
            with suppress(Exception):  # nothing points at it any more; gc collects what this leaves
                registry.discard(ref)
        raise


def _restore(registry: ModelRegistry, ref: ModelRef, previous: dict[str, int | None]) -> bool:
    """Best effort (the volume may be what failed): True if no alias points at ``ref`` any more."""
    for alias, version in previous.items():
        try:
            if version is None:
                registry.remove_alias(ref.name, alias)
            else:
                registry.set_alias(ref.name, alias, version)
        except Exception:
            return False
    return True


def _raw_inputs(ctx: StepContext, pipeline: list[PipelineStep], X: pd.DataFrame, config: TrainConfig) -> list[Any]:
    """What a prediction request carries: the columns the pipeline's first hop received, less the target."""
    if not pipeline:
        return features(X)
    try:
        recorded = ctx.volume.get_json(schema_key(ctx.run_id, pipeline[0].hop))
    except NotFoundError:  # a run whose transform hops did not record what they received
        return features(X)
    targets = [config.target] if isinstance(config.target, str) else config.target
    return features([c for c in recorded if c["name"] not in targets])


def _digest(content: bytes | Path | None) -> str | None:
    if content is None:
        return None
    data = content.read_bytes() if isinstance(content, Path) else content
    return hashlib.sha256(data).hexdigest()
