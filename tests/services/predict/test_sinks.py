"""The built-in sinks: csv, jsonl and parquet, to a local path or a volume key."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from mlrm.context import StepContext
from mlrm.errors import ConfigError, DataError
from mlrm.steps import registry
from mlrm.volume.local import LocalVolume
from services.predict.sinks import CsvSink, JsonlSink, ParquetSink

SINKS = {"csv": CsvSink, "jsonl": JsonlSink, "parquet": ParquetSink}


@pytest.fixture
def ctx(tmp_path: Path) -> StepContext:
    return StepContext(volume=LocalVolume(tmp_path / "vol"), run_id="r1", step="predict", base_dir=tmp_path)


def batches() -> list[pd.DataFrame]:
    def batch(start: int) -> pd.DataFrame:
        ids = range(start, start + 4)
        return pd.DataFrame(
            {
                "id": list(ids),
                "score": [i / 3 for i in ids],
                "label": [f"l{i}" for i in ids],
                "ok": [i % 2 == 0 for i in ids],
            }
        )

    return [batch(0), batch(4), batch(8)]


def read_back(fmt: str, data: bytes) -> pd.DataFrame:
    if fmt == "csv":
        return pd.read_csv(io.BytesIO(data))
    if fmt == "jsonl":
        return pd.read_json(io.BytesIO(data), lines=True)
    return pd.read_parquet(io.BytesIO(data))


def one_at_a_time(frames: list[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    yield from frames


def test_every_sink_is_registered() -> None:
    assert set(SINKS) <= set(registry.names("sink"))


@pytest.mark.parametrize("fmt", SINKS)
def test_round_trip_to_a_path(ctx: StepContext, tmp_path: Path, fmt: str) -> None:
    sink = SINKS[fmt](step=fmt, path=f"out/sub/preds.{fmt}")
    where = sink.write(ctx, one_at_a_time(batches()))
    target = tmp_path / "out" / "sub" / f"preds.{fmt}"
    assert where == str(target)
    pd.testing.assert_frame_equal(read_back(fmt, target.read_bytes()), pd.concat(batches(), ignore_index=True))
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temporary file left


@pytest.mark.parametrize("fmt", SINKS)
def test_round_trip_to_a_volume_key_with_run_id(ctx: StepContext, fmt: str) -> None:
    sink = SINKS[fmt](step=fmt, key=f"predictions/{{run_id}}.{fmt}")
    assert sink.write(ctx, one_at_a_time(batches())) == f"volume:predictions/r1.{fmt}"
    data = ctx.volume.get_bytes(f"predictions/r1.{fmt}")
    pd.testing.assert_frame_equal(read_back(fmt, data), pd.concat(batches(), ignore_index=True))


def test_run_id_in_a_path(ctx: StepContext, tmp_path: Path) -> None:
    CsvSink(step="csv", path="runs/{run_id}/out.csv").write(ctx, iter(batches()))
    assert (tmp_path / "runs" / "r1" / "out.csv").exists()


@pytest.mark.parametrize("fmt", SINKS)
def test_empty_stream_writes_a_valid_empty_file(ctx: StepContext, fmt: str) -> None:
    SINKS[fmt](step=fmt, key=f"none.{fmt}").write(ctx, iter([]))
    data = ctx.volume.get_bytes(f"none.{fmt}")
    if fmt == "parquet":
        assert read_back(fmt, data).empty
    else:
        assert data == b""


@pytest.mark.parametrize("fmt", SINKS)
def test_empty_frame_keeps_the_columns(ctx: StepContext, fmt: str) -> None:
    SINKS[fmt](step=fmt, key=f"empty.{fmt}").write(ctx, iter([batches()[0].iloc[:0]]))
    data = ctx.volume.get_bytes(f"empty.{fmt}")
    if fmt == "jsonl":
        assert data == b""  # JSON Lines has nowhere to put column names
    else:
        df = read_back(fmt, data)
        assert df.empty and list(df.columns) == ["id", "score", "label", "ok"]


def test_jsonl_missing_values_are_null(ctx: StepContext) -> None:
    frame = pd.DataFrame(
        {
            "x": [1.5, np.nan],
            "s": ["a", None],
            "t": pd.to_datetime(["2024-01-02 03:04:05", None]),
            "n": pd.array([1, None], dtype="Int64"),
        }
    )
    JsonlSink(step="jsonl", key="out.jsonl").write(ctx, iter([frame]))
    lines = ctx.volume.get_bytes("out.jsonl").decode().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"x": 1.5, "s": "a", "t": "2024-01-02T03:04:05", "n": 1},
        {"x": None, "s": None, "t": None, "n": None},
    ]


def test_later_batches_are_put_in_the_first_batchs_column_order(ctx: StepContext, tmp_path: Path) -> None:
    first, second, _ = batches()
    CsvSink(step="csv", path="out.csv").write(ctx, iter([first, second[["label", "ok", "score", "id"]]]))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out.csv"), pd.concat([first, second], ignore_index=True))


def test_batch_with_other_columns_is_an_error_and_leaves_no_file(ctx: StepContext, tmp_path: Path) -> None:
    first, second, _ = batches()
    with pytest.raises(DataError, match=r"out\.csv: batch 2 has columns id, score"):
        CsvSink(step="csv", path="out.csv").write(ctx, iter([first, second[["id", "score"]]]))
    assert list(tmp_path.glob("*out.csv*")) == []


def test_parquet_later_batches_are_cast_to_the_first_schema(ctx: StepContext) -> None:
    first, second, _ = batches()
    wrong = second.assign(label=[object()] * 4)
    ParquetSink(step="parquet", key="a.parquet").write(ctx, iter([first, second.assign(score=second["score"] > 2)]))
    assert read_back("parquet", ctx.volume.get_bytes("a.parquet"))["score"].dtype == "float64"
    with pytest.raises(DataError, match=r"volume:b\.parquet: batch 2 does not convert"):
        ParquetSink(step="parquet", key="b.parquet").write(ctx, iter([first, wrong]))
    assert not ctx.volume.exists("b.parquet")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "exactly one of 'path'"),
        ({"path": "a.csv", "key": "a.csv"}, "exactly one of 'path'"),
        ({"key": "out/{date}.csv"}, r"unknown placeholder \{date\}"),
    ],
)
def test_options_are_validated(options: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CsvSink(step="csv", **options)


RESERVED_KEYS = [
    "models/iris-classifier/1/model.skops", "models/iris-classifier/aliases/production.json", "models",
    "runs/{run_id}/gather/predict.sink/part-000000000.arrow", "runs/{run_id}/status.json", "runs/other/out.csv",
    "deployments/dep-1.json", "Models/x/1/card.json", "RUNS/{run_id}.csv",
]  # fmt: skip


@pytest.mark.parametrize("key", RESERVED_KEYS)
def test_a_key_under_a_reserved_prefix_is_refused_by_the_config(key: str) -> None:
    with pytest.raises(ValidationError, match=r"which mlrm keeps for") as info:
        CsvSink(step="csv", key=key)
    assert f"key '{key}' is under" in str(info.value)  # named as written, {run_id} included


@pytest.mark.parametrize("key", ["predictions/{run_id}.csv", "modelsx/a.csv", "my/models/a.csv", "{run_id}/runs.csv"])
def test_keys_beside_the_reserved_prefixes_are_fine(ctx: StepContext, key: str) -> None:
    CsvSink(step="csv", key=key).write(ctx, iter(batches()))
    assert ctx.volume.exists(key.replace("{run_id}", "r1"))


@pytest.mark.parametrize("key", RESERVED_KEYS)
def test_a_reserved_key_is_refused_when_written_too(ctx: StepContext, key: str) -> None:
    """Checked where the key becomes a write target, not only when a config is validated."""
    target = key.replace("{run_id}", "r1")
    ctx.volume.put_bytes(target if target != "models" else "models/x", b"precious")
    sink = CsvSink.model_construct(step="csv", key=key, path=None)  # as if validation were skipped
    with pytest.raises(ConfigError, match=r"which mlrm keeps for"):
        sink.write(ctx, iter(batches()))
    assert ctx.volume.get_bytes(target if target != "models" else "models/x") == b"precious"


def test_a_path_into_the_local_volume_obeys_the_same_rule(ctx: StepContext, tmp_path: Path) -> None:
    ctx.volume.put_bytes("models/m/1/model.skops", b"precious")
    with pytest.raises(ConfigError, match=r"'models/m/1/model.skops' is under 'models/'"):
        CsvSink(step="csv", path="vol/models/m/1/model.skops").write(ctx, iter(batches()))
    assert ctx.volume.get_bytes("models/m/1/model.skops") == b"precious"
    CsvSink(step="csv", path="vol/predictions/out.csv").write(ctx, iter(batches()))  # elsewhere in it is fine
    assert ctx.volume.exists("predictions/out.csv")
