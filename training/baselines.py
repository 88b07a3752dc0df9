"""The comparison models, trained on the same training flights as our booster.

- ``ds_xgboost``: the challenge data scientist's approach: one-hot OPERA, MES, TIPOVUELO, an
  XGBoost classifier (learning_rate 0.01, 100 trees, random_state 1, as in the notebook) fitted on
  a training set whose minority class was randomly oversampled to balance the classes. It
  decides with the usual 0.5 cut-off. Oversampling shifts its probabilities towards 0.5, which
  the calibration metrics make visible. MES here is the scheduled month (Fecha-I), the same
  leak-free input our model gets; the notebook used the month of operation.
- ``logistic``: sklearn logistic regression on the same one-hot required inputs, thresholded by
  our own rule on its own validation split, so it is the fair "simple model" comparison.
- ``base_rate``: the training-set delay rate for every flight, the floor for Brier/log loss.

These only use required inputs, so they are scored on the flights' required fields whatever
level the holdout row is evaluated at.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder

from training.metrics import all_metrics, curves
from training.modeling import (
    LEVELS,
    NTHREAD,
    VALIDATION_FRACTION,
    choose_threshold,
    stratified_split,
)

ONE_HOT_COLUMNS = ["OPERA", "MES", "TIPOVUELO"]
DS_PARAMS: dict[str, Any] = {"objective": "binary:logistic", "eta": 0.01, "seed": 1,
                             "tree_method": "hist", "nthread": NTHREAD}
DS_ROUNDS = 100


def one_hot(frame: pd.DataFrame, train_rows: np.ndarray) -> np.ndarray:
    """One-hot required inputs with categories fixed from the training rows."""
    encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float32)
    values = frame[ONE_HOT_COLUMNS].astype(str).to_numpy()
    encoder.fit(values[train_rows])
    return encoder.transform(values)


def oversample(y: np.ndarray, seed: int) -> np.ndarray:
    """Row positions with the minority class drawn with replacement up to the majority count."""
    rng = np.random.default_rng(seed)
    pos = np.flatnonzero(y == 1)
    neg = np.flatnonzero(y == 0)
    minority, majority = (pos, neg) if len(pos) < len(neg) else (neg, pos)
    extra = rng.choice(minority, size=len(majority) - len(minority), replace=True)
    return np.sort(np.concatenate([majority, minority, extra]))


def ds_xgboost(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray,
               seed: int) -> np.ndarray:
    picks = train[oversample(y[train], seed)]
    booster = xgb.train(DS_PARAMS, xgb.DMatrix(x[picks], label=y[picks], nthread=NTHREAD),
                        num_boost_round=DS_ROUNDS)
    return booster.predict(xgb.DMatrix(x[test], nthread=NTHREAD)).astype(np.float64)


def _logistic_fit(x: np.ndarray, y: np.ndarray) -> LogisticRegression:
    return LogisticRegression(max_iter=2000, C=1.0).fit(x, y)


def logistic(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray,
             seed: int) -> tuple[np.ndarray, float]:
    """Test probabilities and the threshold our rule picks on the logistic's validation split
    (all levels look the same to a required-only model, so the rule reduces to one level)."""
    fit_pos, val_pos = stratified_split(y[train], VALIDATION_FRACTION, seed)
    probe = _logistic_fit(x[train[fit_pos]], y[train[fit_pos]])
    val_p = probe.predict_proba(x[train[val_pos]])[:, 1]
    threshold = choose_threshold({lv: val_p for lv in LEVELS}, y[train[val_pos]]).threshold
    model = _logistic_fit(x[train], y[train])
    return model.predict_proba(x[test])[:, 1], threshold


def run_baselines(frame: pd.DataFrame, y: np.ndarray, train: np.ndarray, test: np.ndarray,
                  seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, curves) per baseline on the test rows."""
    x = one_hot(frame, train)
    y_test = y[test]
    metrics: dict[str, Any] = {}
    plots: dict[str, Any] = {}

    p = ds_xgboost(x, y, train, test, seed)
    metrics["ds_xgboost_oversampled"] = all_metrics(y_test, p, 0.5)
    plots["ds_xgboost_oversampled"] = curves(y_test, p)

    p, threshold = logistic(x, y, train, test, seed)
    metrics["logistic"] = all_metrics(y_test, p, threshold)
    plots["logistic"] = curves(y_test, p)

    rate = float(y[train].mean())
    p = np.full(len(test), rate)
    metrics["base_rate"] = {**all_metrics(y_test, p, 0.5), "rate": rate}
    return metrics, plots
