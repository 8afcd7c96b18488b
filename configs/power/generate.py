"""Generate the 15-minute power consumption example data (fixed seed; nothing is downloaded).

    python configs/power/generate.py            # writes power.csv and power_week.csv here

``power.csv`` holds six weeks of readings (kW) every 15 minutes: a daily shape, quieter weekends,
public holidays that look like Sundays, a slow drift, deviations that persist for hours, and noise.
``power_week.csv`` is the week that follows: 672 readings, exactly one window, whose next 8 values
(2 hours) the forecasters predict.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
HOLIDAYS = {"2025-01-01", "2025-01-06", "2025-02-07", "2025-02-14"}
STEP = "15min"


def make(start: str, periods: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=periods, freq=STEP)
    hour = ts.hour.to_numpy() + ts.minute.to_numpy() / 60
    rest = (ts.day_of_week.to_numpy() >= 5) | np.isin(ts.strftime("%Y-%m-%d"), list(HOLIDAYS))
    daily = 40 + 30 * np.exp(-((hour - 9) ** 2) / 6) + 35 * np.exp(-((hour - 19) ** 2) / 4)
    drift = 5 * np.sin(2 * np.pi * np.arange(periods) / (periods * 1.7))
    # weather-like deviations that persist for hours: last week's value knows nothing of them, the last hour does
    persistent = np.zeros(periods)
    shocks = rng.normal(0, 1.2, periods)
    for i in range(1, periods):
        persistent[i] = 0.98 * persistent[i - 1] + shocks[i]
    power = daily * np.where(rest, 0.65, 1.0) + drift + persistent + rng.normal(0, 1.0, periods)
    return pd.DataFrame({"timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S"), "power": power.round(3)})


def generate(folder: Path = HERE) -> tuple[Path, Path]:
    weeks = 6
    whole = make("2025-01-01", (weeks + 1) * 7 * 96, seed=11)
    history, week = whole.iloc[: weeks * 7 * 96], whole.iloc[weeks * 7 * 96 :]
    folder.mkdir(parents=True, exist_ok=True)
    history.to_csv(folder / "power.csv", index=False)
    week.to_csv(folder / "power_week.csv", index=False)
    return folder / "power.csv", folder / "power_week.csv"


if __name__ == "__main__":
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(f"wrote {path}")
