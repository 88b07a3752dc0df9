"""Stage 1: read and validate dataset_SCL.csv and derive the challenge's columns.

Errors a user can make (wrong path, a renamed column, a file whose timestamps do not parse)
raise :class:`DataError` with a message that names the file, the column and how many rows,
instead of surfacing a pandas traceback. Rows that cannot be used are counted in a
:class:`DataReport` and printed; nothing is dropped silently.

Run alone: ``python -m training.data --data PATH [--export-features synthetic_features.csv]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from training.features import FLIGHT_TYPES, is_high_season, period_of_day

DEFAULT_DATA = "data/dataset_SCL.csv"
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
EXPECTED_COLUMNS: tuple[str, ...] = (
    "Fecha-I", "Vlo-I", "Ori-I", "Des-I", "Emp-I", "Fecha-O", "Vlo-O", "Ori-O", "Des-O",
    "Emp-O", "DIA", "MES", "AÑO", "DIANOM", "TIPOVUELO", "OPERA", "SIGLAORI", "SIGLADES",
)
# Columns the pipeline reads; the rest are carried but never become model features.
USED_COLUMNS: tuple[str, ...] = ("Fecha-I", "Fecha-O", "TIPOVUELO", "OPERA", "SIGLADES")
DERIVED_COLUMNS: tuple[str, ...] = ("high_season", "min_diff", "delay_15", "period_day")
# Above this share of unusable rows the file is probably not the data set we expect.
MAX_BAD_FRACTION = 0.01


class DataError(Exception):
    """The data file cannot be used; the message says why in a user's terms."""


@dataclass
class DataReport:
    """What loading saw: counts of rows read, dropped (by reason) and notable quirks."""

    path: str
    sha256: str
    rows_read: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    quirks: dict[str, int] = field(default_factory=dict)

    @property
    def rows_used(self) -> int:
        return self.rows_read - sum(self.dropped.values())

    def as_dict(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, "rows_read": self.rows_read,
                "rows_used": self.rows_used, "dropped": dict(self.dropped),
                "quirks": dict(self.quirks)}

    def lines(self) -> list[str]:
        out = [f"read {self.rows_read} rows from {self.path} (sha256 {self.sha256[:12]}…), "
               f"using {self.rows_used}"]
        out += [f"  dropped {n} rows: {why}" for why, n in self.dropped.items() if n]
        out += [f"  kept, noted: {n} rows {what}" for what, n in self.quirks.items() if n]
        return out


def resolve_path(path: str | os.PathLike | None) -> Path:
    """``--data`` wins, then ``FLIGHT_DATA``, then ``data/dataset_SCL.csv``."""
    return Path(path or os.environ.get("FLIGHT_DATA") or DEFAULT_DATA)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_raw(path: Path) -> pd.DataFrame:
    """Read the CSV as strings, checking the file and its columns before anything else."""
    if not path.is_file():
        raise DataError(f"data file not found: {path} (pass --data PATH or set FLIGHT_DATA; "
                        "the README says where to get dataset_SCL.csv)")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not a readable CSV file: {exc}") from exc
    missing = [c for c in USED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path} lacks column(s) {', '.join(missing)}; it has "
                        f"{', '.join(frame.columns)} (expected the dataset_SCL.csv header: "
                        f"{','.join(EXPECTED_COLUMNS)})")
    return frame


def _drop(frame: pd.DataFrame, bad: pd.Series, reason: str, report: DataReport) -> pd.DataFrame:
    count = int(bad.sum())
    if count:
        report.dropped[reason] = report.dropped.get(reason, 0) + count
    return frame.loc[~bad]


def _check_bad_share(report: DataReport, path: Path) -> None:
    bad = sum(report.dropped.values())
    if report.rows_read and bad / report.rows_read > MAX_BAD_FRACTION:
        reasons = "; ".join(f"{n} rows {why}" for why, n in report.dropped.items())
        raise DataError(f"{path}: {bad} of {report.rows_read} rows cannot be used "
                        f"(more than {MAX_BAD_FRACTION:.0%}): {reasons}")


