"""Sources stream: memory stays flat however large the input is."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from mlrm.context import StepContext
from mlrm.volume.local import LocalVolume
from services.collector.sources import CsvSource, ParquetSource

ROWS = 300_000
BATCH = 10_000


@pytest.fixture(scope="module")
def table() -> pa.Table:
    rng = np.random.default_rng(0)
    return pa.table(
        {
            "id": np.arange(ROWS),
            "x": rng.random(ROWS),
            "y": rng.normal(size=ROWS),
            "z": rng.integers(0, 1_000_000, ROWS),
        }
    )


def peak_while_reading(source, ctx: StepContext) -> tuple[int, int]:
    """(rows read, peak traced bytes) consuming the source batch by batch."""
    rows = 0
    tracemalloc.start()
    try:
        for frame in source.read(ctx, BATCH):
            assert len(frame) <= BATCH
            rows += len(frame)
        return rows, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("where", ["path", "key"])
def test_csv_memory_stays_well_below_the_file_size(tmp_path: Path, table: pa.Table, where: str) -> None:
    ctx = StepContext(volume=LocalVolume(tmp_path / "vol"), run_id="r1", step="collect", base_dir=tmp_path)
    pacsv.write_csv(table, tmp_path / "big.csv")
    size = (tmp_path / "big.csv").stat().st_size
    parsed = table.nbytes  # what the whole file costs once parsed
    if where == "key":
        (tmp_path / "big.csv").rename(tmp_path / "vol" / "big.csv")
    rows, peak = peak_while_reading(CsvSource(step="csv", **{where: "big.csv"}), ctx)
    assert rows == ROWS
    assert peak < 0.4 * size, f"peak {peak} bytes while reading a {size}-byte file"
    assert peak < 0.5 * parsed


def test_parquet_memory_stays_well_below_the_data_size(tmp_path: Path, table: pa.Table) -> None:
    ctx = StepContext(volume=LocalVolume(tmp_path / "vol"), run_id="r1", step="collect", base_dir=tmp_path)
    pq.write_table(table, tmp_path / "big.parquet", row_group_size=50_000)
    rows, peak = peak_while_reading(ParquetSource(step="parquet", path="big.parquet"), ctx)
    assert rows == ROWS
    assert peak < 0.4 * table.nbytes, f"peak {peak} bytes for {table.nbytes} bytes of data"
