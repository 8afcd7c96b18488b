"""Cutting a byte stream into pieces that end at a row boundary, so each parses on its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

import numpy as np

from mlrm.errors import DataError

MAX_GROWTH = 4
"""A piece with no clean cut grows to this many times the chunk size before it is cut at any line break."""

DEFAULT_MAX_LINE_BYTES = 16 << 20
"""The longest line a text source accepts unless configured otherwise (memory is a few times this)."""


def row_chunks(
    stream: IO[bytes],
    size: int,
    *,
    max_line: int | None = None,
    quotes: bool = True,
    where: str = "the input",
) -> Iterator[bytes]:
    """Pieces of about ``size`` bytes, each ending with a line break (the last one: whatever is left).

    A line break inside a double-quoted value is not a row boundary (unless ``quotes`` is
    False): the cut goes at the last line break with an even number of quotes before it.
    A stray quote in an unquoted field would make every later break look quoted, so once a
    piece reaches ``MAX_GROWTH * size`` (or ``max_line``) it is cut at its last line break
    regardless. A line longer than ``max_line`` bytes is a DataError naming its number, so
    one endless line cannot take all the memory; without ``max_line`` it is kept whole.
    """
    buffer = bytearray()
    newline = b""
    lines = 0  # line breaks in the pieces already yielded
    limit = max_line if max_line is not None else float("inf")
    growth = min(MAX_GROWTH * size, limit)
    while True:
        data = stream.read(size)
        if not data:
            if buffer:
                _check_lines(buffer, newline or b"\n", limit, lines, where)
                yield bytes(buffer)
            return
        if not newline:  # old Mac files end lines with a lone CR
            newline = b"\r" if b"\n" not in data and b"\r" in data else b"\n"
        buffer += data
        del data
        cut = _last_row_end(buffer, newline, quoted=quotes and len(buffer) < growth)
        if cut < 0:
            if len(buffer) > limit:  # no line break at all since the line began
                raise _too_long(lines + 1, limit, where)
            continue
        piece = [_take(buffer, cut + 1)]
        _check_lines(piece[0], newline, limit, lines, where)
        lines += piece[0].count(newline)
        yield piece.pop()  # not kept by this frame: the consumer alone holds the piece


def _check_lines(piece: bytes | bytearray, newline: bytes, limit: float, before: int, where: str) -> None:
    """DataError if a line of ``piece`` is longer than ``limit``; free unless the piece itself is longer."""
    if len(piece) <= limit:
        return
    ends = np.flatnonzero(np.frombuffer(piece, dtype=np.uint8) == newline[0])
    starts = np.concatenate(([0], ends + 1))
    lengths = np.append(ends, len(piece)) - starts  # without the line break
    long = np.flatnonzero(lengths > limit)
    if len(long):
        raise _too_long(before + int(long[0]) + 1, limit, where)


def _too_long(line: int, limit: float, where: str) -> DataError:
    return DataError(
        f"{where}: line {line} is longer than {int(limit):,} bytes (max_line_bytes); "
        "raise max_line_bytes if such lines are expected"
    )


def _last_row_end(buffer: bytearray, newline: bytes, quoted: bool) -> int:
    """Index of the last line break outside quotes (any line break if not ``quoted``), or -1."""
    end = len(buffer)
    quotes = buffer.count(b'"') if quoted else 0
    while True:
        cut = buffer.rfind(newline, 0, end)
        if cut < 0 or not quoted:
            return cut
        quotes -= buffer.count(b'"', cut, end)  # quotes before the cut, counted backwards in O(n) overall
        if quotes % 2 == 0:
            return cut
        end = cut


def _take(buffer: bytearray, size: int) -> bytes:
    """Remove and return the first ``size`` bytes, copied once."""
    with memoryview(buffer) as view:
        piece = bytes(view[:size])
    del buffer[:size]
    return piece
