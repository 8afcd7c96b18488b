"""Shared sink code: the output target (a local path or a volume key) and batch consistency.

A sink writes batch after batch to one open stream and never holds more than one
batch. Local files are written to a temporary file beside the target and renamed
at the end, like volume objects, so readers never see half a file.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

import pandas as pd
import pyarrow as pa
from pydantic import field_validator, model_validator

from mlrm.errors import ConfigError, DataError
from mlrm.steps import SinkStep
from mlrm.volume import check_output_key
from mlrm.volume.local import LocalVolume

if TYPE_CHECKING:
    from mlrm.context import StepContext

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_SAMPLE_RUN_ID = "20000101-000000-000000"  # what {run_id} stands for when the config is validated


class FileSink(SinkStep):
    """A sink writing one file: a local `path` or a volume `key` (exactly one)."""

    path: str | None = None
    """Local file to write, relative to the config file's folder; `{run_id}` is replaced by the run's id."""
    key: str | None = None
    """Object in the volume to write, e.g. `predictions/{run_id}.parquet`; not under `models/`, `runs/`
    or `deployments/`, which mlrm keeps for itself."""

    @field_validator("key")
    @classmethod
    def _output_key(cls, v: str | None) -> str | None:
        if v is not None:
            sample = v.replace("{run_id}", _SAMPLE_RUN_ID)
            try:
                check_output_key(sample)
            except ConfigError as exc:  # name the key as written, placeholder included
                raise ValueError(exc.reason.replace(sample, v)) from None
        return v

    @model_validator(mode="after")
    def _path_or_key(self) -> FileSink:
        if (self.path is None) == (self.key is None):
            raise ValueError("give exactly one of 'path' (a local file) or 'key' (an object in the volume)")
        target = self.path if self.path is not None else self.key
        unknown = [p for p in _PLACEHOLDER.findall(target or "") if p != "run_id"]
        if unknown:
            raise ValueError(f"unknown placeholder {{{unknown[0]}}} in {target!r}; only {{run_id}} is supported")
        return self

    def target(self, ctx: StepContext) -> str:
        """`path` or `key` with `{run_id}` substituted."""
        return (self.path if self.path is not None else self.key or "").replace("{run_id}", ctx.run_id)

    def location(self, ctx: StepContext) -> str:
        """Where the output goes, for the run summary."""
        return f"volume:{self.target(ctx)}" if self.key is not None else str(ctx.resolve_path(self.target(ctx)))

    takes_arrow: ClassVar[bool] = False
    """Whether :meth:`write_stream` also takes ``pyarrow.Table`` batches (then stored parts reach it without
    a round trip through pandas)."""

    def write(self, ctx: StepContext, batches: Iterator[pd.DataFrame]) -> str:
        where = self.location(ctx)
        with self.open(ctx) as stream:
            self.write_stream(stream, same_columns(batches, where), where)
        return where

    def write_stream(self, stream: IO[bytes], batches: Iterator[pd.DataFrame], where: str) -> None:
        """Write every batch, in order, to the open binary stream."""
        raise NotImplementedError

    @contextmanager
    def open(self, ctx: StepContext) -> Iterator[IO[bytes]]:
        """A binary stream whose content appears at the target only if the block exits cleanly."""
        if self.key is not None:
            with ctx.volume.open_write(check_output_key(self.target(ctx))) as stream:  # checked as written too
                yield stream
            return
        path = ctx.resolve_path(self.target(ctx))
        if path.is_dir():
            raise DataError(f"cannot write {path}: it is a folder; give a file name in the sink's 'path'")
        if isinstance(ctx.volume, LocalVolume):  # a path into the volume's folder must obey the same rule
            inside = Path(os.path.abspath(path)).resolve()
            if inside.is_relative_to(ctx.volume.root):
                check_output_key(inside.relative_to(ctx.volume.root).as_posix())
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # The temporary name is cut to stay within the file system's limit on names.
            name = path.name.encode()[:200].decode(errors="ignore")
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{name}.", suffix=".tmp")
        except OSError as exc:
            raise DataError(f"cannot write {path}: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as stream:
                yield stream
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the output from other users
            try:
                os.replace(tmp, path)
            except OSError as exc:  # e.g. a folder of that name appeared meanwhile
                raise DataError(f"cannot write {path}: {exc.strerror}") from None
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def same_columns(batches: Iterator[Any], where: str) -> Iterator[Any]:
    """Pass batches (DataFrames or Arrow tables) through, in the first batch's column order; a batch with
    other columns is an error."""
    columns: list[str] | None = None
    for number, batch in enumerate(batches, start=1):
        arrow = isinstance(batch, pa.Table)
        names = list(batch.column_names) if arrow else list(batch.columns)
        if columns is None:
            columns = names
        elif names != columns:
            if sorted(map(str, names)) != sorted(map(str, columns)):
                raise DataError(
                    f"{where}: batch {number} has columns {', '.join(map(str, names))}, "
                    f"but the first batch had {', '.join(map(str, columns))}"
                )
            batch = batch.select(columns) if arrow else batch[columns]
        yield batch
