"""Cutting a byte stream into pieces that end at a row boundary, so each parses on its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

MAX_GROWTH = 4
"""A piece with no clean cut grows to this many times the chunk size before it is cut at any line break."""


def row_chunks(stream: IO[bytes], size: int) -> Iterator[bytes]:
    """Pieces of about ``size`` bytes, each ending with a line break (the last one: whatever is left).

    A line break inside a double-quoted value is not a row boundary: the cut goes at
    the last line break with an even number of quotes before it. A stray quote in an
    unquoted field would make every later break look quoted, so once a piece reaches
    ``MAX_GROWTH * size`` it is cut at its last line break regardless. A row longer
    than that is kept whole.
    """
    buffer = bytearray()
    newline = b""
    while True:
        data = stream.read(size)
        if not data:
            if buffer:
                yield bytes(buffer)
            return
        if not newline:  # old Mac files end lines with a lone CR
            newline = b"\r" if b"\n" not in data and b"\r" in data else b"\n"
        buffer += data
        del data
        cut = _last_row_end(buffer, newline, quoted=len(buffer) < MAX_GROWTH * size)
        if cut >= 0:
            yield _take(buffer, cut + 1)  # not kept in a local: the consumer alone holds the piece


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
