"""A short round of the chaos benchmark (benchmarks/chaos.py): every kind of fault in one run."""

from __future__ import annotations

from benchmarks.chaos import KINDS, Chaos


def test_a_run_struck_by_every_kind_of_fault_loses_and_duplicates_nothing(tmp_path, monkeypatch):
    for name in ("MLRM_S3_ENDPOINT", "MLRM_S3_ACCESS_KEY", "MLRM_S3_SECRET_KEY", "MLRM_S3_REGION"):
        monkeypatch.setenv(name, "")  # the chaos deployment sets its own; restored afterwards
    with Chaos(rows=20_000, batch_size=500, faults=len(KINDS), seed=11, round_timeout=300, tmp=tmp_path) as chaos:
        result = chaos.round(1)
    assert {f["kind"] for f in result["faults"]} == set(KINDS), result
    assert result["rows_published"] == 20_000, result
    assert (result["lost"], result["duplicated"], result["dead_letters"]) == (0, 0, 0), result
    assert result["status"] == "succeeded" and result["in_order"], result
