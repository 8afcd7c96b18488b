"""Monitoring: the prediction log, feedback, reference statistics and drift detection.

The interface the rest of mlrm (and the retraining loop) builds on:

- :class:`MonitorConfig` (kind ``MonitorConfig``): ``model``, ``alias`` (``production``),
  ``detectors`` (``{type: psi|ks|chi2|wasserstein|metric_decay, on: features|predictions|labels,
  features: [...]|all, threshold, metric: accuracy|f1|mae|rmse, tolerance}``), ``window``
  (``{count: N}`` or ``{seconds: S}``), ``min_samples``.
- :func:`run_checks` ``(volume, config, *, now=None, bus=None) -> list[Check]``: reads the version's
  reference statistics, its prediction log and joined feedback, appends the checks to the
  history, publishes them as ``monitor_check`` events when given a bus.
- :class:`Check`: ``model, version, alias, detector, on, target, statistic, p_value, threshold,
  drifted, samples, window_start, window_end, at, reason, details``.
- :func:`history` ``(volume, model) -> list[Check]`` (``mlrm monitor status MODEL``).
- :func:`labelled_window` ``(volume, model, *, version=None, since=None, until=None, limit=None,
  label="label") -> DataFrame``: labelled feedback joined to its logged features and outputs.
- :class:`PredictionLog` / :class:`LogEntry`: the background writer of the log;
  :class:`LogSettings`: a deployment's (or batch predict config's) ``log: {sample, row_id}``.
- :func:`write_feedback` / :func:`parse_feedback`: what every feedback transport calls;
  :func:`send_feedback` ``(bus, model, items)`` publishes to :data:`FEEDBACK_QUEUE`, which predict consumes.
- :func:`reference_statistics` / :func:`load_reference`: ``reference.json`` in a version's folder.
- :data:`detectors`: the registry of drift detectors.

Volume layout: see :mod:`mlrm.monitoring.paths`.
"""

from __future__ import annotations

from mlrm.monitoring.checks import EVENT, Check, history, run_checks
from mlrm.monitoring.config import DetectorSpec, LogSettings, MonitorConfig, Window
from mlrm.monitoring.detectors import Detector, Outcome, detectors
from mlrm.monitoring.feedback import (
    FEEDBACK_QUEUE,
    FeedbackItem,
    consume_feedback,
    feedback_from_frame,
    labelled,
    labelled_window,
    parse_feedback,
    send_feedback,
    write_feedback,
)
from mlrm.monitoring.log import FEATURE, OUTPUT, LogEntry, PredictionLog, read_log, read_predictions
from mlrm.monitoring.paths import REFERENCE_FILE
from mlrm.monitoring.reference import Reference, Summary, load_reference, reference_bytes, reference_statistics

__all__ = [
    "EVENT",
    "FEATURE",
    "FEEDBACK_QUEUE",
    "OUTPUT",
    "REFERENCE_FILE",
    "Check",
    "Detector",
    "DetectorSpec",
    "FeedbackItem",
    "LogEntry",
    "LogSettings",
    "MonitorConfig",
    "Outcome",
    "PredictionLog",
    "Reference",
    "Summary",
    "Window",
    "consume_feedback",
    "detectors",
    "feedback_from_frame",
    "history",
    "labelled",
    "labelled_window",
    "load_reference",
    "parse_feedback",
    "read_log",
    "read_predictions",
    "reference_bytes",
    "reference_statistics",
    "run_checks",
    "send_feedback",
    "write_feedback",
]  # fmt: skip
