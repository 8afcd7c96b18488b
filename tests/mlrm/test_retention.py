"""Garbage collection: finished runs' payloads go, model versions and live runs stay, dead writers' leftovers go."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from mlrm.lease import Holder, Lease
from mlrm.registry import ModelRegistry
from mlrm.retention import collect
from orchestrator.store import RunStore
from services.train import trainer
from tests.conftest import CONFIGS, ROOT
from tests.support import dead_pid


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


@pytest.mark.parametrize("store", ["the run's own", "another machine's"])
def test_gc_during_a_training_run_leaves_everything_the_run_owns(mlrm, monkeypatch, tmp_path, store):
    """gc while the model fits, with no retention at all: the statistics the run is about to copy
    into its version (and the rest of its scratch space) must still be there, and predict must work."""
    other = RunStore(tmp_path / "elsewhere.sqlite")  # gc on another machine: it never heard of this run
    finished_at = mlrm.store.finished_at if store == "the run's own" else other.finished_at
    seen: dict = {}
    evaluate = trainer.evaluate

    def gc_then_evaluate(config, X, y, *more):
        run_id = next(r for r in {o.key.split("/")[1] for o in mlrm.volume.list("runs/")})
        before = [o.key for o in mlrm.volume.list(f"runs/{run_id}/")]
        seen["collected"] = collect(mlrm.volume, finished_at, older_than=0)
        after = {o.key for o in mlrm.volume.list(f"runs/{run_id}/")}
        # the run's own handlers may let go of a lease meanwhile (a gather's claim, released on another
        # thread as the train step hands its job over): only what gc could have taken counts as lost
        seen["lost"] = sorted(k for k in set(before) - after if "/leases/" not in k)
        return evaluate(config, X, y, *more)

    monkeypatch.setattr(trainer, "evaluate", gc_then_evaluate)
    trained = mlrm.run(CONFIGS / "iris" / "train.yaml", timeout=120)
    monkeypatch.setattr(trainer, "evaluate", evaluate)
    assert trained.status == "succeeded", trained.error
    assert seen["collected"].runs == [] and seen["lost"] == []
    assert [o.key for o in mlrm.volume.list("models/iris-classifier/1/state/")]  # the statistics made it
    predicted = mlrm.run(CONFIGS / "iris" / "predict.yaml", timeout=120)
    assert predicted.status == "succeeded", predicted.error


def test_a_training_whose_statistics_vanished_fails_instead_of_registering_a_version_that_cannot_predict(
    mlrm, monkeypatch
):
    evaluate = trainer.evaluate

    def delete_then_evaluate(config, X, y, *more):  # whatever deleted them (not gc: it leaves live runs alone)
        run_id = next(r for r in {o.key.split("/")[1] for o in mlrm.volume.list("runs/")})
        mlrm.volume.delete_prefix(f"runs/{run_id}/state/")
        return evaluate(config, X, y, *more)

    monkeypatch.setattr(trainer, "evaluate", delete_then_evaluate)
    run = mlrm.run(CONFIGS / "iris" / "train.yaml", timeout=120)
    assert run.status == "failed"
    assert "the statistics of clean.impute, features.0-standard_scale are missing" in run.error
    assert ModelRegistry(mlrm.volume).versions("iris-classifier") == []


@pytest.mark.parametrize("lease", ["run", "job.train", "gather.predict.sink"])
def test_a_live_lease_keeps_a_run_whatever_the_store_says_and_a_dead_one_does_not(volume, lease):
    """The class of what a run may hold: its owner's lease, a training job, a claimed stream."""
    here = Holder.here("worker")
    for run_id, holder in (("alive", here), ("dead", Holder("worker", here.machine, dead_pid(), None))):
        volume.put_bytes(f"runs/{run_id}/state/s.json", b"{}")
        assert Lease(volume, f"runs/{run_id}/leases/{lease}.json", holder).acquire()
    done = collect(volume, lambda run_id: 0.0, older_than=0)  # the store says both finished long ago
    assert done.live == ["alive"] and done.runs == ["dead"]
    assert [o.key for o in volume.list("runs/")] == ["runs/alive/leases/" + lease + ".json", "runs/alive/state/s.json"]


KILLED_WRITER = """
import os, signal, sys
from mlrm.volume.local import LocalVolume
with LocalVolume(sys.argv[1]).open_write("predictions/out.csv") as f:
    f.write(b"id,prediction\\n" * 1000)
    os.kill(os.getpid(), signal.SIGKILL)  # killed mid-write
"""


def test_gc_collects_the_temporary_files_of_writers_killed_mid_write(tmp_path):
    volume = tmp_path / "volume"
    subprocess.run([sys.executable, "-c", KILLED_WRITER, str(volume)], check=False)
    left = [p for p in volume.rglob("*") if p.is_file()]
    assert len(left) == 1 and left[0].name.startswith(".out.csv.")  # what a killed writer leaves
    env = {**os.environ, "MLRM_VOLUME": str(volume), "MLRM_STATE": str(tmp_path / "runs.sqlite")}
    gc = subprocess.run([sys.executable, "-m", "mlrm", "gc", "--older-than", "0"], env=env, capture_output=True,
                        text=True, cwd=ROOT)  # fmt: skip
    assert gc.returncode == 0, gc.stderr
    assert [p for p in volume.rglob("*") if p.is_file()] == []


KILLED_TRAINER = textwrap.dedent("""
    import os, signal
    from pathlib import Path
    from mlrm.registry import spool

    def write(target):  # the artefact half-written when the trainer is killed
        f = open(target, "wb") if isinstance(target, (str, Path)) else target
        f.write(b"PK" * 100_000)
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    spool(write)
""")


def test_a_killed_trainer_leaves_nothing_in_the_temp_folder(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    subprocess.run([sys.executable, "-c", KILLED_TRAINER], env={**os.environ, "TMPDIR": str(tmp)}, check=False)
    assert list(tmp.iterdir()) == []