def clean(frame: pd.DataFrame, report: DataReport, path: Path) -> pd.DataFrame:
    """Parse timestamps, drop unusable rows with a counted reason, note harmless quirks."""
    report.rows_read = len(frame)
    for column in ("Fecha-I", "Fecha-O"):
        parsed = pd.to_datetime(frame[column], format=TIMESTAMP_FORMAT, errors="coerce")
        bad = parsed.isna()
        if bad.any():
            first = frame.loc[bad, column].head(3).tolist()
            lines = [int(i) + 2 for i in frame.index[bad][:3]]
            reason = (f"with an unparseable {column} (expected {TIMESTAMP_FORMAT}; "
                      f"e.g. {first!r} on CSV lines {lines})")
            frame = _drop(frame.assign(**{column: parsed}), bad, reason, report)
        else:
            frame = frame.assign(**{column: parsed})
    for column in ("OPERA", "SIGLADES"):
        frame = _drop(frame, frame[column].isna(), f"with an empty {column}", report)
    frame = _drop(frame, ~frame["TIPOVUELO"].isin(FLIGHT_TYPES),
                  f"with TIPOVUELO not in {list(FLIGHT_TYPES)}", report)
    _check_bad_share(report, path)

    # Quirks of the real file that do not affect what we use (we read the scheduled columns).
    if "AÑO" in frame.columns:
        report.quirks["whose AÑO differs from Fecha-I's year (operated after midnight)"] = int(
            (pd.to_numeric(frame["AÑO"], errors="coerce") != frame["Fecha-I"].dt.year).sum())
    if "MES" in frame.columns:
        report.quirks["whose MES (month of operation) differs from Fecha-I's month; "
                      "MES is taken from Fecha-I"] = int(
            (pd.to_numeric(frame["MES"], errors="coerce") != frame["Fecha-I"].dt.month).sum())
    if "Vlo-O" in frame.columns:
        report.quirks["with an empty Vlo-O"] = int(frame["Vlo-O"].isna().sum())
        report.quirks["with Vlo-O written as a float"] = int(
            frame["Vlo-O"].str.endswith(".0", na=False).sum())
    return frame.reset_index(drop=True)


def derive(frame: pd.DataFrame) -> pd.DataFrame:
    """Add the challenge's derived columns and the scheduled month used as the MES input.

    ``MES`` is recomputed from Fecha-I: the file's MES is the month the flight *operated*,
    which is not known before departure.
    """
    scheduled = frame["Fecha-I"]
    minutes = (frame["Fecha-O"] - scheduled).dt.total_seconds() / 60.0
    return frame.assign(
        MES=scheduled.dt.month.astype(int),
        high_season=[is_high_season(t) for t in scheduled],
        min_diff=minutes,
        delay_15=(minutes > 15).astype(int),
        period_day=[period_of_day(t) for t in scheduled],
    )


def load_flights(path: str | os.PathLike | None = None) -> tuple[pd.DataFrame, DataReport]:
    """Read, validate and derive: the frame every later stage starts from."""
    resolved = resolve_path(path)
    raw = read_raw(resolved)
    report = DataReport(path=str(resolved), sha256=file_sha256(resolved))
    frame = derive(clean(raw, report, resolved))
    return frame, report


def export_features(frame: pd.DataFrame, out: Path) -> None:
    """Write the derived columns next to the scheduled inputs (``synthetic_features.csv``)."""
    columns = ["Fecha-I", "OPERA", "TIPOVUELO", "MES", "SIGLADES", *DERIVED_COLUMNS]
    out.parent.mkdir(parents=True, exist_ok=True)
    frame[columns].to_csv(out, index=False, date_format=TIMESTAMP_FORMAT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help=f"CSV path (default: $FLIGHT_DATA or {DEFAULT_DATA})")
    parser.add_argument("--export-features", type=Path, metavar="CSV",
                        help="write the derived columns, e.g. synthetic_features.csv")
    args = parser.parse_args(argv)
    try:
        frame, report = load_flights(args.data)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    print(f"delay_15 rate {frame['delay_15'].mean():.4f}")
    if args.export_features:
        export_features(frame, args.export_features)
        print(f"wrote {args.export_features}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
