"""Metric definitions and the threshold rule, against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from training.baselines import oversample
from training.metrics import at_threshold, expected_calibration_error
from training.modeling import LEVELS, choose_threshold, stack, stratified_split


def test_ece_hand_computed() -> None:
    # bin 1 (0.1-0.2): p=0.1,0.1, y=0,1 -> |0.1-0.5|=0.4, weight 2/4
    # bin 8 (0.8-0.9): p=0.8,0.8, y=1,1 -> |0.8-1.0|=0.2, weight 2/4
    y = np.array([0, 1, 1, 1])
    p = np.array([0.1, 0.1, 0.8, 0.8])
    assert expected_calibration_error(y, p) == pytest.approx(0.5 * 0.4 + 0.5 * 0.2)


def test_ece_zero_when_bins_match_rates() -> None:
    y = np.array([0, 0, 0, 1, 1, 0, 1, 1])
    p = np.array([0.25] * 4 + [0.75] * 4)
    assert expected_calibration_error(y, p) == pytest.approx(0.0)


def test_at_threshold_counts() -> None:
    y = np.array([1, 1, 0, 0, 1])
    p = np.array([0.9, 0.3, 0.6, 0.1, 0.5])
    m = at_threshold(y, p, 0.5)  # predicted: 1,0,1,0,1 -> tp 2, fp 1, fn 1, tn 1
    assert m["confusion"] == {"tn": 1, "fp": 1, "fn": 1, "tp": 2}
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)


def test_threshold_respects_recall_floor_at_every_level() -> None:
    # 10 positives, 10 negatives. At "full", positives score high; at "required" they are
    # spread so recall >= 0.6 needs t <= 0.4 there, though F1 alone would prefer higher t.
    y = np.array([1] * 10 + [0] * 10)
    full = np.array([0.9] * 10 + [0.1] * 10)
    required = np.array([0.9, 0.9, 0.9, 0.9, 0.4, 0.4, 0.3, 0.3, 0.3, 0.3] + [0.35] * 10)
    preds = {lv: (required if lv == "required" else full) for lv in LEVELS}
    choice = choose_threshold(preds, y, min_recall=0.6)
    # Every t in (0.35, 0.4] gives required recall 6/10 with no false positives; t <= 0.35
    # adds 10 false positives there, t > 0.4 drops recall to 4/10. Ties go to the lowest t.
    assert choice.threshold == pytest.approx(0.351)
    assert choice.feasible
    assert choice.recall_by_level["required"] == pytest.approx(0.6)
    assert choice.recall_by_level["full"] == pytest.approx(1.0)


def test_stratified_split_keeps_class_shares_and_is_seeded() -> None:
    y = np.array([1] * 50 + [0] * 200)
    fit, val = stratified_split(y, 0.2, seed=3)
    assert len(np.intersect1d(fit, val)) == 0 and len(fit) + len(val) == 250
    assert y[val].sum() == 10 and len(val) == 50
    _, again_val = stratified_split(y, 0.2, seed=3)
    np.testing.assert_array_equal(val, again_val)


def test_stack_keeps_level_copies_of_the_same_rows() -> None:
    levels = {lv: np.full((4, 1), i, dtype=np.float32) for i, lv in enumerate(LEVELS)}
    y = np.array([0, 1, 0, 1])
    x, labels = stack(levels, y, np.array([1, 3]))
    assert x[:, 0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert labels.tolist() == [1, 1] * 4


def test_oversample_balances_classes() -> None:
    y = np.array([1] * 3 + [0] * 17)
    picks = oversample(y, seed=0)
    assert (y[picks] == 1).sum() == 17 == (y[picks] == 0).sum()
    assert set(np.flatnonzero(y == 0)) <= set(picks.tolist())


def test_validation_days_keep_each_day_on_one_side() -> None:
    """Flights of one day share its weather: the validation split holds out whole days."""
    from training.modeling import day_split

    rng = np.random.default_rng(0)
    days = rng.integers(0, 200, size=5000)
    fit, val = day_split(days, 0.2, seed=3)
    assert len(fit) + len(val) == 5000 and not set(fit) & set(val)
    assert not set(days[fit]) & set(days[val])
    assert len(set(days[val])) == round(0.2 * len(set(days)))
    _, again_val = day_split(days, 0.2, seed=3)
    assert again_val.tolist() == val.tolist()
    assert day_split(days, 0.2, seed=4)[1].tolist() != val.tolist()
