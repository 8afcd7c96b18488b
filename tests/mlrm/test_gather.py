"""Gathering a stream whose batches arrive in any order, and who handles it once it is complete."""

from __future__ import annotations

import subprocess
import sys
import threading

import pandas as pd
import pytest

from mlrm.gather import Gather, rebatch
from mlrm.lease import Holder


def frame(i: int) -> pd.DataFrame:
    return pd.DataFrame({"seq": [i, i], "v": [i * 10, i * 10 + 1]})


def replica(volume, name: str, step: str = "step") -> Gather:
    return Gather(volume, "run", step, Holder.here(name))


def dead_holder(name: str) -> Holder:
    """A holder whose process has exited (a replica SIGKILLed mid-stream)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    here = Holder.here(name)
    return Holder(name, here.machine, int(proc.stdout), None, here.bus)


def test_completes_once_every_part_arrived_in_any_order(volume):
    g = Gather(volume, "run", "step")
    assert not g.add(2, True, frame(2))
    assert not g.add(0, False, frame(0))
    with g.add(1, False, frame(1)) as claim:
        assert claim
        assert g.frame()["seq"].tolist() == [0, 0, 1, 1, 2, 2]


def test_only_the_handler_of_the_completing_batch_handles_the_stream(any_volume):
    a = replica(any_volume, "replica-a")
    a.add(0, False, frame(0))
    claim = a.add(1, True, frame(1))
    assert claim
    with claim:
        # another batch, delivered again to another replica: stored, but the stream is not its to handle
        assert replica(any_volume, "replica-b").add(0, False, frame(0)) is None
        a.clear(claim, {"seq": 1, "rows_out": 4})


def test_a_batch_redelivered_while_its_first_handler_works_waits_and_reports_what_it_did(any_volume):
    """A dropped connection gives the completing batch to another replica while the first still writes
    the stream out: the redelivery must neither take the stream over nor fail when its parts go."""
    a = replica(any_volume, "replica-a", "predict.sink")
    a.add(0, False, frame(0))
    claim = a.add(1, True, frame(1))
    assert claim
    got: list = []
    redelivery = threading.Thread(target=lambda: got.append(replica(any_volume, "replica-b", "predict.sink")
                                                            .add(1, True, frame(1))))  # fmt: skip
    with claim:
        redelivery.start()
        written = pd.concat(list(a.batches()), ignore_index=True)  # the first handler writes the output
        a.clear(claim, {"seq": 1, "result": {"output": "volume:out.csv", "rows": len(written)}})
    redelivery.join(60)
    assert got == [None]  # it did not handle the stream ...
    # ... and reports what the first handler did, for the same batch (not for another one)
    assert a.outcome(1) == {"seq": 1, "result": {"output": "volume:out.csv", "rows": 4}}
    assert a.outcome(0) is None


def test_a_batch_redelivered_after_its_handler_died_takes_the_stream_over(any_volume):
    dead = Gather(any_volume, "run", "step", dead_holder("replica-a"))
    dead.add(0, False, frame(0))
    assert dead.add(1, True, frame(1))  # claimed, then the replica was killed before it finished
    b = replica(any_volume, "replica-b")
    assert replica(any_volume, "replica-c").add(0, False, frame(0)) is None  # not the claiming batch: not its job
    claim = b.add(1, True, frame(1))
    assert claim
    with claim:
        assert claim.read()["taken_over"][0]["from"].startswith("replica-a")
        assert b.frame()["seq"].tolist() == [0, 0, 1, 1]
        b.clear(claim, {"seq": 1})


def test_a_handler_that_failed_lets_the_redelivery_claim_at_once(volume):
    with pytest.raises(RuntimeError), replica(volume, "replica-a").add(0, True, frame(0)):
        raise RuntimeError("the sink failed")
    with replica(volume, "replica-b").add(0, True, frame(0)) as claim:
        assert claim


def test_clear_removes_the_parts(volume):
    g = Gather(volume, "run", "step")
    with g.add(0, True, frame(0)) as claim:
        g.clear(claim)
    assert [o.key for o in volume.list("runs/run/gather/")] == []


def test_rebatch():
    df = pd.DataFrame({"a": range(10)})
    parts = list(rebatch(df, 4))
    assert [(len(f), s, last) for f, s, last in parts] == [(4, 0, False), (4, 1, False), (2, 2, True)]
    assert [(len(f), s, last) for f, s, last in rebatch(df.iloc[:0], 4)] == [(0, 0, True)]


def test_a_batch_redelivered_after_the_stream_was_handled_does_nothing(volume):
    g = Gather(volume, "run", "step")
    with g.add(0, True, frame(0)) as claim:
        g.clear(claim, {"seq": 0})
    assert Gather(volume, "run", "step").add(0, True, frame(0)) is None
    assert [o.key for o in volume.list("runs/run/")] == ["runs/run/done/step"]


def test_batches_given_as_arrays_are_stored_without_a_dataframe_and_read_back_typed(volume):
    """The predict service hands the model's arrays (kept columns keep their pandas dtype) to the gather."""
    import numpy as np

    from mlrm.columns import Columns

    gather = replica(volume, "a")
    ids = pd.Series([7, 8], dtype="int64").array
    for seq in (1, 0):
        rows = Columns({"id": ids, "prediction": np.array(["a", "b"], dtype=object), "proba": np.array([0.25, 1.0])})
        claim = gather.add(seq, seq == 1, rows)
        assert rows._frame is None  # no DataFrame was made to store it
    assert claim is not None
    with claim:
        out = gather.frame()
    assert out["id"].tolist() == [7, 8, 7, 8] and out["id"].dtype == "int64"
    assert out["prediction"].tolist() == ["a", "b"] * 2 and out["proba"].tolist() == [0.25, 1.0] * 2
