"""Metric definitions shared by evaluation, the report and the tests.

ECE is written out here (sklearn has none): 10 equal-width probability bins, the share-weighted
mean of |mean prediction - observed rate| per non-empty bin. Curves are downsampled so
``metrics.json`` stays small enough to review while still drawing smooth plots.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

N_BINS = 10
CURVE_POINTS = 200


def bin_index(p: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Equal-width bins on [0, 1]; p == 1.0 goes into the top bin."""
    return np.minimum((np.asarray(p) * n_bins).astype(int), n_bins - 1)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = N_BINS) -> float:
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    bins = bin_index(p, n_bins)
    total = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            total += mask.mean() * abs(p[mask].mean() - y[mask].mean())
    return float(total)


def reliability(y: np.ndarray, p: np.ndarray, n_bins: int = N_BINS) -> dict[str, list]:
    """Per non-empty bin: mean prediction, observed rate, count (for the reliability plot)."""
    bins = bin_index(p, n_bins)
    out: dict[str, list] = {"mean_predicted": [], "observed": [], "count": []}
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            out["mean_predicted"].append(round(float(p[mask].mean()), 5))
            out["observed"].append(round(float(np.asarray(y)[mask].mean()), 5))
            out["count"].append(int(mask.sum()))
    return out


def at_threshold(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    """Precision/recall/F1 of the delayed class and the confusion matrix for ``p >= t``."""
    y = np.asarray(y).astype(bool)
    pred = np.asarray(p) >= threshold
    tp = int((pred & y).sum())
    fp = int((pred & ~y).sum())
    fn = int((~pred & y).sum())
    tn = int((~pred & ~y).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"threshold": float(threshold), "precision": precision, "recall": recall, "f1": f1,
            "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp}}


def probability_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Ranking and calibration metrics; AUCs are None when only one class is present."""
    y = np.asarray(y)
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    two_classes = len(np.unique(y)) == 2
    return {
        "n": len(y),
        "positives": int(y.sum()),
        "observed_rate": float(y.mean()),
        "mean_predicted": float(p.mean()),
        "roc_auc": float(roc_auc_score(y, p)) if two_classes else None,
        "pr_auc": float(average_precision_score(y, p)) if two_classes else None,
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "ece": expected_calibration_error(y, p),
    }


def all_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    return {**probability_metrics(y, p), **at_threshold(y, p, threshold)}


def _thin(xs: np.ndarray, ys: np.ndarray) -> dict[str, list[float]]:
    idx = np.unique(np.linspace(0, len(xs) - 1, min(CURVE_POINTS, len(xs))).astype(int))
    return {"x": [round(float(v), 5) for v in xs[idx]], "y": [round(float(v), 5) for v in ys[idx]]}


def curves(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """ROC, precision-recall and reliability points for the plots."""
    if len(np.unique(y)) < 2:
        return {"reliability": reliability(y, p)}
    fpr, tpr, _ = roc_curve(y, p)
    precision, recall, _ = precision_recall_curve(y, p)
    return {"roc": _thin(fpr, tpr), "pr": _thin(recall[::-1], precision[::-1]),
            "reliability": reliability(y, p)}
