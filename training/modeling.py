"""Stage 3 helpers: turning a flight frame into level-stacked matrices and fitting the booster.

One booster serves every input level. It can only give a sensible answer for a flight whose
optional inputs are absent (NaN) if it saw such rows in training, so every training and
validation flight appears once per entry of ``INPUT_LEVELS`` with the inputs that level lacks
masked by :func:`training.features.mask_optional`. Each level copy of a flight stays on the same
side of every split (splits are made on flights first, copies second), so the validation set
never contains a masked twin of a training row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from training.features import INPUT_LEVELS, FeatureSpec, mask_optional

LEVELS: tuple[str, ...] = tuple(INPUT_LEVELS)
TARGET = "delay_15"
DEFAULT_SEED = 17
NTHREAD = 2
MAX_ROUNDS = 2000
EARLY_STOPPING_ROUNDS = 50
VALIDATION_FRACTION = 0.2
MIN_RECALL = 0.60
# The threshold is chosen on validation days with this much recall to spare at every level:
# chosen at exactly 0.60, the delayed-class recall on new flights lands a couple of points either
# side of it (0.595 at one level on the notebook split with eta 0.05), so the floor is met with
# a margin the size of that spread.
RECALL_MARGIN = 0.02

# Chosen on the forward protocols (Jan-Sep -> Oct-Dec and the rolling-origin mean), not on the
# notebook split: shallower trees with more flights per leaf carry better to later months
# (docs/model.md lists the candidates tried). A small learning rate (0.05, several hundred trees)
# takes more, smaller steps: it was the only setting tried that met every forward target, and
# the required-input answer varied less with the final refit than at 0.2. The number of trees
# is not fixed here but chosen by early stopping on each run's validation days.
PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "tree_method": "hist",
    "eta": 0.05,
    "max_depth": 4,
    "min_child_weight": 20,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "nthread": NTHREAD,
}

THRESHOLD_RULE = (
    "Among thresholds t on a 0.001 grid (a flight is predicted delayed when p >= t), take the "
    f"one maximizing F1 of the delayed class on the validation rows pooled over all four input "
    f"levels (each validation flight once per level), subject to recall of the delayed class "
    f">= {MIN_RECALL + RECALL_MARGIN:.2f} (the {MIN_RECALL:.2f} floor plus a {RECALL_MARGIN:.2f} "
    "margin for new flights) at every input level (required, fecha, destination, full) "
    "separately; ties go to the lowest such t. "
    f"Validation = every flight of a random {VALIDATION_FRACTION:.0%} of the training days "
    "(the run's seed), so no validation flight shares its day's weather and incidents with a "
    "training flight; the test/holdout rows are never used."
)


def spec_for(frame: pd.DataFrame) -> FeatureSpec:
    """Vocabularies from every usable row: a name is not a label, so this leaks nothing, and it
    keeps test rows of rare airlines/destinations encodable (unseen in training = all zeros)."""
    return FeatureSpec(frame["OPERA"].unique().tolist(), frame["SIGLADES"].unique().tolist())


def frame_to_flights(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The service's request shape, built from the scheduled columns only (no Fecha-O)."""
    return [
        {"OPERA": o, "TIPOVUELO": t, "MES": int(m), "Fecha-I": f, "SIGLADES": d}
        for o, t, m, f, d in zip(frame["OPERA"], frame["TIPOVUELO"], frame["MES"],
                                 frame["Fecha-I"], frame["SIGLADES"], strict=True)
    ]


