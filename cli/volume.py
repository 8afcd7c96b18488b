"""``mlrm volume``: list, fetch and store objects in any volume (a folder or ``s3://``), no SDK needed."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from cli import common

volume_app = typer.Typer(help="What the volume holds: list objects, fetch one, store one.", no_args_is_help=True)
common.app.add_typer(volume_app, name="volume")


@volume_app.command("ls")
@common.user_errors
def volume_ls(
    prefix: Annotated[str, typer.Argument(help="Only keys starting with this, e.g. predictions/.")] = "",
    volume: common.VolumeOpt = None,
    as_json: common.JsonOpt = False,
) -> None:
    """List the objects whose key starts with PREFIX (default: every object), in key order."""
    from mlrm.volume import open_volume

    vol = open_volume(common.settings_for(volume).volume)
    try:
        objects = list(vol.list(prefix))
    finally:
        vol.close()
    if as_json:
        common.print_json([{"key": o.key, "size": o.size, "modified": o.modified} for o in objects])
        return
    if not objects:
        common.err.print(f"no objects{f' under {prefix!r}' if prefix else ''} in {vol.url}", highlight=False)
        return
    rows = [
        (o.key, f"{o.size:,}", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(o.modified))) for o in objects
    ]
    common.print_table(("key", "size", "modified"), rows, ids={"key"})


@volume_app.command("get")
@common.user_errors
def volume_get(
    key: Annotated[str, typer.Argument(help="The object's key, e.g. predictions/iris/RUN.csv.")],
    dest: Annotated[
        str | None, typer.Argument(help="File or folder to write (default: the key's file name, here); - for stdout.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite DEST if it exists.")] = False,
    volume: common.VolumeOpt = None,
) -> None:
    """Copy an object out of the volume into a file (or to stdout with -)."""
    from mlrm.errors import ConfigError, DataError
    from mlrm.volume import check_key, open_volume

    check_key(key)
    vol = open_volume(common.settings_for(volume).volume)
    try:
        with vol.open_read(key) as stream:
            if dest == "-":
                shutil.copyfileobj(stream, sys.stdout.buffer, 1 << 20)
                sys.stdout.buffer.flush()
                return
            name = key.rsplit("/", 1)[-1]
            path = Path(dest) if dest else Path(name)
            if path.is_dir():
                path = path / name
            if path.exists() and not force:
                raise ConfigError(f"{path} exists; give --force to overwrite it")
            try:  # a temporary file beside the target, renamed at the end: no half-written file
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            except OSError as exc:
                raise DataError(f"cannot write {path}: {exc.strerror}") from None
            try:
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(stream, out, 1 << 20)
                os.chmod(tmp, 0o644)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
    finally:
        vol.close()
    common.err.print(f"wrote {path} ({path.stat().st_size:,} bytes) from {vol.url}", highlight=False)


@volume_app.command("put")
@common.user_errors
def volume_put(
    source: Annotated[str, typer.Argument(help="File to store; - for stdin.")],
    key: Annotated[str, typer.Argument(help="The object's key, e.g. raw/iris.csv (what a source's key: names).")],
    volume: common.VolumeOpt = None,
) -> None:
    """Store a file in the volume under KEY (replacing what was there), e.g. input for a collector's `key:`."""
    from mlrm.errors import DataError, NotFoundError
    from mlrm.volume import check_key, open_volume

    check_key(key)
    if source != "-" and not Path(source).is_file():
        raise NotFoundError(f"file not found: {source}")
    vol = open_volume(common.settings_for(volume).volume)
    try:
        try:
            stream = sys.stdin.buffer if source == "-" else open(source, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise DataError(f"cannot read {source}: {exc.strerror}") from None
        try:
            with vol.open_write(key) as target:
                shutil.copyfileobj(stream, target, 1 << 20)
        finally:
            if source != "-":
                stream.close()
        size = vol.stat(key)
    finally:
        vol.close()
    common.err.print(f"stored {key} ({size.size if size else 0:,} bytes) in {vol.url}", highlight=False)
