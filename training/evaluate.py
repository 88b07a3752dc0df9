"""Stage 4: score the pipeline on three protocols, against the baselines, at every input level.

Protocols (``--holdouts`` picks any subset):
- ``temporal``: train on the data's span minus its last quarter, test on that last quarter
  (Jan-Sep -> Oct-Dec for the 2017 file): the model meets later flights, as in production.
- ``rolling``: rolling origin. For each of the span's months k from the fourth on (at most the
  last ``ROLLING_MAX_FOLDS``), train on the months before k and test on month k. The mean over
  months is, with ``temporal``, the criterion features and hyper-parameters are chosen by.
- ``notebook``: the challenge notebook's split, ``shuffle(df, random_state=111)`` then
  ``train_test_split(test_size=0.33, random_state=42)``: flights of the same day fall on both
  sides, so it rewards remembering the year's particular days. Kept as the challenge's own
  comparison, not as the selection criterion.

The forward protocols are defined from the data's own months, so a partial or a later year
works; data too short for one raises :class:`HoldoutError` with one line naming what is
missing. For each split, :func:`training.modeling.fit_pipeline` sees only the training flights:
it carves its own validation split (from inside the training months, never the test month) for
early stopping and the threshold, then refits. Rolling folds score that early-stopped booster
without the refit (nine refits would double ``make train``'s time for a number that differs in
the third decimal). Test flights are scored once, afterwards.

Run alone:
``python -m training.evaluate --data PATH [--holdouts temporal,rolling,notebook] [--out F]``
re-runs the protocols; ``--model-dir DIR`` instead scores an existing artifact on the whole file
(in-sample for the shipped model, which was refit on every row: a smoke check, not an estimate).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from sklearn.utils import shuffle

from training.artifacts import ArtifactError, load_artifact
from training.baselines import run_baselines
from training.data import DataError, load_flights
from training.features import FeatureSpec
from training.metrics import all_metrics, curves
from training.modeling import (
    DEFAULT_SEED,
    LEVELS,
    MAX_ROUNDS,
    TARGET,
    day_numbers,
    encode_levels,
    fit_pipeline,
    fit_probe,
    predict,
    spec_for,
)

HOLDOUTS: tuple[str, ...] = ("temporal", "rolling", "notebook")
SPLIT_HOLDOUTS: tuple[str, ...] = ("temporal", "notebook")
ROLLING_MIN_TRAIN_MONTHS = 3
ROLLING_MAX_FOLDS = 9
TEMPORAL_MIN_MONTHS = 4
MIN_TRAIN_FLIGHTS = 100
MIN_TEST_FLIGHTS = 20
ROLLING_KEYS = ("roc_auc", "brier", "ece", "observed_rate", "mean_predicted", "log_loss",
                "recall", "f1")


class HoldoutError(DataError):
    """The data cannot support an evaluation protocol; the message says what is missing."""


def months_of(frame: pd.DataFrame) -> np.ndarray:
    """Each flight's scheduled month as a running number (year * 12 + month - 1)."""
    when = frame["Fecha-I"]
    return (when.dt.year * 12 + when.dt.month - 1).to_numpy()


def month_label(number: int) -> str:
    return f"{number // 12:04d}-{number % 12 + 1:02d}"


def _span(months: np.ndarray) -> str:
    present = np.unique(months)
    if not len(present):
        return "no flights"
    return (f"{len(present)} month(s) with flights, {month_label(int(present[0]))} to "
            f"{month_label(int(present[-1]))}")


def _check_sizes(name: str, train: np.ndarray, test: np.ndarray, y: np.ndarray,
                 what: str) -> None:
    if len(train) < MIN_TRAIN_FLIGHTS or len(test) < MIN_TEST_FLIGHTS:
        raise HoldoutError(
            f"the {name} holdout needs at least {MIN_TRAIN_FLIGHTS} training and "
            f"{MIN_TEST_FLIGHTS} test flights; {what} gives {len(train)} and {len(test)} "
            f"(add data or leave it out with --holdouts)")
    if len(np.unique(y[train])) < 2:
        raise HoldoutError(f"the {name} holdout's training flights ({what}) are all of one "
                           "class (delay_15); add data or leave it out with --holdouts")


