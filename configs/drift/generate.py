"""The closed-loop example's data: a stream whose distribution and label relation shift at a known row
(fixed seed; nothing is downloaded).

    python configs/drift/generate.py            # writes drift_train.csv here: the initial training data

Before the shift, ``x1, x2, x3 ~ N(0, 1)`` and ``y = pos`` when ``x1 + x2 > 0``. From the shift on,
``x1 ~ N(1.5, 1)`` (the inputs move) and ``y = pos`` when ``x1 - x2 > 1.5`` (the relation changes):
the first model answers about half of the shifted rows wrongly, a model retrained on them does not.
3% of the labels are flipped either side. ``x3`` is noise the labels never depend on.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
FEATURES = ["x1", "x2", "x3"]


def rows(n: int, *, shifted: bool, seed: int, start: int = 0) -> pd.DataFrame:
    """``n`` rows of the stream before (or after) the shift; ``start`` numbers their ``id``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 3))
    if shifted:
        x[:, 0] += 1.5
        positive = x[:, 0] - x[:, 1] > 1.5
    else:
        positive = x[:, 0] + x[:, 1] > 0
    flip = rng.random(n) < 0.03
    y = np.where(positive ^ flip, "pos", "neg")
    frame = pd.DataFrame(x.round(4), columns=FEATURES)
    frame.insert(0, "id", np.arange(start, start + n))
    frame["y"] = y
    return frame


def stream(n: int, *, shift_at: int, seed: int = 11) -> pd.DataFrame:
    """``n`` rows of which those from ``shift_at`` on are shifted."""
    before = rows(min(n, shift_at), shifted=False, seed=seed)
    after = rows(max(0, n - shift_at), shifted=True, seed=seed + 1, start=shift_at)
    return pd.concat([before, after], ignore_index=True)


def generate(folder: Path = HERE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "drift_train.csv"
    rows(1500, shifted=False, seed=7).to_csv(path, index=False)
    return path


if __name__ == "__main__":
    print(f"wrote {generate(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)}")
