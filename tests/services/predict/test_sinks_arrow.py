"""The csv and parquet sinks take the Arrow tables a multi-batch stream's parts are stored as (see
``Gather.tables``) and write what they write for the DataFrames: no round trip through pandas."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from mlrm.context import StepContext
from mlrm.errors import DataError
from mlrm.gather import Gather
from mlrm.volume.local import LocalVolume
from services.predict.sinks import CsvSink, JsonlSink, ParquetSink
from tests.services.predict.test_sinks import batches


@pytest.fixture
def ctx(tmp_path: Path) -> StepContext:
    return StepContext(volume=LocalVolume(tmp_path / "vol"), run_id="r1", step="predict", base_dir=tmp_path)


def stored(ctx: StepContext, frames: list[pd.DataFrame]) -> Gather:
    gather = Gather(ctx.volume, "r1", "predict.sink")
    for seq, frame in enumerate(frames):
        gather.add(seq, seq == len(frames) - 1, frame)
    return gather


def test_only_the_arrow_writers_say_they_take_tables():
    assert CsvSink.takes_arrow and ParquetSink.takes_arrow and not JsonlSink.takes_arrow


@pytest.mark.parametrize("sink", [CsvSink(step="csv", key="out.csv"), ParquetSink(step="parquet", key="out.pq")])
def test_stored_tables_write_what_the_frames_write(ctx, sink):
    frames = batches()
    gather = stored(ctx, frames)
    tables = list(gather.tables())
    assert all(isinstance(t, pa.Table) for t in tables)
    sink.write(ctx, iter(tables))
    from_tables = ctx.volume.get_bytes(sink.key)
    sink.write(ctx, iter(frames))
    from_frames = ctx.volume.get_bytes(sink.key)
    if isinstance(sink, CsvSink):
        assert from_tables == from_frames
    else:
        pd.testing.assert_frame_equal(
            pd.read_parquet(io.BytesIO(from_tables)), pd.read_parquet(io.BytesIO(from_frames))
        )
    expected = pd.concat(frames, ignore_index=True)
    got = (
        pd.read_csv(io.BytesIO(from_tables)) if isinstance(sink, CsvSink) else pd.read_parquet(io.BytesIO(from_tables))
    )
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_tables_are_put_in_the_first_tables_column_order_and_cast_to_its_types(ctx):
    first, second, _ = batches()
    later = pa.Table.from_pandas(second.assign(score=second["score"] > 2)[["label", "ok", "score", "id"]])
    ParquetSink(step="parquet", key="a.pq").write(ctx, iter([pa.Table.from_pandas(first), later]))
    back = pd.read_parquet(io.BytesIO(ctx.volume.get_bytes("a.pq")))
    assert list(back.columns) == list(first.columns) and back["score"].dtype == "float64"
    with pytest.raises(DataError, match=r"batch 2 has columns id, score"):
        CsvSink(step="csv", key="b.csv").write(ctx, iter([pa.Table.from_pandas(first), later.select(["id", "score"])]))
    wrong = pa.Table.from_pandas(second.assign(score=["x"] * 4))
    with pytest.raises(DataError, match=r"batch 2 does not convert"):
        ParquetSink(step="parquet", key="c.pq").write(ctx, iter([pa.Table.from_pandas(first), wrong]))


def test_many_batches_are_written_in_order_while_later_ones_are_formatted_on_other_threads(ctx):
    """The csv sink formats batches 2.. on a pool: the file is still exactly one write of all the rows."""
    tables = [pa.table({"id": list(range(i * 50, i * 50 + 50)), "label": [f"r{i}"] * 50}) for i in range(40)]
    CsvSink(step="csv", key="many.csv").write(ctx, iter(tables))
    whole = io.BytesIO()
    pa_csv.write_csv(pa.concat_tables(tables), whole)
    assert ctx.volume.get_bytes("many.csv") == whole.getvalue()
    broken = [*tables[:10], pa.table({"id": ["not a number"] * 3, "label": ["x"] * 3}), *tables[10:]]
    with pytest.raises(DataError, match="does not fit the columns of the first batch"):
        CsvSink(step="csv", key="broken.csv").write(ctx, iter(broken))
