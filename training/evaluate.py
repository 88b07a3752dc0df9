"""Stage 4: score the pipeline on two holdouts, against the baselines, at every input level.

Holdouts:
- ``notebook``: the challenge notebook's split, ``shuffle(df, random_state=111)`` then
  ``train_test_split(test_size=0.33, random_state=42)``, so our numbers and the data scientist's
  are on the very same test flights.
- ``temporal``: train on flights scheduled Jan-Sep, test on Oct-Dec: what happens when the
  model meets months (and day_of_year values) it has not seen, as it will in production.

For each holdout, :func:`training.modeling.fit_pipeline` sees only the training flights: it
carves its own validation split for early stopping and the threshold, then refits. Test flights
are scored once, afterwards.

Run alone:
``python -m training.evaluate --data PATH [--holdouts notebook,temporal] [--out metrics.json]``
re-runs the holdouts; ``--model-dir DIR`` instead scores an existing artifact on the whole file
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
    encode_levels,
    fit_pipeline,
    predict,
    spec_for,
)

HOLDOUTS: tuple[str, ...] = ("notebook", "temporal")
TEMPORAL_TRAIN_MONTHS = range(1, 10)


def notebook_split(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Row positions (train, test) exactly as the notebook drew them."""
    shuffled = shuffle(np.arange(len(frame)), random_state=111)
    train, test = train_test_split(shuffled, test_size=0.33, random_state=42)
    return np.asarray(train), np.asarray(test)


def temporal_split(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Jan-Sep scheduled flights train, Oct-Dec test (by Fecha-I month, not the file's MES)."""
    in_train = frame["Fecha-I"].dt.month.isin(TEMPORAL_TRAIN_MONTHS).to_numpy()
    return np.flatnonzero(in_train), np.flatnonzero(~in_train)


SPLITS: dict[str, Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]]] = {
    "notebook": notebook_split,
    "temporal": temporal_split,
}


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
    fitted = fit_pipeline(levels, y, train, seed, max_rounds=max_rounds)
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
    return {name: evaluate_holdout(name, frame, levels, y, seed, baselines, max_rounds)
            for name in holdouts}


def summarize(holdouts: dict[str, Any]) -> dict[str, Any]:
    """The compact per-holdout, per-level summary stored in metadata.json."""
    keys = ("roc_auc", "pr_auc", "brier", "log_loss", "ece", "precision", "recall", "f1")
    out: dict[str, Any] = {}
    for name, result in holdouts.items():
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
        rows = [(f"xgboost / {lv}", m) for lv, m in result["levels"].items()]
        rows += [(f"{b} / required", m) for b, m in result.get("baselines", {}).items()]
        for label, m in rows:
            auc = "   -   " if m["roc_auc"] is None else f"{m['roc_auc']:7.4f}"
            pr = "  -   " if m["pr_auc"] is None else f"{m['pr_auc']:6.4f}"
            lines.append(f"{name:9} {label:28} {auc} {pr} {m['brier']:6.4f} "
                         f"{m['log_loss']:7.4f} {m['ece']:6.4f} {m['precision']:5.3f} "
                         f"{m['recall']:6.3f} {m['f1']:5.3f}")
    return "\n".join(lines)


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
