"""The cancel marker services check: seen at once when asked fresh, within the cache's ttl otherwise,
and for good once seen."""

from __future__ import annotations

import time

import pytest

from mlrm.cancel import Cancellations, RunCancelled, cancel_key, mark_cancelled
from mlrm.volume.local import LocalVolume


def test_a_marked_run_is_seen_cancelled(tmp_path) -> None:
    volume = LocalVolume(tmp_path / "volume")
    seen = Cancellations(volume, ttl=0.2)
    assert not seen("r1")
    mark_cancelled(volume, "r1", "by a test")
    assert not seen("r1")  # cached for up to ttl: a message costs no volume read in the common case
    assert seen("r1", fresh=True)  # right before publishing: asked now
    assert not seen("r2")
    mark_cancelled(volume, "r2")
    time.sleep(0.25)
    assert seen("r2")
    volume.delete(cancel_key("r2"))
    assert seen("r2")  # once cancelled, for good
    with pytest.raises(RunCancelled):
        seen.check("r1")
    seen.check("r3")
    assert volume.get_json(cancel_key("r1"))["reason"] == "by a test"
