"""Running a ``MonitorConfig``: each detector on its window, every verdict a :class:`Check` kept in history.

:func:`run_checks` resolves the alias to a version, reads that version's reference statistics
and the window of its prediction log (and labelled feedback), runs every detector on every
column it names, appends the checks to the model's history in the volume and, given a bus,
publishes each as an event (``{"event": "monitor_check", ...}``). Too few rows is a check
with ``drifted: false`` and a ``reason``, never an error.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from typing import Any

import pandas as pd
from pydantic import BaseModel, Field

from mlrm.errors import CorruptRecordError
from mlrm.monitoring.config import DetectorSpec, MonitorConfig
from mlrm.monitoring.detectors import MetricDecay, detectors
from mlrm.monitoring.feedback import labelled
from mlrm.monitoring.log import FEATURE, OUTPUT, read_predictions
from mlrm.monitoring.paths import history_prefix
from mlrm.monitoring.reference import Reference, Summary, load_reference
from mlrm.registry import ModelRegistry
from mlrm.volume import Volume

log = logging.getLogger(__name__)

EVENT = "monitor_check"


class Check(BaseModel):
    """One detector's verdict on one column (or metric) of one window of a version's log."""

    model: str
    version: int
    alias: str | None = None
    detector: str
    on: str
    """`features`, `predictions` or `labels` (the column's kind), `metric` for metric decay."""
    target: str
    """The feature, output or metric name."""
    statistic: float | None = None
    """PSI, chi-square, KS D, Wasserstein distance in reference std, or the metric's current value."""
    p_value: float | None = None
    threshold: float
    """What the statistic (psi, wasserstein, metric_decay's bound) or the p-value (ks, chi2) is compared with."""
    drifted: bool
    samples: int
    window_start: float | None = None
    window_end: float | None = None
    at: float
    reason: str | None = None
    """Why there is no verdict (too few samples, no reference, a column the detector cannot judge)."""
    details: dict[str, Any] = Field(default_factory=dict)


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def _window(volume: Volume, config: MonitorConfig, version: int, now: float) -> pd.DataFrame:
    where = {"version": version}
    if config.window.count is not None:
        return read_predictions(volume, config.model, until=now, newest=config.window.count, where=where)
    since = now - float(config.window.seconds or 0)
    return read_predictions(volume, config.model, since=since, until=now, where=where)


def _columns(spec: DetectorSpec, available: dict[str, Summary]) -> list[str]:
    return list(available) if spec.features == "all" else list(spec.features)


def run_checks(volume: Volume, config: MonitorConfig, *, now: float | None = None, bus: Any = None) -> list[Check]:
    """Run every detector of ``config`` now (or at ``now``, epoch seconds); record and return the checks."""
    now = time.time() if now is None else now
    registry = ModelRegistry(volume)
    ref = registry.resolve(config.model, alias=config.alias)
    reference = load_reference(registry, ref)
    window = _window(volume, config, ref.version, now)
    start = float(window["at"].min()) if len(window) else None
    end = float(window["at"].max()) if len(window) else None
    base = {"model": ref.name, "version": ref.version, "alias": config.alias, "at": now,
            "window_start": start, "window_end": end}  # fmt: skip
    labelled_rows: pd.DataFrame | None = None
    counts: dict[str, int] = {}
    checks: list[Check] = []
    for spec in config.detectors:
        detector = detectors.get(spec.type)()
        threshold = spec.threshold if spec.threshold is not None else detector.default_threshold
        if reference is None:
            why = "this version has no reference statistics (trained before mlrm recorded them)"
            checks.append(Check(**base, detector=spec.type, on=spec.on, target="*", threshold=threshold,
                                drifted=False, samples=len(window), reason=why))  # fmt: skip
            continue
        if detector.needs_labels or spec.on == "labels":
            if labelled_rows is None:
                labelled_rows, counts = _labelled(volume, config, ref.version, window)
            if isinstance(detector, MetricDecay):
                checks.append(_decay(detector, spec, reference, labelled_rows, counts, base, config.min_samples))
                continue
        checks.extend(_distribution(detector, spec, threshold, reference, window, labelled_rows, base, config))
    _record(volume, config.model, checks, now)
    if bus is not None:
        _publish(bus, checks)
    return checks


def _labelled(
    volume: Volume, config: MonitorConfig, version: int, window: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, int]]:
    if not len(window):
        return window.assign(label=pd.Series(dtype=object)), {}
    joined, counts = labelled(volume, config.model, version=version, since=float(window["at"].min()),
                              until=float(window["at"].max()))  # fmt: skip
    joined = joined[joined["row_id"].isin(window["row_id"])]  # the window's rows only (a count window)
    return joined, counts


