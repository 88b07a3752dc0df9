"""The training CLI on a small synthetic file: a servable artifact, reproducibly."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from training.artifacts import load_artifact
from training.evaluate import notebook_split, temporal_split
from training.features import INPUT_LEVELS
from training.train import main as train_main

METADATA_KEYS = {
    "trained_at", "training_seconds", "dataset", "libraries", "params", "n_estimators", "seed",
    "threshold_rule", "holdout_metrics", "base_rate", "threshold", "model_sha256",
    "feature_spec", "model_version", "training_period", "model_card",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """One full CLI run (holdouts, baselines, report) shared by the assertions below."""
    from synthetic_flights import synthetic_rows, write_csv

    tmp = tmp_path_factory.mktemp("e2e")
    data = write_csv(tmp / "flights.csv", synthetic_rows())
    out = tmp / "artifact"
    assert train_main(["--data", str(data), "--out", str(out), "--max-rounds", "60"]) == 0
    return data, out


def test_cli_writes_loadable_artifact(trained) -> None:
    _, out = trained
    artifact = load_artifact(out)
    assert set(artifact.metadata) >= METADATA_KEYS
    assert 0.0 < artifact.threshold < 1.0
    assert artifact.metadata["dataset"]["path"] == "flights.csv"  # basename only
    assert artifact.metadata["dataset"]["rows_used"] == 1500
    assert set(artifact.metadata["libraries"]) == {"xgboost", "numpy", "pandas", "sklearn",
                                                   "holidays", "python"}
    summary = artifact.metadata["holdout_metrics"]
    assert set(summary) == {"notebook", "temporal", "rolling"}
    assert set(summary["notebook"]["levels"]) == set(INPUT_LEVELS)
    # rolling origin: months 4..12 of the synthetic year, each tested after the ones before.
    assert [m["month"] for m in summary["rolling"]["months"]] == [
        f"2017-{k:02d}" for k in range(4, 13)]
    assert set(summary["rolling"]["mean"]) == set(INPUT_LEVELS)
    period = artifact.metadata["training_period"]
    assert period["months"] == [f"2017-{k:02d}" for k in range(1, 13)]
    assert period["flights"] == 1500


def test_booster_predicts_probabilities_at_every_level(trained) -> None:
    from datetime import datetime

    _, out = trained
    artifact = load_artifact(out)
    base = {"OPERA": "Gamma Jet", "TIPOVUELO": "N", "MES": 11}
    flights = [base, {**base, "Fecha-I": datetime(2017, 11, 3, 20, 15)},
               {**base, "SIGLADES": "Lima"},
               {**base, "Fecha-I": datetime(2017, 11, 3, 8, 15), "SIGLADES": "Lima"},
               {"OPERA": "Alpha Air", "TIPOVUELO": "N", "MES": 2}]
    p = artifact.booster.predict(xgb.DMatrix(artifact.spec.encode(flights)))
    assert p.shape == (5,)
    assert np.all((p >= 0) & (p <= 1))
    # the synthetic signal: Gamma Jet at 20:15 is far likelier delayed than Alpha Air.
    assert p[1] > p[4]


def test_report_files_written(trained) -> None:
    _, out = trained
    report = out / "report"
    for name in ("metrics.json", "report.md", "roc.png", "precision_recall.png",
                 "reliability.png", "rolling_origin.png", "feature_importance.png",
                 "delay_rate_airline.png", "delay_rate_month.png", "delay_rate_period.png",
                 "delay_rate_destination.png"):
        assert (report / name).stat().st_size > 0, name
    metrics = json.loads((report / "metrics.json").read_text(encoding="utf-8"))
    full = metrics["holdouts"]["notebook"]["levels"]["full"]
    for key in ("roc_auc", "pr_auc", "brier", "log_loss", "ece", "precision", "recall", "f1",
                "confusion"):
        assert key in full
    assert set(metrics["holdouts"]["notebook"]["baselines"]) == {
        "ds_xgboost_oversampled", "logistic", "base_rate"}
    # synthetic delays depend strongly on airline and hour: a working pipeline ranks well.
    assert full["roc_auc"] > 0.65
    rolling = metrics["holdouts"]["rolling"]
    data, _ = trained
    with data.open(encoding="utf-8") as handle:
        scheduled = [row["Fecha-I"][:7] for row in csv.DictReader(handle)]
    for fold in rolling["folds"]:  # trained on every flight before month k, tested on k
        assert fold["train_rows"] == sum(1 for m in scheduled if m < fold["month"])
        assert fold["test_rows"] == sum(1 for m in scheduled if m == fold["month"])
    assert rolling["mean"]["full"]["roc_auc"] == pytest.approx(
        np.mean([f["levels"]["full"]["roc_auc"] for f in rolling["folds"]]), abs=1e-5)


def test_model_card_is_written_next_to_the_model(trained) -> None:
    _, out = trained
    meta = json.loads((out / "metadata.json").read_text(encoding="utf-8"))
    card = (out / meta["model_card"]).read_text(encoding="utf-8")
    assert meta["model_version"] in card
    for section in ("## Intended use", "## Out of scope", "## Inputs",
                    "## Training data and period", "## Evaluation", "## Calibration",
                    "## Limitations", "## How to retrain"):
        assert section in card, section
    # per-level tables of both forward protocols and of the notebook split
    assert card.count("| full (all inputs) |") == 3
    assert "2017-01 to 2017-12" in card


def test_same_data_and_seed_give_identical_model_bytes(synthetic_csv, tmp_path) -> None:
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        assert train_main(["--data", str(synthetic_csv), "--out", str(out), "--no-eval",
                           "--max-rounds", "40", "--seed", "5"]) == 0
    first, second = ((o / "model.ubj").read_bytes() for o in outs)
    assert first == second
    # The fast path derived from it too (onnxmltools names graphs with a random UUID).
    onnx = [(o / "model.onnx").read_bytes() for o in outs]
    assert onnx[0] == onnx[1] and len(onnx[0]) > 1000
    other = tmp_path / "c"
    assert train_main(["--data", str(synthetic_csv), "--out", str(other), "--no-eval",
                       "--max-rounds", "40", "--seed", "6"]) == 0
    assert (other / "model.ubj").read_bytes() != first  # the seed is really used


def test_cli_missing_data_is_a_clean_error(tmp_path, capsys) -> None:
    assert train_main(["--data", str(tmp_path / "none.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_holdout_splits_match_their_definitions(synthetic_csv) -> None:
    from sklearn.model_selection import train_test_split
    from sklearn.utils import shuffle

    from training.data import load_flights

    frame, _ = load_flights(synthetic_csv)
    train, test = notebook_split(frame)
    reference = shuffle(frame, random_state=111)
    ref_train, ref_test = train_test_split(reference, test_size=0.33, random_state=42)
    assert train.tolist() == ref_train.index.tolist()
    assert test.tolist() == ref_test.index.tolist()
    train, test = temporal_split(frame)
    assert set(frame.loc[train, "Fecha-I"].dt.month) <= set(range(1, 10))
    assert set(frame.loc[test, "Fecha-I"].dt.month) <= {10, 11, 12}
    assert len(train) + len(test) == len(frame)
