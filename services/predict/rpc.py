"""The predict service's methods for RPC callers (nameko today; REST/gRPC share them).

from nameko.standalone.rpc import ClusterRpcProxy
with ClusterRpcProxy({"AMQP_URI": "amqp://guest:guest@localhost"}) as rpc:
    rpc.predict.infer(model="iris-classifier", alias="production", records=[{...}, ...])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from mlrm.errors import DataError
from services.predict.reference import ReferenceRequest
from services.predict.service import PredictService


def methods(service: PredictService) -> dict[str, Callable[..., Any]]:
    def infer(
        model: str,
        records: list[dict[str, Any]],
        alias: str | None = None,
        version: int | None = None,
        probabilities: bool = True,
        keep: list[str] | None = None,
    ) -> dict[str, Any]:
        """Predict raw ``records`` (a list of row objects) with a registered model version or alias.

        The rows go through the version's inference pipeline first, exactly as in a batch workflow;
        ``keep`` names input columns to return beside each prediction (e.g. an id).
        """
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise DataError("records must be a list of row objects")
        if keep is not None and not (isinstance(keep, list) and all(isinstance(k, str) for k in keep)):
            raise DataError("keep must be a list of column names")
        out, ref = service.infer(
            model, pd.DataFrame.from_records(records), alias=alias, version=version, probabilities=probabilities,
            keep=keep or [], source="nameko",
        )  # fmt: skip
        return {"model": ref.name, "version": ref.version, "predictions": records_of(out)}

    def infer_ref(
        model: str,
        input_ref: str,
        output_ref: str,
        alias: str | None = None,
        version: int | None = None,
        format: str | None = None,
        output_format: str | None = None,
        probabilities: bool = True,
        keep: list[str] | None = None,
    ) -> dict[str, Any]:
        """Inference by reference: predict the rows of volume object ``input_ref`` into ``output_ref``.

        The rows stream from the volume through the version's inference pipeline, batch by batch,
        never through the call; the answer says where the predictions went and how many rows.
        """
        if keep is not None and not (isinstance(keep, list) and all(isinstance(k, str) for k in keep)):
            raise DataError("keep must be a list of column names")
        result = service.dataplane.infer_reference(ReferenceRequest(
            model, input_ref, output_ref, alias=alias, version=version, format=format, output_format=output_format,
            probabilities=probabilities, keep=keep or [], source="nameko",
        ))  # fmt: skip
        return {"model": result.ref.name, "version": result.ref.version, **result.parameters()}

    def models() -> list[dict[str, Any]]:
        """The model versions this replica has loaded."""
        return [{"model": r.name, "version": r.version} for r in service.server.loaded()]

    return {"infer": infer, "infer_ref": infer_ref, "models": models}


def records_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready objects: floats exact (not pandas' 10-digit JSON), times as ISO text, gaps as None."""
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if pd.api.types.is_datetime64_any_dtype(column) or pd.api.types.is_timedelta64_dtype(column):
            out[name] = column.map(lambda v: None if pd.isna(v) else v.isoformat())
    return out.astype(object).where(out.notna(), None).to_dict("records")
