"""Rows as named arrays: a table that becomes a DataFrame only when someone asks for one.

A small request costs less than the DataFrames built around it (on pandas 3 reading one
column of a DataFrame takes tens of microseconds), so the data plane hands its rows to
``on_predict`` subscribers and the prediction log as :class:`Columns`: made from a matrix
or a model's output arrays without pandas, or from a DataFrame the pipeline made, and
converted either way at most once, by whoever needs the other form.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa


class Columns:
    """Equal-length 1-D arrays by name, with the DataFrame of the same rows built on first use.

    Give either ``arrays`` (or a matrix with :meth:`of_matrix`) or a ``frame``; the other
    form is made lazily and kept. The arrays are numpy arrays, or pandas extension arrays
    for columns of an extension dtype (text, categories, nullable numbers), which the
    DataFrame keeps; a DataFrame's numbers of mixed types are read as their common type
    (see :attr:`arrays`). They are views where they can be: do not write to them.
    """

    __slots__ = ("_arrays", "_frame", "_made_of_arrays")

    def __init__(self, arrays: dict[str, Any] | None = None, *, frame: pd.DataFrame | None = None) -> None:
        if (arrays is None) == (frame is None):
            raise TypeError("Columns takes either arrays or a frame")
        self._arrays, self._frame = arrays, frame
        self._made_of_arrays = arrays is not None

    @classmethod
    def of(cls, rows: Columns | pd.DataFrame) -> Columns:
        return rows if isinstance(rows, Columns) else cls(frame=rows)

    @classmethod
    def bare(cls, rows: Columns | pd.DataFrame) -> Columns:
        """The same rows as arrays only, holding no DataFrame (to keep many of them cheaply)."""
        rows = cls.of(rows)
        return rows if rows._frame is None else cls(rows.arrays)

    @classmethod
    def of_matrix(cls, matrix: np.ndarray, names: Sequence[str]) -> Columns:
        """The columns of a 2-D ``[rows, len(names)]`` matrix (views, no copy)."""
        return cls({name: matrix[:, i] for i, name in enumerate(names)})

    @property
    def names(self) -> list[str]:
        return list(self.arrays)

    @property
    def arrays(self) -> dict[str, Any]:
        """Name -> values. A DataFrame of numbers is read as one block, not column by column (numbers of
        mixed types then share their common type, as concatenating them would make them)."""
        if self._arrays is None:
            frame = self.frame
            names = [str(name) for name in frame.columns.tolist()]  # one conversion: an Index iterates slowly
            block = frame.to_numpy() if names else None
            if block is not None and block.dtype.kind in "biufcmM":
                self._arrays = {name: block[:, i] for i, name in enumerate(names)}
            else:  # text, categories, nullable numbers, a mix with dates: each column as it is
                self._arrays = {name: _array(frame.iloc[:, i]) for i, name in enumerate(names)}
        return self._arrays

    @property
    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            assert self._arrays is not None
            self._frame = pd.DataFrame(self._arrays, copy=False)
        return self._frame

    def arrow(self) -> pa.Table:
        """The rows as an Arrow table: from the arrays when they are what it was made of (no DataFrame on the
        way), else from the DataFrame (whose dtypes say best how to store each column)."""
        if self._made_of_arrays:
            try:
                return pa.table({name: pa.array(values, from_pandas=True) for name, values in self.arrays.items()})
            except (pa.ArrowInvalid, pa.ArrowTypeError):  # Python objects Arrow cannot type alone
                pass
        return pa.Table.from_pandas(self.frame, preserve_index=False)

    def __contains__(self, name: object) -> bool:
        return name in self._arrays if self._arrays is not None else name in self.frame.columns

    def __len__(self) -> int:
        if self._frame is not None:
            return len(self._frame)
        return len(next(iter(self._arrays.values()))) if self._arrays else 0  # type: ignore[union-attr]

    def __repr__(self) -> str:
        return f"Columns({len(self)} rows: {', '.join(self.names)})"


def _array(column: pd.Series) -> Any:
    return column.to_numpy() if isinstance(column.dtype, np.dtype) else column.array
