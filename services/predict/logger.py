"""The prediction logger: an ``on_predict`` subscriber that samples predictions into the prediction log.

Which predictions are logged is configured per model: a deployment's ``log`` (``{sample: 0.1}``
logs a tenth of its direct requests, REST, gRPC and nameko alike) and a batch predict config's
``log`` for workflow batches (off by default). Deployment settings are re-read every few seconds
in the background, never on a request. The request thread only draws the sample and queues the
entry; building rows and writing Parquet happen on the log's writer thread
(:class:`mlrm.monitoring.PredictionLog`), so logging never blocks a request.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import OrderedDict

from mlrm.deployments import Deployments
from mlrm.monitoring import LogEntry, LogSettings, PredictionLog
from mlrm.volume import Volume
from services.predict.dataplane import Prediction

log = logging.getLogger(__name__)


class PredictionLogger:
    """``dataplane.on_predict.append(logger)``; :meth:`start` it, :meth:`stop` flushes what is queued."""

    may_block = False  # it only queues: the V2 servers may still answer small requests on their event loop

    def __init__(self, volume: Volume, *, refresh: float = 2.0, writer: PredictionLog | None = None) -> None:
        self.volume = volume
        self.refresh = refresh
        self.log = writer or PredictionLog(volume)
        self._deployed: dict[str, LogSettings] = {}  # model -> the settings of its deployments
        self._runs: OrderedDict[str, LogSettings] = OrderedDict()  # batch runs whose predict config logs
        self._random = random.Random()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- configuration ---------------------------------------------------------------------
    def reload(self) -> None:
        """Re-read the deployments' log settings (the most generous one of a model's deployments wins)."""
        found: dict[str, LogSettings] = {}
        for dep in Deployments(self.volume).active(on_corrupt=lambda exc: None):
            settings = getattr(dep, "log", None)
            if settings is not None and (dep.model not in found or settings.sample > found[dep.model].sample):
                found[dep.model] = settings
        self._deployed = found

    def for_run(self, run_id: str, settings: LogSettings | None) -> None:
        """Log the batches of a workflow run (its predict config's ``log``)."""
        if settings is None:
            return
        self._runs[run_id] = settings
        while len(self._runs) > 10_000:
            self._runs.popitem(last=False)

    def settings(self, event: Prediction) -> LogSettings | None:
        if event.source == "bus":
            return self._runs.get(event.request_id.rsplit("/", 1)[0])
        return self._deployed.get(event.ref.name)

    # -- the hook ------------------------------------------------------------------------------
    def __call__(self, event: Prediction) -> None:
        settings = self.settings(event)
        if settings is None or settings.sample <= 0:
            return
        if settings.sample < 1 and self._random.random() >= settings.sample:
            return
        row_ids = None
        if settings.row_id is not None and settings.row_id in event.input_columns:
            ids = event.inputs[settings.row_id]
            answered = len(event.output_columns)
            if len(ids) != answered and ids.index.is_unique and event.features.index.isin(ids.index).all():
                ids = ids.loc[event.features.index]  # the pipeline dropped rows: keep the ids of the rest
            row_ids = ids.astype(str).tolist() if len(ids) == answered else None
        self.log.record(LogEntry(event.ref.name, event.ref.version, event.request_id, event.source, event.at,
                                 event.feature_columns, event.output_columns, row_ids))  # fmt: skip

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> PredictionLogger:
        self.log.start()
        self._reload_quietly()
        if self.refresh > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="mlrm-prediction-logger", daemon=True)
            self._thread.start()
        return self

    def _reload_quietly(self) -> None:
        try:
            self.reload()
        except Exception:  # a volume hiccup: keep the settings we have
            log.warning("could not read the deployments' log settings", exc_info=True)

    def _watch(self) -> None:
        while not self._stop.wait(self.refresh):
            self._reload_quietly()

    def flush(self, timeout: float | None = 30.0) -> bool:
        return self.log.flush(timeout)

    def stop(self) -> None:
        """Stop watching and write everything queued (what was acknowledged is on disk)."""
        self._stop.set()
        self.log.close()
