"""The loader's user-facing errors and its accounting of unusable rows."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthetic_flights import flight_row

from training.data import EXPECTED_COLUMNS, DataError, load_flights
from training.data import main as data_main


def _good(n: int) -> list[dict[str, str]]:
    return [flight_row(f"2017-02-{1 + i % 28:02d} 10:00:00", f"2017-02-{1 + i % 28:02d} 10:20:00")
            for i in range(n)]


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(DataError, match="not found") as info:
        load_flights(missing)
    assert str(missing) in str(info.value)


def test_flight_data_env_is_used(monkeypatch, csv_writer) -> None:
    path = csv_writer(_good(3))
    monkeypatch.setenv("FLIGHT_DATA", str(path))
    _, report = load_flights(None)
    assert report.path == str(path) and report.rows_read == 3


def test_missing_column_is_named(csv_writer) -> None:
    columns = [c if c != "OPERA" else "Operator" for c in EXPECTED_COLUMNS]
    rows = [{**r, "Operator": r["OPERA"]} for r in _good(3)]
    path = csv_writer(rows, columns=columns)
    with pytest.raises(DataError) as info:
        load_flights(path)
    message = str(info.value)
    assert "OPERA" in message and str(path) in message


def test_few_unparseable_timestamps_are_dropped_and_counted(csv_writer) -> None:
    rows = _good(300)
    rows[7]["Fecha-O"] = "31/02/2017 10:00"
    frame, report = load_flights(csv_writer(rows))
    assert report.rows_read == 300
    assert report.rows_used == 299 == len(frame)
    (reason, count), = report.dropped.items()
    assert count == 1 and "Fecha-O" in reason and "line" in reason


def test_many_unparseable_timestamps_raise_with_column_and_count(csv_writer) -> None:
    rows = _good(50)
    for row in rows[:10]:
        row["Fecha-I"] = "yesterday"
    path = csv_writer(rows)
    with pytest.raises(DataError) as info:
        load_flights(path)
    message = str(info.value)
    assert "Fecha-I" in message and "10 of 50" in message and str(path) in message


def test_other_unusable_rows_are_counted(csv_writer) -> None:
    rows = _good(400)
    rows[3]["OPERA"] = ""
    rows[5]["TIPOVUELO"] = "X"
    frame, report = load_flights(csv_writer(rows))
    assert len(frame) == 398 == report.rows_used
    assert sorted(report.dropped.values()) == [1, 1]
    assert any("OPERA" in why for why in report.dropped)
    assert any("TIPOVUELO" in why for why in report.dropped)


def test_cli_reports_error_without_traceback(tmp_path: Path, capsys) -> None:
    assert data_main(["--data", str(tmp_path / "missing.csv")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def test_cli_exports_synthetic_features(csv_writer, tmp_path: Path) -> None:
    out = tmp_path / "synthetic_features.csv"
    rows = [flight_row("2017-12-15 04:59:00", "2017-12-15 05:30:00")]
    assert data_main(["--data", str(csv_writer(rows)), "--export-features", str(out)]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    assert header[-4:] == ["high_season", "min_diff", "delay_15", "period_day"]
    assert lines[1].split(",")[-4:] == ["1", "31.0", "1", "night"]


def test_scoring_an_artifact_on_data_with_an_unknown_airline_names_it(synthetic_csv,
                                                                     tiny_model_dir):
    """python -m training.evaluate --model-dir on a file the model cannot encode: a DataError
    naming the column and value, not a KeyError traceback from the encoder."""
    from training.evaluate import evaluate_artifact

    frame, _ = load_flights(synthetic_csv)  # its airlines are not in the tiny model's vocabulary
    with pytest.raises(DataError, match="OPERA value"):
        evaluate_artifact(str(tiny_model_dir), frame)
