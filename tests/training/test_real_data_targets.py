"""Issue #14's targets, from a fresh evaluation on dataset_SCL.csv (all three protocols).

The bounds below are copied from the issue, not computed by the code under test. Forward
protocols (temporal: Jan-Sep -> Oct-Dec; rolling origin: months < k -> month k) come first:
they are what features and hyper-parameters were chosen by.
"""

from __future__ import annotations

import pytest

from training.data import load_flights
from training.evaluate import run_holdouts

pytestmark = pytest.mark.real_data

LEVELS = ("required", "fecha", "destination", "full")
# Targets not met by the shipped model (deterministic: same data, seed and code give the same
# numbers) go here as {(protocol, level): "measured ..."} and become strict xfails: the suite
# stays honest about a miss and turns red the day it is met without the entry being removed.
# Every target is met today; the forward ones narrowly (rolling required 0.6201, full 0.6704).
MISSED: dict[tuple[str, str], str] = {}
TARGETS = [  # (protocol, level, metric, op, bound)
    ("temporal", "full", "roc_auc", ">=", 0.65),
    ("temporal", "required", "roc_auc", ">=", 0.60),
    ("rolling", "full", "roc_auc", ">=", 0.67),
    ("rolling", "required", "roc_auc", ">=", 0.62),
    ("notebook", "required", "roc_auc", ">=", 0.665),
    ("notebook", "required", "brier", "<=", 0.141),
    ("notebook", "full", "roc_auc", ">=", 0.71),
    ("notebook", "full", "brier", "<=", 0.135),
    *(("notebook", level, "ece", "<=", 0.02) for level in LEVELS),
    *(("notebook", level, "recall", ">=", 0.60) for level in LEVELS),
]


@pytest.fixture(scope="module")
def evaluation(real_data):
    frame, report = load_flights(real_data)
    assert report.rows_used == 68206
    return run_holdouts(frame, baselines=False)


def _value(evaluation, protocol: str, level: str, metric: str) -> float:
    result = evaluation[protocol]
    return (result["mean"] if protocol == "rolling" else result["levels"])[level][metric]


CASES = [pytest.param(*t, id=f"{t[0]}-{t[1]}-{t[2]}",
                      marks=[pytest.mark.xfail(strict=True, reason=MISSED[t[:2]])]
                      if t[2] == "roc_auc" and t[:2] in MISSED else [])
         for t in TARGETS]


@pytest.mark.parametrize(("protocol", "level", "metric", "op", "bound"), CASES)
def test_issue_targets(evaluation, protocol, level, metric, op, bound) -> None:
    value = _value(evaluation, protocol, level, metric)
    assert (value >= bound if op == ">=" else value <= bound), \
        f"{protocol}/{level} {metric} {value:.4f} (target {op} {bound})"


def test_the_forward_protocols_are_what_the_issue_defines(evaluation) -> None:
    temporal = evaluation["temporal"]
    assert temporal["train_rows"] + temporal["test_rows"] == 68206
    assert [f["month"] for f in evaluation["rolling"]["folds"]] == [
        f"2017-{k:02d}" for k in range(4, 13)]
    # The delay rate drifts from about 0.17 (Jan-Sep) to 0.23 (Oct-Dec).
    assert temporal["train_rate"] == pytest.approx(0.17, abs=0.005)
    assert temporal["test_rate"] == pytest.approx(0.226, abs=0.005)


def test_f1_is_reported_at_the_stored_threshold(evaluation) -> None:
    for level in LEVELS:
        m = evaluation["notebook"]["levels"][level]
        assert m["threshold"] == evaluation["notebook"]["threshold"]
        assert 0.3 < m["f1"] < 1.0


def test_probabilities_track_the_observed_rate(evaluation) -> None:
    for level in LEVELS:
        m = evaluation["notebook"]["levels"][level]
        assert abs(m["mean_predicted"] - m["observed_rate"]) < 0.01, level
