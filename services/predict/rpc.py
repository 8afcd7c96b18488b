"""The predict service's methods for RPC callers (nameko today; REST/gRPC share them).

from nameko.standalone.rpc import ClusterRpcProxy
with ClusterRpcProxy({"AMQP_URI": "amqp://guest:guest@localhost"}) as rpc:
    rpc.predict.infer(model="iris-classifier", alias="production", records=[{...}, ...])
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pandas as pd

from mlrm.errors import DataError
from services.predict.service import PredictService


def methods(service: PredictService) -> dict[str, Callable[..., Any]]:
    def infer(
        model: str,
        records: list[dict[str, Any]],
        alias: str | None = None,
        version: int | None = None,
        probabilities: bool = True,
    ) -> dict[str, Any]:
        """Predict ``records`` (a list of row objects) with a registered model version or alias."""
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise DataError("records must be a list of row objects")
        out, ref = service.infer(
            model, pd.DataFrame.from_records(records), alias=alias, version=version, probabilities=probabilities
        )
        rows = json.loads(out.to_json(orient="records", date_format="iso"))
        return {"model": ref.name, "version": ref.version, "predictions": rows}

    def models() -> list[dict[str, Any]]:
        """The model versions this replica has loaded."""
        return [{"model": r.name, "version": r.version} for r in service.server.loaded()]

    return {"infer": infer, "models": models}