def _distribution(
    detector: Any, spec: DetectorSpec, threshold: float, reference: Reference, window: pd.DataFrame,
    labelled_rows: pd.DataFrame | None, base: dict[str, Any], config: MonitorConfig,
) -> list[Check]:  # fmt: skip
    if spec.on == "labels":
        summaries = {reference.target_name or "label": reference.target} if reference.target else {}
        frame, prefix = (labelled_rows if labelled_rows is not None else window.iloc[0:0]), None
    elif spec.on == "predictions":
        summaries, frame, prefix = reference.predictions, window, OUTPUT
    else:
        summaries, frame, prefix = reference.features, window, FEATURE
    out = []
    for column in _columns(spec, summaries):
        common = {**base, "detector": spec.type, "on": spec.on, "target": column, "threshold": threshold}
        summary = summaries.get(column)
        source = "label" if prefix is None else f"{prefix}{column}"
        if summary is None or source not in frame.columns:
            where = "the reference" if summary is None else "the logged rows"
            why = f"{spec.on} column '{column}' is not in {where}"
            out.append(Check(**common, drifted=False, samples=0, reason=why))
            continue
        values = frame[source].dropna()
        if len(values) < config.min_samples:
            why = f"{len(values)} sample(s) in the window; at least {config.min_samples} needed"
            out.append(Check(**common, drifted=False, samples=len(values), reason=why))
            continue
        why = detector.applies(summary)
        if why is not None:
            out.append(Check(**common, drifted=False, samples=len(values), reason=why))
            continue
        result = detector.test(summary, values, threshold)
        out.append(Check(**common, statistic=_finite(result.statistic), p_value=_finite(result.p_value),
                         drifted=result.drifted, samples=len(values), reason=result.reason,
                         details=result.details))  # fmt: skip
    return out


def _decay(
    detector: MetricDecay, spec: DetectorSpec, reference: Reference, rows: pd.DataFrame,
    counts: dict[str, int], base: dict[str, Any], min_samples: int,
) -> Check:  # fmt: skip
    metric = str(spec.metric)
    common = {**base, "detector": spec.type, "on": "metric", "target": metric, "details": {"feedback": counts}}
    predicted = f"{OUTPUT}prediction"
    if len(rows) < min_samples or predicted not in rows.columns:
        return Check(**common, threshold=spec.tolerance, drifted=False, samples=len(rows),
                     reason=f"{len(rows)} labelled row(s) in the window; at least {min_samples} needed")  # fmt: skip
    outcome, bound = detector.decay(metric, reference.metrics, rows["label"], rows[predicted], spec.tolerance)
    return Check(**{**common, "details": {**outcome.details, "feedback": counts}},
                 threshold=bound if bound is not None else spec.tolerance, statistic=_finite(outcome.statistic),
                 drifted=outcome.drifted, samples=len(rows), reason=outcome.reason)  # fmt: skip


def _record(volume: Volume, model: str, checks: list[Check], now: float) -> None:
    if not checks:
        return
    key = f"{history_prefix(model)}{int(now * 1000):013d}-{uuid.uuid4().hex[:8]}.json"
    volume.put_json(key, {"checks": [c.model_dump(mode="json") for c in checks]})


def _publish(bus: Any, checks: list[Check]) -> None:
    from mlrm.bus import Envelope

    for check in checks:
        body = {"event": EVENT, **check.model_dump(mode="json")}
        try:
            bus.publish_event(Envelope(id=f"monitor/{check.model}/{uuid.uuid4().hex}",
                                       run_id=f"monitor:{check.model}", body=body))  # fmt: skip
        except Exception:  # the history has it; a bus hiccup must not lose the checks
            log.warning("could not publish a monitoring check of %s", check.model, exc_info=True)


def history(volume: Volume, model: str, *, limit: int | None = None) -> list[Check]:
    """Every recorded check of ``model``, oldest first (the newest ``limit`` when given)."""
    keys = [o.key for o in volume.list(history_prefix(model)) if o.key.endswith(".json")]
    if limit is not None:
        keys = keys[-limit:]
    out: list[Check] = []
    for key in keys:
        try:
            record = volume.get_json(key)
            out.extend(Check.model_validate(c) for c in record["checks"])
        except (CorruptRecordError, KeyError, TypeError, ValueError) as exc:
            log.warning("skipped an unreadable monitoring record %s: %s", key, exc)
    return out


def dumps(checks: list[Check]) -> str:
    return json.dumps([c.model_dump(mode="json") for c in checks], indent=2)
