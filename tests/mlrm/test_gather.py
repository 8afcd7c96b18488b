"""Gathering a stream whose batches arrive in any order."""

from __future__ import annotations

import pandas as pd

from mlrm.gather import Gather, rebatch


def frame(i: int) -> pd.DataFrame:
    return pd.DataFrame({"seq": [i, i], "v": [i * 10, i * 10 + 1]})


def test_completes_once_every_part_arrived_in_any_order(volume):
    g = Gather(volume, "run", "step")
    assert g.add(2, True, frame(2)) is False
    assert g.add(0, False, frame(0)) is False
    assert g.add(1, False, frame(1)) is True
    assert g.frame()["seq"].tolist() == [0, 0, 1, 1, 2, 2]


def test_only_one_caller_claims_but_a_redelivery_of_the_claimer_does(volume):
    g = Gather(volume, "run", "step")
    g.add(0, False, frame(0))
    assert g.add(1, True, frame(1)) is True
    assert Gather(volume, "run", "step").add(0, False, frame(0)) is False  # another batch: not the owner
    assert Gather(volume, "run", "step").add(1, True, frame(1)) is True  # the same batch redelivered


def test_clear_removes_the_parts(volume):
    g = Gather(volume, "run", "step")
    g.add(0, True, frame(0))
    g.clear()
    assert [o.key for o in volume.list("runs/run/gather/")] == []


def test_rebatch():
    df = pd.DataFrame({"a": range(10)})
    parts = list(rebatch(df, 4))
    assert [(len(f), s, last) for f, s, last in parts] == [(4, 0, False), (4, 1, False), (2, 2, True)]
    assert [(len(f), s, last) for f, s, last in rebatch(df.iloc[:0], 4)] == [(0, 0, True)]


def test_a_batch_redelivered_after_the_stream_was_handled_does_nothing(volume):
    g = Gather(volume, "run", "step")
    assert g.add(0, True, frame(0)) is True
    g.clear()
    assert Gather(volume, "run", "step").add(0, True, frame(0)) is False
    assert [o.key for o in volume.list("runs/run/")] == ["runs/run/done/step"]
