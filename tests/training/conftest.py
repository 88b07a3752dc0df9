"""Shared fixtures for training tests: synthetic CSVs written to tmp_path (the real file is
found by ``real_data`` in tests/conftest.py)."""

from __future__ import annotations

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
