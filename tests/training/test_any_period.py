"""Training on any period: holdouts come from the data's own months, and too little data for a
protocol stops with one line that names what is missing (never a traceback)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import pytest
from synthetic_flights import flight_row, write_csv

from training.data import load_flights
from training.evaluate import HoldoutError, check_holdouts, rolling_folds, temporal_split
from training.train import main as train_main


def rows_between(first: str, last: str, n: int, seed: int = 0) -> list[dict[str, str]]:
    """``n`` flights scheduled uniformly between two dates, delayed mostly in the evening."""
    rng = np.random.default_rng(seed)
    start, end = datetime.fromisoformat(first), datetime.fromisoformat(last)
    minutes = int((end - start).total_seconds() // 60)
    rows = []
    for _ in range(n):
        when = start + timedelta(minutes=int(rng.integers(0, minutes)))
        late = rng.random() < (0.45 if when.hour >= 18 else 0.1)
        operated = when + timedelta(minutes=40 if late else 3)
        rows.append(flight_row(when.strftime("%Y-%m-%d %H:%M:%S"),
                               operated.strftime("%Y-%m-%d %H:%M:%S"),
                               OPERA=("Alpha Air", "Beta Lines")[int(rng.integers(2))],
                               SIGLADES=("Lima", "Arica")[int(rng.integers(2))]))
    return rows


def frame_of(tmp_path, first: str, last: str, n: int = 900):
    frame, _ = load_flights(write_csv(tmp_path / "f.csv", rows_between(first, last, n)))
    return frame


def months(frame, rows) -> list[str]:
    return sorted(set(frame.loc[rows, "Fecha-I"].dt.strftime("%Y-%m")))


def test_a_partial_year_tests_on_its_own_last_quarter(tmp_path) -> None:
    frame = frame_of(tmp_path, "2017-01-01", "2017-09-30 23:59")
    train, test = temporal_split(frame)
    assert months(frame, test) == ["2017-08", "2017-09"]  # 9 months: the last 9 // 4 = 2
    assert months(frame, train) == [f"2017-{m:02d}" for m in range(1, 8)]
    folds = rolling_folds(frame)
    assert [k for k, _, _ in folds] == [2017 * 12 + m - 1 for m in range(4, 10)]
    for _, fold_train, fold_test in folds:
        assert frame.loc[fold_train, "Fecha-I"].max() < frame.loc[fold_test, "Fecha-I"].min()


def test_a_later_year_across_new_year_is_split_by_its_months(tmp_path) -> None:
    frame = frame_of(tmp_path, "2026-07-01", "2027-06-30 23:59", 1200)
    _, test = temporal_split(frame)
    assert months(frame, test) == ["2027-04", "2027-05", "2027-06"]
    folds = rolling_folds(frame)
    assert len(folds) == 9  # at most the last nine months
    _, first_train, first_test = folds[0]
    assert months(frame, first_test) == ["2026-10"]
    assert months(frame, first_train) == ["2026-07", "2026-08", "2026-09"]


@pytest.mark.parametrize(("holdout", "needs"), [("temporal", "at least 4 months"),
                                                ("rolling", "at least 4 months")])
def test_too_few_months_names_what_is_missing(tmp_path, holdout: str, needs: str) -> None:
    frame = frame_of(tmp_path, "2017-05-01", "2017-07-31 23:59", 600)
    with pytest.raises(HoldoutError, match=needs) as info:
        check_holdouts(frame, (holdout,))
    assert "3 month(s) with flights, 2017-05 to 2017-07" in str(info.value)
    assert "--holdouts" in str(info.value)


def test_cli_too_short_is_one_line_then_trains_without_that_protocol(tmp_path, capsys) -> None:
    data = write_csv(tmp_path / "short.csv", rows_between("2017-05-01", "2017-07-31", 600))
    out = tmp_path / "model"
    assert train_main(["--data", str(data), "--out", str(out), "--max-rounds", "20"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: the temporal holdout needs")
    assert "Traceback" not in err
    assert not (out / "model.ubj").exists()
    # Leaving the forward protocols out trains and reports on what the data supports.
    assert train_main(["--data", str(data), "--out", str(out), "--max-rounds", "20",
                       "--holdouts", "notebook", "--no-report"]) == 0
    meta = json.loads((out / "metadata.json").read_text(encoding="utf-8"))
    assert set(meta["holdout_metrics"]) == {"notebook"}
    assert meta["training_period"]["months"] == ["2017-05", "2017-06", "2017-07"]
    card = (out / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert meta["model_version"] in card and "2017-05 to 2017-07" in card


def test_cli_unknown_holdout_is_a_usage_error(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        train_main(["--data", "x.csv", "--out", str(tmp_path), "--holdouts", "temporal,random"])
    assert info.value.code == 2
    assert "unknown holdout(s) random" in capsys.readouterr().err


def test_one_class_data_is_a_clean_error(tmp_path, capsys) -> None:
    rows = [flight_row(f"2017-03-{d:02d} 10:00:00", f"2017-03-{d:02d} 10:05:00")
            for d in range(1, 29)]
    data = write_csv(tmp_path / "on_time.csv", rows)
    assert train_main(["--data", str(data), "--out", str(tmp_path / "m"), "--holdouts",
                       "none"]) == 2
    err = capsys.readouterr().err
    assert "both delayed and on time" in err and "Traceback" not in err
