"""Synthetic dataset_SCL.csv rows for training tests (imported by conftest and tests).

Synthetic data carries a known, learnable signal (airline and evening hours drive delays) so the
end-to-end test can check the pipeline learns something, not only that it runs.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from training.data import EXPECTED_COLUMNS


def flight_row(scheduled: str, operated: str, **overrides: str) -> dict[str, str]:
    """A full dataset_SCL.csv row with plausible values; override any column."""
    when = datetime.strptime(scheduled, "%Y-%m-%d %H:%M:%S")
    row = {
        "Fecha-I": scheduled, "Vlo-I": "226", "Ori-I": "SCEL", "Des-I": "KMIA", "Emp-I": "AAL",
        "Fecha-O": operated, "Vlo-O": "226", "Ori-O": "SCEL", "Des-O": "KMIA", "Emp-O": "AAL",
        "DIA": str(when.day), "MES": str(when.month), "AÑO": str(when.year),
        "DIANOM": "Lunes", "TIPOVUELO": "I", "OPERA": "American Airlines",
        "SIGLAORI": "Santiago", "SIGLADES": "Miami",
    }
    row.update(overrides)
    return row


def write_csv(path: Path, rows: Iterable[Mapping[str, str]],
              columns: Iterable[str] = EXPECTED_COLUMNS) -> Path:
    columns = list(columns)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def synthetic_rows(n: int = 1500, seed: int = 0) -> list[dict[str, str]]:
    """Flights over all of 2017 whose delay odds depend on airline and scheduled hour."""
    rng = np.random.default_rng(seed)
    airlines = {"Alpha Air": ("N", 0.08), "Beta Lines": ("I", 0.2), "Gamma Jet": ("N", 0.35)}
    destinations = ["Arica", "Lima", "Miami", "Calama"]
    names = list(airlines)
    rows = []
    start = datetime(2017, 1, 1)
    for _ in range(n):
        airline = names[rng.integers(len(names))]
        kind, base = airlines[airline]
        scheduled = start + timedelta(minutes=int(rng.integers(0, 365 * 24 * 60)))
        rate = base + (0.25 if scheduled.hour >= 18 else 0.0)
        late = rng.random() < rate
        delay = int(rng.integers(16, 120)) if late else int(rng.integers(-5, 15))
        operated = scheduled + timedelta(minutes=delay)
        rows.append(flight_row(scheduled.strftime("%Y-%m-%d %H:%M:%S"),
                               operated.strftime("%Y-%m-%d %H:%M:%S"),
                               OPERA=airline, TIPOVUELO=kind,
                               SIGLADES=destinations[rng.integers(len(destinations))]))
    return rows
