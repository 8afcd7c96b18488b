"""Garbage collection: finished runs' payloads go, model versions and running runs stay."""

from __future__ import annotations

from mlrm.registry import ModelRegistry
from mlrm.retention import collect
from tests.conftest import CONFIGS


def test_collects_finished_runs_but_never_versions(mlrm):
    run = mlrm.run(CONFIGS / "iris" / "train.yaml", timeout=120)
    volume = mlrm.volume
    volume.put_bytes(f"runs/{run.id}/gather/x/part-000000000.arrow", b"left behind")
    volume.put_bytes("runs/still-running/gather/x/part-000000000.arrow", b"in use")
    volume.put_bytes("runs/unknown-run/state/s.json", b"{}")
    abandoned = ModelRegistry(volume).reserve_version("iris-classifier")  # a trainer that died
    statuses = {"still-running": None}

    def finished_at(run_id: str):
        return statuses.get(run_id, mlrm.store.finished_at(run_id))

    kept = collect(volume, finished_at, older_than=3600)
    assert kept.runs == [] and kept.abandoned_versions == []

    done = collect(volume, finished_at, older_than=0)
    assert sorted(done.runs) == sorted([run.id, "unknown-run"])
    assert done.abandoned_versions == [f"models/iris-classifier/{abandoned}"]
    assert [o.key for o in volume.list("runs/")] == ["runs/still-running/gather/x/part-000000000.arrow"]
    assert ModelRegistry(volume).versions("iris-classifier") == [1]
    assert volume.exists("models/iris-classifier/1/model.skops")
