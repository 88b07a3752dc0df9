"""Fecha-I becomes calendar facts that recur every year, for a departure in any year.

The expected holiday facts are read off Chile's calendar by hand (a Chilean holiday list for
the year), not computed by the code under test.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime, timedelta

import holidays
import numpy as np
import pytest

from training.features import TIME_COLUMNS, FeatureSpec, time_features

SPEC = FeatureSpec(["Sky Airline"], ["Lima"])


def facts(when: str) -> dict[str, float]:
    return dict(zip(TIME_COLUMNS, time_features(datetime.fromisoformat(when)), strict=True))


@pytest.mark.parametrize(("when", "expected"), [
    # Independence Day Mon 18 Sep 2017 and Army Day Tue 19: a four-day weekend Sat 16 - Tue 19.
    ("2017-09-18 10:00", {"holiday": 1, "days_to_holiday": 0, "days_since_holiday": 0,
                          "long_weekend": 1}),
    ("2017-09-15 10:00", {"holiday": 0, "days_to_holiday": 3, "days_since_holiday": 8,
                          "long_weekend": 0}),
    ("2017-09-16 10:00", {"holiday": 0, "days_to_holiday": 2, "long_weekend": 1}),
    ("2017-09-20 10:00", {"holiday": 0, "days_since_holiday": 1, "long_weekend": 0}),
    # Good Friday 14 Apr 2017 and Holy Saturday 15: Fri-Sun off.
    ("2017-04-13 22:00", {"holiday": 0, "days_to_holiday": 1, "long_weekend": 0}),
    ("2017-04-16 07:00", {"holiday": 0, "days_since_holiday": 1, "long_weekend": 1}),
    # New Year's Day 2018 is a Monday: the last weekend of 2017 is a long one (across years).
    ("2017-12-31 20:00", {"holiday": 0, "days_to_holiday": 1, "long_weekend": 1}),
    # An ordinary weekend far from holidays is not a long weekend.
    ("2017-03-11 12:00", {"holiday": 0, "days_to_holiday": 8, "days_since_holiday": 8,
                          "long_weekend": 0}),
    # Other years, from their own calendars: Christmas 2016 (Sunday), 2027 Independence Day.
    ("2016-12-25 09:00", {"holiday": 1, "long_weekend": 0}),
    ("2027-09-18 09:00", {"holiday": 1, "days_to_holiday": 0}),
])
def test_holiday_facts_follow_the_chilean_calendar(when: str, expected: dict) -> None:
    got = facts(when)
    assert {k: got[k] for k in expected} == {k: float(v) for k, v in expected.items()}


@pytest.mark.parametrize("when", ["2016-02-29 06:00", "2027-03-08 23:59", "1950-06-01 00:00",
                                  "0001-01-01 00:00", "9999-12-31 23:59"])
def test_any_year_encodes_to_finite_values(when: str) -> None:
    row = SPEC.encode([{"OPERA": "Sky Airline", "TIPOVUELO": "N",
                        "MES": int(when[5:7]), "Fecha-I": datetime.fromisoformat(when)}])[0]
    assert np.isfinite(row[:SPEC.n_features - 1]).all()


def test_no_column_identifies_a_date_of_2017() -> None:
    """Every 2017 date away from holidays has a twin: a date with another day of the month
    (in 2010-2030) and the same month whose Fecha-I columns are identical at the same clock
    time. So nothing the model sees can pick out one day of the training year; with
    day_of_year or day_of_month no date would have such a twin. Near holidays the holiday
    columns do set dates apart, but by facts that recur: the same holiday on the same weekday
    in another year encodes identically."""
    def at(d: date) -> tuple[float, ...]:
        return time_features(datetime(d.year, d.month, d.day, 10, 30))

    days = [date(2017, 1, 1) + timedelta(days=n) for n in range(365)]
    pool: dict[tuple, set[tuple[int, int]]] = {}
    for year in range(2010, 2031):
        for n in range((date(year, 12, 31) - date(year, 1, 1)).days + 1):
            d = date(year, 1, 1) + timedelta(days=n)
            pool.setdefault((d.month, at(d)), set()).add((d.month, d.day))
    chile = holidays.country_holidays("CL", years=[2016, 2017, 2018])
    away = [d for d in days if not any(d + timedelta(days=n) in chile for n in range(-8, 9))]
    assert len(away) > 100  # the check really runs over many dates
    alone = [d for d in away if not pool[(d.month, at(d))] - {(d.month, d.day)}]
    assert not alone, alone
    # Christmas on a Monday: 2017 and 2023; Independence Day on a Monday: 2017 and 2023.
    for a, b in ((date(2017, 12, 25), date(2023, 12, 25)),
                 (date(2017, 9, 18), date(2023, 9, 18))):
        assert at(a) == at(b)


def test_a_future_departure_encodes_like_its_2017_calendar_twin() -> None:
    """Wednesday 8 March 2017 and Wednesday 10 March 2027: same month, weekday, hour and
    holiday facts, so the same row (with day_of_year they would differ)."""
    rows = SPEC.encode([
        {"OPERA": "Sky Airline", "TIPOVUELO": "N", "MES": 3,
         "Fecha-I": datetime(2017, 3, 8, 9, 15), "SIGLADES": "Lima"},
        {"OPERA": "Sky Airline", "TIPOVUELO": "N", "MES": 3,
         "Fecha-I": datetime(2027, 3, 10, 9, 15), "SIGLADES": "Lima"},
    ])
    np.testing.assert_array_equal(rows[0], rows[1])


def test_feature_module_imports_without_pandas() -> None:
    """Serving imports training.features on every worker: numpy, stdlib and holidays only."""
    code = ("import sys; import training.features as f; "
            "f.time_features(__import__('datetime').datetime(2030, 1, 1)); "
            "print(sorted(m for m in ('pandas', 'sklearn', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=str(__import__("pathlib").Path(__file__).parents[2]))
    assert out.stdout.strip() == "[]"
