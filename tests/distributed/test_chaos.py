"""A short round of the chaos benchmark (benchmarks/chaos.py): every kind of fault in one run."""

from __future__ import annotations

from benchmarks.chaos import KINDS, SINK_FAULTS, Chaos


def test_a_run_struck_by_every_kind_of_fault_loses_and_duplicates_nothing(tmp_path, monkeypatch):
    for name in ("MLRM_S3_ENDPOINT", "MLRM_S3_ACCESS_KEY", "MLRM_S3_SECRET_KEY", "MLRM_S3_REGION"):
        monkeypatch.setenv(name, "")  # the chaos deployment sets its own; restored afterwards
    # Every fault set in the first 40% of the run, so a short run cannot end before they strike
    # (the output-writing faults strike at the write, if they catch it).
    with Chaos(rows=30_000, batch_size=250, faults=len(KINDS), seed=11, round_timeout=300, latest=0.4,
               tmp=tmp_path) as chaos:  # fmt: skip
        result = chaos.round(1)
    assert set(KINDS) - set(SINK_FAULTS) <= {f["kind"] for f in result["faults"]}, result
    assert result["rows_published"] == 30_000, result
    assert (result["lost"], result["duplicated"], result["dead_letters"]) == (0, 0, 0), result
    assert result["status"] == "succeeded" and result["in_order"], result
