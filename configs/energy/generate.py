"""Generate the hourly energy-load example data (fixed seed; nothing is downloaded).

    python configs/energy/generate.py            # writes energy.csv and energy_new.csv here

``energy.csv`` holds two years of hourly load (MW) with the outdoor temperature;
``energy_new.csv`` the following two weeks without the load, to predict.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent


def make(start: str, hours: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=hours, freq="h")
    day = ts.day_of_year.to_numpy()
    hour = ts.hour.to_numpy()
    weekend = (ts.day_of_week.to_numpy() >= 5).astype(float)
    # Temperature: a seasonal swing, a daily swing, and weather that persists for days.
    weather = np.cumsum(rng.normal(0, 0.4, hours))
    weather -= pd.Series(weather).rolling(24 * 14, min_periods=1).mean().to_numpy()
    temperature = 12 - 10 * np.cos(2 * np.pi * (day - 15) / 365.25) - 4 * np.cos(2 * np.pi * (hour - 3) / 24) + weather
    # Load: a daily shape, quieter weekends, and heating/cooling demand away from ~18 °C.
    daily = 80 + 25 * np.exp(-((hour - 9) ** 2) / 8) + 30 * np.exp(-((hour - 19) ** 2) / 6)
    load = daily * (1 - 0.2 * weekend) + 2.5 * np.abs(temperature - 18) + rng.normal(0, 3, hours)
    return pd.DataFrame({"timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S"), "temperature": temperature.round(2),
                         "load": load.round(2)})  # fmt: skip


def generate(folder: Path = HERE) -> tuple[Path, Path]:
    history = make("2023-01-01", 2 * 365 * 24, seed=7)
    upcoming = make("2025-01-01", 14 * 24, seed=8).drop(columns="load")
    folder.mkdir(parents=True, exist_ok=True)
    history.to_csv(folder / "energy.csv", index=False)
    upcoming.to_csv(folder / "energy_new.csv", index=False)
    return folder / "energy.csv", folder / "energy_new.csv"


if __name__ == "__main__":
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(f"wrote {path}")
