"""Stage 3: build the model the service serves, with its evaluation, from dataset_SCL.csv.

``python -m training.train --data PATH --out model_artifacts`` (what ``make train`` runs):

1. load and validate the CSV (:mod:`training.data`), encode every flight once per input level;
2. evaluate forward in time (temporal and rolling-origin holdouts, defined from the data's own
   months) and on the notebook split, against the baselines (:mod:`training.evaluate`);
3. fit the shipped model with the same procedure on every row: a validation split picks the
   number of trees and the decision threshold, then the booster is refit on all flights;
4. save ``model.ubj`` + ``metadata.json`` (:mod:`training.artifacts`), the report
   (:mod:`training.report`) and ``MODEL_CARD.md`` (:mod:`training.model_card`).

Any period trains: a partial or a later year works, and data too short for a protocol stops
with one line naming what is missing (``--holdouts`` leaves protocols out).

Same data + same ``--seed`` give a byte-identical ``model.ubj`` (hist, fixed seed and nthread).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import holidays
import numpy as np
import pandas as pd
import sklearn
import xgboost as xgb

from training.artifacts import save_artifact
from training.data import DataError, load_flights
from training.evaluate import HOLDOUTS, check_holdouts, format_table, run_holdouts, summarize
from training.features import INPUT_LEVELS
from training.model_card import MODEL_CARD_FILE, write_model_card
from training.modeling import (
    DEFAULT_SEED,
    EARLY_STOPPING_ROUNDS,
    MAX_ROUNDS,
    MIN_RECALL,
    RECALL_MARGIN,
    TARGET,
    THRESHOLD_RULE,
    VALIDATION_FRACTION,
    day_numbers,
    encode_levels,
    fit_pipeline,
    params_for,
    spec_for,
)

DEFAULT_OUT = "model_artifacts"

TRAINING_SCHEME = (
    "One booster for all input levels: each training flight appears four times, once per input "
    f"level ({', '.join(INPUT_LEVELS)}), with the optional inputs that level lacks masked to "
    "NaN, so the trees learn default branches for absent Fecha-I / SIGLADES."
)


def library_versions() -> dict[str, str]:
    return {"xgboost": xgb.__version__, "numpy": np.__version__, "pandas": pd.__version__,
            "sklearn": sklearn.__version__, "holidays": holidays.__version__,
            "python": platform.python_version()}


def training_period(frame: pd.DataFrame) -> dict[str, Any]:
    """The span of scheduled departures the model learned from (GET /model returns it)."""
    when = frame["Fecha-I"]
    return {"first_departure": when.min().strftime("%Y-%m-%d %H:%M"),
            "last_departure": when.max().strftime("%Y-%m-%d %H:%M"),
            "months": sorted(set(when.dt.strftime("%Y-%m"))), "flights": len(frame)}


def parse_holdouts(text: str) -> tuple[str, ...]:
    """``--holdouts`` value: a comma-separated subset of HOLDOUTS, or ``none``."""
    names = tuple(h.strip() for h in text.split(",") if h.strip())
    if names == ("none",):
        return ()
    unknown = sorted(set(names) - set(HOLDOUTS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown holdout(s) {', '.join(unknown)}; choose from {', '.join(HOLDOUTS)} "
            "or none")
    return names


def train(data: str | None, out: str | Path, seed: int = DEFAULT_SEED, evaluate: bool = True,
          report: bool = True, max_rounds: int = MAX_ROUNDS,
          holdouts: tuple[str, ...] = HOLDOUTS, log=print) -> dict[str, Any]:
    """Run the whole pipeline; return the metadata written next to the model."""
    started = time.perf_counter()
    frame, data_report = load_flights(data)
    for line in data_report.lines():
        log(line)
    y = frame[TARGET].to_numpy()
    if len(frame) < 2 or len(np.unique(y)) < 2:
        raise DataError(f"the {len(frame)} usable flights are not both delayed and on time "
                        "(delay_15): a model needs examples of each")
    if evaluate:  # before any fitting, so a too-short file fails in a second, not a minute
        check_holdouts(frame, holdouts)
    spec = spec_for(frame)
    levels = encode_levels(spec, frame)

    results: dict[str, Any] = {}
    if evaluate and holdouts:
        results = run_holdouts(frame, seed, holdouts, spec=spec, levels=levels,
                               max_rounds=max_rounds)
        log(format_table(results))

    fitted = fit_pipeline(levels, y, day_numbers(frame), np.arange(len(frame)), seed,
                          max_rounds=max_rounds)
    dataset = data_report.as_dict()
    dataset["path"] = Path(dataset["path"]).name
    metadata: dict[str, Any] = {
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "training_seconds": round(time.perf_counter() - started, 1),
        "dataset": dataset,
        "training_period": training_period(frame),
        "model_card": MODEL_CARD_FILE,
        "libraries": library_versions(),
        "params": params_for(seed),
        "n_estimators": fitted.n_estimators,
        "early_stopping": {"validation_fraction": VALIDATION_FRACTION,
                           "patience": EARLY_STOPPING_ROUNDS, "max_rounds": max_rounds},
        "seed": seed,
        "threshold_rule": THRESHOLD_RULE,
        "threshold_min_recall": MIN_RECALL,
        "threshold_recall_margin": RECALL_MARGIN,
        "threshold_validation": {"recall_by_level": fitted.threshold.recall_by_level,
                                 "f1_by_level": fitted.threshold.f1_by_level,
                                 "f1_pooled": fitted.threshold.f1_pooled,
                                 "feasible": fitted.threshold.feasible},
        "training_scheme": TRAINING_SCHEME,
        "calibration": "none: plain binary:logistic, no resampling or class weights "
                       "(holdout ECE in holdout_metrics)",
        "base_rate": float(y.mean()),
        "holdout_metrics": summarize(results) if results else None,
    }
    written = save_artifact(out, fitted.booster, spec, fitted.threshold.threshold, metadata)
    stale = Path(out) / "report"
    if not (results and report) and stale.exists():
        log(f"note: {stale} is from an earlier run, not model {written['model_version']}")
    if results and report:
        from training.report import write_report  # matplotlib only when a report is wanted

        write_report(Path(out) / "report", results, frame, fitted.booster, spec, written)
    write_model_card(Path(out) / MODEL_CARD_FILE, written, results, frame)
    log(f"n_estimators {fitted.n_estimators}, threshold {fitted.threshold.threshold:.3f}, "
        f"model {written['model_version']} -> {out}")
    log(f"done in {time.perf_counter() - started:.1f} s")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="CSV path (default: $FLIGHT_DATA or data/dataset_SCL.csv)")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"artifact dir (default {DEFAULT_OUT})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--no-report", action="store_true",
                        help="skip plots and report.md (holdout metrics still go in metadata)")
    parser.add_argument("--no-eval", action="store_true",
                        help="skip the holdouts and the report: only fit and save the model")
    parser.add_argument("--max-rounds", type=int, default=MAX_ROUNDS,
                        help="upper bound on trees for early stopping")
    parser.add_argument("--holdouts", type=parse_holdouts, default=HOLDOUTS,
                        help="comma-separated evaluation protocols to run, from "
                             f"{', '.join(HOLDOUTS)} (default: all), or none")
    args = parser.parse_args(argv)
    try:
        train(args.data, args.out, seed=args.seed, evaluate=not args.no_eval,
              report=not args.no_report, max_rounds=args.max_rounds, holdouts=args.holdouts)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
