"""The feature spec: the single definition of how a flight becomes a model row.

Training and serving both call :meth:`FeatureSpec.encode`, so the numbers the booster sees at
prediction time are produced by exactly the code that produced them at training time (a parity
test checks it). This module imports only numpy, the standard library and ``holidays`` (Chile's
public holidays): the service imports it on every worker and must not pay for pandas.

Every column derived from Fecha-I is a *recurring calendar fact* (weekday, time of day, high
season, public holidays and long weekends), never the date's position in the year: a model that
knows ``day_of_year`` answers a question about 8 March 2027 with what happened at SCL on
8 March 2017. So a departure in any year is encoded from that year's calendar alone.

A flight is a mapping with the required inputs ``OPERA`` (airline name), ``TIPOVUELO`` (``"I"``
international / ``"N"`` national) and ``MES`` (month 1-12), and the optional inputs ``Fecha-I``
(scheduled departure, a :class:`datetime.datetime`) and ``SIGLADES`` (destination city name).
An absent optional input is encoded as NaN in every column it feeds, which XGBoost treats as
missing and routes down each split's learned default branch; training shows the model rows with
the optional inputs masked (see ``training.train``), so those branches are meaningful.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

import holidays
import numpy as np

SPEC_VERSION = 2

REQUIRED_INPUTS: tuple[str, ...] = ("OPERA", "TIPOVUELO", "MES")
OPTIONAL_INPUTS: tuple[str, ...] = ("Fecha-I", "SIGLADES")
FLIGHT_TYPES: tuple[str, ...] = ("I", "N")
MONTHS: tuple[int, ...] = tuple(range(1, 13))

# Input levels the model is evaluated (and thresholded) on.
INPUT_LEVELS: dict[str, tuple[str, ...]] = {
    "required": (),
    "fecha": ("Fecha-I",),
    "destination": ("SIGLADES",),
    "full": ("Fecha-I", "SIGLADES"),
}

# Columns derived from Fecha-I, in matrix order. Each was kept because the forward-in-time
# evaluation (train on earlier months, test on later ones) scored better with it than without
# (docs/model.md); day_of_month and day_of_year were dropped because it scored worse with them.
TIME_COLUMNS: tuple[str, ...] = ("day_of_week", "hour", "high_season", "holiday",
                                  "days_to_holiday", "days_since_holiday", "long_weekend")
# Explanation group of each time column: the holiday facts are one question ("is this a holiday
# period?"), so their SHAP values are reported together; all of them come from Fecha-I.
TIME_GROUPS: dict[str, str] = {"day_of_week": "day_of_week", "hour": "hour",
                               "high_season": "high_season", "holiday": "holiday",
                               "days_to_holiday": "holiday", "days_since_holiday": "holiday",
                               "long_weekend": "holiday"}
# Distances to a holiday are capped here: beyond a week a holiday changes nothing measurable,
# and an uncapped count would single out the few dates far from any holiday.
HOLIDAY_HORIZON = 7
HOLIDAY_COUNTRY = "CL"
HOLIDAY_DOC = (
    "holiday = the date is a Chilean public holiday; days_to_holiday / days_since_holiday = "
    f"days to the next / since the last one (capped at {HOLIDAY_HORIZON + 1}); long_weekend = "
    "the date is in a run of three or more days off (weekend and holidays).")

# High season (challenge definition, inclusive, by calendar date): Dec 15 - Mar 3,
# Jul 15 - Jul 31, Sep 11 - Sep 30.
_HIGH_SEASON_RANGES: tuple[tuple[tuple[int, int], tuple[int, int]], ...] = (
    ((1, 1), (3, 3)),
    ((7, 15), (7, 31)),
    ((9, 11), (9, 30)),
    ((12, 15), (12, 31)),
)


# Every (month, day) the ranges cover, so a request's lookup is one set probe (the service
# computes this for every flight that carries Fecha-I).
_HIGH_SEASON_DAYS: frozenset[tuple[int, int]] = frozenset(
    (month, day) for month in range(1, 13) for day in range(1, 32)
    if any(lo <= (month, day) <= hi for lo, hi in _HIGH_SEASON_RANGES))


def is_high_season(when: date) -> int:
    """1 if the calendar date of ``when`` is in the challenge's high season (bounds inclusive)."""
    return int((when.month, when.day) in _HIGH_SEASON_DAYS)