def notebook_split(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Row positions (train, test) exactly as the notebook drew them."""
    shuffled = shuffle(np.arange(len(frame)), random_state=111)
    train, test = train_test_split(shuffled, test_size=0.33, random_state=42)
    return np.asarray(train), np.asarray(test)


def temporal_test_months(months: np.ndarray) -> np.ndarray:
    """The last quarter of the span's months (at least one): Oct-Dec of a full year."""
    present = np.unique(months)
    if len(present) < TEMPORAL_MIN_MONTHS:
        raise HoldoutError(f"the temporal holdout needs flights in at least "
                           f"{TEMPORAL_MIN_MONTHS} months (train on the first three quarters, "
                           f"test on the last); the data has {_span(months)} (leave it out "
                           "with --holdouts)")
    return present[len(present) - max(1, len(present) // 4):]


def temporal_split(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Flights before the span's last quarter train, the last quarter tests (by Fecha-I)."""
    months = months_of(frame)
    in_test = np.isin(months, temporal_test_months(months))
    return np.flatnonzero(~in_test), np.flatnonzero(in_test)


def rolling_folds(frame: pd.DataFrame) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(month, train rows = every earlier month, test rows = that month) per rolling fold."""
    months = months_of(frame)
    present = np.unique(months)
    if len(present) <= ROLLING_MIN_TRAIN_MONTHS:
        raise HoldoutError(f"the rolling holdout needs flights in at least "
                           f"{ROLLING_MIN_TRAIN_MONTHS + 1} months (three to train on before "
                           f"the first test month); the data has {_span(months)} (leave it "
                           "out with --holdouts)")
    tested = present[ROLLING_MIN_TRAIN_MONTHS:][-ROLLING_MAX_FOLDS:]
    return [(int(k), np.flatnonzero(months < k), np.flatnonzero(months == k)) for k in tested]


SPLITS: dict[str, Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]]] = {
    "notebook": notebook_split,
    "temporal": temporal_split,
}


def check_holdouts(frame: pd.DataFrame, holdouts: Sequence[str]) -> None:
    """Raise :class:`HoldoutError` before any fitting if a requested protocol cannot run."""
    y = frame[TARGET].to_numpy()
    for name in holdouts:
        if name == "rolling":
            for k, train, test in rolling_folds(frame):
                _check_sizes(name, train, test, y, f"test month {month_label(k)}")
        else:
            train, test = SPLITS[name](frame)
            what = "the 33% split" if name == "notebook" else \
                f"testing on {_span(months_of(frame)[test])}"
            _check_sizes(name, train, test, y, what)


def _round(value: Any) -> Any:
    """Round floats for a readable, diffable metrics.json."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def evaluate_holdout(name: str, frame: pd.DataFrame, levels: dict[str, np.ndarray],
                     y: np.ndarray, seed: int, baselines: bool = True,
                     max_rounds: int = MAX_ROUNDS) -> dict[str, Any]:
    """Fit on the holdout's training flights and score its test flights at every level."""
    train, test = SPLITS[name](frame)
    started = time.perf_counter()
    fitted = fit_pipeline(levels, y, day_numbers(frame), train, seed, max_rounds=max_rounds)
    threshold = fitted.threshold.threshold
    result: dict[str, Any] = {
        "train_rows": len(train), "test_rows": len(test),
        "train_rate": float(y[train].mean()), "test_rate": float(y[test].mean()),
        "n_estimators": fitted.n_estimators, "threshold": threshold,
        "validation": {"rows": fitted.validation_rows, "feasible": fitted.threshold.feasible,
                       "recall_by_level": fitted.threshold.recall_by_level,
                       "f1_by_level": fitted.threshold.f1_by_level,
                       "f1_pooled": fitted.threshold.f1_pooled},
        "levels": {}, "curves": {},
    }
    for level in LEVELS:
        p = predict(fitted.booster, levels[level][test])
        result["levels"][level] = all_metrics(y[test], p, threshold)
        result["curves"][level] = curves(y[test], p)
    if baselines:
        base_metrics, base_curves = run_baselines(frame, y, train, test, seed)
        result["baselines"] = base_metrics
        result["curves"].update({f"baseline:{k}": v for k, v in base_curves.items()})
    result["seconds"] = time.perf_counter() - started
    return _round(result)


def evaluate_rolling(frame: pd.DataFrame, levels: dict[str, np.ndarray], y: np.ndarray,
                     seed: int, max_rounds: int = MAX_ROUNDS) -> dict[str, Any]:
    """Rolling origin: per test month, a booster fit on the months before it; the mean."""
    started = time.perf_counter()
    days = day_numbers(frame)
    folds = []
    for k, train, test in rolling_folds(frame):
        probe = fit_probe(levels, y, days, train, seed, max_rounds)
        threshold = probe.threshold.threshold
        fold_levels = {}
        for level in LEVELS:
            m = all_metrics(y[test], predict(probe.booster, levels[level][test],
                                             probe.n_estimators), threshold)
            fold_levels[level] = {key: m[key] for key in ROLLING_KEYS}
        folds.append({"month": month_label(k), "train_rows": len(train),
                      "test_rows": len(test), "train_rate": float(y[train].mean()),
                      "base_rate": float(y[test].mean()), "n_estimators": probe.n_estimators,
                      "threshold": threshold, "levels": fold_levels})
    mean = {level: {key: _mean([f["levels"][level][key] for f in folds])
                    for key in ROLLING_KEYS} for level in LEVELS}
    return _round({"folds": folds, "mean": mean,
                   "mean_base_rate": _mean([f["base_rate"] for f in folds]),
                   "test_rows": sum(f["test_rows"] for f in folds),
                   "seconds": time.perf_counter() - started})


def _mean(values: list[Any]) -> float | None:
    usable = [v for v in values if v is not None]
    return float(np.mean(usable)) if usable else None


def run_holdouts(frame: pd.DataFrame, seed: int = DEFAULT_SEED,
                 holdouts: Sequence[str] = HOLDOUTS, baselines: bool = True,
                 spec: FeatureSpec | None = None,
                 levels: dict[str, np.ndarray] | None = None,
                 max_rounds: int = MAX_ROUNDS) -> dict[str, Any]:
    """The evaluation as a function: ``{holdout: {levels: {level: metrics}, baselines, ...}}``.

    ``spec``/``levels`` may be passed in when the caller already encoded the frame (train.py
    does, to encode once for evaluation and the final fit).
    """
    spec = spec or spec_for(frame)
    if levels is None:
        levels = encode_levels(spec, frame)
    y = frame[TARGET].to_numpy()
    check_holdouts(frame, holdouts)
    return {name: evaluate_rolling(frame, levels, y, seed, max_rounds) if name == "rolling"
            else evaluate_holdout(name, frame, levels, y, seed, baselines, max_rounds)
            for name in holdouts}


def summarize(holdouts: dict[str, Any]) -> dict[str, Any]:
    """The compact per-holdout, per-level summary stored in metadata.json."""
    keys = ("roc_auc", "pr_auc", "brier", "log_loss", "ece", "precision", "recall", "f1")
    out: dict[str, Any] = {}
    for name, result in holdouts.items():
        if name == "rolling":
            out[name] = {"mean": {lv: {k: m[k] for k in ("roc_auc", "brier", "ece")}
                                  for lv, m in result["mean"].items()},
                         "mean_base_rate": result["mean_base_rate"],
                         "months": [{"month": f["month"], "test_rows": f["test_rows"],
                                     "base_rate": f["base_rate"],
                                     "levels": {lv: {k: m[k] for k in ("roc_auc", "brier",
                                                                        "ece")}
                                                for lv, m in f["levels"].items()}}
                                    for f in result["folds"]]}
            continue
        out[name] = {"threshold": result["threshold"], "test_rows": result["test_rows"],
                     "levels": {lv: {k: m[k] for k in keys}
                                for lv, m in result["levels"].items()}}
        if "baselines" in result:
            out[name]["baselines"] = {b: {k: m[k] for k in keys}
                                      for b, m in result["baselines"].items()}
    return out


def format_table(holdouts: dict[str, Any]) -> str:
    """A plain-text table of the headline metrics, for the console and the report."""
    head = (f"{'holdout':9} {'model / level':28} {'ROC AUC':>7} {'PR AUC':>6} {'Brier':>6} "
            f"{'logloss':>7} {'ECE':>6} {'prec':>5} {'recall':>6} {'F1':>5}")
    lines = [head]
    for name, result in holdouts.items():
        if name == "rolling":
            continue
        rows = [(f"xgboost / {lv}", m) for lv, m in result["levels"].items()]
        rows += [(f"{b} / required", m) for b, m in result.get("baselines", {}).items()]
        for label, m in rows:
            auc = "   -   " if m["roc_auc"] is None else f"{m['roc_auc']:7.4f}"
            pr = "  -   " if m["pr_auc"] is None else f"{m['pr_auc']:6.4f}"
            lines.append(f"{name:9} {label:28} {auc} {pr} {m['brier']:6.4f} "
                         f"{m['log_loss']:7.4f} {m['ece']:6.4f} {m['precision']:5.3f} "
                         f"{m['recall']:6.3f} {m['f1']:5.3f}")
    if "rolling" in holdouts:
        lines.append(format_rolling(holdouts["rolling"]))
    return "\n".join(lines)


def format_rolling(result: dict[str, Any]) -> str:
    """Per-month ROC AUC (all inputs / required) and the mean, for the console."""
    lines = [f"rolling origin: {'month':7} {'rate':>5} {'AUC full':>8} {'AUC req':>7} "
             f"{'Brier':>6} {'ECE':>6}"]
    rows = [(f["month"], f["base_rate"], f["levels"]) for f in result["folds"]]
    rows.append(("mean", result["mean_base_rate"], result["mean"]))
    for label, rate, lv in rows:
        lines.append(f"{'':16}{label:7} {rate:5.3f} {_auc(lv['full']['roc_auc']):>8} "
                     f"{_auc(lv['required']['roc_auc']):>7} {lv['full']['brier']:6.4f} "
                     f"{lv['full']['ece']:6.4f}")
    return "\n".join(lines)


def _auc(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def evaluate_artifact(model_dir: str, frame: pd.DataFrame) -> dict[str, Any]:
    """Score a saved artifact on ``frame`` at every level with its stored threshold."""
    artifact = load_artifact(model_dir, nthread=2)
    for column, known in (("OPERA", artifact.spec.airlines),
                          ("SIGLADES", artifact.spec.destinations)):
        unknown = sorted(set(frame[column]) - set(known))
        if unknown:
            raise DataError(f"{len(unknown)} {column} value(s) in the data are not in the "
                            f"model's vocabulary ({', '.join(unknown[:5])}); the model in "
                            f"{model_dir} cannot score them")
    levels = encode_levels(artifact.spec, frame)
    y = frame[TARGET].to_numpy()
    return _round({lv: all_metrics(y, predict(artifact.booster, levels[lv]), artifact.threshold)
                   for lv in LEVELS})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="CSV path (default: $FLIGHT_DATA or data/dataset_SCL.csv)")
    parser.add_argument("--holdouts", default=",".join(HOLDOUTS),
                        help="comma-separated subset of: " + ", ".join(HOLDOUTS))
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--no-baselines", action="store_true", help="skip the baselines")
    parser.add_argument("--model-dir", help="score this artifact instead of re-running holdouts")
    parser.add_argument("--out", help="also write the metrics as JSON here")
    args = parser.parse_args(argv)
    try:
        frame, _ = load_flights(args.data)
        if args.model_dir:
            result: dict[str, Any] = evaluate_artifact(args.model_dir, frame)
            print(json.dumps(result, indent=2))
        else:
            names = [h.strip() for h in args.holdouts.split(",") if h.strip()]
            unknown = sorted(set(names) - set(HOLDOUTS))
            if unknown:
                parser.error(f"unknown holdout(s) {unknown}; choose from {list(HOLDOUTS)}")
            result = run_holdouts(frame, args.seed, names, baselines=not args.no_baselines)
            print(format_table(result))
    except (DataError, ArtifactError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
