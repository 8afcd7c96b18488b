"""Fit, evaluate and register: the training step, independent of any bus."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import KFold, StratifiedKFold, TimeSeriesSplit, train_test_split

from mlrm.context import ModelRef, StepContext
from mlrm.errors import DataError, StepError
from mlrm.expr import compile_expression, evaluate_condition
from mlrm.registry import ARTEFACT, ModelRegistry, spool
from services.train import metrics as M
from services.train.card import build_card
from services.train.config import TrainConfig
from services.train.estimators import build_estimator


def split_xy(df: pd.DataFrame, config: TrainConfig) -> tuple[pd.DataFrame, pd.Series]:
    if config.target not in df.columns:
        have = ", ".join(map(str, df.columns))
        raise DataError(f"target column '{config.target}' is not in the data (columns: {have})")
    features = config.features or [c for c in df.columns if c != config.target and c not in config.exclude]
    missing = [c for c in features if c not in df.columns]
    if missing:
        raise DataError(f"feature column(s) {', '.join(missing)} not in the data (columns: {', '.join(df.columns)})")
    if len(df) == 0:
        raise DataError("no rows reached the training step")
    y = df[config.target]
    if y.isna().any():
        raise DataError(
            f"target column '{config.target}' has {int(y.isna().sum())} missing values; "
            "drop them with a handler drop_na step"
        )
    return df[features], y


def _fit(estimator: Any, X: pd.DataFrame, y: pd.Series) -> Any:
    try:
        return estimator.fit(X, y)
    except (ValueError, TypeError) as exc:
        reason = str(exc).strip().splitlines()[0]
        raise DataError(f"fitting {type(estimator).__name__} failed: {reason}") from None


def _score(estimator: Any, X: pd.DataFrame, y: pd.Series, names: list[str], kind: str) -> dict[str, float]:
    pred = estimator.predict(X)
    proba = classes = None
    if kind == "classification" and hasattr(estimator, "predict_proba"):
        proba, classes = estimator.predict_proba(X), estimator.classes_
    return M.compute(names, y, pred, proba, classes)


def evaluate(config: TrainConfig, X: pd.DataFrame, y: pd.Series) -> tuple[Any, dict[str, float], dict[str, Any]]:
    """Fit and evaluate as configured; return the estimator to register, metrics and a description."""
    ev, kind, names = config.evaluation, config.model.kind, config.metric_names()
    strategy = ev.strategy if ev.strategy != "auto" else ("stratified" if kind == "classification" else "random")
    base = build_estimator(config.model.estimator, config.model.hyperparameters)
    if ev.kfold:
        splitter = {
            "time": TimeSeriesSplit(n_splits=ev.kfold),
            "stratified": StratifiedKFold(ev.kfold, shuffle=True, random_state=ev.random_state),
            "random": KFold(ev.kfold, shuffle=True, random_state=ev.random_state),
        }[strategy]
        folds = [
            _score(_fit(clone(base), X.iloc[tr], y.iloc[tr]), X.iloc[te], y.iloc[te], names, kind)
            for tr, te in splitter.split(X, y)
        ]
        metrics = {n: float(np.mean([f[n] for f in folds])) for n in names}
        metrics |= {f"{n}_std": float(np.std([f[n] for f in folds])) for n in names}
        return _fit(base, X, y), metrics, {"method": f"{ev.kfold}-fold {strategy} cross-validation", "rows": len(X)}
    if ev.split is None:
        model = _fit(base, X, y)
        return model, _score(model, X, y, names, kind), {"method": "training data (no hold-out)", "rows": len(X)}
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
    model = _fit(base, X_tr, y_tr)
    metrics = _score(model, X_te, y_te, names, kind)
    if ev.refit:
        model = _fit(clone(base), X, y)
    described = {"method": f"{strategy} hold-out ({ev.split:.0%})", "train_rows": len(X_tr), "test_rows": len(X_te)}
    return model, metrics, described


def train(
    df: pd.DataFrame, config: TrainConfig, ctx: StepContext, lineage: dict[str, Any], statistics: Iterable[str] = ()
) -> dict[str, Any]:
    """Train on ``df`` and register a new version; returns the run-summary result.

    ``statistics``: the state keys the run's earlier steps fitted; the version is refused if any is
    missing (it could not predict), rather than registered without them.
    """
    import skops.io as sio

    X, y = split_xy(df, config)
    started = time.perf_counter()
    model, metrics, evaluation = evaluate(config, X, y)
    fit_seconds = time.perf_counter() - started
    with spool(lambda file: sio.dump(model, file)) as artefact:  # streamed to the volume, not held in memory
        # The types this model needs beyond skops' own trusted ones; a signed card vouches for them.
        trusted = sio.get_untrusted_types(file=artefact)  # type: ignore[arg-type]  # a zip file object works
        return _register(
            model, artefact, df, X, config, ctx, lineage, metrics, evaluation, fit_seconds, trusted, statistics
        )


def _register(
    model: Any, artefact: IO[bytes], df: pd.DataFrame, X: pd.DataFrame, config: TrainConfig, ctx: StepContext,
    lineage: dict[str, Any], metrics: dict[str, float], evaluation: dict[str, Any], fit_seconds: float,
    trusted: list[str], statistics: Iterable[str],
) -> dict[str, Any]:  # fmt: skip
    sample = X.iloc[: min(1000, len(X))]
    t0 = time.perf_counter()
    model.predict(sample)
    per_row_ms = (time.perf_counter() - t0) * 1000 / max(1, len(sample))

    files: dict[str, bytes | Path | IO[bytes]] = {ARTEFACT: artefact}
    state_prefix = f"runs/{ctx.run_id}/state/"
    for obj in ctx.volume.list(state_prefix):
        files[f"state/{obj.key[len(state_prefix) :]}"] = ctx.volume.get_bytes(obj.key)
    missing = [key for key in statistics if f"state/{key}.json" not in files]
    if missing:
        raise StepError(
            f"the statistics of {', '.join(missing)} are missing from {state_prefix} (deleted while the run "
            "was training?); no version was registered, since it could not predict"
        )

    classes = list(model.classes_) if config.model.kind == "classification" and hasattr(model, "classes_") else None
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
        config=config, estimator=model, X=X, classes=classes, metrics=metrics, evaluation=evaluation,
        training=training, runresource=runresource, lineage=lineage,
    )  # fmt: skip
    card["trusted_types"] = sorted(trusted)

    registry = ModelRegistry(ctx.volume)
    ref = ModelRef(config.model.name, registry.reserve_version(config.model.name))
    registry.publish(ref, files, card)

    aliases = []
    for rule in config.register_rules:
        if rule.when is None or evaluate_condition(compile_expression(rule.when), metrics):
            registry.set_alias(ref.name, rule.alias, ref.version)
            aliases.append(rule.alias)
    return {"model": ref.name, "version": ref.version, "metrics": metrics, "aliases": aliases}