def period_of_day(when: datetime) -> str:
    """morning 05:00-11:59, afternoon 12:00-18:59, night 19:00-04:59; total over every minute.

    The challenge notebook compared times with open intervals and returned nothing at exact
    boundaries such as 05:00; comparing the hour alone makes every minute land in one period.
    """
    if 5 <= when.hour < 12:
        return "morning"
    if 12 <= when.hour < 19:
        return "afternoon"
    return "night"


def _holiday_dates(years: Iterable[int]) -> frozenset[date]:
    """Chile's public holidays in ``years`` (the ``holidays`` package; none before its data
    starts, so a far-past or far-future year simply has no holidays)."""
    return frozenset(holidays.country_holidays(HOLIDAY_COUNTRY, years=list(years)))


@lru_cache(maxsize=64)
def _calendar_of_year(year: int) -> tuple[tuple[float, float, float, float], ...]:
    """(holiday, days_to_holiday, days_since_holiday, long_weekend) for each day of ``year``.

    Built once per year and cached, so a request pays one tuple lookup, not a holiday
    computation. Neighbouring years are included so distances and long weekends are right
    across the new year.
    """
    known = _holiday_dates(y for y in (year - 1, year, year + 1) if 1 <= y <= 9999)

    def off(day: date) -> bool:  # a day most people do not work: weekend or public holiday
        return day.weekday() >= 5 or day in known

    def distance(day: date, step: int) -> float:
        for n in range(HOLIDAY_HORIZON + 1):
            try:
                if day + timedelta(days=step * n) in known:
                    return float(n)
            except OverflowError:  # past 9999-12-31 or before 0001-01-01
                break
        return float(HOLIDAY_HORIZON + 1)

    def in_long_weekend(day: date) -> float:
        if not off(day):
            return 0.0
        run, edge = 1, day
        for step in (-1, 1):  # extend the run of days off both ways
            edge = day
            while run < 3:
                try:
                    edge = edge + timedelta(days=step)
                except OverflowError:
                    break
                if not off(edge):
                    break
                run += 1
        return 1.0 if run >= 3 else 0.0

    first = date(year, 1, 1)
    days = (date(year, 12, 31) - first).days + 1
    table = []
    for n in range(days):
        day = first + timedelta(days=n)
        table.append((1.0 if day in known else 0.0, distance(day, 1), distance(day, -1),
                      in_long_weekend(day)))
    return tuple(table)


def calendar_facts(when: date) -> tuple[float, float, float, float]:
    """``holiday``, ``days_to_holiday``, ``days_since_holiday``, ``long_weekend`` of a date."""
    # Day of the year by ordinals: a third of the cost of timetuple().tm_yday, same number.
    return _calendar_of_year(when.year)[when.toordinal() - date(when.year, 1, 1).toordinal()]


def time_features(when: datetime) -> tuple[float, ...]:
    """The values of ``TIME_COLUMNS`` for a scheduled departure."""
    return (
        float(when.weekday()),
        when.hour + when.minute / 60.0,
        float(is_high_season(when)),
        *calendar_facts(when),
    )


# The one time column that depends on the clock; every other one depends on the date alone.
_HOUR = TIME_COLUMNS.index("hour")
# Up to this many flights are encoded row by row: numpy's fixed cost per call (np.full, fancy
# indexing) is most of the time for one row; column at a time wins from about five rows.
_ROW_BY_ROW = 4


