"""Build the traffic profile the locustfile draws flights from: aggregate counts only.

Locust must send flights that look like SCL's real traffic (LATAM and Sky dominate, Santiago ->
Buenos Aires far more often than -> Melbourne, few departures at 04:00), yet the raw data must
not ship with the load test and must not be read at load time. This script reads the CSV once
and keeps only frequencies: how often each (airline, flight type, destination) route flew, and
how often each month, hour and minute was scheduled. No row can be rebuilt from it.

    python -m load.profile --data ../shared/data/dataset_SCL.csv --out load/traffic_profile.json
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path(__file__).with_name("traffic_profile.json")
PROFILE_VERSION = 1


def build_profile(csv_path: Path) -> dict[str, Any]:
    """Count routes, months, hours and minutes of the scheduled departures in ``csv_path``."""
    routes: Counter[tuple[str, str, str]] = Counter()
    months: Counter[int] = Counter()
    hours: Counter[int] = Counter()
    minutes: Counter[int] = Counter()
    with csv_path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            when = datetime.strptime(row["Fecha-I"], "%Y-%m-%d %H:%M:%S")
            routes[(row["OPERA"], row["TIPOVUELO"], row["SIGLADES"])] += 1
            months[when.month] += 1
            hours[when.hour] += 1
            minutes[when.minute] += 1
    if not routes:
        raise ValueError(f"{csv_path} has no flights")
    return {
        "profile_version": PROFILE_VERSION,
        "source": csv_path.name,
        "flights": sum(routes.values()),
        # Joint counts keep real combinations (Sky flies national routes, American only to
        # Miami/Dallas); independent marginals would invent routes nobody flies.
        "routes": [[airline, kind, dest, n]
                   for (airline, kind, dest), n in sorted(routes.items())],
        "months": {str(k): months[k] for k in sorted(months)},
        "hours": {str(k): hours[k] for k in sorted(hours)},
        "minutes": {str(k): minutes[k] for k in sorted(minutes)},
    }


def to_json(profile: dict[str, Any]) -> str:
    """One route per line: small, diff-friendly, and readable by a person."""
    lines = [f"  {json.dumps(route, ensure_ascii=False)}" for route in profile["routes"]]
    head = {k: v for k, v in profile.items() if k != "routes"}
    body = json.dumps(head, indent=1, ensure_ascii=False)[:-2]
    return body + ',\n "routes": [\n' + ",\n".join(lines) + "\n ]\n}\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset_SCL.csv")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    profile = build_profile(args.data)
    args.out.write_text(to_json(profile), encoding="utf-8")
    print(f"{args.out}: {profile['flights']} flights -> {len(profile['routes'])} routes")


if __name__ == "__main__":
    main()
