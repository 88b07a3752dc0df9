"""Shared fixtures for training tests: synthetic CSVs written to tmp_path, and the real file."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pytest
from synthetic_flights import synthetic_rows, write_csv

from training.data import EXPECTED_COLUMNS

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def synthetic_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "flights.csv", synthetic_rows())


@pytest.fixture
def csv_writer(tmp_path: Path) -> Callable[..., Path]:
    """Write rows to a fresh CSV under tmp_path: ``csv_writer(rows, columns=...)``."""
    counter = iter(range(1_000_000))

    def write(rows: Iterable[Mapping[str, str]], columns: Iterable[str] = EXPECTED_COLUMNS,
              ) -> Path:
        return write_csv(tmp_path / f"data{next(counter)}.csv", rows, columns)

    return write


@pytest.fixture(scope="session")
def real_data() -> Path:
    """dataset_SCL.csv from FLIGHT_DATA or ../shared/data; skip (with why) when absent."""
    candidates = [os.environ.get("FLIGHT_DATA"), REPO_ROOT.parent / "shared/data/dataset_SCL.csv"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    pytest.skip("dataset_SCL.csv not found: set FLIGHT_DATA or place it at "
                f"{REPO_ROOT.parent / 'shared/data/dataset_SCL.csv'}")