@lru_cache(maxsize=8192)
def _day_facts(ordinal: int) -> tuple[float, ...]:
    """``time_features`` of midnight on the day ``ordinal``, ``hour`` left 0.

    A batch's departures fall on far fewer days than it has flights, so the calendar is looked
    up once per distinct day (cached across requests, ~22 years of days) and the hour added.
    """
    return time_features(datetime.fromordinal(ordinal))


class FeatureSpec:
    """Ordered feature columns plus the vocabularies they were built from.

    The vocabularies come from the training data and travel in the artifact's metadata; the
    service validates requests against them, so nothing here lists airline or city names.
    """

    def __init__(self, airlines: Iterable[str], destinations: Iterable[str]) -> None:
        self.airlines: tuple[str, ...] = tuple(sorted(set(airlines)))
        self.destinations: tuple[str, ...] = tuple(sorted(set(destinations)))
        if not self.airlines or not self.destinations:
            raise ValueError("a feature spec needs at least one airline and one destination")

        names: list[str] = []
        groups: list[str] = []

        def add(name: str, group: str) -> int:
            names.append(name)
            groups.append(group)
            return len(names) - 1

        self._airline_index = {a: add(f"OPERA={a}", "OPERA") for a in self.airlines}
        self._airline_slice = slice(0, len(self.airlines))
        self._international = add("TIPOVUELO=I", "TIPOVUELO")
        self._month = add("MES", "MES")
        first_time = len(names)
        for column in TIME_COLUMNS:
            add(column, TIME_GROUPS[column])
        self._time_slice = slice(first_time, len(names))
        first_dest = len(names)
        self._destination_index = {d: add(f"SIGLADES={d}", "SIGLADES")
                                   for d in self.destinations}
        self._destination_slice = slice(first_dest, len(names))
        self.feature_names: tuple[str, ...] = tuple(names)
        # The row of a flight with only the required inputs, before they are filled in.
        self._template: list[float] = [math.nan] * len(names)
        self._template[self._airline_slice] = [0.0] * len(self.airlines)
        self._no_destination: list[float] = [0.0] * len(self.destinations)
        self.feature_groups: tuple[str, ...] = tuple(groups)
        # The request field each group is computed from (explanations report per field too).
        from_fecha = set(TIME_GROUPS.values())
        self.group_inputs: dict[str, str] = {
            group: "Fecha-I" if group in from_fecha else group for group in self.group_names()}

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def group_names(self) -> list[str]:
        """Explanation groups in first-seen column order (each input field or Fecha-I part)."""
        return list(dict.fromkeys(self.feature_groups))

    def encode(self, flights: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Encode validated flights into a float32 matrix, one row per flight.

        Unknown airlines or destinations raise ``KeyError``: the service's schemas reject them
        before they get here, and training builds the vocabulary from the very rows it encodes.
        """
        if len(flights) <= _ROW_BY_ROW:
            return self._encode_rows(flights)
        return self._encode_columns(flights)

    def _encode_rows(self, flights: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """A few flights (a single-flight request): each row built as a Python list from a
        template and converted once; numpy's per-call overhead (np.full, fancy indexing)
        was most of the cost of encoding one row."""
        rows = []
        airline, destination = self._airline_index, self._destination_index
        times, dests = self._time_slice, self._destination_slice
        for flight in flights:
            row = self._template.copy()
            row[airline[flight["OPERA"]]] = 1.0
            row[self._international] = 1.0 if flight["TIPOVUELO"] == "I" else 0.0
            row[self._month] = flight["MES"]
            when = flight.get("Fecha-I")
            if when is not None:
                row[times] = time_features(when)
            dest = flight.get("SIGLADES")
            if dest is not None:
                row[dests] = self._no_destination
                row[destination[dest]] = 1.0
            rows.append(row)
        return np.array(rows, dtype=np.float32).reshape(len(rows), self.n_features)

    def _encode_columns(self, flights: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Many flights: column at a time, so the per-flight Python work is a dict lookup or
        a comparison, and calendar facts are computed once per distinct day."""
        count = len(flights)
        matrix = np.full((count, self.n_features), np.nan, dtype=np.float32)
        matrix[:, self._airline_slice] = 0.0
        airline = self._airline_index
        matrix[np.arange(count), [airline[f["OPERA"]] for f in flights]] = 1.0
        matrix[:, self._international] = [f["TIPOVUELO"] == "I" for f in flights]
        matrix[:, self._month] = [f["MES"] for f in flights]
        timed = [(n, when) for n, f in enumerate(flights)
                 if (when := f.get("Fecha-I")) is not None]
        if timed:
            days: dict[int, int] = {}  # day ordinal -> its row in the table of distinct days
            slots = [days.setdefault(when.toordinal(), len(days)) for _, when in timed]
            block = np.array([_day_facts(day) for day in days])[slots]
            block[:, _HOUR] = [when.hour + when.minute / 60.0 for _, when in timed]
            rows = slice(None) if len(timed) == count else [n for n, _ in timed]
            matrix[rows, self._time_slice] = block
        going = [(n, dest) for n, f in enumerate(flights)
                 if (dest := f.get("SIGLADES")) is not None]
        if going:
            rows = [n for n, _ in going]
            destination = self._destination_index
            matrix[rows, self._destination_slice] = 0.0
            matrix[rows, [destination[d] for _, d in going]] = 1.0
        return matrix

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in ``metadata.json`` under ``feature_spec``."""
        return {
            "spec_version": SPEC_VERSION,
            "required_inputs": list(REQUIRED_INPUTS),
            "optional_inputs": list(OPTIONAL_INPUTS),
            "input_levels": {k: list(v) for k, v in INPUT_LEVELS.items()},
            "flight_types": list(FLIGHT_TYPES),
            "months": list(MONTHS),
            "airlines": list(self.airlines),
            "destinations": list(self.destinations),
            "feature_names": list(self.feature_names),
            "feature_groups": list(self.feature_groups),
            "group_inputs": dict(self.group_inputs),
            "holiday_calendar": {"package": "holidays", "version": holidays.__version__,
                                 "country": HOLIDAY_COUNTRY, "horizon_days": HOLIDAY_HORIZON},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        """Rebuild the spec and check it describes the same columns it was saved with."""
        version = data.get("spec_version")
        if version != SPEC_VERSION:
            raise ValueError(f"feature spec version {version!r} is not supported "
                             f"(this code reads version {SPEC_VERSION})")
        # Flight types and months are fixed by this code's encoding (one 0/1 column, one
        # numeric column): a model saved with others cannot be served by it.
        for key, expected in (("flight_types", list(FLIGHT_TYPES)), ("months", list(MONTHS))):
            if list(data.get(key, expected)) != expected:
                raise ValueError(f"{key} {data[key]!r} in the metadata differ from the "
                                 f"{expected!r} this code encodes")
        spec = cls(data["airlines"], data["destinations"])
        if list(spec.feature_names) != list(data["feature_names"]):
            raise ValueError("feature_names in the metadata do not match the ones this code "
                             "builds from its vocabularies")
        return spec


def level_of(flight: Mapping[str, Any]) -> str:
    """Which input level a flight carries (used to report and threshold by level)."""
    has_time = flight.get("Fecha-I") is not None
    has_dest = flight.get("SIGLADES") is not None
    if has_time and has_dest:
        return "full"
    if has_time:
        return "fecha"
    if has_dest:
        return "destination"
    return "required"


def mask_optional(flights: Iterable[Mapping[str, Any]], keep: Sequence[str]) -> list[dict]:
    """Copies of ``flights`` with every optional input not in ``keep`` removed."""
    drop = [name for name in OPTIONAL_INPUTS if name not in keep]
    out = []
    for flight in flights:
        copy = dict(flight)
        for name in drop:
            copy.pop(name, None)
        out.append(copy)
    return out


def is_missing(value: Any) -> bool:
    """True for None and float NaN (pandas' missing marker in object columns)."""
    return value is None or (isinstance(value, float) and math.isnan(value))