def encode_levels(spec: FeatureSpec, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Encode every row once per input level through the same ``FeatureSpec.encode`` serving
    uses, so training matrices and request matrices come from one code path."""
    flights = frame_to_flights(frame)
    return {level: spec.encode(mask_optional(flights, keep))
            for level, keep in INPUT_LEVELS.items()}


def stack(levels: Mapping[str, np.ndarray], y: np.ndarray,
          rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The union of the level copies of ``rows`` (level-major order) and their labels."""
    x = np.concatenate([levels[level][rows] for level in LEVELS])
    return x, np.tile(y[rows], len(LEVELS))


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (fit, validation) with ``fraction`` of each class in validation; numpy only so
    the draw does not depend on a library's internal RNG usage."""
    rng = np.random.default_rng(seed)
    val_parts = []
    for cls in np.unique(y):
        members = np.flatnonzero(y == cls)
        n_val = round(fraction * len(members))
        val_parts.append(rng.permutation(members)[:n_val])
    val = np.sort(np.concatenate(val_parts))
    fit = np.setdiff1d(np.arange(len(y)), val)
    return fit, val


def day_numbers(frame: pd.DataFrame) -> np.ndarray:
    """Each flight's scheduled calendar day as an integer (the unit validation is drawn by)."""
    return frame["Fecha-I"].dt.normalize().to_numpy().astype("datetime64[D]").astype(np.int64)


def day_split(days: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (fit, validation): all flights of a random ``fraction`` of the days go to
    validation. Flights of one day share its weather and incidents; a flight-level split puts
    them on both sides, and early stopping then rewards trees that remember the days (more
    trees, worse on later months). numpy only, so the draw is reproducible."""
    unique = np.unique(days)
    rng = np.random.default_rng(seed)
    n_val = max(1, round(fraction * len(unique))) if len(unique) > 1 else 0
    chosen = rng.permutation(unique)[:n_val]
    in_val = np.isin(days, chosen)
    return np.flatnonzero(~in_val), np.flatnonzero(in_val)


def params_for(seed: int) -> dict[str, Any]:
    return {**PARAMS, "seed": seed}


def fit_booster(x: np.ndarray, y: np.ndarray, rounds: int, seed: int,
                x_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
                ) -> tuple[xgb.Booster, int]:
    """Train with fixed params; with validation data, stop early and return the best round
    count. hist + fixed seed + fixed nthread make the result byte-reproducible."""
    dtrain = xgb.DMatrix(x, label=y, nthread=NTHREAD)
    if x_val is None:
        booster = xgb.train(params_for(seed), dtrain, num_boost_round=rounds)
        return booster, rounds
    dval = xgb.DMatrix(x_val, label=y_val, nthread=NTHREAD)
    booster = xgb.train(params_for(seed), dtrain, num_boost_round=rounds,
                        evals=[(dval, "validation")],
                        early_stopping_rounds=EARLY_STOPPING_ROUNDS, verbose_eval=False)
    return booster, int(booster.best_iteration) + 1


def predict(booster: xgb.Booster, x: np.ndarray, rounds: int | None = None) -> np.ndarray:
    """Probabilities as float64; ``rounds`` limits an early-stopped booster to its best trees."""
    dmatrix = xgb.DMatrix(x, nthread=NTHREAD)
    if rounds is None:
        return booster.predict(dmatrix).astype(np.float64)
    return booster.predict(dmatrix, iteration_range=(0, rounds)).astype(np.float64)


def _counts_at(p: np.ndarray, y: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True positives and predicted positives for ``p >= t`` at each ``t`` in ``grid``."""
    order = np.sort(p)
    pos_sorted = np.sort(p[y == 1])
    predicted = len(p) - np.searchsorted(order, grid, side="left")
    tp = len(pos_sorted) - np.searchsorted(pos_sorted, grid, side="left")
    return tp.astype(np.float64), predicted.astype(np.float64)


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    f1_pooled: float
    recall_by_level: dict[str, float]
    f1_by_level: dict[str, float]
    feasible: bool


def choose_threshold(preds: Mapping[str, np.ndarray], y: np.ndarray,
                     min_recall: float = MIN_RECALL) -> ThresholdChoice:
    """Apply ``THRESHOLD_RULE`` to validation predictions per level (same flights, same ``y``).

    If no threshold reaches the recall floor at every level (only on degenerate data), fall back
    to the largest threshold meeting it at the most levels, and say so (``feasible=False``).
    """
    grid = np.round(np.arange(0.001, 1.0, 0.001), 3)
    positives = float(y.sum())
    tp_total = np.zeros_like(grid)
    pred_total = np.zeros_like(grid)
    recalls = {}
    f1s = {}
    for level in LEVELS:
        tp, predicted = _counts_at(preds[level], y, grid)
        tp_total += tp
        pred_total += predicted
        recalls[level] = tp / max(positives, 1.0)
        f1s[level] = _f1(tp, predicted, positives)
    f1_pooled = _f1(tp_total, pred_total, positives * len(LEVELS))
    meets = np.stack([recalls[level] >= min_recall for level in LEVELS])
    ok = meets.all(axis=0)
    if ok.any():
        i = int(np.argmax(np.where(ok, f1_pooled, -1.0)))
    else:
        score = meets.sum(axis=0)
        i = int(np.flatnonzero(score == score.max())[-1])
    return ThresholdChoice(
        threshold=float(grid[i]), f1_pooled=float(f1_pooled[i]),
        recall_by_level={lv: float(recalls[lv][i]) for lv in LEVELS},
        f1_by_level={lv: float(f1s[lv][i]) for lv in LEVELS}, feasible=bool(ok.any()))


def _f1(tp: np.ndarray, predicted: np.ndarray, positives: float) -> np.ndarray:
    denom = predicted + positives
    return np.divide(2.0 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


@dataclass
class FittedModel:
    """A booster refit on all its training flights plus what validation chose for it."""

    booster: xgb.Booster
    n_estimators: int
    threshold: ThresholdChoice
    validation_rows: int
    seed: int


@dataclass
class Probe:
    """A booster early-stopped on a validation split of its training flights, and what that
    validation chose (number of trees, decision threshold)."""

    booster: xgb.Booster
    n_estimators: int
    threshold: ThresholdChoice
    validation_rows: int


def fit_probe(levels: Mapping[str, np.ndarray], y: np.ndarray, days: np.ndarray,
              rows: np.ndarray, seed: int, max_rounds: int = MAX_ROUNDS) -> Probe:
    """Validation days of ``rows`` -> early stopping (number of trees) -> threshold."""
    y_rows = y[rows]
    if len(np.unique(y_rows)) < 2:
        raise ValueError(f"the {len(rows)} training flights are all of one class "
                         f"(delay_15={int(y_rows[0]) if len(rows) else '-'}): nothing to learn")
    fit_pos, val_pos = day_split(days[rows], VALIDATION_FRACTION, seed)
    if len(np.unique(y_rows[val_pos])) < 2 or len(np.unique(y_rows[fit_pos])) < 2:
        # too few days to hold some out with both classes on each side: split flights instead
        fit_pos, val_pos = stratified_split(y_rows, VALIDATION_FRACTION, seed)
    fit_rows, val_rows = rows[fit_pos], rows[val_pos]
    x_fit, y_fit = stack(levels, y, fit_rows)
    x_val, y_val = stack(levels, y, val_rows)
    probe, n_trees = fit_booster(x_fit, y_fit, max_rounds, seed, x_val, y_val)
    val_preds = {level: predict(probe, levels[level][val_rows], n_trees) for level in LEVELS}
    choice = choose_threshold(val_preds, y[val_rows], min_recall=MIN_RECALL + RECALL_MARGIN)
    return Probe(booster=probe, n_estimators=n_trees, threshold=choice,
                 validation_rows=len(val_rows))


def fit_pipeline(levels: Mapping[str, np.ndarray], y: np.ndarray, days: np.ndarray,
                 rows: np.ndarray, seed: int, max_rounds: int = MAX_ROUNDS) -> FittedModel:
    """Validation split -> early stopping (number of trees) -> threshold -> refit on ``rows``.

    Everything is decided from ``rows`` alone, so a holdout evaluated after this call was never
    looked at; the shipped model is this same function applied to every row.
    """
    probe = fit_probe(levels, y, days, rows, seed, max_rounds)
    x_all, y_all = stack(levels, y, rows)
    final, _ = fit_booster(x_all, y_all, probe.n_estimators, seed)
    return FittedModel(booster=final, n_estimators=probe.n_estimators,
                       threshold=probe.threshold, validation_rows=probe.validation_rows,
                       seed=seed)


def level_matrices(levels: Mapping[str, np.ndarray], rows: Sequence[int] | np.ndarray,
                   ) -> dict[str, np.ndarray]:
    return {level: levels[level][np.asarray(rows)] for level in LEVELS}
